//! Which authentication method a connection must use, in the spirit of `pg_hba.conf`.
//!
//! The configuration's `[[auth]]` entries are evaluated in order against the startup user, the
//! database asked for and the client address; the first that matches names the method, and a
//! connection no entry matches is refused. Without any `[[auth]]` entry every identity uses
//! SCRAM, as before these rules existed.

use std::fmt;
use std::net::IpAddr;

use crate::policy::Glob;

/// How an identity proves who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// SCRAM-SHA-256 against the identities file.
    Scram,
    /// A JWT as the password: an OIDC provider's, or one `pgward token issue` signed.
    Token,
    /// A client certificate verified against `[tls] client_ca`.
    Cert,
    /// Always refused.
    Reject,
}

/// One `[[auth]]` entry.
#[derive(Debug, Clone)]
pub struct AuthRule {
    /// Identity-name globs; empty means every identity.
    pub(crate) identities: Vec<Glob>,
    /// Client-side database-name globs; empty means every database.
    pub(crate) databases: Vec<Glob>,
    /// Client address ranges; empty means every address.
    pub addresses: Vec<AddressRange>,
    /// The method.
    pub method: AuthMethod,
    /// Where the entry is, `file:line`, so a log line can name it.
    pub at: String,
}

/// The `[[auth]]` entries, in order.
#[derive(Debug, Clone, Default)]
pub struct AuthRules {
    rules: Vec<AuthRule>,
}

/// An address range in CIDR form: `10.0.0.0/8`, `::1/128`, or a plain address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressRange {
    network: IpAddr,
    prefix: u8,
}

// === impl AuthMethod ===

impl AuthMethod {
    /// The method's name in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::Scram => "scram",
            AuthMethod::Token => "token",
            AuthMethod::Cert => "cert",
            AuthMethod::Reject => "reject",
        }
    }

    /// Parses a configuration name.
    pub fn parse(name: &str) -> Option<AuthMethod> {
        Some(match name {
            "scram" => AuthMethod::Scram,
            "token" => AuthMethod::Token,
            "cert" => AuthMethod::Cert,
            "reject" => AuthMethod::Reject,
            _ => return None,
        })
    }
}

impl fmt::Display for AuthMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// === impl AuthRules ===

impl AuthRules {
    /// The entries, in the order they are evaluated.
    pub fn new(rules: Vec<AuthRule>) -> AuthRules {
        AuthRules { rules }
    }

    /// Without entries: every identity uses SCRAM.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The first entry matching a connection; `None` when no entry matches (refused). With no
    /// entries at all, `Some` of an implicit SCRAM entry.
    pub fn find(&self, identity: &str, database: &str, addr: IpAddr) -> Option<&AuthRule> {
        if self.rules.is_empty() {
            return Some(&IMPLICIT_SCRAM);
        }
        self.rules
            .iter()
            .find(|r| r.matches(identity, database, addr))
    }

    /// Whether some entry uses `method`.
    pub fn uses(&self, method: AuthMethod) -> bool {
        self.rules.iter().any(|r| r.method == method)
    }
}

static IMPLICIT_SCRAM: AuthRule = AuthRule {
    identities: Vec::new(),
    databases: Vec::new(),
    addresses: Vec::new(),
    method: AuthMethod::Scram,
    at: String::new(),
};

// === impl AuthRule ===

impl AuthRule {
    fn matches(&self, identity: &str, database: &str, addr: IpAddr) -> bool {
        let any_or =
            |globs: &[Glob], text: &str| globs.is_empty() || globs.iter().any(|g| g.is_match(text));
        any_or(&self.identities, identity)
            && any_or(&self.databases, database)
            && (self.addresses.is_empty() || self.addresses.iter().any(|r| r.contains(addr)))
    }
}

// === impl AddressRange ===

impl AddressRange {
    /// Parses `addr/prefix` or a plain address (a range of one).
    ///
    /// # Errors
    /// A message saying what is wrong.
    pub fn parse(text: &str) -> Result<AddressRange, String> {
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let network: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("`{text}` is not an address or address/prefix"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("`{text}`: the prefix must be 0 to {max}"))?,
        };
        let range = AddressRange { network, prefix };
        if range.mask(network) != network {
            return Err(format!(
                "`{text}` has host bits set; did you mean {}/{prefix}?",
                range.mask(network)
            ));
        }
        Ok(range)
    }

    /// Whether `addr` is in the range. An IPv4 client seen as an IPv4-mapped IPv6 address (a
    /// dual-stack listener) matches IPv4 ranges.
    pub fn contains(&self, addr: IpAddr) -> bool {
        let addr = match addr {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
            v4 => v4,
        };
        addr.is_ipv4() == self.network.is_ipv4() && self.mask(addr) == self.network
    }

    fn mask(&self, addr: IpAddr) -> IpAddr {
        match addr {
            IpAddr::V4(a) => {
                let bits = u32::from(a);
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V4((bits & mask).into())
            }
            IpAddr::V6(a) => {
                let bits = u128::from(a);
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V6((bits & mask).into())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(ids: &[&str], dbs: &[&str], addrs: &[&str], method: AuthMethod) -> AuthRule {
        AuthRule {
            identities: ids.iter().map(|p| Glob::new(p).unwrap()).collect(),
            databases: dbs.iter().map(|p| Glob::new(p).unwrap()).collect(),
            addresses: addrs
                .iter()
                .map(|a| AddressRange::parse(a).unwrap())
                .collect(),
            method,
            at: "pgward.toml:1".into(),
        }
    }

    #[test]
    fn first_match_wins_and_nothing_matched_is_none() {
        let rules = AuthRules::new(vec![
            rule(&["agent-*"], &[], &["10.0.0.0/8"], AuthMethod::Token),
            rule(&["agent-*"], &[], &[], AuthMethod::Reject),
            rule(&["svc"], &["app"], &[], AuthMethod::Cert),
            rule(&["alice", "bob"], &[], &[], AuthMethod::Scram),
        ]);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let method = |id: &str, db: &str, a: &str| rules.find(id, db, ip(a)).map(|r| r.method);
        assert_eq!(
            method("agent-7", "app", "10.1.2.3"),
            Some(AuthMethod::Token)
        );
        assert_eq!(
            method("agent-7", "app", "::ffff:10.1.2.3"),
            Some(AuthMethod::Token)
        );
        assert_eq!(
            method("agent-7", "app", "192.168.0.1"),
            Some(AuthMethod::Reject)
        );
        assert_eq!(method("svc", "app", "127.0.0.1"), Some(AuthMethod::Cert));
        assert_eq!(method("svc", "other", "127.0.0.1"), None);
        assert_eq!(method("alice", "x", "::1"), Some(AuthMethod::Scram));
        assert_eq!(method("mallory", "x", "::1"), None);
        let none = AuthRules::default();
        assert_eq!(
            none.find("anyone", "db", ip("1.2.3.4")).map(|r| r.method),
            Some(AuthMethod::Scram)
        );
    }

    #[test]
    fn address_ranges_parse_and_contain() {
        let r = AddressRange::parse("192.168.0.0/16").unwrap();
        assert!(r.contains("192.168.4.5".parse().unwrap()));
        assert!(!r.contains("192.169.0.1".parse().unwrap()));
        assert!(!r.contains("::1".parse().unwrap()));
        let all = AddressRange::parse("0.0.0.0/0").unwrap();
        assert!(all.contains("8.8.8.8".parse().unwrap()));
        let one = AddressRange::parse("::1").unwrap();
        assert!(one.contains("::1".parse().unwrap()));
        assert!(!one.contains("::2".parse().unwrap()));
        assert!(
            AddressRange::parse("10.0.0.1/8")
                .unwrap_err()
                .contains("10.0.0.0/8")
        );
        assert!(AddressRange::parse("10.0.0.0/33").is_err());
        assert!(AddressRange::parse("nope").is_err());
    }
}
