//! The decide stage: each statement's profile is judged by the duty rules before the server sees
//! it, and a refused statement is replaced so that the server aborts exactly as for its own error.
//!
//! # How a refusal keeps PostgreSQL's semantics
//! pgward never drops a client message: it *replaces* the refused one with a text that fails to
//! parse (a syntax error runs nothing). The server then does what it does for any error: the
//! implicit transaction of the batch or pipeline is rolled back, an explicit block is aborted,
//! later extended-protocol messages are skipped until Sync, and ReadyForQuery carries the
//! server's real transaction status. On the way back, the server's syntax error (recognised by a
//! per-process random token in the replacement text) is rewritten into pgward's own
//! ERROR 42501 naming the rule, with a HINT. The refused text itself never reaches the server.
//!
//! - A simple Query with any refused statement is replaced whole, so no earlier statement of the
//!   batch runs, let alone commits.
//! - A Parse of a refused text, or a Bind of a prepared statement whose profile the current rules
//!   refuse, is replaced by a Parse of the failing text.
//! - A FunctionCall (fast-path call by OID) can't be classified: it is judged as `unknown`.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::{BufMut, BytesMut};
use tokio::sync::Notify;
use tracing::info;

use super::StatementTracker;
use super::columns::ColumnCatalog;
use super::hold::{Holds, Outcome as HoldOutcome, Pending};
use super::recorder::{Audited, Recorder};
use super::results::{ResultMasker, ResultTracker, Unmaskable, copy_formats_of};
use super::rules::LiveRules;
use crate::mask::CopyFormat;
use crate::policy::{Action, ApprovalSpec, Request, RuleId};
use crate::proto::{self, ErrorFields, Frame, MessageReader, Severity, SqlState, cstr, tag};
use crate::sql::{
    Analysis, ColumnSource, Flag, StatementClass, StatementProfile, TableName,
    lexer_unsafe_parameter,
};

/// Refusals on their way from the client side to the server side of one session, in order.
#[derive(Debug, Default)]
pub struct Refusals {
    /// Fast path: the server side takes the lock only when something is pending.
    pending: AtomicUsize,
    queue: Mutex<VecDeque<Refused>>,
    /// Set for good once the session may use a client encoding or string syntax pgward's lexer
    /// does not read as the server does (see [`crate::sql::lexer_unsafe_parameter`]): from then
    /// on every statement of the session is `unknown`.
    lexer_unsafe: AtomicBool,
    /// pgward's own messages for the client (NoticeResponse while a statement is held), sent by
    /// the server side between frames.
    notices: Mutex<BytesMut>,
    notices_pending: AtomicBool,
    notice_ready: Notify,
}

/// The formats of the `COPY … TO STDOUT` statements of a text, by statement.
type CopyFormats = Arc<[Option<CopyFormat>]>;

/// What the client is told about a refusal.
#[derive(Debug)]
struct Denial {
    /// 42501, or 57014 for a held statement the client cancelled.
    code: SqlState,
    rule: String,
    message: String,
    hint: String,
}

/// One refused message, awaiting the server's syntax error to rewrite.
#[derive(Debug)]
struct Refused {
    /// Index of the ReadyForQuery that ends the refused message's batch.
    segment: u64,
    denial: Denial,
}

/// The client-to-server half: analyze, decide, replace.
#[derive(Debug)]
pub struct ClientStage {
    pub(super) tracker: StatementTracker,
    rules: LiveRules,
    database: String,
    token: Arc<str>,
    refusals: Arc<Refusals>,
    /// Messages sent that end with a ReadyForQuery (Query, Sync, FunctionCall).
    segments_sent: u64,
    /// What each message will be answered with, for the server side's masking.
    results: ResultTracker,
    /// Relations of the database, to see masked columns through views.
    catalog: Arc<ColumnCatalog>,
    /// Relations to look up before the current frame can be judged ([`Verdict::Lookup`]).
    missing_tables: Vec<TableName>,
    /// A relation the current statement uses could not be looked up.
    lookup_failed: Option<TableName>,
    /// Statements held for approval.
    holds: Holds,
    /// The audit log, when it is on.
    audit: Option<StatementLog>,
    /// Counts decided statements.
    metrics: Option<Arc<crate::metrics::Metrics>>,
}

/// The client half's audit state (see `recorder`).
#[derive(Debug)]
struct StatementLog {
    recorder: Recorder,
    /// The last statement number given.
    seq: u64,
    /// Strict mode: the record the current frame waits for.
    waiting: Option<(Audited, crate::audit::Pending)>,
    /// The current frame's record, once made (kept while it is offered again).
    recorded: Option<Result<Audited, crate::audit::Error>>,
    /// The last Bind's statement, for the Execute that runs its portal.
    bound: Option<(Vec<u8>, Audited)>,
}

/// A statement as the audit log records it.
struct Entry<'a> {
    text: &'a [u8],
    params: Vec<Option<String>>,
    profile: &'a StatementProfile,
    /// `allow`, `deny` or `approve`.
    decision: &'static str,
    /// The rule that allowed or held it (a refusal names its own).
    rule: Option<RuleId>,
    approval: Option<(String, Vec<String>)>,
}

/// What recording a statement asks of the frame.
enum Recording {
    /// Audit is off.
    Off,
    /// Recorded: this goes with the statement's results for its outcome.
    Recorded(Audited),
    /// Strict mode: wait for the record to be durable.
    Wait,
    /// The log can't be written: refuse the statement.
    Failed(Denial),
}

/// The server-to-client half: rewrite pgward's refusals into its own errors.
#[derive(Debug)]
pub struct ServerStage {
    token: Arc<str>,
    refusals: Arc<Refusals>,
    /// ReadyForQuery messages relayed.
    segments_done: u64,
    /// The last relayed frame was a FATAL ErrorResponse.
    pub(super) saw_fatal: bool,
    /// Plans results and masks their rows.
    results: ResultMasker,
    /// Why the session must end rather than pass a result on.
    failure: Option<Unmaskable>,
}

/// What a stage wants done with a frame.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Forward it as received.
    Pass,
    /// Forward the bytes the stage wrote into the scratch buffer instead (nothing, to drop it).
    Replace,
    /// Look up catalog entries ([`ServerStage::fetch`]), then offer the same frame again.
    Lookup,
    /// End the session: the frame can't be passed on safely ([`ServerStage::take_failure`]).
    Abort,
    /// Hold the frame for approval ([`ClientStage::resolve_hold`]), then offer it again.
    Hold,
}

/// What the rules say about one statement.
enum Judgement {
    /// Allowed by this rule (`None`: nothing to decide, as for an empty text).
    Allow(Option<RuleId>),
    Deny(Denial),
    Approve(Approval),
}

/// An `approve` rule's match.
struct Approval {
    rule: RuleId,
    spec: ApprovalSpec,
    class: StatementClass,
    tables: Vec<String>,
}

/// What becomes of a statement that needs approval, when it is offered.
enum Approved {
    /// Not decided yet: hold the frame.
    Hold,
    /// Approved: the request and its approvers.
    Run((String, Vec<String>)),
    /// Refused (rejected, expired, withdrawn, or waiting in retry mode), under this request.
    Refuse(Denial, Option<String>),
}

// === impl Refusals ===

impl Refusals {
    fn push(&self, refused: Refused) {
        self.lock().push_back(refused);
        self.pending.fetch_add(1, Ordering::Release);
    }

    /// The oldest refusal of batch `segment`, dropping those of batches already finished (their
    /// replacement was skipped because an earlier message of the batch failed).
    fn take(&self, segment: u64) -> Option<Refused> {
        if self.pending.load(Ordering::Acquire) == 0 {
            return None;
        }
        let mut q = self.lock();
        while q.front().is_some_and(|r| r.segment < segment) {
            q.pop_front();
            self.pending.fetch_sub(1, Ordering::Release);
        }
        let r = q.pop_front()?;
        self.pending.fetch_sub(1, Ordering::Release);
        Some(r)
    }

    /// Marks the session's text as unreadable for pgward's lexer, for the rest of the session.
    /// Never cleared: a setting changed back may already have been changed again by a message
    /// still on its way to the server.
    pub fn mark_lexer_unsafe(&self) {
        self.lexer_unsafe.store(true, Ordering::Release);
    }

    fn is_lexer_unsafe(&self) -> bool {
        self.lexer_unsafe.load(Ordering::Acquire)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Refused>> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `frames` for the client and wakes the server side to send them.
    pub fn notify_client(&self, frames: &[u8]) {
        self.notices
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(frames);
        self.notices_pending.store(true, Ordering::Release);
        self.notice_ready.notify_one();
    }

    /// Resolves when frames queued by [`Refusals::notify_client`] wait to be sent.
    pub async fn client_notices(&self) {
        loop {
            let ready = self.notice_ready.notified();
            tokio::pin!(ready);
            ready.as_mut().enable();
            if self.notices_pending.load(Ordering::Acquire) {
                return;
            }
            ready.await;
        }
    }

    /// Takes the frames queued for the client.
    pub fn take_notices(&self) -> BytesMut {
        self.notices_pending.store(false, Ordering::Release);
        std::mem::take(&mut *self.notices.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

// === impl ClientStage ===

impl ClientStage {
    /// The stage for one session.
    #[expect(
        clippy::too_many_arguments,
        reason = "each is a distinct per-session part, built by the handshake"
    )]
    pub fn new(
        tracker: StatementTracker,
        rules: LiveRules,
        database: &str,
        token: Arc<str>,
        refusals: Arc<Refusals>,
        results: ResultTracker,
        catalog: Arc<ColumnCatalog>,
        holds: Holds,
        recorder: Option<Recorder>,
    ) -> Self {
        ClientStage {
            metrics: None,
            holds,
            audit: recorder.map(|recorder| StatementLog {
                recorder,
                seq: 0,
                waiting: None,
                recorded: None,
                bound: None,
            }),
            tracker,
            rules,
            database: database.to_owned(),
            token,
            refusals,
            segments_sent: 0,
            results,
            catalog,
            missing_tables: Vec::new(),
            lookup_failed: None,
        }
    }

    /// Counts decided statements in `metrics`.
    pub fn count_with(&mut self, metrics: Arc<crate::metrics::Metrics>) {
        self.metrics = Some(metrics);
    }

    /// Looks up the relations a [`Verdict::Lookup`] needs.
    pub async fn fetch(&mut self) {
        let tables = std::mem::take(&mut self.missing_tables);
        self.catalog.fetch_names(&tables).await;
    }

    /// `profile` with the view columns it filters on or copies replaced by the table columns
    /// under them, when there are any (so masks on the tables apply through views); `None`
    /// when no view is involved, or when relations must be looked up first (`missing_tables`).
    fn through_views(&mut self, profile: &StatementProfile) -> Option<StatementProfile> {
        let sources = profile
            .predicate_columns
            .iter()
            .chain(&profile.written_sources);
        let scan = self.catalog.scan(sources, &mut self.missing_tables);
        self.lookup_failed = scan.failed;
        let any_view = scan.any_view;
        if !any_view || !self.missing_tables.is_empty() {
            return None;
        }
        let expand = |set: &std::collections::BTreeSet<ColumnSource>| {
            let mut out = Vec::new();
            for s in set {
                // Looked up above: a failure here means the entry just expired; keep the source.
                if self.catalog.expand(s, &mut out).is_err() {
                    out.push(s.clone());
                }
            }
            out.into_iter().collect()
        };
        let mut expanded = profile.clone();
        expanded.predicate_columns = expand(&profile.predicate_columns);
        expanded.written_sources = expand(&profile.written_sources);
        Some(expanded)
    }

    /// Looks up what a held statement waits for ([`Verdict::Hold`]): approval, rejection,
    /// expiry or a cancel. The frame offered again afterwards runs or is refused accordingly.
    pub async fn resolve_hold(&mut self) {
        self.holds.resolve().await;
        if let Some(log) = &mut self.audit
            && let Some((audited, pending)) = log.waiting.take()
        {
            log.recorded = Some(pending.await.map(|_| audited));
        }
    }

    /// The client left while a statement was held: its request is withdrawn.
    pub async fn abandon_hold(&mut self) {
        self.holds.abandon().await;
    }

    /// Judges one client frame; on refusal, writes its replacement into `out`.
    pub fn on_frame(&mut self, frame: &Frame<'_>, out: &mut BytesMut) -> Verdict {
        let verdict = self.judge_frame(frame, out);
        if !matches!(verdict, Verdict::Lookup | Verdict::Hold) {
            // A hold's outcome and a record belong to the frame that waited for them, and that
            // frame is now dealt with.
            self.holds.outcome = None;
            if let Some(log) = &mut self.audit {
                log.recorded = None;
            }
        }
        verdict
    }

    fn judge_frame(&mut self, frame: &Frame<'_>, out: &mut BytesMut) -> Verdict {
        let verdict = match frame.tag() {
            tag::QUERY => {
                let analysis = self.tracker.observe_query(frame);
                let judgement = if self.refusals.is_lexer_unsafe() {
                    self.judge(&unreadable())
                } else {
                    let mut worst = Judgement::Allow(None);
                    for s in &analysis.statements {
                        let profile = self.tracker.resolve(&s.profile);
                        match self.judge(&profile) {
                            allow @ Judgement::Allow(_) => {
                                if matches!(worst, Judgement::Allow(None)) {
                                    worst = allow;
                                }
                            }
                            deny @ Judgement::Deny(_) => {
                                worst = deny;
                                break;
                            }
                            approve @ Judgement::Approve(_) => {
                                if matches!(worst, Judgement::Allow(_)) {
                                    worst = approve;
                                }
                            }
                        }
                    }
                    // Nothing analyzable (empty text) still goes through the rules as the
                    // combined profile, so an empty query is as allowed as `session` statements.
                    if analysis.statements.is_empty() {
                        worst = self.judge(&analysis.combined);
                    }
                    worst
                };
                self.log_refusal(&judgement, frame.body());
                // Views to look up first: the frame is offered again afterwards (analysis is
                // cached and observing it again changes nothing).
                if !self.missing_tables.is_empty() {
                    return Verdict::Lookup;
                }
                let text = cstr(frame.body()).map_or(frame.body(), |(s, _)| s);
                let mut approval = None;
                let mut rule = None;
                let refused = match judgement {
                    Judgement::Allow(r) => {
                        rule = r;
                        None
                    }
                    Judgement::Deny(d) => Some(d),
                    Judgement::Approve(a) => {
                        rule = Some(a.rule.clone());
                        match self.approved(a, text, Vec::new()) {
                            Approved::Hold => return Verdict::Hold,
                            Approved::Run(by) => {
                                approval = Some(by);
                                None
                            }
                            Approved::Refuse(d, request) => {
                                // Recorded as refused, under the request it waited for.
                                approval = request.map(|r| (r, Vec::new()));
                                Some(d)
                            }
                        }
                    }
                };
                let (copy, refused) = match refused {
                    Some(r) => (None, Some(r)),
                    None => self.judge_copy(text, &analysis),
                };
                let entry = Entry {
                    text,
                    params: Vec::new(),
                    profile: &analysis.combined,
                    decision: decision_of(refused.as_ref(), approval.as_ref()),
                    rule,
                    approval,
                };
                let (audit, refused) = match self.record(entry, refused) {
                    Ok(a) => a,
                    Err(v) => return v,
                };
                if refused.is_none() {
                    self.watch_lexer_changes(&analysis);
                }
                let resolved = self.resolve_executes(&analysis);
                self.results.query(resolved, copy, audit);
                match refused {
                    Some(r) => {
                        write_failing_query(out, &self.token);
                        self.refuse(r);
                        Verdict::Replace
                    }
                    None => Verdict::Pass,
                }
            }
            tag::PARSE => {
                let analysis = self.tracker.observe_parse(frame);
                let judgement = if self.refusals.is_lexer_unsafe() {
                    self.judge(&unreadable())
                } else {
                    self.judge(&analysis.combined)
                };
                // The Parse body: the statement name, then the text.
                let body = frame.body();
                let text = body
                    .iter()
                    .position(|&b| b == 0)
                    .map_or(&body[..0], |nul| &body[nul + 1..]);
                self.log_refusal(&judgement, text);
                if !self.missing_tables.is_empty() {
                    return Verdict::Lookup;
                }
                let mut r = MessageReader::new(frame.body(), "Parse");
                let name = r.cstr().unwrap_or_default();
                let text = r.cstr().unwrap_or_default();
                // Preparing runs nothing: a statement that needs approval is held when a Bind
                // runs it, with its parameters. Its text is kept to show the approvers.
                let refused = match judgement {
                    Judgement::Allow(_) if self.audit.is_some() => {
                        self.holds.keep_text(name, text);
                        None
                    }
                    Judgement::Allow(_) => {
                        self.holds.forget_text(name);
                        None
                    }
                    Judgement::Deny(d) => Some(d),
                    Judgement::Approve(_) => {
                        self.holds.keep_text(name, text);
                        None
                    }
                };
                let (copy, refused) = match refused {
                    Some(r) => (None, Some(r)),
                    None => self.judge_copy(text, &analysis),
                };
                if refused.is_none() {
                    self.watch_lexer_changes(&analysis);
                }
                let copy = copy.and_then(|c| c.first().cloned().flatten());
                self.results.parse(frame, &analysis.combined, copy);
                match refused {
                    Some(r) => {
                        write_failing_parse(out, &self.token);
                        self.refuse(r);
                        Verdict::Replace
                    }
                    None => Verdict::Pass,
                }
            }
            tag::BIND => {
                // Rules may have changed since the Parse: judge the statement again as it runs.
                let mut r = MessageReader::new(frame.body(), "Bind");
                let statement = r.cstr().and_then(|_| r.cstr()).unwrap_or_default();
                let profile = if self.refusals.is_lexer_unsafe() {
                    Arc::new(unreadable())
                } else {
                    self.tracker.prepared_profile(statement)
                };
                let judgement = self.judge(&profile);
                self.log_refusal(&judgement, b"(a prepared statement)");
                if !self.missing_tables.is_empty() {
                    return Verdict::Lookup;
                }
                let mut approval = None;
                let mut rule = None;
                let refused = match judgement {
                    Judgement::Allow(r) => {
                        rule = r;
                        None
                    }
                    Judgement::Deny(d) => Some(d),
                    Judgement::Approve(a) => match self.holds.text(statement) {
                        Some(text) => {
                            rule = Some(a.rule.clone());
                            let params = bind_parameters(frame.body());
                            match self.approved(a, text.as_bytes(), params) {
                                Approved::Hold => return Verdict::Hold,
                                Approved::Run(by) => {
                                    approval = Some(by);
                                    None
                                }
                                Approved::Refuse(d, request) => {
                                    // Recorded as refused, under the request it waited for.
                                    approval = request.map(|r| (r, Vec::new()));
                                    Some(d)
                                }
                            }
                        }
                        // Prepared before the rules asked for approval: its text was not kept.
                        None => Some(Denial {
                            code: SqlState::INSUFFICIENT_PRIVILEGE,
                            rule: a.rule.to_string(),
                            message: format!(
                                "approval required by pgward rule \"{}\" for a statement prepared before that rule applied",
                                a.rule
                            ),
                            hint: "prepare the statement again, then run it to request approval"
                                .to_owned(),
                        }),
                    },
                };
                let (audit, refused) = if self.audit.is_some() {
                    let text = self.holds.text(statement);
                    let fallback = format!(
                        "<prepared statement \"{}\">",
                        String::from_utf8_lossy(statement)
                    );
                    let text = text.as_deref().unwrap_or(&fallback);
                    let params = self.params_as_seen(bind_parameters(frame.body()), &profile);
                    let entry = Entry {
                        text: text.as_bytes(),
                        params,
                        profile: &profile,
                        decision: decision_of(refused.as_ref(), approval.as_ref()),
                        rule,
                        approval,
                    };
                    match self.record(entry, refused) {
                        Ok(a) => a,
                        Err(v) => return v,
                    }
                } else {
                    (None, refused)
                };
                if let (Some(a), Some(log)) = (audit, &mut self.audit) {
                    let portal = MessageReader::new(frame.body(), "Bind")
                        .cstr()
                        .unwrap_or_default()
                        .to_vec();
                    log.bound = Some((portal, a));
                }
                self.results.bind(frame, profile);
                match refused {
                    Some(r) => {
                        write_failing_parse(out, &self.token);
                        self.refuse(r);
                        Verdict::Replace
                    }
                    None => Verdict::Pass,
                }
            }
            tag::FUNCTION_CALL => {
                let profile = StatementProfile::unparsed("fast-path function call");
                let mut rule = None;
                let refused = match self.judge(&profile) {
                    Judgement::Allow(r) => {
                        rule = r;
                        None
                    }
                    Judgement::Deny(d) => Some(d),
                    Judgement::Approve(a) => Some(Denial {
                        code: SqlState::INSUFFICIENT_PRIVILEGE,
                        rule: a.rule.to_string(),
                        message: format!(
                            "approval required by pgward rule \"{}\", but a fast-path function call can't be held for approval",
                            a.rule
                        ),
                        hint: "call the function with SELECT instead".to_owned(),
                    }),
                };
                // The function is named by OID in the message body; the record says what it is.
                let text = if self.audit.is_some() {
                    format!(
                        "<fast-path function call: OID {}>",
                        MessageReader::new(frame.body(), "FunctionCall")
                            .i32()
                            .unwrap_or_default()
                    )
                } else {
                    String::new()
                };
                let entry = Entry {
                    text: text.as_bytes(),
                    params: Vec::new(),
                    profile: &profile,
                    decision: decision_of(refused.as_ref(), None),
                    rule,
                    approval: None,
                };
                let refused = match self.record(entry, refused) {
                    // Its outcome is not matched (FunctionCallResponse carries no tag).
                    Ok((_, refused)) => refused,
                    Err(v) => return v,
                };
                self.results.function_call();
                match refused {
                    Some(r) => {
                        write_failing_query(out, &self.token);
                        self.refuse(r);
                        Verdict::Replace
                    }
                    None => Verdict::Pass,
                }
            }
            tag::CLOSE => {
                self.tracker.observe_close(frame);
                self.results.close(frame);
                Verdict::Pass
            }
            tag::DESCRIBE => {
                self.results.describe(frame, &self.tracker);
                Verdict::Pass
            }
            tag::EXECUTE => {
                let portal = cstr(frame.body()).map_or(&b""[..], |(p, _)| p);
                let audit = self.audit.as_mut().and_then(|log| match log.bound.take() {
                    Some((bound, a)) if bound == portal => Some(a),
                    other => {
                        log.bound = other;
                        None
                    }
                });
                if self.results.execute(frame, out, audit) {
                    Verdict::Replace
                } else {
                    Verdict::Pass
                }
            }
            tag::SYNC => {
                self.results.sync();
                Verdict::Pass
            }
            _ => Verdict::Pass,
        };
        if matches!(frame.tag(), tag::QUERY | tag::SYNC | tag::FUNCTION_CALL) {
            self.segments_sent += 1;
        }
        verdict
    }

    /// A statement an `approve` rule matched: run or refused by its hold's outcome when it has
    /// one, otherwise to be held (the request is made by [`ClientStage::resolve_hold`]).
    fn approved(&mut self, a: Approval, sql: &[u8], params: Vec<Option<String>>) -> Approved {
        // Peeked, not taken: a frame may be offered again (strict audit) after its hold ended.
        match self.holds.outcome.clone() {
            Some(HoldOutcome::Run { request, approvers }) => Approved::Run((request, approvers)),
            Some(HoldOutcome::Refuse {
                code,
                rule,
                message,
                hint,
                request,
            }) => Approved::Refuse(
                Denial {
                    code,
                    rule,
                    message,
                    hint,
                },
                request,
            ),
            None => {
                self.holds.set_roles(&self.rules.current().roles);
                self.holds.pending = Some(Pending {
                    rule: a.rule,
                    spec: a.spec,
                    statement: crate::approval::Statement {
                        sql: String::from_utf8_lossy(sql).into_owned(),
                        params,
                        class: a.class.as_str().to_owned(),
                        tables: a.tables,
                        database: self.database.clone(),
                    },
                });
                Approved::Hold
            }
        }
    }

    /// Records `entry` (see [`Recording`]) and returns what goes with its results, and the
    /// refusal, if any: `refused`, or 58030 when the log can't be written. A refused statement's
    /// outcome is recorded here, since the server never runs it. `Err` asks the relay to wait.
    fn record(
        &mut self,
        entry: Entry<'_>,
        refused: Option<Denial>,
    ) -> Result<(Option<Audited>, Option<Denial>), Verdict> {
        let counted = (entry.profile.class, entry.decision);
        let recording = self.record_statement(entry, refused.as_ref());
        if let (Some(m), false) = (&self.metrics, matches!(recording, Recording::Wait)) {
            let decided = match counted.1 {
                "allow" => crate::metrics::Decided::Allow,
                "approve" => crate::metrics::Decided::Approve,
                _ => crate::metrics::Decided::Deny,
            };
            m.statement(counted.0, decided);
        }
        match recording {
            Recording::Off => Ok((None, refused)),
            Recording::Wait => Err(Verdict::Hold),
            Recording::Failed(d) => Ok((None, Some(d))),
            Recording::Recorded(mut a) => match refused {
                None => Ok((Some(a), None)),
                Some(d) => {
                    if let Some(log) = &self.audit {
                        a.fail(d.code.code().to_owned(), Some(d.message.clone()));
                        log.recorder.outcome(a, 0);
                    }
                    Ok((None, Some(d)))
                }
            },
        }
    }

    fn record_statement(&mut self, entry: Entry<'_>, refused: Option<&Denial>) -> Recording {
        if self.audit.is_none() {
            return Recording::Off;
        }
        let masked_columns = self.masked_columns(entry.profile);
        let Some(log) = &mut self.audit else {
            return Recording::Off;
        };
        let forwarding = refused.is_none();
        let rule = match refused {
            Some(d) => Some(d.rule.clone()),
            None => entry.rule.map(|r| r.to_string()),
        };
        match &log.recorded {
            Some(Ok(a)) => return Recording::Recorded(a.clone()),
            Some(Err(e)) => return Recording::Failed(unrecorded(e)),
            None => {}
        }
        if let Err(e) = log.recorder.check() {
            return Recording::Failed(unrecorded(&e));
        }
        log.seq += 1;
        let p = entry.profile;
        let tables: std::collections::BTreeSet<String> = p
            .tables_read
            .iter()
            .chain(&p.tables_written)
            .map(ToString::to_string)
            .collect();
        let (approval_request, approvers) = match entry.approval {
            Some((request, by)) => (Some(request), by),
            None => (None, Vec::new()),
        };
        let (audited, pending) = log.recorder.statement(crate::audit::Statement {
            session: log.recorder.session(),
            seq: log.seq,
            time: std::time::SystemTime::now(),
            text: String::from_utf8_lossy(entry.text).into_owned(),
            params: entry.params,
            class: p.class.as_str().to_owned(),
            tables: tables.into_iter().collect(),
            decision: entry.decision.to_owned(),
            rule,
            approval_request,
            approvers,
            masked_columns,
        });
        if let (true, Some(pending)) = (forwarding, pending) {
            log.waiting = Some((audited, pending));
            return Recording::Wait;
        }
        log.recorded = Some(Ok(audited.clone()));
        Recording::Recorded(audited)
    }

    /// The columns of the mask rules that apply to this session on the statement's tables
    /// (`public.people.ssn`, or the rule's pattern): what the client's results of it hide.
    fn masked_columns(&self, profile: &StatementProfile) -> Vec<String> {
        let current = self.rules.current();
        if !current.masked {
            return Vec::new();
        }
        let tables = touched(profile);
        let mut out: Vec<String> = current
            .rules
            .masks_on(&current.roles, &tables)
            .flat_map(|m| m.columns().map(str::to_owned))
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// Parameter values as the audit log may keep them: hidden when masks apply to this
    /// session on a table the statement touches (which value lands in which column is not
    /// known, so all are hidden).
    fn params_as_seen(
        &self,
        params: Vec<Option<String>>,
        profile: &StatementProfile,
    ) -> Vec<Option<String>> {
        let current = self.rules.current();
        if !current.masked {
            return params;
        }
        let tables = touched(profile);
        if current
            .rules
            .masks_on(&current.roles, &tables)
            .next()
            .is_none()
        {
            return params;
        }
        params
            .into_iter()
            .map(|p| p.map(|_| "***".to_owned()))
            .collect()
    }

    /// A statement that may make the lexer unsafe (`SET client_encoding = 'SJIS'`,
    /// `standard_conforming_strings = off`, `RESET ALL` …) poisons the session as soon as it is
    /// sent, not when the server confirms: statements pipelined behind it would otherwise be
    /// read with the old assumptions.
    fn watch_lexer_changes(&self, analysis: &Analysis) {
        let changes = analysis.statements.iter().any(|s| {
            s.profile.has(Flag::LexerChange) && s.profile.class != StatementClass::Session
        });
        if changes {
            self.refusals.mark_lexer_unsafe();
        }
    }

    /// One log line per refused statement: who, which rule, and the statement's shape (literals
    /// replaced, truncated), never its values.
    fn log_refusal(&self, judgement: &Judgement, text: &[u8]) {
        if let Judgement::Deny(d) = judgement
            && tracing::enabled!(tracing::Level::INFO)
        {
            let text = std::str::from_utf8(text.split(|&b| b == 0).next().unwrap_or_default());
            info!(
                identity = %self.rules.identity(),
                rule = %d.rule,
                sql = %text.map_or_else(|_| "(not UTF-8)".to_owned(), |t| crate::sql::for_log(t, 200)),
                "Statement refused"
            );
        }
    }

    /// What the rules say about `profile`.
    fn judge(&mut self, profile: &StatementProfile) -> Judgement {
        self.rules.refresh();
        let expanded = if self.rules.current().masked {
            self.through_views(profile)
        } else {
            None
        };
        if let Some(table) = self.lookup_failed.take() {
            // Whether it is a view over masked columns can't be known: fail closed.
            return Judgement::Deny(Denial {
                code: SqlState::INSUFFICIENT_PRIVILEGE,
                rule: "mask".to_owned(),
                message: format!(
                    "permission denied by pgward: masks could not be checked through {table} (catalog lookup failed)"
                ),
                hint: "retry shortly; if it persists, the DBA should check pgward's connection to the server".to_owned(),
            });
        }
        let current = self.rules.current();
        let decision = current.rules.decide(&Request {
            roles: &current.roles,
            database: &self.database,
            profile: expanded.as_ref().unwrap_or(profile),
        });
        if current.masked {
            self.results.set_masking();
        }
        if decision.is_allowed() {
            return Judgement::Allow(Some(decision.rule.clone()));
        }
        if let (Action::Approve(spec), None) = (decision.action, &decision.leak) {
            let tables = profile
                .tables_read
                .iter()
                .chain(&profile.tables_written)
                .map(ToString::to_string)
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect();
            return Judgement::Approve(Approval {
                rule: decision.rule.clone(),
                spec: spec.clone(),
                class: profile.class,
                tables,
            });
        }
        Judgement::Deny(Denial {
            code: SqlState::INSUFFICIENT_PRIVILEGE,
            rule: decision.rule.to_string(),
            message: decision.message(),
            hint: decision.hint().unwrap_or_default(),
        })
    }

    /// The formats of the `COPY … TO STDOUT` statements of `text`, while masks apply; a COPY
    /// whose rows pgward could not mask (binary, ENCODING, unparseable options) that reads a table
    /// with masked columns is refused.
    fn judge_copy(
        &mut self,
        text: &[u8],
        analysis: &Analysis,
    ) -> (Option<CopyFormats>, Option<Denial>) {
        let current = self.rules.current();
        if !current.masked {
            return (None, None);
        }
        let masks = current.rules.masks();
        let masked_rule = |profile: &StatementProfile| {
            masks.iter().position(|m| {
                m.applies_to(&current.roles)
                    && profile.tables_read.iter().any(|t| m.may_match_table(t))
            })
        };
        let deny = |rule: usize| {
            let id = masks.get(rule).map_or("mask", |m| m.id().as_str());
            Denial {
                code: SqlState::INSUFFICIENT_PRIVILEGE,
                rule: id.to_owned(),
                message: format!(
                    "permission denied by pgward mask rule \"{id}\": this COPY's rows can't be masked in its format"
                ),
                hint: "use COPY … TO STDOUT in text or CSV format, without ENCODING".to_owned(),
            }
        };
        match copy_formats_of(text) {
            Ok(None) => (None, None),
            Ok(Some(formats)) => {
                let unmaskable = formats
                    .iter()
                    .enumerate()
                    .filter(|(_, f)| f.as_ref().is_some_and(|f| !f.maskable()))
                    .find_map(|(i, _)| match analysis.statements.get(i) {
                        Some(s) => masked_rule(&s.profile),
                        None => masked_rule(&analysis.combined),
                    });
                match unmaskable {
                    Some(rule) => (None, Some(deny(rule))),
                    None => (Some(formats), None),
                }
            }
            // Mentions COPY but can't be parsed to know how: refused if it reads masked data.
            Err(()) => match masked_rule(&analysis.combined) {
                Some(rule) => (None, Some(deny(rule))),
                None => (None, None),
            },
        }
    }

    /// The analysis with each `EXECUTE name` replaced by what `name` was prepared as.
    fn resolve_executes(&self, analysis: &Arc<Analysis>) -> Arc<Analysis> {
        if !analysis
            .statements
            .iter()
            .any(|s| s.profile.executes.is_some())
        {
            return Arc::clone(analysis);
        }
        let mut resolved = (**analysis).clone();
        for s in &mut resolved.statements {
            if let std::borrow::Cow::Owned(p) = self.tracker.resolve(&s.profile) {
                s.profile = Arc::new(p);
            }
        }
        Arc::new(resolved)
    }

    fn refuse(&mut self, denial: Denial) {
        self.refusals.push(Refused {
            segment: self.segments_sent,
            denial,
        });
    }

    /// Whether a frame of this type may be streamed through unseen when it is very large.
    pub fn may_stream(frame_tag: u8) -> bool {
        matches!(frame_tag, tag::COPY_DATA)
    }
}

// === impl ServerStage ===

impl ServerStage {
    /// The stage for one session.
    pub fn new(token: Arc<str>, refusals: Arc<Refusals>, results: ResultMasker) -> Self {
        ServerStage {
            token,
            refusals,
            segments_done: 0,
            saw_fatal: false,
            results,
            failure: None,
        }
    }

    /// Looks up what a [`Verdict::Lookup`] needs.
    pub async fn fetch(&mut self) {
        self.results.fetch().await;
    }

    /// The queue shared with the client side (refusals to rewrite, notices to send).
    pub fn refusals(&self) -> &Arc<Refusals> {
        &self.refusals
    }

    /// Why the stage returned [`Verdict::Abort`].
    pub fn take_failure(&mut self) -> Option<Unmaskable> {
        self.failure.take()
    }

    /// Looks at one server frame: masks result rows, and rewrites the error caused by a
    /// refusal's replacement.
    #[inline]
    pub fn on_frame(&mut self, frame: &Frame<'_>, out: &mut BytesMut) -> Verdict {
        let result = match frame.tag() {
            tag::DATA_ROW => {
                self.saw_fatal = false;
                self.results.on_data_row(frame, out)
            }
            tag::COPY_DATA => {
                self.saw_fatal = false;
                self.results.on_copy_data(frame, out)
            }
            tag::ERROR_RESPONSE | tag::NOTICE_RESPONSE => {
                // Asked before the error moves the queue past the statement it belongs to.
                let withhold = self.results.statement_reads_masked();
                match self.results.on_frame(frame) {
                    Ok(Verdict::Pass) => Ok(self.on_message(frame, out, withhold)),
                    other => other,
                }
            }
            _ => match self.results.on_frame(frame) {
                Ok(Verdict::Pass) => Ok(self.on_other_frame(frame, out)),
                other => other,
            },
        };
        result.unwrap_or_else(|e| {
            self.failure = Some(e);
            Verdict::Abort
        })
    }

    fn on_other_frame(&mut self, frame: &Frame<'_>, out: &mut BytesMut) -> Verdict {
        match frame.tag() {
            tag::PARAMETER_STATUS => {
                let mut r = MessageReader::new(frame.body(), "ParameterStatus");
                if let (Ok(name), Ok(value)) = (r.cstr_utf8(), r.cstr_utf8())
                    && lexer_unsafe_parameter(name, value)
                {
                    self.refusals.mark_lexer_unsafe();
                }
                self.saw_fatal = false;
                Verdict::Pass
            }
            tag::READY_FOR_QUERY => {
                self.segments_done += 1;
                self.saw_fatal = false;
                Verdict::Pass
            }
            tag::ERROR_RESPONSE => {
                let Ok(fields) = ErrorFields::parse(frame.body()) else {
                    self.saw_fatal = false;
                    return Verdict::Pass;
                };
                self.saw_fatal = matches!(fields.severity, "FATAL" | "PANIC");
                if fields.code != SqlState::SYNTAX_ERROR.code()
                    || !fields.message.contains(&*self.token)
                {
                    return Verdict::Pass;
                }
                self.rewrite_refusal(out)
            }
            _ => {
                self.saw_fatal = false;
                Verdict::Pass
            }
        }
    }

    /// An ErrorResponse or NoticeResponse: pgward's refusals become its own error; while masks
    /// apply, a message about a statement that reads tables is withheld when it may quote a
    /// value (`invalid input syntax for type integer: "123-45-6789"`, a duplicate key's
    /// DETAIL, a function's NOTICE).
    fn on_message(&mut self, frame: &Frame<'_>, out: &mut BytesMut, withhold: bool) -> Verdict {
        let verdict = self.on_other_frame(frame, out);
        if verdict != Verdict::Pass || !withhold {
            return verdict;
        }
        let Ok(fields) = ErrorFields::parse(frame.body()) else {
            return Verdict::Pass;
        };
        if !may_quote_data(fields.code) {
            return Verdict::Pass;
        }
        let message = format!(
            "the server's message is withheld by pgward: it may quote a masked value (SQLSTATE {})",
            fields.code
        );
        match proto::write_withheld(out, frame.tag(), frame.body(), &message) {
            Ok(()) => Verdict::Replace,
            Err(_) => Verdict::Pass,
        }
    }

    /// The server's syntax error for a refusal's replacement, as pgward's own error.
    fn rewrite_refusal(&mut self, out: &mut BytesMut) -> Verdict {
        let (code, rule, message, hint) = match self.refusals.take(self.segments_done) {
            Some(r) => (
                r.denial.code,
                r.denial.rule,
                r.denial.message,
                r.denial.hint,
            ),
            // Not reachable while pgward is the only writer of the token; still never let the
            // token's syntax error reach the client.
            None => (
                SqlState::INSUFFICIENT_PRIVILEGE,
                "unknown".to_owned(),
                "permission denied by pgward".to_owned(),
                String::new(),
            ),
        };
        proto::write_error_response(
            out,
            Severity::Error,
            code,
            &message,
            Some(&format!("rule: {rule}")),
            Some(&hint).filter(|h| !h.is_empty()).map(String::as_str),
        );
        Verdict::Replace
    }

    /// Whether a frame of this type may be streamed through unseen when it is very large: only
    /// while nothing in the session is masked (a masked row must be seen whole).
    pub fn may_stream(&self, frame_tag: u8) -> bool {
        matches!(frame_tag, tag::COPY_DATA | tag::DATA_ROW) && !self.results.masking()
    }
}

/// Whether an error or notice of this SQLSTATE may quote a value: data exceptions (`22…`,
/// invalid input, out of range), integrity violations (`23…`, a key's DETAIL), undefined
/// objects, which a value can name through a cast (`ssn::regclass`; so all of `42…` but
/// syntax, privilege and undefined-column errors, whose names come from the query text),
/// raised messages (`P0…`,
/// and the `00`/`01` of a NOTICE or WARNING), and internal errors.
fn may_quote_data(code: &str) -> bool {
    let class = code.get(..2).unwrap_or("");
    match class {
        "42" => !matches!(code, "42601" | "42501" | "42703"),
        "00" | "01" | "22" | "23" | "2F" | "38" | "39" | "P0" | "XX" | "HV" => true,
        _ => false,
    }
}

/// What every statement is once the session's text can't be read as the server reads it.
fn unreadable() -> StatementProfile {
    StatementProfile::unparsed("the session's client_encoding or string syntax is not analyzable")
}

/// A simple Query whose text fails to parse.
/// The tables a statement reads or writes.
fn touched(profile: &StatementProfile) -> Vec<TableName> {
    profile
        .tables_read
        .iter()
        .chain(&profile.tables_written)
        .cloned()
        .collect()
}

/// The refusal of a statement the audit log could not record.
fn unrecorded(e: &crate::audit::Error) -> Denial {
    use crate::proto::ToErrorResponse;
    Denial {
        code: e.sqlstate(),
        rule: "audit".to_owned(),
        message: format!("pgward could not record this statement in the audit log: {e}"),
        hint: e.hint().unwrap_or_default(),
    }
}

/// The decision as the audit log names it.
fn decision_of(refused: Option<&Denial>, approval: Option<&(String, Vec<String>)>) -> &'static str {
    match (refused, approval) {
        (Some(_), _) => "deny",
        (None, Some(_)) => "approve",
        (None, None) => "allow",
    }
}

/// The parameter values of a Bind message, rendered for approvers; empty when malformed (the
/// server refuses it anyway).
fn bind_parameters(body: &[u8]) -> Vec<Option<String>> {
    let parse = || -> Result<Vec<Option<String>>, proto::Error> {
        let mut r = MessageReader::new(body, "Bind");
        r.cstr()?;
        r.cstr()?;
        let n_formats = usize::try_from(r.i16()?).unwrap_or(0);
        let mut formats = Vec::with_capacity(n_formats);
        for _ in 0..n_formats {
            formats.push(r.i16()?);
        }
        let n_params = usize::try_from(r.i16()?).unwrap_or(0);
        let mut values = Vec::with_capacity(n_params);
        for _ in 0..n_params {
            let len = r.i32()?;
            values.push(match usize::try_from(len) {
                Ok(len) => Some(r.bytes(len)?),
                Err(_) => None,
            });
        }
        let binary = |i: usize| match formats.as_slice() {
            [] => false,
            [one] => *one == 1,
            many => many.get(i) == Some(&1),
        };
        Ok(crate::approval::ticket::render_params(&values, binary))
    };
    parse().unwrap_or_default()
}

fn write_failing_query(out: &mut BytesMut, token: &str) {
    out.put_u8(tag::QUERY);
    out.put_i32((4 + token.len() + 1) as i32);
    out.put_slice(token.as_bytes());
    out.put_u8(0);
}

/// A Parse of a named statement whose text fails to parse: the server reports the error and
/// skips everything up to the next Sync, without touching the client's unnamed statement.
fn write_failing_parse(out: &mut BytesMut, token: &str) {
    const NAME: &[u8] = b"pgward_refused\0";
    out.put_u8(tag::PARSE);
    out.put_i32((4 + NAME.len() + token.len() + 1 + 2) as i32);
    out.put_slice(NAME);
    out.put_slice(token.as_bytes());
    out.put_u8(0);
    out.put_i16(0);
}

/// A fresh token for one process: an identifier nobody else writes.
pub fn refusal_token() -> Arc<str> {
    let bytes: [u8; 8] = rand::random();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("pgward_refused_{hex}").into()
}
