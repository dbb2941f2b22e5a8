//! The analyze stage: each Query and Parse is turned into a statement profile on the data path.
//!
//! Profiles come from the shared [`ProfileCache`], so a repeated text costs a hash lookup (and
//! texts differing only in numeric literals share one entry). Prepared statements are
//! remembered by name for the session (protocol-level Parse, and SQL `PREPARE`, which share one
//! namespace on the server), so that a later Bind or `EXECUTE name` is judged by what it runs.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use tracing::debug;

use crate::proto::{Frame, MessageReader, cstr};
use crate::sql::{Analysis, AnalyzeContext, FunctionCatalog, ProfileCache, StatementProfile};

/// Per-session analysis state.
#[derive(Debug)]
pub struct StatementTracker {
    cache: Arc<ProfileCache>,
    catalog: Arc<FunctionCatalog>,
    search_path: Vec<String>,
    /// Prepared statements by name (the unnamed one under ""), as their combined profile.
    prepared: HashMap<String, Arc<StatementProfile>>,
    /// Reused buffer for cache keys.
    scratch: String,
}

// === impl StatementTracker ===

impl StatementTracker {
    /// A tracker analyzing against `catalog`, with the default `search_path`.
    pub fn new(cache: Arc<ProfileCache>, catalog: Arc<FunctionCatalog>) -> Self {
        StatementTracker {
            cache,
            catalog,
            search_path: vec!["public".to_owned()],
            prepared: HashMap::new(),
            scratch: String::new(),
        }
    }

    /// Analyzes a Query frame's text and remembers what it prepares (SQL `PREPARE`).
    pub fn observe_query(&mut self, frame: &Frame<'_>) -> Arc<Analysis> {
        let text = cstr(frame.body()).map_or(frame.body(), |(s, _)| s);
        let analysis = self.analyze(text);
        debug!(
            class = analysis.combined.class.as_str(),
            statements = analysis.statements.len(),
            "Query analyzed"
        );
        if let Some(path) = analysis
            .statements
            .iter()
            .rev()
            .find_map(|s| s.profile.search_path.as_ref())
        {
            self.search_path.clone_from(path);
        }
        for s in &analysis.statements {
            if let Some(p) = &s.profile.prepares {
                self.prepared.insert(p.name.clone(), Arc::clone(&p.profile));
            }
        }
        analysis
    }

    /// Analyzes a Parse frame's text and remembers it under the statement's name. A malformed
    /// Parse is analyzed as `unknown` (the server refuses it anyway).
    pub fn observe_parse(&mut self, frame: &Frame<'_>) -> Arc<Analysis> {
        let mut r = MessageReader::new(frame.body(), "Parse");
        let (name, text) = match (r.cstr(), r.cstr()) {
            (Ok(name), Ok(text)) => (name, text),
            // Not UTF-8: analyzed as unknown.
            _ => (&b""[..], &b"\xff"[..]),
        };
        let analysis = self.analyze(text);
        debug!(class = analysis.combined.class.as_str(), "Parse analyzed");
        let name = String::from_utf8_lossy(name);
        let profile = Arc::clone(&analysis.combined);
        if let Some(slot) = self.prepared.get_mut(name.as_ref()) {
            *slot = profile;
        } else {
            self.prepared.insert(name.into_owned(), profile);
        }
        analysis
    }

    /// Forgets a statement named in a Close frame.
    pub fn observe_close(&mut self, frame: &Frame<'_>) {
        let body = frame.body();
        if let (Some(b'S'), Some((name, _))) =
            (body.first(), cstr(body.get(1..).unwrap_or_default()))
        {
            self.prepared.remove(String::from_utf8_lossy(name).as_ref());
        }
    }

    /// The profile of prepared statement `name`: `unknown` when no such statement was seen.
    pub fn prepared_profile(&self, name: &[u8]) -> Arc<StatementProfile> {
        std::str::from_utf8(name)
            .ok()
            .and_then(|n| self.prepared.get(n))
            .map_or_else(
                || Arc::new(StatementProfile::unparsed("unknown prepared statement")),
                Arc::clone,
            )
    }

    /// `profile` itself, or for `EXECUTE name` the profile of what `name` was prepared as.
    pub fn resolve<'a>(&self, profile: &'a StatementProfile) -> Cow<'a, StatementProfile> {
        match &profile.executes {
            Some(e) => {
                Cow::Owned(profile.resolve_execute(self.prepared.get(&e.name).map(|p| &**p)))
            }
            None => Cow::Borrowed(profile),
        }
    }

    fn analyze(&mut self, text: &[u8]) -> Arc<Analysis> {
        let ctx = AnalyzeContext::new(&self.search_path, &self.catalog);
        match std::str::from_utf8(text) {
            Ok(sql) => self
                .cache
                .get_or_analyze_literal_blind(sql, &ctx, &mut self.scratch),
            Err(_) => self.cache.get_or_analyze_bytes(text, &ctx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::StatementClass;

    fn frame(t: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![t];
        v.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    fn tracker() -> StatementTracker {
        StatementTracker::new(
            Arc::new(ProfileCache::new(16)),
            Arc::new(FunctionCatalog::builtin_only()),
        )
    }

    fn with_frame<T>(bytes: &[u8], f: impl FnOnce(&Frame<'_>) -> T) -> T {
        f(&crate::proto::Frames::new(bytes, 1 << 20)
            .next()
            .unwrap()
            .unwrap())
    }

    #[test]
    fn queries_and_prepared_statements_are_profiled() {
        let mut t = tracker();
        let a = with_frame(&frame(b'Q', b"DELETE FROM orders\0"), |f| {
            t.observe_query(f)
        });
        assert_eq!(a.combined.class, StatementClass::Write);
        with_frame(
            &frame(b'P', b"s1\0SELECT * FROM people WHERE id = $1\0\0\0"),
            |f| t.observe_parse(f),
        );
        assert_eq!(t.prepared_profile(b"s1").class, StatementClass::Read);
        with_frame(&frame(b'C', b"Ss1\0"), |f| t.observe_close(f));
        assert_eq!(t.prepared_profile(b"s1").class, StatementClass::Unknown);
        let a = with_frame(&frame(b'Q', b"\xff\xfe\0"), |f| t.observe_query(f));
        assert_eq!(a.combined.class, StatementClass::Unknown);
    }

    #[test]
    fn sql_prepare_and_execute_resolve_to_the_prepared_statement() {
        let mut t = tracker();
        with_frame(&frame(b'Q', b"PREPARE wipe AS DELETE FROM orders\0"), |f| {
            t.observe_query(f)
        });
        let a = with_frame(&frame(b'Q', b"EXECUTE wipe\0"), |f| t.observe_query(f));
        assert_eq!(
            t.resolve(&a.statements[0].profile).class,
            StatementClass::Write
        );
        let a = with_frame(&frame(b'Q', b"EXECUTE never_prepared\0"), |f| {
            t.observe_query(f)
        });
        assert_eq!(
            t.resolve(&a.statements[0].profile).class,
            StatementClass::Unknown
        );
    }

    #[test]
    fn set_search_path_changes_resolution() {
        let mut t = tracker();
        with_frame(&frame(b'Q', b"SET search_path = app, public\0"), |f| {
            t.observe_query(f)
        });
        let a = with_frame(&frame(b'Q', b"SELECT * FROM users\0"), |f| {
            t.observe_query(f)
        });
        let read: Vec<String> = a
            .combined
            .tables_read
            .iter()
            .map(|t| t.to_string())
            .collect();
        assert_eq!(read, ["app.users"]);
    }
}
