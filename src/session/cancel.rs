//! Cancel keys: the BackendKeyData pgward hands a client, mapped to the server backend's own.
//!
//! The client's key carries the server backend's process id (so `pg_backend_pid()` and NOTIFY
//! sender pids agree with what the client was told) and a secret pgward chose. A CancelRequest is
//! matched on both and forwarded with the server's real secret, which the client never sees.
//!
//! A statement pgward holds for approval is not on the server, so a cancel also wakes the
//! session's [`CancelSignal`]: a held statement is withdrawn and answered 57014, as PostgreSQL
//! answers a cancelled query.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::Notify;

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
    keys: Mutex<HashMap<ClientKey, Entry>>,
}

#[derive(Debug)]
struct Entry {
    backend: BackendKey,
    signal: Arc<CancelSignal>,
}

/// Cancel requests for one session, as the session sees them.
#[derive(Debug, Default)]
pub struct CancelSignal {
    /// Cancel requests received so far.
    count: AtomicU64,
    notify: Notify,
}

/// Removes its key from the registry when the session ends.
#[derive(Debug)]
pub struct Registration {
    registry: Arc<CancelRegistry>,
    key: ClientKey,
    signal: Arc<CancelSignal>,
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
        let signal = Arc::new(CancelSignal::default());
        keys.insert(
            key,
            Entry {
                backend,
                signal: Arc::clone(&signal),
            },
        );
        Registration {
            registry: Arc::clone(self),
            key,
            signal,
        }
    }

    /// The backend key for a client's key, if that session is live; the session's
    /// [`CancelSignal`] is raised too (for a statement pgward itself holds).
    pub fn cancel(&self, pid: i32, secret: &[u8]) -> Option<BackendKey> {
        let secret = i32::from_be_bytes(secret.try_into().ok()?);
        let keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = keys.get(&ClientKey { pid, secret })?;
        entry.signal.raise();
        Some(entry.backend.clone())
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

    /// The session's cancel signal.
    pub fn signal(&self) -> Arc<CancelSignal> {
        Arc::clone(&self.signal)
    }
}

// === impl CancelSignal ===

impl CancelSignal {
    fn raise(&self) {
        self.count.fetch_add(1, Ordering::AcqRel);
        self.notify.notify_waiters();
    }

    /// Cancel requests received so far: a waiter compares against the value it started with,
    /// so a cancel meant for an earlier statement never withdraws a later one.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Acquire)
    }

    /// Resolves at the first cancel request after `since` (a [`CancelSignal::count`] value).
    pub async fn raised_after(&self, since: u64) {
        loop {
            let woken = self.notify.notified();
            tokio::pin!(woken);
            // Registered before the check, so a cancel in between is not missed.
            woken.as_mut().enable();
            if self.count() != since {
                return;
            }
            woken.await;
        }
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
        let before = r.signal().count();
        let found = reg.cancel(42, &k.secret.to_be_bytes()).unwrap();
        assert_eq!(found.secret, [9, 9, 9, 9]);
        assert_eq!(r.signal().count(), before + 1);
        assert!(
            reg.cancel(42, &k.secret.wrapping_add(1).to_be_bytes())
                .is_none()
        );
        assert!(reg.cancel(43, &k.secret.to_be_bytes()).is_none());
        assert!(reg.cancel(42, &[1, 2, 3]).is_none());
        assert_eq!(r.signal().count(), before + 1);
        drop(r);
        assert!(reg.cancel(42, &k.secret.to_be_bytes()).is_none());
        assert!(reg.is_empty());
    }
}
