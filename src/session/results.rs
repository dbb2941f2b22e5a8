//! Which statement each result belongs to, and the masking of its rows.
//!
//! The server answers client messages strictly in order, so the client side pushes one
//! [`Expect`] per message that gets an answer and the server side pops them as the answers
//! arrive (after an error, the server skips everything up to the next Sync, and so does the
//! queue). That tells the server side, for each RowDescription and DataRow, which statement
//! produced it: its lineage (for computed columns) and, for prepared statements and portals,
//! the plan made when it was described.
//!
//! A mask plan is made once per RowDescription: once per simple-query result, once per Describe
//! of a prepared statement (reused by every Bind and Execute of it), once per Describe of a
//! portal. A driver may Execute a portal it never described (the row shape is known to it from
//! earlier); when masks apply, pgward then sends a Describe of the portal itself just before the
//! Execute and keeps the answer to itself.
//!
//! When nothing is masked for the session's roles no plan is made and rows pass as they are.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::{BufMut, Bytes, BytesMut};

use super::StatementTracker;
use super::columns::{ColumnCatalog, Named, Origin};
use super::enforce::Verdict;
use super::recorder::{Audited, Recorder};
use super::rules::LiveRules;
use crate::mask::{self, CopyFormat, CopyMasker, Detectors, MaskPlan, RowDescriptionView};
use crate::policy::{DetectorKind, RuleSet};
use crate::proto::{ErrorFields, Frame, MessageReader, SqlState, cstr, tag};
use crate::sql::{
    Analysis, ColumnSource, Flag, OutputColumn, StatementClass, StatementProfile, TableName,
};

/// A statement or portal name, shared between the two halves without copying it per message.
pub type Name = Arc<[u8]>;

/// How long a cached plan is trusted: as long as the column origins it was made from.
const PLAN_TTL: std::time::Duration = std::time::Duration::from_secs(60);

/// Interned names kept per session; past this the table is cleared (interning is only a saving).
const MAX_NAMES: usize = 4096;

/// What the server will answer to one client message, in order.
#[derive(Debug)]
enum Expect {
    /// ParseComplete: the statement's earlier description is gone.
    Parse { statement: Name },
    /// BindComplete: the portal takes the statement's plan.
    Bind { portal: Name, statement: Name },
    /// ParameterDescription, then RowDescription or NoData.
    DescribeStatement {
        statement: Name,
        profile: Arc<StatementProfile>,
    },
    /// RowDescription or NoData; swallowed when pgward sent the Describe itself.
    DescribePortal {
        portal: Name,
        profile: Arc<StatementProfile>,
        injected: bool,
    },
    /// DataRows (or a COPY), then CommandComplete, EmptyQueryResponse or PortalSuspended.
    Execute {
        portal: Name,
        profile: Arc<StatementProfile>,
        copy: Option<Arc<CopyFormat>>,
        /// The audited statement this Execute runs (the first Execute after its Bind).
        audit: Option<Box<Audited>>,
    },
    /// CloseComplete.
    Close { statement: bool, name: Name },
    /// ReadyForQuery. `ddl`: the batch it ends defined or altered something.
    Sync { ddl: bool },
    /// Results of each statement in turn, then ReadyForQuery. `copy`: the format of each
    /// statement that is a `COPY … TO STDOUT` (only looked for while masks apply).
    Query {
        analysis: Arc<Analysis>,
        copy: Option<Arc<[Option<CopyFormat>]>>,
        ddl: bool,
        /// The audited statement, completed at ReadyForQuery.
        audit: Option<Box<Audited>>,
    },
    /// FunctionCallResponse, then ReadyForQuery.
    FunctionCall,
}

/// The queue between the halves of one session.
#[derive(Debug)]
pub struct Pipeline {
    queue: Mutex<VecDeque<Expect>>,
    /// The transaction status of the server's last ReadyForQuery (`I`, `T` or `E`).
    status: AtomicU8,
    /// Set once masks have applied to the session: from then on portals are always described.
    masking: AtomicBool,
}

/// The client half: records what each message will be answered with.
#[derive(Debug)]
pub struct ResultTracker {
    pipeline: Arc<Pipeline>,
    names: HashSet<Name>,
    empty: Name,
    /// Statements described since they were parsed.
    described: HashSet<Name>,
    /// Portals by name: whether the server side will have a plan for them.
    planned_portals: HashMap<Name, bool>,
    /// Profiles of portals, for a Describe of a portal.
    portal_profiles: HashMap<Name, Arc<StatementProfile>>,
    /// Formats of prepared `COPY … TO STDOUT` statements, and of portals bound to them.
    copy_statements: HashMap<Name, Arc<CopyFormat>>,
    copy_portals: HashMap<Name, Arc<CopyFormat>>,
    /// A statement defining or altering something was sent in the current batch.
    batch_ddl: bool,
}

/// A prepared statement's description, kept to plan each of its executions.
#[derive(Debug)]
struct Described {
    /// The RowDescription body, or `None` for NoData.
    row_description: Option<Bytes>,
    profile: Arc<StatementProfile>,
    /// The plan under `rules` and catalog `generation`; made again when either changes.
    planned: Mutex<Planning>,
}

/// A prepared statement's plan and what it was made under.
#[derive(Debug)]
struct Planning {
    rules: Arc<RuleSet>,
    generation: u64,
    plan: Option<Arc<MaskPlan>>,
}

/// What the rows now arriving are masked with.
#[derive(Debug, Default)]
enum Active {
    /// Nothing to mask (or no result in progress).
    #[default]
    Pass,
    /// DataRows of a result.
    Rows(Arc<MaskPlan>),
    /// Rows of a result whose shape pgward never saw: every value is nulled.
    Blind,
    /// CopyData rows of a COPY … TO STDOUT.
    Copy(Box<CopyMasker>),
}

/// The server half: plans results and masks their rows.
#[derive(Debug)]
pub struct ResultMasker {
    pipeline: Arc<Pipeline>,
    rules: LiveRules,
    catalog: Arc<ColumnCatalog>,
    key: Arc<[u8]>,
    statements: HashMap<Name, Arc<Described>>,
    portals: HashMap<Name, Option<Arc<MaskPlan>>>,
    active: Active,
    /// In a simple query, the index of the statement whose results arrive.
    query_statement: usize,
    /// Table OIDs to look up before the current frame can be planned.
    missing: Vec<u32>,
    /// Tables whose columns must be looked up before a COPY can be planned.
    missing_tables: Vec<TableName>,
    /// Bumped when DDL passes: prepared statements' plans are made again.
    generation: u64,
    /// A relation of the current lineage could not be looked up (see `through_views`).
    views_failed: bool,
    /// Plans by RowDescription and profile (see [`ResultMasker::cached_plan`]).
    plans: HashMap<u64, CachedPlan>,
    plan_hasher: std::collections::hash_map::RandomState,
    /// The content detectors of the session's roles, compiled once per rule set.
    detectors: Option<(Arc<RuleSet>, Option<Arc<Detectors>>)>,
    /// Records statements' outcomes, when the audit log is on.
    recorder: Option<Recorder>,
    /// Result bytes (DataRow, CopyData) sent since the current statement began.
    result_bytes: u64,
    /// Rows of the current statement as the client received them, when they are captured.
    capture: Option<crate::audit::RowsCapture>,
    /// Column names of the last RowDescription, for captured rows.
    capture_names: Vec<String>,
    /// Counts masked values by rule, when metrics are on.
    mask_counters: Option<MaskCounters>,
}

/// `pgward_masked_values_total` resolved for one rule set: one counter per mask rule, so that
/// counting a masked value is an atomic add.
#[derive(Debug)]
struct MaskCounters {
    metrics: Arc<crate::metrics::Metrics>,
    rules: Option<Arc<RuleSet>>,
    by_rule: Vec<prometheus::IntCounter>,
    /// `detector:KIND`, in [`DetectorKind::ALL`] order.
    by_detector: [prometheus::IntCounter; DetectorKind::ALL.len()],
}

/// Why a result can't be passed on.
#[derive(Debug, thiserror::Error)]
#[error("pgward could not mask a result row: {0}")]
pub struct Unmaskable(#[from] mask::Error);

// === impl MaskCounters ===

impl MaskCounters {
    /// Counts one rewritten row: a value for each masked column (NULLs included), and the
    /// detector's finding.
    fn count(&mut self, rules: &Arc<RuleSet>, plan: &MaskPlan, applied: mask::Applied) {
        if !self.rules.as_ref().is_some_and(|r| Arc::ptr_eq(r, rules)) {
            self.by_rule = rules
                .masks()
                .iter()
                .map(|m| {
                    self.metrics
                        .masked_values
                        .with_label_values(&[&m.id().to_string()])
                })
                .collect();
            self.rules = Some(Arc::clone(rules));
        }
        for mask in plan.columns().iter().flatten() {
            if let Some(c) = self.by_rule.get(mask.rule_index) {
                c.inc();
            }
        }
        if let mask::Applied::Detected { kind, .. } = applied
            && let Some(i) = DetectorKind::ALL.iter().position(|k| *k == kind)
        {
            self.by_detector[i].inc();
        }
    }
}

// === impl Pipeline ===

impl Default for Pipeline {
    fn default() -> Self {
        Pipeline::with_capacity(0)
    }
}

impl Pipeline {
    /// Whether every message sent has been answered: the session is between statements.
    pub fn is_idle(&self) -> bool {
        self.lock().is_empty()
    }

    /// Whether the server connection could serve another session: every message answered and
    /// no transaction open.
    pub fn is_reusable(&self) -> bool {
        self.status.load(Ordering::Relaxed) == b'I' && self.is_idle()
    }

    /// A queue with room for `n` answers before it grows.
    pub fn with_capacity(n: usize) -> Self {
        Pipeline {
            status: AtomicU8::new(b'I'),
            queue: Mutex::new(VecDeque::with_capacity(n)),
            masking: AtomicBool::new(false),
        }
    }

    fn push(&self, expect: Expect) {
        self.lock().push_back(expect);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Expect>> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

// === impl ResultTracker ===

impl ResultTracker {
    /// The client half of a session's result tracking.
    pub fn new(pipeline: Arc<Pipeline>) -> Self {
        ResultTracker {
            pipeline,
            names: HashSet::new(),
            empty: Arc::from(&b""[..]),
            described: HashSet::new(),
            planned_portals: HashMap::new(),
            portal_profiles: HashMap::new(),
            copy_statements: HashMap::new(),
            copy_portals: HashMap::new(),
            batch_ddl: false,
        }
    }

    fn intern(&mut self, name: &[u8]) -> Name {
        if name.is_empty() {
            return Arc::clone(&self.empty);
        }
        if let Some(n) = self.names.get(name) {
            return Arc::clone(n);
        }
        if self.names.len() >= MAX_NAMES {
            self.names.clear();
        }
        let n: Name = Arc::from(name);
        self.names.insert(Arc::clone(&n));
        n
    }

    /// Whether masks have applied to the session (they may, from then on).
    pub fn masking(&self) -> bool {
        self.pipeline.masking.load(Ordering::Acquire)
    }

    /// Marks the session as one that masks (see [`ResultTracker::masking`]).
    pub fn set_masking(&self) {
        self.pipeline.masking.store(true, Ordering::Release);
    }

    /// A simple Query of `text`, as analyzed (EXECUTE statements resolved to what they run),
    /// with the formats of its COPY statements (`copy_formats_of`).
    pub fn query(
        &mut self,
        analysis: Arc<Analysis>,
        copy: Option<Arc<[Option<CopyFormat>]>>,
        audit: Option<Audited>,
    ) {
        let ddl = analysis
            .statements
            .iter()
            .any(|s| s.profile.class == StatementClass::Ddl);
        self.pipeline.push(Expect::Query {
            analysis,
            copy,
            ddl,
            audit: audit.map(Box::new),
        });
    }

    /// A Parse whose profile is `profile` and, if it is a `COPY … TO STDOUT`, its format.
    pub fn parse(
        &mut self,
        frame: &Frame<'_>,
        profile: &StatementProfile,
        copy: Option<CopyFormat>,
    ) {
        let name = cstr(frame.body()).map_or(&b""[..], |(n, _)| n);
        let statement = self.intern(name);
        self.described.remove(&statement);
        match copy {
            Some(f) => {
                self.copy_statements
                    .insert(Arc::clone(&statement), Arc::new(f));
            }
            None => {
                self.copy_statements.remove(&statement);
            }
        }
        self.batch_ddl |= profile.class == StatementClass::Ddl;
        self.pipeline.push(Expect::Parse { statement });
    }

    /// A Bind of `statement` (whose profile is `profile`) to a portal.
    pub fn bind(&mut self, frame: &Frame<'_>, profile: Arc<StatementProfile>) {
        let mut r = MessageReader::new(frame.body(), "Bind");
        let (Ok(portal), Ok(statement)) = (r.cstr(), r.cstr()) else {
            // The server refuses it; what matters is one entry per message.
            let (portal, statement) = (self.intern(b""), self.intern(b""));
            self.pipeline.push(Expect::Bind { portal, statement });
            return;
        };
        let (portal, statement) = (self.intern(portal), self.intern(statement));
        self.batch_ddl |= profile.class == StatementClass::Ddl;
        let planned = self.described.contains(&statement);
        match self.planned_portals.get_mut(&portal) {
            Some(p) => *p = planned,
            None => {
                self.planned_portals.insert(Arc::clone(&portal), planned);
            }
        }
        match self.portal_profiles.get_mut(&portal) {
            Some(p) => *p = profile,
            None => {
                self.portal_profiles.insert(Arc::clone(&portal), profile);
            }
        }
        match self.copy_statements.get(&statement) {
            Some(f) => {
                self.copy_portals.insert(Arc::clone(&portal), Arc::clone(f));
            }
            None => {
                self.copy_portals.remove(&portal);
            }
        }
        self.pipeline.push(Expect::Bind { portal, statement });
    }

    /// A Describe of a statement or portal.
    pub fn describe(&mut self, frame: &Frame<'_>, tracker: &StatementTracker) {
        let body = frame.body();
        let name = body.get(1..).and_then(cstr).map_or(&b""[..], |(n, _)| n);
        let name = self.intern(name);
        if body.first() == Some(&b'S') {
            let profile = tracker.prepared_profile(&name);
            self.described.insert(Arc::clone(&name));
            self.pipeline.push(Expect::DescribeStatement {
                statement: name,
                profile,
            });
        } else {
            if let Some(p) = self.planned_portals.get_mut(&name) {
                *p = true;
            }
            let profile = self.portal_profile(&name);
            self.pipeline.push(Expect::DescribePortal {
                portal: name,
                profile,
                injected: false,
            });
        }
    }

    /// An Execute. When masks apply and the server side has no plan for the portal, writes a
    /// Describe of the portal followed by the Execute itself into `out` and returns true: the
    /// caller sends `out` instead of the frame.
    pub fn execute(
        &mut self,
        frame: &Frame<'_>,
        out: &mut BytesMut,
        audit: Option<Audited>,
    ) -> bool {
        let name = cstr(frame.body()).map_or(&b""[..], |(n, _)| n);
        let portal = self.intern(name);
        let planned = self.planned_portals.get(&portal).copied().unwrap_or(false);
        let inject = !planned && self.masking();
        if inject {
            let profile = self.portal_profile(&portal);
            if let Some(p) = self.planned_portals.get_mut(&portal) {
                *p = true;
            }
            out.put_u8(tag::DESCRIBE);
            out.put_i32((4 + 1 + portal.len() + 1) as i32);
            out.put_u8(b'P');
            out.put_slice(&portal);
            out.put_u8(0);
            out.put_slice(frame.bytes());
            self.pipeline.push(Expect::DescribePortal {
                portal: Arc::clone(&portal),
                profile,
                injected: true,
            });
        }
        let profile = self.portal_profile(&portal);
        let copy = self.copy_portals.get(&portal).cloned();
        self.pipeline.push(Expect::Execute {
            portal,
            profile,
            copy,
            audit: audit.map(Box::new),
        });
        inject
    }

    /// A Close of a statement or portal.
    pub fn close(&mut self, frame: &Frame<'_>) {
        let body = frame.body();
        let name = body.get(1..).and_then(cstr).map_or(&b""[..], |(n, _)| n);
        let name = self.intern(name);
        let statement = body.first() == Some(&b'S');
        if statement {
            self.described.remove(&name);
            self.copy_statements.remove(&name);
        } else {
            self.planned_portals.remove(&name);
            self.portal_profiles.remove(&name);
            self.copy_portals.remove(&name);
        }
        self.names.remove(&name);
        self.pipeline.push(Expect::Close { statement, name });
    }

    /// A Sync.
    pub fn sync(&mut self) {
        let ddl = std::mem::take(&mut self.batch_ddl);
        self.pipeline.push(Expect::Sync { ddl });
    }

    /// A FunctionCall.
    pub fn function_call(&mut self) {
        self.pipeline.push(Expect::FunctionCall);
    }

    fn portal_profile(&self, portal: &Name) -> Arc<StatementProfile> {
        self.portal_profiles.get(portal).map_or_else(
            || Arc::new(StatementProfile::unparsed("unknown portal")),
            Arc::clone,
        )
    }
}

// === impl ResultMasker ===

impl ResultMasker {
    /// The server half of a session's result tracking.
    pub fn new(
        pipeline: Arc<Pipeline>,
        rules: LiveRules,
        catalog: Arc<ColumnCatalog>,
        key: Arc<[u8]>,
    ) -> Self {
        ResultMasker {
            pipeline,
            rules,
            catalog,
            key,
            statements: HashMap::new(),
            portals: HashMap::new(),
            active: Active::Pass,
            query_statement: 0,
            missing: Vec::new(),
            missing_tables: Vec::new(),
            generation: 0,
            views_failed: false,
            plans: HashMap::new(),
            plan_hasher: std::collections::hash_map::RandomState::new(),
            detectors: None,
            recorder: None,
            result_bytes: 0,
            capture: None,
            capture_names: Vec::new(),
            mask_counters: None,
        }
    }

    /// Records statements' outcomes with `recorder`.
    pub fn record_with(&mut self, recorder: Recorder) {
        self.recorder = Some(recorder);
    }

    /// Counts masked values by rule in `metrics`.
    pub fn count_with(&mut self, metrics: Arc<crate::metrics::Metrics>) {
        let by_detector = DetectorKind::ALL.map(|k| {
            metrics
                .masked_values
                .with_label_values(&[&format!("detector:{}", k.as_str())])
        });
        self.mask_counters = Some(MaskCounters {
            metrics,
            rules: None,
            by_rule: Vec::new(),
            by_detector,
        });
    }

    /// Whether masks have applied to the session.
    pub fn masking(&self) -> bool {
        self.pipeline.masking.load(Ordering::Acquire)
    }

    /// Whether the statement whose answers now arrive reads tables while masks apply (its
    /// errors and notices may quote a masked value). Protocol-level errors of Parse, Bind and
    /// Describe are about what the client sent, so they don't count.
    pub fn statement_reads_masked(&self) -> bool {
        if !self.rules.current().masked {
            return false;
        }
        let q = self.pipeline.lock();
        let profile = match q.front() {
            Some(Expect::Query { analysis, .. }) => analysis
                .statements
                .get(self.query_statement)
                .map_or(&**UNKNOWN, |s| &*s.profile),
            Some(Expect::Execute { profile, .. }) => profile,
            Some(Expect::FunctionCall) => &**UNKNOWN,
            _ => return false,
        };
        !profile.tables_read.is_empty()
            || matches!(
                profile.class,
                StatementClass::Unknown | StatementClass::Code
            )
    }

    /// Looks up what [`Verdict::Lookup`] asked for.
    pub async fn fetch(&mut self) {
        let missing = std::mem::take(&mut self.missing);
        if !missing.is_empty() {
            self.catalog.fetch(&missing).await;
        }
        let tables = std::mem::take(&mut self.missing_tables);
        if !tables.is_empty() {
            self.catalog.fetch_names(&tables).await;
        }
    }

    /// One DataRow: masked into `out` ([`Verdict::Replace`]) or passed as it is.
    ///
    /// # Errors
    /// A row that can't be read: the session must end rather than pass it.
    #[inline]
    pub fn on_data_row(
        &mut self,
        frame: &Frame<'_>,
        out: &mut BytesMut,
    ) -> Result<Verdict, Unmaskable> {
        self.result_bytes += frame.bytes().len() as u64;
        let start = out.len();
        let applied = match &mut self.active {
            Active::Pass => {
                self.capture_row(frame.bytes());
                return Ok(Verdict::Pass);
            }
            Active::Rows(plan) => mask::apply(frame.body(), plan, &self.key, out)?,
            Active::Blind => mask::null_all(frame.body(), out)?,
            // A DataRow inside COPY can't happen; nothing is known about it.
            Active::Copy(_) => mask::null_all(frame.body(), out)?,
        };
        Ok(if applied.is_rewritten() {
            if let (Some(counters), Active::Rows(plan)) = (&mut self.mask_counters, &self.active) {
                counters.count(&self.rules.current().rules, plan, applied);
            }
            if self.capture_on() {
                // The row as the client receives it: the rewritten frame.
                let rewritten = out.split_off(start);
                self.capture_row(&rewritten);
                out.unsplit(rewritten);
            }
            Verdict::Replace
        } else {
            self.capture_row(frame.bytes());
            Verdict::Pass
        })
    }

    /// One CopyData from the server: masked into `out` or passed.
    ///
    /// # Errors
    /// A row that can't be read.
    pub fn on_copy_data(
        &mut self,
        frame: &Frame<'_>,
        out: &mut BytesMut,
    ) -> Result<Verdict, Unmaskable> {
        self.result_bytes += frame.bytes().len() as u64;
        let Active::Copy(copy) = &mut self.active else {
            return Ok(Verdict::Pass);
        };
        Ok(
            if copy.apply(frame.body(), &self.key, out)?.is_rewritten() {
                Verdict::Replace
            } else {
                Verdict::Pass
            },
        )
    }

    /// Any other server frame: advances the queue and plans results.
    ///
    /// # Errors
    /// A RowDescription that can't be read while masks apply.
    pub fn on_frame(&mut self, frame: &Frame<'_>) -> Result<Verdict, Unmaskable> {
        match frame.tag() {
            tag::PARSE_COMPLETE => {
                if let Some(Expect::Parse { statement }) =
                    self.pop_if(|e| matches!(e, Expect::Parse { .. }))
                {
                    self.statements.remove(&statement);
                }
            }
            tag::BIND_COMPLETE => return self.bind_complete(),
            tag::CLOSE_COMPLETE => {
                if let Some(Expect::Close { statement, name }) =
                    self.pop_if(|e| matches!(e, Expect::Close { .. }))
                {
                    if statement {
                        self.statements.remove(&name);
                    } else {
                        self.portals.remove(&name);
                    }
                }
            }
            tag::ROW_DESCRIPTION => {
                if self.capture_on()
                    && let Ok(view) = RowDescriptionView::parse(frame.body())
                {
                    self.capture_names = view
                        .fields()
                        .iter()
                        .map(|f| String::from_utf8_lossy(f.name).into_owned())
                        .collect();
                }
                return self.row_description(Some(frame.body()));
            }
            tag::NO_DATA => return self.row_description(None),
            tag::COPY_OUT_RESPONSE => return self.copy_out(frame),
            tag::COMMAND_COMPLETE | tag::EMPTY_QUERY_RESPONSE | tag::PORTAL_SUSPENDED => {
                self.active = Active::Pass;
                let tag_text = (frame.tag() == tag::COMMAND_COMPLETE)
                    .then(|| cstr(frame.body()).map_or(frame.body(), |(t, _)| t));
                let mut q = self.pipeline.lock();
                let mut done = None;
                match q.front_mut() {
                    Some(Expect::Execute { audit, .. }) => {
                        if let (Some(a), Some(t)) = (audit.as_deref_mut(), tag_text) {
                            a.complete(t);
                        }
                        done = audit.take();
                        q.pop_front();
                    }
                    Some(Expect::Query { audit, .. }) => {
                        if let (Some(a), Some(t)) = (audit.as_deref_mut(), tag_text) {
                            a.complete(t);
                        }
                        self.query_statement += 1;
                    }
                    _ => {}
                }
                let front_is_query = matches!(q.front(), Some(Expect::Query { .. }));
                drop(q);
                if let Some(a) = done {
                    self.record_outcome(*a);
                } else if !front_is_query {
                    self.capture = None;
                }
            }
            tag::ERROR_RESPONSE => {
                self.active = Active::Pass;
                let (code, message) = self.error_fields(frame.body());
                // The server skips the rest of an extended-protocol batch up to its Sync.
                let mut q = self.pipeline.lock();
                let mut ended = Vec::new();
                if let Some(Expect::Query { audit: Some(a), .. }) = q.front_mut() {
                    a.fail(code.clone(), message.clone());
                }
                let mut first = true;
                while q.front().is_some_and(|e| {
                    !matches!(
                        e,
                        Expect::Sync { .. } | Expect::Query { .. } | Expect::FunctionCall
                    )
                }) {
                    if let Some(Expect::Execute {
                        audit: Some(mut a), ..
                    }) = q.pop_front()
                    {
                        if first {
                            a.fail(code.clone(), message.clone());
                        } else {
                            // Skipped by the server: an earlier message of the batch failed.
                            a.fail(
                                SqlState::IN_FAILED_SQL_TRANSACTION.code().to_owned(),
                                Some("not run: an earlier message of its batch failed".to_owned()),
                            );
                        }
                        ended.push(a);
                    }
                    first = false;
                }
                drop(q);
                for a in ended {
                    self.record_outcome(*a);
                }
            }
            tag::READY_FOR_QUERY => {
                if let Some(&status) = frame.body().first() {
                    self.pipeline.status.store(status, Ordering::Relaxed);
                }
                self.active = Active::Pass;
                self.query_statement = 0;
                let mut ddl = false;
                let mut ended = Vec::new();
                let mut q = self.pipeline.lock();
                while let Some(e) = q.pop_front() {
                    match e {
                        Expect::Query { ddl: d, audit, .. } => {
                            ddl = d;
                            ended.extend(audit);
                            break;
                        }
                        Expect::Sync { ddl: d } => {
                            ddl = d;
                            break;
                        }
                        Expect::Execute { audit, .. } => ended.extend(audit),
                        Expect::FunctionCall => break,
                        _ => {}
                    }
                }
                drop(q);
                for a in ended {
                    self.record_outcome(*a);
                }
                self.capture = None;
                if ddl {
                    // Column origins may have changed; descriptions stay (the driver still uses
                    // its prepared statements) and are planned again on their next Bind.
                    self.catalog.invalidate();
                    self.generation += 1;
                }
            }
            _ => return Ok(Verdict::Pass),
        }
        self.arm();
        Ok(Verdict::Pass)
    }

    /// Records the outcome of `a`, with the result bytes sent since the last outcome, and the
    /// rows captured for it.
    fn record_outcome(&mut self, a: Audited) {
        let bytes = std::mem::take(&mut self.result_bytes);
        let captured = self.capture.take();
        if let Some(r) = &self.recorder {
            if let Some(rows) = captured {
                r.rows(a.seq, rows);
            }
            r.outcome(a, bytes);
        }
    }

    /// Whether this session's result rows are captured.
    #[inline]
    fn capture_on(&self) -> bool {
        self.recorder
            .as_ref()
            .is_some_and(|r| r.capture().is_some())
    }

    /// Adds a DataRow frame (as sent to the client) to the current statement's capture.
    #[inline]
    fn capture_row(&mut self, frame: &[u8]) {
        let Some(max) = self.recorder.as_ref().and_then(Recorder::capture) else {
            return;
        };
        let Some(cells) = super::recorder::data_row_cells(frame) else {
            return;
        };
        let names = &self.capture_names;
        let capture = self.capture.get_or_insert_with(|| {
            // Names from the last RowDescription, when it describes rows this wide.
            let columns = if names.len() == cells.len() {
                names.clone()
            } else {
                (1..=cells.len()).map(|i| format!("column{i}")).collect()
            };
            crate::audit::RowsCapture::new(columns, max)
        });
        capture.push(cells);
    }

    /// An ErrorResponse's SQLSTATE and, unless masks apply to the session (the message may quote
    /// a masked value), its message; for the audit log.
    fn error_fields(&self, body: &[u8]) -> (String, Option<String>) {
        if self.recorder.is_none() {
            return (String::new(), None);
        }
        match ErrorFields::parse(body) {
            Ok(f) => (
                f.code.to_owned(),
                (!self.rules.current().masked).then(|| f.message.to_owned()),
            ),
            Err(_) => ("XX000".to_owned(), None),
        }
    }

    fn pop_if(&self, want: impl Fn(&Expect) -> bool) -> Option<Expect> {
        let mut q = self.pipeline.lock();
        if q.front().is_some_and(want) {
            q.pop_front()
        } else {
            None
        }
    }

    fn bind_complete(&mut self) -> Result<Verdict, Unmaskable> {
        let (portal, statement) = match self.pipeline.lock().front() {
            Some(Expect::Bind { portal, statement }) => (Arc::clone(portal), Arc::clone(statement)),
            _ => return Ok(Verdict::Pass),
        };
        match self.statements.get(&statement).cloned() {
            Some(described) => {
                let plan = match self.plan_described(&described)? {
                    Some(plan) => Some(plan),
                    None if !self.missing.is_empty() => return Ok(Verdict::Lookup),
                    None => None,
                };
                self.portals.insert(portal, plan);
            }
            // Never described: while masking, the client half describes the portal before it
            // is executed; until then it has no plan, so its rows would be nulled, not passed.
            None if self.masking() => {
                self.portals.remove(&portal);
            }
            None => {
                self.portals.insert(portal, None);
            }
        }
        self.pop_front();
        Ok(Verdict::Pass)
    }

    /// The plan of a described statement under the current rules (made again if they changed).
    /// `Ok(None)` with `missing` set means a lookup is needed first.
    fn plan_described(&mut self, d: &Described) -> Result<Option<Arc<MaskPlan>>, Unmaskable> {
        self.rules.refresh();
        let current = Arc::clone(&self.rules.current().rules);
        {
            let planned = d.planned.lock().unwrap_or_else(PoisonError::into_inner);
            if Arc::ptr_eq(&planned.rules, &current) && planned.generation == self.generation {
                return Ok(planned.plan.clone());
            }
        }
        let Some(body) = &d.row_description else {
            return Ok(None);
        };
        match self.plan(body, &d.profile)? {
            Planned::Lookup => Ok(None),
            Planned::Plan(plan) => {
                *d.planned.lock().unwrap_or_else(PoisonError::into_inner) = Planning {
                    rules: current,
                    generation: self.generation,
                    plan: plan.clone(),
                };
                Ok(plan)
            }
        }
    }

    fn row_description(&mut self, body: Option<&[u8]>) -> Result<Verdict, Unmaskable> {
        enum Front {
            Statement(Name, Arc<StatementProfile>),
            Portal(Name, Arc<StatementProfile>, bool),
            Query(Arc<Analysis>),
            Other,
        }
        let front = match self.pipeline.lock().front() {
            Some(Expect::DescribeStatement { statement, profile }) => {
                Front::Statement(Arc::clone(statement), Arc::clone(profile))
            }
            Some(Expect::DescribePortal {
                portal,
                profile,
                injected,
            }) => Front::Portal(Arc::clone(portal), Arc::clone(profile), *injected),
            Some(Expect::Query { analysis, .. }) => Front::Query(Arc::clone(analysis)),
            _ => Front::Other,
        };
        let plan = |this: &mut Self, profile: &Arc<StatementProfile>| match body {
            Some(b) => this.cached_plan(b, profile),
            None => Ok(Planned::Plan(None)),
        };
        match front {
            Front::Statement(name, profile) => {
                let Planned::Plan(planned) = plan(self, &profile)? else {
                    return Ok(Verdict::Lookup);
                };
                let rules = Arc::clone(&self.rules.current().rules);
                self.statements.insert(
                    name,
                    Arc::new(Described {
                        row_description: body.map(Bytes::copy_from_slice),
                        profile,
                        planned: Mutex::new(Planning {
                            rules,
                            generation: self.generation,
                            plan: planned,
                        }),
                    }),
                );
                self.pop_front();
                Ok(Verdict::Pass)
            }
            Front::Portal(name, profile, injected) => {
                let Planned::Plan(planned) = plan(self, &profile)? else {
                    return Ok(Verdict::Lookup);
                };
                self.portals.insert(name, planned);
                self.pop_front();
                // The answer to pgward's own Describe is not the client's to see.
                Ok(if injected {
                    Verdict::Replace
                } else {
                    Verdict::Pass
                })
            }
            Front::Query(analysis) => {
                let statement = analysis.statements.get(self.query_statement);
                let profile = statement.map_or(&*UNKNOWN, |s| &s.profile);
                let Planned::Plan(planned) = plan(self, profile)? else {
                    return Ok(Verdict::Lookup);
                };
                self.active = planned.map_or(Active::Pass, Active::Rows);
                Ok(Verdict::Pass)
            }
            // A row shape nobody asked for: the queue is out of step with the server, so
            // whatever rows follow are nulled while masks apply.
            Front::Other => {
                if body.is_some() && self.masking() {
                    self.active = Active::Blind;
                }
                Ok(Verdict::Pass)
            }
        }
    }

    /// [`ResultMasker::plan`] through the session's plan cache: a hit needs the same
    /// RowDescription, the same profile, the same rules and catalog generation, and an age under
    /// the catalog's TTL.
    fn cached_plan(
        &mut self,
        body: &[u8],
        profile: &Arc<StatementProfile>,
    ) -> Result<Planned, Unmaskable> {
        use std::hash::{BuildHasher, Hasher};
        self.rules.refresh();
        if !self.rules.current().masked {
            return Ok(Planned::Plan(None));
        }
        let mut h = self.plan_hasher.build_hasher();
        h.write(body);
        h.write_usize(Arc::as_ptr(profile) as usize);
        let key = h.finish();
        let rules = &self.rules.current().rules;
        if let Some(c) = self.plans.get(&key)
            && c.row_description == body
            && Arc::ptr_eq(&c.profile, profile)
            && Arc::ptr_eq(&c.rules, rules)
            && c.generation == self.generation
            && c.made.elapsed() < PLAN_TTL
        {
            self.pipeline.masking.store(true, Ordering::Release);
            return Ok(Planned::Plan(c.plan.clone()));
        }
        let rules = Arc::clone(rules);
        let planned = self.plan(body, profile)?;
        if let Planned::Plan(plan) = &planned {
            if self.plans.len() >= PLAN_CACHE_ENTRIES {
                self.plans.clear();
            }
            self.plans.insert(
                key,
                CachedPlan {
                    row_description: Bytes::copy_from_slice(body),
                    profile: Arc::clone(profile),
                    rules,
                    generation: self.generation,
                    made: std::time::Instant::now(),
                    plan: plan.clone(),
                },
            );
        }
        Ok(planned)
    }

    /// The plan for a RowDescription `body` of a statement profiled as `profile`, `None` when
    /// nothing in it is masked, or [`Planned::Lookup`] when table OIDs must be looked up first.
    fn plan(&mut self, body: &[u8], profile: &StatementProfile) -> Result<Planned, Unmaskable> {
        self.missing.clear();
        self.rules.refresh();
        let current = self.rules.current();
        if !current.masked {
            return Ok(Planned::Plan(None));
        }
        self.pipeline.masking.store(true, Ordering::Release);
        let view = RowDescriptionView::parse(body)?;
        for f in view.fields() {
            if f.table_oid != 0
                && self.catalog.origin(f.table_oid, f.attnum) == Origin::Missing
                && !self.missing.contains(&f.table_oid)
            {
                self.missing.push(f.table_oid);
            }
        }
        if !self.missing.is_empty() {
            return Ok(Planned::Lookup);
        }
        let lineage = match lineage(profile).map(|l| self.through_views(l)) {
            Some(Err(())) => return Ok(Planned::Lookup),
            _ if std::mem::take(&mut self.views_failed) => None,
            Some(Ok(Some(expanded))) => Some(std::borrow::Cow::Owned(expanded)),
            Some(Ok(None)) => lineage(profile).map(std::borrow::Cow::Borrowed),
            None => None,
        };
        let current = self.rules.current();
        let catalog = &self.catalog;
        let plan = mask::plan(
            &view,
            |oid, attnum| match catalog.origin(oid, attnum) {
                Origin::Sources(s) => Some(s),
                Origin::Unknown | Origin::Missing => None,
            },
            lineage.as_deref(),
            current.rules.masks(),
            &current.roles,
        )
        .with_detectors(self.detectors());
        Ok(Planned::Plan((!plan.is_empty()).then(|| Arc::new(plan))))
    }

    /// `lineage` with every source in a view (or materialized view) replaced by the table
    /// columns the view computes it from: `Ok(None)` when no source is in a view (nothing is
    /// copied), `Err` when relations must be looked up first (`missing_tables` says which).
    /// When a relation could not be looked up, `views_failed` is set: the caller must then
    /// treat the lineage as unknown (fail closed).
    fn through_views(&mut self, lineage: &[OutputColumn]) -> Result<Option<Vec<OutputColumn>>, ()> {
        let scan = self.catalog.scan(
            lineage.iter().flat_map(|c| c.sources.iter()),
            &mut self.missing_tables,
        );
        self.views_failed |= scan.failed.is_some();
        let any_view = scan.any_view;
        if !self.missing_tables.is_empty() {
            return Err(());
        }
        if !any_view {
            return Ok(None);
        }
        let mut expanded = Vec::with_capacity(lineage.len());
        let mut sources = Vec::new();
        for c in lineage {
            sources.clear();
            for s in &c.sources {
                self.catalog.expand(s, &mut sources).map_err(|_| ())?;
            }
            expanded.push(OutputColumn {
                name: c.name.clone(),
                wildcard: c.wildcard,
                sources: sources.iter().cloned().collect(),
            });
        }
        Ok(Some(expanded))
    }

    /// The content detectors for the session's roles under the current rules.
    fn detectors(&mut self) -> Option<Arc<Detectors>> {
        let current = self.rules.current();
        match &self.detectors {
            Some((rules, d)) if Arc::ptr_eq(rules, &current.rules) => d.clone(),
            _ => {
                let d = Detectors::for_roles(current.rules.detectors(), &current.roles);
                self.detectors = Some((Arc::clone(&current.rules), d.clone()));
                d
            }
        }
    }

    /// A CopyOutResponse: plans the COPY's rows from the statement's lineage.
    fn copy_out(&mut self, frame: &Frame<'_>) -> Result<Verdict, Unmaskable> {
        self.rules.refresh();
        if !self.rules.current().masked {
            return Ok(Verdict::Pass);
        }
        let (profile, format) = {
            let q = self.pipeline.lock();
            match q.front() {
                Some(Expect::Query { analysis, copy, .. }) => (
                    analysis
                        .statements
                        .get(self.query_statement)
                        .map(|s| Arc::clone(&s.profile)),
                    copy.as_ref()
                        .and_then(|c| c.get(self.query_statement).cloned().flatten()),
                ),
                Some(Expect::Execute { profile, copy, .. }) => {
                    (Some(Arc::clone(profile)), copy.as_deref().cloned())
                }
                _ => (None, None),
            }
        };
        let columns = {
            let mut r = MessageReader::new(frame.body(), "CopyOutResponse");
            r.u8().and_then(|_| r.i16()).unwrap_or(0)
        };
        let columns = usize::try_from(columns).unwrap_or(0);
        // The COPY's columns: the statement's lineage, a wildcard over one table expanded
        // through the catalog.
        let lineage = match profile.as_deref() {
            Some(p) => match self.expand(p) {
                Expanded::Lookup => return Ok(Verdict::Lookup),
                Expanded::Columns(c) => Some(c),
                Expanded::Unknown => None,
            },
            None => None,
        };
        // Planned as text fields. A COPY of a table sends its columns' values themselves: each
        // field gets a stand-in origin that resolves to its column. A COPY of a query sends
        // computed values: no origin, so lineage decides and masks them as a whole.
        let from_table = format.as_ref().is_some_and(|f| f.from_table) && lineage.is_some();
        let description = text_fields(columns, from_table);
        let view = RowDescriptionView::parse(&description)?;
        let current = self.rules.current();
        let resolve = |_, attnum: i16| {
            let column = lineage
                .as_ref()?
                .get(usize::try_from(attnum).ok()?.checked_sub(1)?)?;
            Some(mask::Resolved {
                sources: column.sources.iter().cloned().collect(),
                derived: false,
            })
        };
        let plan = mask::plan(
            &view,
            resolve,
            lineage.as_deref(),
            current.rules.masks(),
            &current.roles,
        );
        self.active = if plan.is_empty() {
            Active::Pass
        } else {
            match format.filter(CopyFormat::maskable) {
                Some(f) => Active::Copy(Box::new(CopyMasker::new(plan, f))),
                // The client half refuses unmaskable COPYs of masked data before they run;
                // should one get here, its rows are made unreadable rather than leaked.
                None => Active::Copy(Box::new(CopyMasker::unreadable(plan))),
            }
        };
        Ok(Verdict::Pass)
    }

    /// The lineage of a statement with wildcards over single tables replaced by the tables'
    /// columns from the catalog.
    fn expand(&mut self, profile: &StatementProfile) -> Expanded {
        let Some(columns) = lineage(profile) else {
            return Expanded::Unknown;
        };
        let columns = match self.through_views(columns) {
            Err(()) => return Expanded::Lookup,
            _ if std::mem::take(&mut self.views_failed) => return Expanded::Unknown,
            Ok(Some(c)) => std::borrow::Cow::Owned(c),
            Ok(None) => std::borrow::Cow::Borrowed(columns),
        };
        if !columns.iter().any(|c| c.wildcard) {
            return Expanded::Columns(columns.into_owned());
        }
        let mut out = Vec::new();
        for c in columns.iter() {
            if !c.wildcard {
                out.push(c.clone());
                continue;
            }
            // Only `*` / `t.*` stands for a table's own columns; other wildcards (a function
            // in FROM, misaligned set operations) can't be expanded from the catalog.
            let mut sources = c.sources.iter();
            let (Some(ColumnSource::WholeRow(table)), None, "*") =
                (sources.next(), sources.next(), c.name.as_str())
            else {
                return Expanded::Unknown;
            };
            let table_columns = match self.catalog.named(table) {
                Named::Missing => {
                    self.missing_tables.push(table.clone());
                    return Expanded::Lookup;
                }
                Named::Unknown | Named::Failed => return Expanded::Unknown,
                Named::Known(r) => ColumnCatalog::columns_of(&r),
            };
            out.extend(table_columns.iter().map(|s| OutputColumn {
                name: String::new(),
                wildcard: false,
                sources: s.iter().cloned().collect(),
            }));
        }
        Expanded::Columns(out)
    }

    fn pop_front(&mut self) {
        self.pipeline.lock().pop_front();
        self.arm();
    }

    /// When the next answer is an Execute's, its rows follow without a RowDescription: take
    /// the portal's plan now.
    fn arm(&mut self) {
        let q = self.pipeline.lock();
        let Some(Expect::Execute { portal, .. }) = q.front() else {
            return;
        };
        self.active = match self.portals.get(portal) {
            Some(Some(plan)) => Active::Rows(Arc::clone(plan)),
            Some(None) => Active::Pass,
            None if self.pipeline.masking.load(Ordering::Acquire) => Active::Blind,
            None => Active::Pass,
        };
    }
}

/// A plan, or the need for a catalog lookup first.
enum Planned {
    Lookup,
    Plan(Option<Arc<MaskPlan>>),
}

/// Output columns of a COPY.
enum Expanded {
    Lookup,
    Columns(Vec<OutputColumn>),
    Unknown,
}

/// What the results of an unanalyzed statement derive from: anything.
static UNKNOWN: std::sync::LazyLock<Arc<StatementProfile>> = std::sync::LazyLock::new(|| {
    Arc::new(StatementProfile::unparsed(
        "results of an unknown statement",
    ))
});

/// Plans kept per session, so that a statement run again (a simple query repeated, a portal
/// described at every execution as libpq does) is not planned again.
const PLAN_CACHE_ENTRIES: usize = 256;

/// A plan made for one RowDescription of one statement profile, and what it depends on.
#[derive(Debug)]
struct CachedPlan {
    row_description: Bytes,
    /// Held so that the profile's address can't be reused by another profile while cached.
    profile: Arc<StatementProfile>,
    rules: Arc<RuleSet>,
    generation: u64,
    made: std::time::Instant,
    plan: Option<Arc<MaskPlan>>,
}

/// The lineage to plan a statement's results with: `None` (origin unknown: fail closed) unless
/// the analyzer could trace its outputs; an empty list for statements that return no table
/// values (SHOW, EXPLAIN, transaction control).
fn lineage(p: &StatementProfile) -> Option<&[OutputColumn]> {
    let untraceable = matches!(p.class, StatementClass::Unknown | StatementClass::Code)
        || [
            Flag::Unparsed,
            Flag::UserFunction,
            Flag::UnknownFunction,
            Flag::KeywordFallback,
            Flag::SplitMismatch,
        ]
        .iter()
        .any(|f| p.has(*f));
    if untraceable {
        return None;
    }
    if !p.columns.is_empty() {
        return Some(&p.columns);
    }
    if matches!(p.class, StatementClass::Session | StatementClass::Tx) || p.has(Flag::Explain) {
        return Some(&[]);
    }
    // FETCH from a cursor, and anything else whose outputs the analyzer did not describe.
    None
}

/// A RowDescription body of `n` text fields: with no table origin, or with `with_origin` a
/// stand-in one (table OID 1, attribute numbers 1…n).
fn text_fields(n: usize, with_origin: bool) -> Vec<u8> {
    let n = n.min(i16::MAX as usize);
    let mut b = Vec::with_capacity(2 + n * 19);
    b.extend_from_slice(&(n as u16).to_be_bytes());
    for i in 0..n {
        b.push(0); // empty name
        let (oid, attnum) = if with_origin {
            (1u32, i as i16 + 1)
        } else {
            (0, 0)
        };
        b.extend_from_slice(&oid.to_be_bytes());
        b.extend_from_slice(&attnum.to_be_bytes());
        b.extend_from_slice(&25u32.to_be_bytes());
        b.extend_from_slice(&(-1i16).to_be_bytes());
        b.extend_from_slice(&(-1i32).to_be_bytes());
        b.extend_from_slice(&0i16.to_be_bytes());
    }
    b
}

/// For each statement of a Query or Parse text, the format of a `COPY … TO STDOUT`; looked for
/// only in texts that mention COPY. `Err` when the text mentions COPY but can't be parsed to
/// tell: the caller refuses it if it reads masked data.
pub fn copy_formats_of(text: &[u8]) -> Result<Option<Arc<[Option<CopyFormat>]>>, ()> {
    if !text.windows(4).any(|w| w.eq_ignore_ascii_case(b"copy")) {
        return Ok(None);
    }
    let text = std::str::from_utf8(text).map_err(|_| ())?;
    let formats = mask::copy_formats(text).ok_or(())?;
    if formats.iter().all(Option::is_none) {
        return Ok(None);
    }
    Ok(Some(formats.into()))
}
