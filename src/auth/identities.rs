//! The identities file: one TOML table per identity with its SCRAM verifier and roles.
//!
//! ```toml
//! ["alice"]
//! scram = "SCRAM-SHA-256$4096:<salt>$<StoredKey>:<ServerKey>"
//! roles = ["dba"]
//! admin_token = "sha256:<hex>"   # optional: a bearer token for the admin API
//! ```
//!
//! Only the SHA-256 of an admin token is kept: the token itself is shown once, by
//! `pgward passwd --admin-token`. Tokens are long random strings, so a plain hash suffices.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use super::Error;
use super::scram::Verifier;

/// All identities, by name.
#[derive(Debug, Clone, Default)]
pub struct Identities {
    by_name: BTreeMap<String, IdentityEntry>,
}

/// One identity's credentials and roles.
#[derive(Debug, Clone)]
pub struct IdentityEntry {
    /// Its SCRAM-SHA-256 verifier.
    pub verifier: Verifier,
    /// Its pgward roles.
    pub roles: Vec<String>,
    /// SHA-256 of its admin API bearer token, if it has one.
    pub admin_token: Option<[u8; 32]>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    scram: String,
    #[serde(default)]
    roles: Vec<String>,
    admin_token: Option<String>,
}

// === impl Identities ===

impl Identities {
    /// Reads the identities file.
    ///
    /// # Errors
    /// [`Error::Identities`] naming the file and, where the parser knows it, the line.
    pub fn load(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Identities {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        Identities::parse(&text).map_err(|message| Error::Identities {
            path: path.display().to_string(),
            message,
        })
    }

    /// Parses the identities file's text.
    ///
    /// # Errors
    /// A message naming the line and the identity at fault.
    pub fn parse(text: &str) -> Result<Self, String> {
        let raw: BTreeMap<String, RawEntry> = toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map_or(0, |s| text[..s.start.min(text.len())].lines().count());
            format!("line {line}: {}", e.message())
        })?;
        let mut by_name = BTreeMap::new();
        for (name, entry) in raw {
            let verifier = entry
                .scram
                .parse()
                .map_err(|e| format!("identity \"{name}\": scram: {e}"))?;
            let admin_token = entry
                .admin_token
                .as_deref()
                .map(parse_token_hash)
                .transpose()
                .map_err(|e| format!("identity \"{name}\": admin_token: {e}"))?;
            by_name.insert(
                name,
                IdentityEntry {
                    verifier,
                    roles: entry.roles,
                    admin_token,
                },
            );
        }
        Ok(Identities { by_name })
    }

    /// The entry for `name`.
    pub fn get(&self, name: &str) -> Option<&IdentityEntry> {
        self.by_name.get(name)
    }

    /// The identity whose admin token is `token`. Every entry is compared in constant time, so
    /// the answer's timing says nothing about which hash matched how far.
    pub fn by_admin_token(&self, token: &str) -> Option<&str> {
        use sha2::{Digest, Sha256};
        let presented: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found = None;
        for (name, entry) in &self.by_name {
            if let Some(hash) = &entry.admin_token {
                let diff = hash
                    .iter()
                    .zip(presented)
                    .fold(0u8, |acc, (a, b)| acc | (a ^ b));
                if diff == 0 {
                    found = Some(name.as_str());
                }
            }
        }
        found
    }

    /// How many identities there are.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

/// `sha256:<64 hex digits>` → the hash.
fn parse_token_hash(s: &str) -> Result<[u8; 32], String> {
    let hex = s
        .strip_prefix("sha256:")
        .ok_or("expected sha256:<64 hex digits> (from `pgward passwd --admin-token`)")?;
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("expected sha256:<64 hex digits>".to_owned());
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|e| e.to_string())?;
    }
    Ok(out)
}

/// A new random admin token and the `admin_token` value that stores its hash.
pub fn new_admin_token() -> (String, String) {
    use base64::Engine;
    use sha2::{Digest, Sha256};
    let bytes: [u8; 32] = rand::random();
    let token = format!(
        "pgw_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
    let hash = Sha256::digest(token.as_bytes());
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    (token, format!("sha256:{hex}"))
}

/// The identities-file entry for `name` with a fresh verifier of `password`, as `pgward passwd`
/// prints it.
pub fn entry_for(name: &str, password: &str, roles: &[String]) -> String {
    let verifier = postgres_protocol::password::scram_sha_256(password.as_bytes());
    let roles: Vec<String> = roles.iter().map(|r| format!("{r:?}")).collect();
    format!(
        "[{name:?}]\nscram = {verifier:?}\nroles = [{}]\n",
        roles.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwd_output_parses_back() {
        let text = entry_for("agent-7", "pw", &["agent".to_owned()]);
        let ids = Identities::parse(&text).unwrap();
        let e = ids.get("agent-7").unwrap();
        assert_eq!(e.roles, ["agent"]);
        assert_eq!(e.verifier.iterations, 4096);
    }

    #[test]
    fn admin_tokens_are_found_by_hash_only() {
        let (token, stored) = new_admin_token();
        let text = format!(
            "{}admin_token = {stored:?}\n",
            entry_for("ann", "pw", &["dba".to_owned()])
        );
        let ids = Identities::parse(&text).unwrap();
        assert_eq!(ids.by_admin_token(&token), Some("ann"));
        assert_eq!(ids.by_admin_token(&format!("{token}x")), None);
        assert_eq!(ids.by_admin_token(&stored), None);
        let err = Identities::parse(&text.replace("sha256:", "md5:")).unwrap_err();
        assert!(err.contains("admin_token"), "{err}");
    }

    #[test]
    fn plaintext_passwords_are_refused() {
        let err = Identities::parse("[bob]\nscram = \"hunter2\"\n").unwrap_err();
        assert!(err.contains("bob"), "{err}");
        let err = Identities::parse("[bob]\npassword = \"hunter2\"\n").unwrap_err();
        assert!(err.contains("line"), "{err}");
    }
}
