//! The live rule set: shared by all sessions, swapped whole on reload, never replaced by an
//! invalid set.
//!
//! A reloader task re-reads the rules directory when its files change (checked every second by
//! name, size and modification time, which works on every filesystem) and at once on SIGHUP.
//! A set that fails to load is logged and kept as the last error; sessions keep deciding with the
//! last good set, and pick up a new one from their next statement.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use tracing::{error, info, warn};

use crate::auth::Identity;
use crate::policy::RuleSet;

/// The rule set every session decides with.
#[derive(Debug)]
pub struct RulesHandle {
    current: ArcSwap<RuleSet>,
    last_error: Mutex<Option<String>>,
    dir: PathBuf,
}

/// One session's view: the rule set it last used and the identity's roles under it.
#[derive(Debug)]
pub struct LiveRules {
    handle: Arc<RulesHandle>,
    identity: String,
    identity_roles: Vec<String>,
    groups: Vec<String>,
    cached: Current,
}

/// A rule set and the roles an identity holds under it.
#[derive(Debug)]
pub struct Current {
    /// The rules.
    pub rules: Arc<RuleSet>,
    /// The identity's effective roles.
    pub roles: Vec<String>,
    /// Some mask rule or content detector applies to those roles.
    pub masked: bool,
}

impl Current {
    fn new(rules: Arc<RuleSet>, roles: Vec<String>) -> Self {
        let masked = rules.masks().iter().any(|m| m.applies_to(&roles))
            || rules.detectors().iter().any(|d| d.applies_to(&roles));
        Current {
            rules,
            roles,
            masked,
        }
    }
}

// === impl RulesHandle ===

impl RulesHandle {
    /// Loads `dir`; fails when the first load fails (pgward does not start without rules).
    ///
    /// # Errors
    /// The rule set's error, naming file, line and key.
    pub fn load(dir: &Path) -> Result<Arc<RulesHandle>, crate::policy::Error> {
        let (rules, warnings) = RuleSet::load_dir(dir)?;
        for w in &warnings {
            warn!(warning = %w, "Rule warning");
        }
        Ok(Arc::new(RulesHandle {
            current: ArcSwap::from_pointee(rules),
            last_error: Mutex::new(None),
            dir: dir.to_owned(),
        }))
    }

    /// The current rule set.
    pub fn current(&self) -> Arc<RuleSet> {
        self.current.load_full()
    }

    /// The error of the last failed reload, if the last reload failed.
    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Re-reads the directory; swaps only a valid set in. Returns whether it swapped.
    pub fn reload(&self) -> bool {
        let result = RuleSet::load_dir(&self.dir);
        let mut last_error = self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match result {
            Ok((rules, warnings)) => {
                for w in &warnings {
                    warn!(warning = %w, "Rule warning");
                }
                self.current.store(Arc::new(rules));
                *last_error = None;
                info!(dir = %self.dir.display(), "Rules reloaded");
                true
            }
            Err(e) => {
                error!(dir = %self.dir.display(), error = %e, "Rules not reloaded; keeping the last good set");
                *last_error = Some(e.to_string());
                false
            }
        }
    }

    /// Watches the directory and SIGHUP, reloading on change, until the task is dropped.
    pub async fn watch(self: Arc<Self>, every: Duration) {
        let mut seen = fingerprint(&self.dir);
        let mut hangup =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        let mut tick = tokio::time::interval(every);
        loop {
            let by_signal = tokio::select! {
                _ = tick.tick() => false,
                Some(()) = async { match hangup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => true,
            };
            let now = fingerprint(&self.dir);
            if by_signal || now != seen {
                seen = now;
                self.reload();
            }
        }
    }
}

/// What changes when a rule file is edited, added or removed.
fn fingerprint(dir: &Path) -> Vec<(PathBuf, u64, Option<SystemTime>)> {
    let mut out = Vec::new();
    let mut dirs = vec![dir.to_owned()];
    while let Some(d) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(meta) = e.metadata() else { continue };
            if meta.is_dir() {
                dirs.push(e.path());
            } else {
                out.push((e.path(), meta.len(), meta.modified().ok()));
            }
        }
    }
    out.sort();
    out
}

// === impl LiveRules ===

impl LiveRules {
    /// A session's view of `handle` for `identity`, which holds `identity_roles` in the
    /// identities file.
    pub fn new(handle: Arc<RulesHandle>, identity: &str, identity_roles: &[String]) -> Self {
        LiveRules::for_identity(
            handle,
            &Identity {
                name: identity.to_owned(),
                roles: identity_roles.to_vec(),
                groups: Vec::new(),
                method: crate::auth::AuthMethod::Scram,
            },
        )
    }

    /// The view of an authenticated identity, token groups included.
    pub fn for_identity(handle: Arc<RulesHandle>, identity: &Identity) -> Self {
        let rules = handle.current();
        let roles = rules.roles_for(&identity.name, &identity.roles, &identity.groups);
        LiveRules {
            handle,
            identity: identity.name.clone(),
            identity_roles: identity.roles.clone(),
            groups: identity.groups.clone(),
            cached: Current::new(rules, roles),
        }
    }

    /// The identity's name.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Catches up with the latest rule set; roles are recomputed only when it changed.
    pub fn refresh(&mut self) {
        let latest = self.handle.current.load();
        if !Arc::ptr_eq(&self.cached.rules, &latest) {
            let rules = arc_swap::Guard::into_inner(latest);
            let roles = rules.roles_for(&self.identity, &self.identity_roles, &self.groups);
            self.cached = Current::new(rules, roles);
        }
    }

    /// The rules as of the last [`LiveRules::refresh`], and the identity's roles under them.
    pub fn current(&self) -> &Current {
        &self.cached
    }
}
