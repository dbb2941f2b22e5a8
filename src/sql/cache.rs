//! The shared profile cache: statement text (+ context) → [`Analysis`].
//!
//! Owns making a repeated statement cost one hash lookup. Shared by every
//! session (`&ProfileCache` is `Sync`), bounded, thread-safe; analysis of a
//! miss happens outside any lock, so a slow parse never blocks other sessions.
//!
//! # Performance
//! A hit hashes the text once and takes one shard lock; it allocates
//! nothing: the lookup key borrows the text ([`KeyRef`]) and the value is an
//! `Arc` clone. Eviction is quick_cache's CLOCK-Pro-like policy, a close and
//! scan-resistant approximation of LRU.
//!
//! Invariant: the key includes [`AnalyzeContext::fingerprint`] (search path
//! and catalog), so a session with another search path or catalog never gets
//! a profile computed for a different one.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use quick_cache::Equivalent;
use quick_cache::sync::Cache;

use super::normalize::normalized_key;
use super::{Analysis, AnalyzeContext, analyze};

/// Texts longer than this are analyzed every time rather than cached, so one
/// client cannot fill the cache's memory with huge statements.
pub const MAX_CACHED_TEXT: usize = 64 * 1024;

/// A bounded, shared cache of analyses; see the module docs.
pub struct ProfileCache {
    inner: Cache<Key, Arc<Analysis>>,
}

/// An owned cache key.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Key {
    context: u64,
    text: Box<str>,
}

/// A borrowed key for lookups: hashes and compares like [`Key`].
#[derive(Debug, Clone, Copy)]
struct KeyRef<'a> {
    context: u64,
    text: &'a str,
}

// === impl Key / KeyRef ===

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        KeyRef {
            context: self.context,
            text: &self.text,
        }
        .hash(state);
    }
}

impl Hash for KeyRef<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.context);
        state.write(self.text.as_bytes());
    }
}

impl Equivalent<Key> for KeyRef<'_> {
    fn equivalent(&self, key: &Key) -> bool {
        self.context == key.context && self.text == &*key.text
    }
}

// === impl ProfileCache ===

impl ProfileCache {
    /// A cache holding up to about `capacity` analyses (at least 1).
    pub fn new(capacity: usize) -> Self {
        ProfileCache {
            inner: Cache::new(capacity.max(1)),
        }
    }

    /// The cached analysis of `sql` in `ctx`, analyzing it on a miss.
    pub fn get_or_analyze(&self, sql: &str, ctx: &AnalyzeContext<'_>) -> Arc<Analysis> {
        if sql.len() > MAX_CACHED_TEXT {
            return Arc::new(analyze(sql, ctx));
        }
        self.lookup_or_analyze(sql, sql, ctx)
    }

    /// Like [`ProfileCache::get_or_analyze`], keyed so that texts differing only in the values
    /// of numeric literals share one entry (see `normalize.rs` for why that is sound).
    /// `scratch` is the caller's reusable buffer, so a hit allocates nothing.
    pub fn get_or_analyze_literal_blind(
        &self,
        sql: &str,
        ctx: &AnalyzeContext<'_>,
        scratch: &mut String,
    ) -> Arc<Analysis> {
        if sql.len() > MAX_CACHED_TEXT || !normalized_key(sql, scratch) {
            return self.get_or_analyze(sql, ctx);
        }
        self.lookup_or_analyze(scratch, sql, ctx)
    }

    /// The entry under `key`, or the analysis of `sql` stored under it.
    fn lookup_or_analyze(&self, key: &str, sql: &str, ctx: &AnalyzeContext<'_>) -> Arc<Analysis> {
        let key = KeyRef {
            context: ctx.fingerprint(),
            text: key,
        };
        if let Some(hit) = self.inner.get(&key) {
            return hit;
        }
        let analysis = Arc::new(analyze(sql, ctx));
        self.inner.insert(
            Key {
                context: key.context,
                text: key.text.into(),
            },
            analysis.clone(),
        );
        analysis
    }

    /// Like [`ProfileCache::get_or_analyze`] for protocol bytes; invalid
    /// UTF-8 is analyzed (as `unknown`) without being cached.
    pub fn get_or_analyze_bytes(&self, sql: &[u8], ctx: &AnalyzeContext<'_>) -> Arc<Analysis> {
        match std::str::from_utf8(sql) {
            Ok(s) => self.get_or_analyze(s, ctx),
            Err(_) => Arc::new(super::analyze_bytes(sql, ctx)),
        }
    }

    /// The number of cached analyses.
    pub fn len(&self) -> usize {
        self.inner.len()
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }

    /// Drops every entry (for example after the catalog was reloaded).
    pub fn clear(&self) {
        self.inner.clear();
    }
}

impl std::fmt::Debug for ProfileCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProfileCache")
            .field("len", &self.inner.len())
            .field("capacity", &self.inner.capacity())
            .finish()
    }
}
