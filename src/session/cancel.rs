//! Cancel keys: the BackendKeyData pgward hands a client, mapped to the server backend's own.
//!
//! The client's key carries the server backend's process id (so `pg_backend_pid()` and NOTIFY
//! sender pids agree with what the client was told) and a secret pgward chose. A CancelRequest is
//! matched on both and forwarded with the server's real secret, which the client never sees.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

/// The key a client was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientKey {
    /// The server backend's process id.
    pub pid: i32,
    /// pgward's secret for this session.
    pub secret: i32,
}

/// The server backend's own key.
#[derive(Clone, PartialEq, Eq)]
pub struct BackendKey {
    /// The server backend's process id.
    pub pid: i32,
    /// The server's secret.
    pub secret: Vec<u8>,
}

/// Live sessions' keys, shared by all sessions.
#[derive(Debug, Default)]
pub struct CancelRegistry {
    keys: Mutex<HashMap<ClientKey, BackendKey>>,
}

/// Removes its key from the registry when the session ends.
#[derive(Debug)]
pub struct Registration {
    registry: Arc<CancelRegistry>,
    key: ClientKey,
}

// === impl CancelRegistry ===

impl CancelRegistry {
    /// Registers a session: picks a fresh client secret for `backend` and returns the client's key.
    pub fn register(self: &Arc<Self>, backend: BackendKey) -> Registration {
        let mut keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        let key = loop {
            let key = ClientKey {
                pid: backend.pid,
                secret: rand::random(),
            };
            if !keys.contains_key(&key) {
                break key;
            }
        };
        keys.insert(key, backend);
        Registration {
            registry: Arc::clone(self),
            key,
        }
    }

    /// The backend key for a client's key, if that session is live.
    pub fn lookup(&self, pid: i32, secret: &[u8]) -> Option<BackendKey> {
        let secret = i32::from_be_bytes(secret.try_into().ok()?);
        let keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        keys.get(&ClientKey { pid, secret }).cloned()
    }

    /// How many sessions are registered.
    pub fn len(&self) -> usize {
        self.keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether no session is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

// === impl Registration ===

impl Registration {
    /// The key to hand the client.
    pub fn key(&self) -> ClientKey {
        self.key
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut keys = self
            .registry
            .keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        keys.remove(&self.key);
    }
}

impl std::fmt::Debug for BackendKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendKey")
            .field("pid", &self.pid)
            .field("secret", &"_")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_match_on_pid_and_secret_and_leave_with_the_session() {
        let reg = Arc::new(CancelRegistry::default());
        let r = reg.register(BackendKey {
            pid: 42,
            secret: vec![9, 9, 9, 9],
        });
        let k = r.key();
        assert_eq!(k.pid, 42);
        let found = reg.lookup(42, &k.secret.to_be_bytes()).unwrap();
        assert_eq!(found.secret, [9, 9, 9, 9]);
        assert!(
            reg.lookup(42, &k.secret.wrapping_add(1).to_be_bytes())
                .is_none()
        );
        assert!(reg.lookup(43, &k.secret.to_be_bytes()).is_none());
        assert!(reg.lookup(42, &[1, 2, 3]).is_none());
        drop(r);
        assert!(reg.lookup(42, &k.secret.to_be_bytes()).is_none());
        assert!(reg.is_empty());
    }
}
