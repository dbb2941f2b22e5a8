//! The identities file: one TOML table per identity with its SCRAM verifier and roles.
//!
//! ```toml
//! ["alice"]
//! scram = "SCRAM-SHA-256$4096:<salt>$<StoredKey>:<ServerKey>"
//! roles = ["dba"]
//! ```

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
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    scram: String,
    #[serde(default)]
    roles: Vec<String>,
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
            by_name.insert(
                name,
                IdentityEntry {
                    verifier,
                    roles: entry.roles,
                },
            );
        }
        Ok(Identities { by_name })
    }

    /// The entry for `name`.
    pub fn get(&self, name: &str) -> Option<&IdentityEntry> {
        self.by_name.get(name)
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
    fn plaintext_passwords_are_refused() {
        let err = Identities::parse("[bob]\nscram = \"hunter2\"\n").unwrap_err();
        assert!(err.contains("bob"), "{err}");
        let err = Identities::parse("[bob]\npassword = \"hunter2\"\n").unwrap_err();
        assert!(err.contains("line"), "{err}");
    }
}
