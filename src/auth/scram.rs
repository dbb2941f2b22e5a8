//! SCRAM-SHA-256 (RFC 5802, RFC 7677), server side, as PostgreSQL speaks it.
//!
//! A pure state machine: it takes the client's messages and returns the server's, with the server
//! nonce injected so that tests can replay a recorded exchange. pgward does not offer
//! `SCRAM-SHA-256-PLUS`; a client asking for channel binding (`p=`) is refused.
//!
//! # Security
//! An unknown user goes through the same exchange with a made-up verifier whose salt is derived
//! from the name, so the exchange does not reveal which identities exist. Proofs are compared in
//! constant time.

use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

use super::Error;

/// The one SASL mechanism pgward offers.
pub const MECHANISM: &str = "SCRAM-SHA-256";

/// A stored SCRAM-SHA-256 verifier: `SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>`.
#[derive(Clone, PartialEq, Eq)]
pub struct Verifier {
    /// PBKDF2 iteration count.
    pub iterations: u32,
    salt: Vec<u8>,
    stored_key: [u8; 32],
    server_key: [u8; 32],
}

/// The server side of one exchange.
#[derive(Debug)]
pub struct ScramServer {
    verifier: Verifier,
    /// False for an unknown user: the exchange runs to its end and then fails.
    known: bool,
    user: String,
    server_nonce: String,
    state: State,
}

#[derive(Debug)]
enum State {
    Initial,
    SentFirst {
        client_first_bare: String,
        server_first: String,
        gs2_header: String,
        nonce: String,
    },
    Done,
}

// === impl Verifier ===

impl FromStr for Verifier {
    type Err = &'static str;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let rest = s
            .strip_prefix("SCRAM-SHA-256$")
            .ok_or("not a SCRAM-SHA-256 verifier")?;
        let (params, keys) = rest.split_once('$').ok_or("missing keys")?;
        let (iter, salt) = params.split_once(':').ok_or("missing salt")?;
        let (stored, server) = keys.split_once(':').ok_or("missing server key")?;
        let iterations: u32 = iter.parse().map_err(|_| "bad iteration count")?;
        if iterations == 0 {
            return Err("bad iteration count");
        }
        let salt = B64.decode(salt).map_err(|_| "bad salt")?;
        let key = |k: &str| -> Result<[u8; 32], &'static str> {
            B64.decode(k)
                .ok()
                .and_then(|v| v.try_into().ok())
                .ok_or("bad key")
        };
        Ok(Verifier {
            iterations,
            salt,
            stored_key: key(stored)?,
            server_key: key(server)?,
        })
    }
}

impl std::fmt::Debug for Verifier {
    // A verifier allows offline guessing of the password: keep it out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// A verifier no password matches, with a salt derived from `user` and a per-process secret so
    /// that repeated attempts for one unknown name see one stable salt, as for a real identity.
    pub fn fake(user: &str, process_secret: &[u8; 32]) -> Verifier {
        let salt = hmac(process_secret, user.as_bytes()).unwrap_or([0; 32])[..16].to_vec();
        Verifier {
            iterations: 4096,
            salt,
            stored_key: rand::random(),
            server_key: rand::random(),
        }
    }
}

// === impl ScramServer ===

impl ScramServer {
    /// Starts an exchange for `user`, whose verifier is `verifier` (or a fake one when the user is
    /// unknown, `known = false`). `server_nonce` must be fresh and random.
    pub fn new(user: &str, verifier: Verifier, known: bool, server_nonce: &[u8; 18]) -> Self {
        ScramServer {
            verifier,
            known,
            user: user.to_owned(),
            server_nonce: B64.encode(server_nonce),
            state: State::Initial,
        }
    }

    /// Takes the client-first-message (from SASLInitialResponse) and returns server-first-message.
    ///
    /// # Errors
    /// [`Error::Protocol`] for a malformed message or a channel-binding request.
    pub fn client_first(&mut self, msg: &[u8]) -> Result<String, Error> {
        let msg = std::str::from_utf8(msg).map_err(|_| Error::Protocol("not UTF-8"))?;
        // gs2-header: cbind-flag "," [authzid] ","
        let (flag, rest) = msg
            .split_once(',')
            .ok_or(Error::Protocol("no gs2 header"))?;
        match flag {
            "n" | "y" => {}
            f if f.starts_with("p=") => {
                return Err(Error::Protocol("channel binding is not offered"));
            }
            _ => return Err(Error::Protocol("bad channel binding flag")),
        }
        let (authzid, bare) = rest
            .split_once(',')
            .ok_or(Error::Protocol("no gs2 header"))?;
        if !authzid.is_empty() {
            return Err(Error::Protocol("authorization identity is not supported"));
        }
        let gs2_header = format!("{flag},,");
        // client-first-message-bare: [reserved-mext ","] username "," nonce ["," extensions]
        let mut parts = bare.split(',');
        let user = parts.next().ok_or(Error::Protocol("no user name"))?;
        if !user.starts_with("n=") {
            return Err(Error::Protocol("no user name"));
        }
        let nonce = parts
            .next()
            .and_then(|p| p.strip_prefix("r="))
            .filter(|n| !n.is_empty() && n.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b','))
            .ok_or(Error::Protocol("no client nonce"))?;
        let nonce = format!("{nonce}{}", self.server_nonce);
        let server_first = format!(
            "r={nonce},s={},i={}",
            B64.encode(&self.verifier.salt),
            self.verifier.iterations
        );
        self.state = State::SentFirst {
            client_first_bare: bare.to_owned(),
            server_first: server_first.clone(),
            gs2_header,
            nonce,
        };
        Ok(server_first)
    }

    /// Takes the client-final-message and returns server-final-message (`v=…`) when the proof is
    /// right.
    ///
    /// # Errors
    /// [`Error::Failed`] for a wrong proof or an unknown user; [`Error::Protocol`] for a malformed
    /// message, a changed nonce or changed channel-binding data.
    pub fn client_final(&mut self, msg: &[u8]) -> Result<String, Error> {
        let State::SentFirst {
            client_first_bare,
            server_first,
            gs2_header,
            nonce,
        } = std::mem::replace(&mut self.state, State::Done)
        else {
            return Err(Error::Protocol("unexpected message"));
        };
        let msg = std::str::from_utf8(msg).map_err(|_| Error::Protocol("not UTF-8"))?;
        let (without_proof, proof) = msg
            .rsplit_once(",p=")
            .ok_or(Error::Protocol("no client proof"))?;
        let mut fields = without_proof.split(',');
        let cbind = fields
            .next()
            .and_then(|c| c.strip_prefix("c="))
            .ok_or(Error::Protocol("no channel binding"))?;
        if B64.decode(cbind).ok().as_deref() != Some(gs2_header.as_bytes()) {
            return Err(Error::Protocol("channel binding data changed"));
        }
        let client_nonce = fields
            .next()
            .and_then(|r| r.strip_prefix("r="))
            .ok_or(Error::Protocol("no nonce"))?;
        if client_nonce != nonce {
            return Err(Error::Protocol("nonce changed"));
        }
        let proof: [u8; 32] = B64
            .decode(proof)
            .ok()
            .and_then(|p| p.try_into().ok())
            .ok_or(Error::Protocol("bad client proof"))?;

        let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
        let failed = || Error::Failed {
            user: self.user.clone(),
        };
        let client_signature =
            hmac(&self.verifier.stored_key, auth_message.as_bytes()).map_err(|_| failed())?;
        let mut client_key = [0u8; 32];
        for (k, (p, s)) in client_key
            .iter_mut()
            .zip(proof.iter().zip(client_signature.iter()))
        {
            *k = p ^ s;
        }
        let stored_key: [u8; 32] = Sha256::digest(client_key).into();
        let matches = stored_key
            .iter()
            .zip(self.verifier.stored_key.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
        if !(matches && self.known) {
            return Err(failed());
        }
        let server_signature =
            hmac(&self.verifier.server_key, auth_message.as_bytes()).map_err(|_| failed())?;
        Ok(format!("v={}", B64.encode(server_signature)))
    }
}

fn hmac(key: &[u8], data: &[u8]) -> Result<[u8; 32], hmac::digest::InvalidLength> {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key)?;
    mac.update(data);
    Ok(mac.finalize().into_bytes().into())
}

#[cfg(test)]
mod tests {
    use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};

    use super::*;

    fn verifier(password: &str) -> Verifier {
        postgres_protocol::password::scram_sha_256(password.as_bytes())
            .parse()
            .unwrap()
    }

    /// Runs a full exchange between rust-postgres's client and this server.
    fn exchange(stored: &str, typed: &str, known: bool) -> Result<(), Error> {
        let mut client = ScramSha256::new(typed.as_bytes(), ChannelBinding::unsupported());
        let mut server = ScramServer::new("alice", verifier(stored), known, &[7; 18]);
        let first = server.client_first(client.message())?;
        client
            .update(first.as_bytes())
            .map_err(|_| Error::Protocol("client rejected first"))?;
        let last = server.client_final(client.message())?;
        client
            .finish(last.as_bytes())
            .map_err(|_| Error::Protocol("client rejected server"))
    }

    #[test]
    fn right_password_authenticates_both_ways() {
        exchange("correct horse", "correct horse", true).unwrap();
    }

    #[test]
    fn wrong_password_and_unknown_user_fail_alike() {
        assert!(matches!(
            exchange("correct horse", "wrong", true),
            Err(Error::Failed { .. })
        ));
        assert!(matches!(
            exchange("pw", "pw", false),
            Err(Error::Failed { .. })
        ));
    }

    #[test]
    fn fake_verifier_salt_is_stable_per_user() {
        let secret = [1u8; 32];
        assert_eq!(
            Verifier::fake("x", &secret).salt,
            Verifier::fake("x", &secret).salt
        );
        assert_ne!(
            Verifier::fake("x", &secret).salt,
            Verifier::fake("y", &secret).salt
        );
    }

    #[test]
    fn malformed_messages_are_protocol_errors() {
        let mut server = ScramServer::new("a", verifier("pw"), true, &[7; 18]);
        for bad in [
            &b"garbage"[..],
            b"p=tls-server-end-point,,n=,r=abc",
            b"n,,n=,r=",
            b"n,a=x,n=,r=abc",
        ] {
            assert!(
                matches!(server.client_first(bad), Err(Error::Protocol(_))),
                "{bad:?}"
            );
        }
        assert!(server.client_final(b"c=biws,r=x,p=AAAA").is_err());
        let mut server = ScramServer::new("a", verifier("pw"), true, &[7; 18]);
        server.client_first(b"n,,n=,r=abc").unwrap();
        assert!(matches!(
            server.client_final(b"c=biws,r=tampered,p=AAAA"),
            Err(Error::Protocol(_))
        ));
    }

    #[test]
    fn verifiers_parse_strictly() {
        assert!(
            "SCRAM-SHA-256$4096:c2FsdA==$AAAA:BBBB"
                .parse::<Verifier>()
                .is_err()
        );
        assert!("md5abcdef".parse::<Verifier>().is_err());
        assert!(!format!("{:?}", verifier("pw")).contains("stored"));
    }
}
