//! A throwaway PostgreSQL server for `pgward demo` and the integration tests.
//!
//! It runs the machine's own binaries (`initdb`, `pg_ctl`, found through `pg_config --bindir` or
//! on `PATH`) in a temporary directory on a free loopback port, with SCRAM password
//! authentication so that pgward's upstream login is exercised for real. `initdb` refuses to run
//! as root, so as root the server runs as the `postgres` OS user through `runuser`.
//!
//! The server is stopped and its directory removed on drop, and also by a watchdog process if
//! the owning process dies without dropping it (a test binary's statics are never dropped).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A running throwaway server.
#[derive(Debug)]
pub struct LocalPostgres {
    dir: tempfile::TempDir,
    bindir: PathBuf,
    as_postgres_user: bool,
    port: u16,
    password: String,
}

/// Errors starting the server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The PostgreSQL binaries were not found.
    #[error(
        "PostgreSQL server binaries not found: install postgresql (initdb and pg_ctl are needed)"
    )]
    NoBinaries,
    /// A step failed.
    #[error("{step} failed: {detail}")]
    Step {
        /// What was being done.
        step: &'static str,
        /// Its output or error.
        detail: String,
    },
}

/// The superuser name of the throwaway cluster.
pub const SUPERUSER: &str = "postgres";

// === impl LocalPostgres ===

impl LocalPostgres {
    /// Creates and starts a cluster whose superuser password is `password`.
    ///
    /// # Errors
    /// When the binaries are missing or `initdb` / `pg_ctl` fail; the error carries their output.
    pub fn start(password: &str) -> Result<LocalPostgres, Error> {
        let bindir = find_bindir().ok_or(Error::NoBinaries)?;
        let as_postgres_user = running_as_root();
        let dir = tempfile::Builder::new()
            .prefix("pgward-pg-")
            .tempdir()
            .map_err(|e| step("creating a temp dir", e))?;
        if as_postgres_user {
            chown_to_postgres(dir.path())?;
        }
        let data = dir.path().join("data");
        let pwfile = dir.path().join("pwfile");
        std::fs::write(&pwfile, format!("{password}\n")).map_err(|e| step("writing pwfile", e))?;
        if as_postgres_user {
            chown_to_postgres(&pwfile)?;
        }
        let port = free_port()?;
        let mut pg = LocalPostgres {
            dir,
            bindir,
            as_postgres_user,
            port,
            password: password.to_owned(),
        };
        pg.run(
            "initdb",
            &[
                "-D",
                path_str(&data)?,
                "-U",
                SUPERUSER,
                "--pwfile",
                path_str(&pwfile)?,
                "--auth-host=scram-sha-256",
                "--auth-local=scram-sha-256",
                "--encoding=UTF8",
                "--no-locale",
                "--no-sync",
            ],
            "initdb",
        )?;
        let _ = std::fs::remove_file(&pwfile);
        let conf = format!(
            "\nlisten_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{}'\n\
             fsync = off\nsynchronous_commit = off\nfull_page_writes = off\nmax_connections = 300\n\
             shared_buffers = 64MB\nlog_min_messages = warning\n",
            path_str(pg.dir.path())?
        );
        append(&data.join("postgresql.conf"), &conf)?;
        pg.spawn_watchdog()?;
        let log = pg.dir.path().join("postgres.log");
        pg.run(
            "pg_ctl",
            &[
                "-D",
                path_str(&data)?,
                "-l",
                path_str(&log)?,
                "-w",
                "-t",
                "60",
                "start",
            ],
            "pg_ctl start",
        )
        .map_err(|e| {
            let tail = std::fs::read_to_string(&log).unwrap_or_default();
            step("pg_ctl start", format!("{e}\n{tail}"))
        })?;
        Ok(pg)
    }

    /// The loopback port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The superuser's password.
    pub fn password(&self) -> &str {
        &self.password
    }

    /// The directory holding the cluster (and its log, `postgres.log`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A libpq-style connection string for the superuser and `database`.
    pub fn conninfo(&self, database: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user={SUPERUSER} password={} dbname={database}",
            self.port, self.password
        )
    }

    /// Turns on TLS with the given PEM certificate and key (a reload, no restart). Clients that
    /// do not ask for TLS are still served in plaintext.
    ///
    /// # Errors
    /// When the files can't be written or the server refuses the reload.
    pub fn enable_ssl(&mut self, cert_pem: &str, key_pem: &str) -> Result<(), Error> {
        use std::os::unix::fs::PermissionsExt;
        let data = self.dir.path().join("data");
        let (cert, key) = (data.join("server.crt"), data.join("server.key"));
        std::fs::write(&cert, cert_pem).map_err(|e| step("writing server.crt", e))?;
        std::fs::write(&key, key_pem).map_err(|e| step("writing server.key", e))?;
        // PostgreSQL refuses a key file others can read.
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| step("chmod server.key", e))?;
        if self.as_postgres_user {
            chown_to_postgres(&cert)?;
            chown_to_postgres(&key)?;
        }
        append(
            &data.join("postgresql.conf"),
            "\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n",
        )?;
        let data = path_str(&data)?.to_owned();
        self.run("pg_ctl", &["-D", &data, "reload"], "pg_ctl reload")
    }

    fn command(&self, program: &str) -> Command {
        let exe = self.bindir.join(program);
        if self.as_postgres_user {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            Command::new(exe)
        }
    }

    fn run(&mut self, program: &str, args: &[&str], what: &'static str) -> Result<(), Error> {
        let out = self
            .command(program)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| step(what, e))?;
        if !out.status.success() {
            return Err(step(
                what,
                format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ),
            ));
        }
        Ok(())
    }

    /// Starts a shell that stops the server and removes its directory once this process is gone.
    fn spawn_watchdog(&self) -> Result<(), Error> {
        let pg_ctl = self.bindir.join("pg_ctl");
        let data = self.dir.path().join("data");
        let stop = format!(
            "{}{} -D {} -m immediate stop",
            if self.as_postgres_user {
                "runuser -u postgres -- "
            } else {
                ""
            },
            shell_quote(path_str(&pg_ctl)?),
            shell_quote(path_str(&data)?)
        );
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {stop} >/dev/null 2>&1; rm -rf {dir}",
            pid = std::process::id(),
            dir = shell_quote(path_str(self.dir.path())?),
        );
        // setsid: the watchdog must outlive this process's process group, which a shell or CI
        // runner may kill as a whole when this process ends.
        Command::new("setsid")
            .args(["sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| step("starting the watchdog", e))?;
        Ok(())
    }
}

impl Drop for LocalPostgres {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        if let Some(d) = data.to_str() {
            let d = d.to_owned();
            let _ = self.run(
                "pg_ctl",
                &["-D", &d, "-m", "immediate", "-w", "stop"],
                "pg_ctl stop",
            );
        }
    }
}

fn step(step: &'static str, e: impl std::fmt::Display) -> Error {
    Error::Step {
        step,
        detail: e.to_string(),
    }
}

fn path_str(p: &Path) -> Result<&str, Error> {
    p.to_str()
        .ok_or_else(|| step("path", format!("{} is not UTF-8", p.display())))
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

fn append(path: &Path, text: &str) -> Result<(), Error> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(|e| step("editing postgresql.conf", e))?;
    f.write_all(text.as_bytes())
        .map_err(|e| step("editing postgresql.conf", e))
}

/// Whether this process runs as root: `/proc/self` is owned by the effective uid.
fn running_as_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

fn chown_to_postgres(path: &Path) -> Result<(), Error> {
    let out = Command::new("chown")
        .arg("postgres:")
        .arg(path)
        .output()
        .map_err(|e| step("chown to the postgres user", e))?;
    if !out.status.success() {
        return Err(step(
            "chown to the postgres user",
            String::from_utf8_lossy(&out.stderr),
        ));
    }
    Ok(())
}

fn free_port() -> Result<u16, Error> {
    let l =
        std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| step("finding a free port", e))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| step("finding a free port", e))
}

/// The directory with `initdb` and `pg_ctl`: `pg_config --bindir`, else the `PATH`, else the
/// newest `/usr/lib/postgresql/*/bin`.
pub fn find_bindir() -> Option<PathBuf> {
    let has_tools = |d: &Path| d.join("initdb").is_file() && d.join("pg_ctl").is_file();
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if out.status.success() && has_tools(&dir) {
            return Some(dir);
        }
    }
    if let Some(path) = std::env::var_os("PATH")
        && let Some(dir) = std::env::split_paths(&path).find(|d| has_tools(d))
    {
        return Some(dir);
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|d| has_tools(d))
        .collect();
    versions.sort();
    versions.pop()
}
