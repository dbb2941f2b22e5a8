//! The approval service the session and the admin API share: makes requests, applies decisions
//! through the duty checks, wakes the session holding a request, and announces every change
//! (to the audit recorder through [`Approvals::subscribe`], and to the webhook).
//!
//! # Waking without polling
//! A session waiting on a request registers a [`Notify`] under its id. A change made in this
//! process wakes it directly; with the PostgreSQL store, every change also commits a `NOTIFY`,
//! and each instance's listener wakes its own waiters, so a decision made on one instance
//! reaches a client held by another. After a listener reconnects, every waiter is woken once to
//! re-read its request, since notifications sent while it was away are lost.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, SystemTime};

use serde::Serialize;
use tokio::sync::{Notify, broadcast, mpsc};
use tracing::{info, warn};

use super::duty::{Error as DutyError, Outcome, Party, RequestId, State, Timestamp, Verdict};
use super::store::{Store, StoreError, WAKE_CHANNEL};
use super::ticket::{Origin, Statement, Ticket};
use super::webhook::Webhook;
use crate::policy::{ApprovalSpec, RuleId};
use crate::upstream::{ClientSettings, Heard};

/// Events kept for a subscriber that falls behind before it starts losing them.
const EVENT_BACKLOG: usize = 4096;

/// Delay before a lost LISTEN connection is made again.
const RELISTEN_DELAY: Duration = Duration::from_secs(1);

/// Requests, decisions and the sessions waiting on them.
pub struct Approvals {
    store: Store,
    waiters: Mutex<HashMap<RequestId, Weak<Notify>>>,
    events: broadcast::Sender<Event>,
    webhook: Option<Webhook>,
    /// Prefix of this process's request ids, so that ids never repeat across instances.
    instance: String,
    next: AtomicU64,
}

impl std::fmt::Debug for Approvals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Approvals")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

/// What happened to a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A statement was held and a request made.
    Created,
    /// An approver approved (the request may still need more approvals).
    Approved,
    /// An approver rejected.
    Rejected,
    /// Nobody decided in time.
    Expired,
    /// The requester withdrew it (cancel, disconnect).
    Withdrawn,
    /// A retry-mode grant was used to run the statement.
    GrantUsed,
}

/// One change to a request, for the audit log and the webhook.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// What happened.
    pub kind: EventKind,
    /// Who did it (requester, approver), when a person did.
    pub actor: Option<String>,
    /// The approver's reason, for a rejection.
    pub reason: Option<String>,
    /// When, in milliseconds since the Unix epoch.
    pub at: u64,
    /// The request after the change.
    pub request: Arc<Ticket>,
}

/// How a held statement's wait ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// Approved: the statement may run.
    Approved(Vec<String>),
    /// Rejected by an approver, with their reason.
    Rejected {
        /// The approver.
        by: String,
        /// Their reason.
        reason: String,
    },
    /// Nobody decided in time.
    Expired,
    /// Withdrawn (by the requester, from another connection).
    Withdrawn,
}

// === impl EventKind ===

impl EventKind {
    /// The kind as events and metrics name it: `created`, `approved`, … `grant_used`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Created => "created",
            EventKind::Approved => "approved",
            EventKind::Rejected => "rejected",
            EventKind::Expired => "expired",
            EventKind::Withdrawn => "withdrawn",
            EventKind::GrantUsed => "grant_used",
        }
    }
}

// === impl Approvals ===

impl Approvals {
    /// The service over `store`; `webhook` is called for each new request and decision.
    pub fn new(store: Store, webhook: Option<Webhook>) -> Arc<Self> {
        let instance: u32 = rand::random();
        Arc::new(Approvals {
            store,
            waiters: Mutex::new(HashMap::new()),
            events: broadcast::channel(EVENT_BACKLOG).0,
            webhook,
            instance: format!("{instance:08x}"),
            next: AtomicU64::new(1),
        })
    }

    /// Listens for changes made by other instances on the shared store's database, until the
    /// service is dropped. Only for the PostgreSQL store.
    pub fn spawn_listener(self: &Arc<Self>, settings: ClientSettings, database: String) {
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let (tx, mut rx) = mpsc::channel(256);
                let listen = {
                    let (settings, database) = (settings.clone(), database.clone());
                    tokio::spawn(async move { settings.listen(&database, WAKE_CHANNEL, tx).await })
                };
                while let Some(heard) = rx.recv().await {
                    let Some(me) = me.upgrade() else {
                        listen.abort();
                        return;
                    };
                    match heard {
                        Heard::Notification { payload } if payload.is_empty() => me.wake_all(),
                        Heard::Notification { payload } => me.wake(&RequestId::new(payload)),
                        Heard::Lost(why) => {
                            warn!(error = %why, "Approval store LISTEN connection lost; reconnecting");
                            me.wake_all();
                        }
                    }
                }
                if me.strong_count() == 0 {
                    return;
                }
                tokio::time::sleep(RELISTEN_DELAY).await;
            }
        });
    }

    /// This process's instance id (a prefix of its request ids and session labels).
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// Whether the store answers (for readiness checks).
    ///
    /// # Errors
    /// When it can't be read.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.store.ping().await
    }

    /// Events from now on. A subscriber that falls more than a few thousand events behind
    /// misses the oldest (and is told so by the channel).
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// Makes a request for a held statement.
    ///
    /// # Errors
    /// When the store can't be written: the statement must then be refused.
    pub async fn submit(
        &self,
        requester: Party,
        rule: RuleId,
        spec: ApprovalSpec,
        statement: Statement,
        origin: Origin,
    ) -> Result<Arc<Ticket>, StoreError> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let salt: u16 = rand::random();
        let id = RequestId::new(format!("{}-{n}{salt:04x}", self.instance));
        let actor = requester.identity.clone();
        let ticket = Ticket::new(id, requester, rule, spec, statement, origin, now());
        self.store.insert(&ticket).await?;
        let ticket = Arc::new(ticket);
        info!(
            request = %ticket.request.id(),
            requester = %actor,
            rule = %ticket.request.rule(),
            "Approval requested"
        );
        self.announce(EventKind::Created, Some(actor), None, Arc::clone(&ticket));
        Ok(ticket)
    }

    /// One request, its expiry applied.
    ///
    /// # Errors
    /// When the store can't be read.
    pub async fn get(&self, id: &RequestId) -> Result<Option<Ticket>, StoreError> {
        match self.store.get(id).await? {
            Some(t) if is_due(&t) => Ok(Some(self.expire(id).await?)),
            other => Ok(other),
        }
    }

    /// Requests, oldest first; pending ones past their expiry are expired first.
    ///
    /// # Errors
    /// When the store can't be read.
    pub async fn list(&self, pending_only: bool) -> Result<Vec<Ticket>, StoreError> {
        let mut out = Vec::new();
        for t in self.store.list(pending_only).await? {
            if is_due(&t) {
                let t = self.expire(t.request.id()).await?;
                if !pending_only {
                    out.push(t);
                }
            } else {
                out.push(t);
            }
        }
        Ok(out)
    }

    /// An approver's decision, through the duty checks.
    ///
    /// # Errors
    /// The outer error when the store fails or the request does not exist; the inner one when
    /// the duty checks refuse the decision.
    pub async fn decide(
        &self,
        id: &RequestId,
        approver: Party,
        verdict: Verdict,
    ) -> Result<Result<(Outcome, Arc<Ticket>), DutyError>, StoreError> {
        let at = now();
        let (who, reason) = (
            approver.identity.clone(),
            match &verdict {
                Verdict::Reject { reason } => Some(reason.clone()),
                Verdict::Approve => None,
            },
        );
        let kind = match verdict {
            Verdict::Approve => EventKind::Approved,
            Verdict::Reject { .. } => EventKind::Rejected,
        };
        let result = self
            .store
            .update(
                id,
                Box::new(move |t: &mut Ticket| {
                    let outcome = t.request.decide(&approver, verdict, at)?;
                    Ok((outcome, t.clone()))
                }),
            )
            .await?;
        Ok(result.map(|(outcome, ticket)| {
            let ticket = Arc::new(ticket);
            info!(request = %id, approver = %who, outcome = ?outcome, "Approval decision");
            self.wake(id);
            self.announce(kind, Some(who), reason, Arc::clone(&ticket));
            (outcome, ticket)
        }))
    }

    /// The requester withdraws a pending request (cancel, disconnect).
    ///
    /// # Errors
    /// When the store fails; a request already closed is left as it is.
    pub async fn withdraw(&self, id: &RequestId, by: &str) -> Result<Ticket, StoreError> {
        let by_owned = by.to_owned();
        let result = self
            .store
            .update(
                id,
                Box::new(move |t: &mut Ticket| {
                    t.request.withdraw(&by_owned, now())?;
                    Ok(t.clone())
                }),
            )
            .await?;
        match result {
            Ok(t) => {
                let t = Arc::new(t);
                self.wake(id);
                self.announce(
                    EventKind::Withdrawn,
                    Some(by.to_owned()),
                    None,
                    Arc::clone(&t),
                );
                Ok((*t).clone())
            }
            Err(_) => self.current(id).await,
        }
    }

    /// Marks a request expired if it is pending and past due; returns it as it now is.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn expire(&self, id: &RequestId) -> Result<Ticket, StoreError> {
        let result = self
            .store
            .update(
                id,
                Box::new(|t: &mut Ticket| Ok((t.request.expire_if_due(now()), t.clone()))),
            )
            .await?;
        match result {
            Ok((true, t)) => {
                let t = Arc::new(t);
                self.wake(id);
                self.announce(EventKind::Expired, None, None, Arc::clone(&t));
                Ok((*t).clone())
            }
            Ok((false, t)) => Ok(t),
            Err(_) => self.current(id).await,
        }
    }

    /// Uses a retry-mode grant: the approved request of `identity` for exactly this statement,
    /// unused and within its window, is marked used and returned. Each grant runs once.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn take_grant(
        &self,
        identity: &str,
        statement: &Statement,
    ) -> Result<Option<Arc<Ticket>>, StoreError> {
        let fingerprint = super::ticket::fingerprint(&statement.sql, &statement.params);
        for id in self.store.grant_candidates(identity, &fingerprint).await? {
            let (who, fp) = (identity.to_owned(), fingerprint.clone());
            let result = self
                .store
                .update(
                    &id,
                    Box::new(move |t: &mut Ticket| {
                        let at = now();
                        Ok(t.grant_open(&who, &fp, at).then(|| {
                            t.grant_used = Some(at);
                            t.clone()
                        }))
                    }),
                )
                .await?;
            if let Ok(Some(t)) = result {
                let t = Arc::new(t);
                self.announce(
                    EventKind::GrantUsed,
                    Some(identity.to_owned()),
                    None,
                    Arc::clone(&t),
                );
                return Ok(Some(t));
            }
        }
        Ok(None)
    }

    /// Waits until request `id` is decided, expired or withdrawn. Costs nothing while waiting:
    /// the task sleeps until a change to this request or its expiry.
    ///
    /// # Errors
    /// When the store fails; the caller fails closed.
    pub async fn wait(&self, id: &RequestId) -> Result<Ended, StoreError> {
        let notify = self.waiter(id);
        loop {
            // Enabled before reading the state, so a change in between still wakes us.
            let changed = notify.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let ticket = self
                .store
                .get(id)
                .await?
                .ok_or_else(|| StoreError::NotFound(id.clone()))?;
            if let Some(ended) = ended(&ticket) {
                return Ok(ended);
            }
            let due = ticket.request.expires_at().as_unix_millis();
            let left = due.saturating_sub(now().as_unix_millis());
            tokio::select! {
                () = &mut changed => {}
                () = tokio::time::sleep(Duration::from_millis(left)) => {
                    let t = self.expire(id).await?;
                    if let Some(ended) = ended(&t) {
                        return Ok(ended);
                    }
                }
            }
        }
    }

    fn waiter(&self, id: &RequestId) -> Arc<Notify> {
        let mut waiters = self.waiters.lock().unwrap_or_else(PoisonError::into_inner);
        waiters.retain(|_, w| w.strong_count() > 0);
        if let Some(n) = waiters.get(id).and_then(Weak::upgrade) {
            return n;
        }
        let n = Arc::new(Notify::new());
        waiters.insert(id.clone(), Arc::downgrade(&n));
        n
    }

    fn wake(&self, id: &RequestId) {
        let waiters = self.waiters.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = waiters.get(id).and_then(Weak::upgrade) {
            n.notify_waiters();
        }
    }

    fn wake_all(&self) {
        let waiters = self.waiters.lock().unwrap_or_else(PoisonError::into_inner);
        for n in waiters.values().filter_map(Weak::upgrade) {
            n.notify_waiters();
        }
    }

    async fn current(&self, id: &RequestId) -> Result<Ticket, StoreError> {
        self.store
            .get(id)
            .await?
            .ok_or_else(|| StoreError::NotFound(id.clone()))
    }

    fn announce(
        &self,
        kind: EventKind,
        actor: Option<String>,
        reason: Option<String>,
        request: Arc<Ticket>,
    ) {
        let event = Event {
            kind,
            actor,
            reason,
            at: now().as_unix_millis(),
            request,
        };
        if let Some(hook) = &self.webhook {
            hook.send(&event);
        }
        // No subscriber (audit off) is fine.
        let _ = self.events.send(event);
    }
}

/// How a closed request ended, or `None` while it is pending.
fn ended(t: &Ticket) -> Option<Ended> {
    match t.request.state() {
        State::Pending => None,
        State::Approved => Some(Ended::Approved(
            t.request
                .decisions()
                .iter()
                .map(|d| d.approver.clone())
                .collect(),
        )),
        State::Rejected { by, reason } => Some(Ended::Rejected {
            by: by.clone(),
            reason: reason.clone(),
        }),
        State::Expired => Some(Ended::Expired),
        State::Withdrawn => Some(Ended::Withdrawn),
    }
}

fn is_due(t: &Ticket) -> bool {
    *t.request.state() == State::Pending && t.request.expires_at() <= now()
}

/// The wall clock, read here and passed into the pure duty checks.
pub fn now() -> Timestamp {
    Timestamp::from_system_time(SystemTime::now())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::approval::store::Embedded;
    use crate::policy::{Action, ApprovalMode, RuleSet};

    fn spec(mode: ApprovalMode, timeout: Duration) -> (RuleId, ApprovalSpec) {
        let text = "[roles.dba]\nmembers = [\"alice\", \"carol\"]\n[roles.agent]\nmembers = [\"agent-*\"]\n\
                    [[rules]]\nid = \"w\"\nroles = [\"agent\"]\nclasses = [\"write\"]\n\
                    action = \"approve\"\napprovers = [\"dba\"]\n";
        let (set, _) = RuleSet::parse(&[("r.toml".to_owned(), text.to_owned())]).unwrap();
        let rule = &set.rules()[0];
        let Action::Approve(spec) = rule.action() else {
            panic!("an approve rule")
        };
        let mut spec = spec.clone();
        spec.mode = mode;
        spec.timeout = timeout;
        (rule.id().clone(), spec)
    }

    fn statement(sql: &str, params: &[&str]) -> Statement {
        Statement {
            sql: sql.to_owned(),
            params: params.iter().map(|p| Some((*p).to_owned())).collect(),
            class: "write".to_owned(),
            tables: vec!["public.orders".to_owned()],
            database: "db".to_owned(),
        }
    }

    fn origin() -> Origin {
        Origin {
            session: "s-1".to_owned(),
            client_addr: "127.0.0.1:5000".to_owned(),
        }
    }

    fn service() -> Arc<Approvals> {
        Approvals::new(Store::Embedded(Embedded::in_memory().unwrap()), None)
    }

    fn agent() -> Party {
        Party::new("agent-1", vec!["agent".to_owned()])
    }

    /// agent-1's request for `stmt` under a `mode` rule that expires after `timeout`.
    async fn request(
        s: &Approvals,
        mode: ApprovalMode,
        timeout: Duration,
        stmt: Statement,
    ) -> Arc<Ticket> {
        let (rule, spec) = spec(mode, timeout);
        s.submit(agent(), rule, spec, stmt, origin()).await.unwrap()
    }

    #[tokio::test]
    async fn a_waiter_wakes_on_the_decision_and_events_follow_each_change() {
        let s = service();
        let mut events = s.subscribe();
        let t = request(
            &s,
            ApprovalMode::Hold,
            Duration::from_secs(60),
            statement("DELETE FROM orders", &[]),
        )
        .await;
        let id = t.request.id().clone();
        let waiter = {
            let (s, id) = (Arc::clone(&s), id.clone());
            tokio::spawn(async move { s.wait(&id).await })
        };
        tokio::task::yield_now().await;
        let alice = Party::new("alice", vec!["dba".to_owned()]);
        let decided = s.decide(&id, alice, Verdict::Approve).await.unwrap();
        assert_eq!(decided.unwrap().0, Outcome::Approved);
        assert_eq!(
            waiter.await.unwrap().unwrap(),
            Ended::Approved(vec!["alice".to_owned()])
        );
        assert_eq!(events.recv().await.unwrap().kind, EventKind::Created);
        let approved = events.recv().await.unwrap();
        assert_eq!(approved.kind, EventKind::Approved);
        assert_eq!(approved.actor.as_deref(), Some("alice"));
    }

    #[tokio::test]
    async fn an_undecided_request_expires_for_its_waiter_and_in_listings() {
        let s = service();
        let t = request(
            &s,
            ApprovalMode::Hold,
            Duration::from_millis(1),
            statement("DELETE FROM orders", &[]),
        )
        .await;
        // Timeouts are kept in whole seconds: at most 1 s here.
        let ended = tokio::time::timeout(Duration::from_secs(5), s.wait(t.request.id()))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(ended, Ended::Expired);
        assert!(s.list(true).await.unwrap().is_empty());
        assert_eq!(
            s.list(false).await.unwrap()[0].request.state(),
            &State::Expired
        );
    }

    #[tokio::test]
    async fn a_retry_grant_covers_one_run_of_the_same_statement_by_the_same_identity() {
        let s = service();
        let stmt = statement("UPDATE orders SET x = $1", &["5"]);
        assert!(s.take_grant("agent-1", &stmt).await.unwrap().is_none());
        let t = request(
            &s,
            ApprovalMode::Retry,
            Duration::from_secs(60),
            stmt.clone(),
        )
        .await;
        // Not approved yet: no grant.
        assert!(s.take_grant("agent-1", &stmt).await.unwrap().is_none());
        let carol = Party::new("carol", vec!["dba".to_owned()]);
        s.decide(t.request.id(), carol, Verdict::Approve)
            .await
            .unwrap()
            .unwrap();
        let other = statement("UPDATE orders SET x = $1", &["6"]);
        assert!(s.take_grant("agent-1", &other).await.unwrap().is_none());
        assert!(s.take_grant("agent-2", &stmt).await.unwrap().is_none());
        assert!(s.take_grant("agent-1", &stmt).await.unwrap().is_some());
        assert!(s.take_grant("agent-1", &stmt).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn withdrawing_is_for_the_requester_and_only_while_pending() {
        let s = service();
        let t = request(
            &s,
            ApprovalMode::Hold,
            Duration::from_secs(60),
            statement("DELETE FROM orders", &[]),
        )
        .await;
        let id = t.request.id();
        // Someone else: refused, so the request stays pending.
        let after = s.withdraw(id, "alice").await.unwrap();
        assert_eq!(after.request.state(), &State::Pending);
        let after = s.withdraw(id, "agent-1").await.unwrap();
        assert_eq!(after.request.state(), &State::Withdrawn);
        assert_eq!(s.wait(id).await.unwrap(), Ended::Withdrawn);
        let unknown = RequestId::new("nope");
        assert!(matches!(s.get(&unknown).await, Ok(None)));
        assert!(matches!(
            s.withdraw(&unknown, "agent-1").await,
            Err(StoreError::NotFound(_))
        ));
    }
}
