//! The analyze stage: each Query and Parse is turned into a statement profile on the data path.
//!
//! Profiles come from the shared [`ProfileCache`], so a repeated text costs a hash lookup.
//! Prepared statements are remembered by name for the session (protocol-level Parse, and SQL
//! `PREPARE`), so that a later Bind/Execute or `EXECUTE name` is known by what it runs. Until
//! duty rules exist the profile is only recorded and logged at debug level.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use tracing::debug;

use crate::proto::{Frame, MessageReader, cstr, tag};
use crate::sql::{Analysis, AnalyzeContext, FunctionCatalog, ProfileCache, StatementClass, StatementProfile};

/// Per-session analysis state.
#[derive(Debug)]
pub struct StatementTracker {
    cache: Arc<ProfileCache>,
    catalog: Arc<FunctionCatalog>,
    search_path: Vec<String>,
    /// Protocol-level prepared statements by name; the unnamed one under "".
    prepared: HashMap<String, Arc<StatementProfile>>,
    /// The analysis of the most recent Query or Parse.
    last: Option<Arc<Analysis>>,
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
            last: None,
            scratch: String::new(),
        }
    }

    /// Analyzes a Query frame's text and remembers what it prepares (SQL `PREPARE`).
    pub fn observe_query(&mut self, frame: &Frame<'_>) -> Arc<Analysis> {
        let text = cstr(frame.body()).map_or(frame.body(), |(s, _)| s);
        let analysis = self.analyze(text);
        debug!(class = analysis.combined.class.as_str(), statements = analysis.statements.len(), "Query analyzed");
        self.track_search_path(&analysis);
        for s in &analysis.statements {
            if let Some(p) = &s.profile.prepares {
                // SQL PREPARE and protocol Parse share one namespace on the server.
                self.prepared.insert(p.name.clone(), Arc::clone(&p.profile));
            }
        }
        self.last = Some(Arc::clone(&analysis));
        analysis
    }

    /// Analyzes a Parse frame's text and remembers it under the statement's name. A malformed
    /// Parse is analyzed as `unknown` (the server refuses it anyway).
    pub fn observe_parse(&mut self, frame: &Frame<'_>) -> Arc<Analysis> {
        let mut r = MessageReader::new(frame.body(), "Parse");
        let (name, text) = match (r.cstr(), r.cstr()) {
            (Ok(name), Ok(text)) => (name, text),
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
        self.last = Some(Arc::clone(&analysis));
        analysis
    }

    /// Forgets a statement named in a Close frame.
    pub fn observe_close(&mut self, frame: &Frame<'_>) {
        let body = frame.body();
        if let (Some(b'S'), Some((name, _))) = (body.first(), cstr(body.get(1..).unwrap_or_default())) {
            self.prepared.remove(String::from_utf8_lossy(name).as_ref());
        }
    }

    /// The profile of prepared statement `name`: `unknown` when no such statement was seen.
    pub fn prepared_profile(&self, name: &[u8]) -> Arc<StatementProfile> {
        std::str::from_utf8(name)
            .ok()
            .and_then(|n| self.prepared.get(n))
            .map_or_else(|| Arc::new(StatementProfile::unparsed("unknown prepared statement")), Arc::clone)
    }

    /// `profile` itself, or for `EXECUTE name` the profile of what `name` was prepared as.
    pub fn resolve<'a>(&self, profile: &'a StatementProfile) -> Cow<'a, StatementProfile> {
        match &profile.executes {
            Some(e) => {
                let prepared = self.prepared.get(&e.name).map(|p| &**p);
                Cow::Owned(profile.resolve_execute(prepared))
            }
            None => Cow::Borrowed(profile),
        }
    }

    /// The analysis of the most recent Query or Parse.
    last: Option<Arc<Analysis>>,
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
            last: None,
            scratch: String::new(),
        }
    }

    /// Looks at one client frame. Never fails: text that can't be read is analyzed as `unknown`.
    pub fn observe(&mut self, frame: &Frame<'_>) {
        match frame.tag() {
            tag::QUERY => {
                let text = cstr(frame.body()).map_or(frame.body(), |(s, _)| s);
                let analysis = self.analyze(text);
                debug!(
                    class = analysis.combined.class.as_str(),
                    statements = analysis.statements.len(),
                    "Query analyzed"
                );
                self.track_search_path(&analysis);
                self.last = Some(analysis);
            }
            tag::PARSE => {
                let mut r = MessageReader::new(frame.body(), "Parse");
                let (Ok(name), Ok(text)) = (r.cstr(), r.cstr()) else {
                    // A malformed Parse is refused by the server; nothing to remember.
                    return;
                };
                let analysis = self.analyze(text);
                debug!(class = analysis.combined.class.as_str(), "Parse analyzed");
                let name = String::from_utf8_lossy(name);
                if let Some(slot) = self.prepared.get_mut(name.as_ref()) {
                    *slot = Arc::clone(&analysis);
                } else {
                    self.prepared
                        .insert(name.into_owned(), Arc::clone(&analysis));
                }
                self.last = Some(analysis);
            }
            tag::CLOSE => {
                let body = frame.body();
                if let (Some(b'S'), Some((name, _))) =
                    (body.first(), cstr(body.get(1..).unwrap_or_default()))
                {
                    self.prepared.remove(String::from_utf8_lossy(name).as_ref());
                }
            }
            _ => {}
        }
    }

    /// The analysis of the most recent Query or Parse.
    pub fn last(&self) -> Option<&Arc<Analysis>> {
        self.last.as_ref()
    }

    /// The class of the prepared statement `name`, or `unknown` when no such statement was seen.
    pub fn prepared_class(&self, name: &str) -> StatementClass {
        self.prepared
            .get(name)
            .map_or(StatementClass::Unknown, |a| a.combined.class)
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

    /// Follows `SET search_path` so later statements resolve unqualified names as the server will.
    fn track_search_path(&mut self, analysis: &Analysis) {
        if let Some(path) = analysis
            .statements
            .iter()
            .rev()
            .find_map(|s| s.profile.search_path.as_ref())
        {
            self.search_path.clone_from(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(t: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![t];
        v.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    fn observe(tracker: &mut StatementTracker, bytes: &[u8]) {
        let f = crate::proto::Frames::new(bytes, 1 << 20)
            .next()
            .unwrap()
            .unwrap();
        tracker.observe(&f);
    }

    #[test]
    fn queries_and_prepared_statements_are_profiled() {
        let mut t = StatementTracker::new(
            Arc::new(ProfileCache::new(16)),
            Arc::new(FunctionCatalog::builtin_only()),
        );
        observe(&mut t, &frame(b'Q', b"DELETE FROM orders\0"));
        assert_eq!(t.last().unwrap().combined.class, StatementClass::Write);
        observe(
            &mut t,
            &frame(b'P', b"s1\0SELECT * FROM people WHERE id = $1\0\0\0"),
        );
        assert_eq!(t.prepared_class("s1"), StatementClass::Read);
        observe(&mut t, &frame(b'C', b"Ss1\0"));
        assert_eq!(t.prepared_class("s1"), StatementClass::Unknown);
        observe(&mut t, &frame(b'Q', b"\xff\xfe\0"));
        assert_eq!(t.last().unwrap().combined.class, StatementClass::Unknown);
    }

    #[test]
    fn set_search_path_changes_resolution() {
        let mut t = StatementTracker::new(
            Arc::new(ProfileCache::new(16)),
            Arc::new(FunctionCatalog::builtin_only()),
        );
        observe(&mut t, &frame(b'Q', b"SET search_path = app, public\0"));
        observe(&mut t, &frame(b'Q', b"SELECT * FROM users\0"));
        let read: Vec<String> = t
            .last()
            .unwrap()
            .combined
            .tables_read
            .iter()
            .map(|t| t.to_string())
            .collect();
        assert_eq!(read, ["app.users"]);
    }
}
