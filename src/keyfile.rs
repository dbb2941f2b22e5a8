//! Secret key files in pgward's data directory: read, or created once with random bytes.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Why a key file could not be had.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or creating the file failed.
    #[error("key file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file holds too few bytes to be a key.
    #[error("key file {path}: holds {len} bytes, at least {min} are needed")]
    TooShort {
        /// The file.
        path: PathBuf,
        /// Bytes found.
        len: usize,
        /// Bytes needed.
        min: usize,
    },
}

/// The key in `path`; when the file does not exist, `len` random bytes are written to it first
/// (readable by the owner only). An existing file must hold at least `len` bytes.
///
/// # Errors
/// When the file can't be read or created, or is too short.
pub fn load_or_create(path: &Path, len: usize) -> Result<Vec<u8>, Error> {
    let io = |source| Error::Io {
        path: path.to_owned(),
        source,
    };
    match std::fs::read(path) {
        Ok(key) if key.len() >= len => return Ok(key),
        Ok(key) => {
            return Err(Error::TooShort {
                path: path.to_owned(),
                len: key.len(),
                min: len,
            });
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let key: Vec<u8> = (0..len).map(|_| rand::random::<u8>()).collect();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(mut f) => {
            f.write_all(&key).and_then(|()| f.sync_all()).map_err(io)?;
            Ok(key)
        }
        // Another process created it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => load_or_create(path, len),
        Err(e) => Err(io(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_once_then_reads_the_same_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/mask.key");
        let a = load_or_create(&path, 32).unwrap();
        let b = load_or_create(&path, 32).unwrap();
        assert_eq!(a.len(), 32);
        assert_eq!(a, b);
    }

    #[test]
    fn a_short_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        std::fs::write(&path, b"short").unwrap();
        let e = load_or_create(&path, 32).unwrap_err();
        assert!(e.to_string().contains("holds 5 bytes"), "{e}");
    }
}
