//! Prometheus metrics, served by the admin API at `/metrics`.
//!
//! Counters on the data path are resolved once (one [`IntCounter`] per class and decision), so
//! counting a statement is one atomic add, with no label lookup and no allocation.

use std::time::Duration;

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

use crate::sql::StatementClass;

/// Decisions as metrics name them, in [`Metrics::statement`]'s index order.
const DECISIONS: [&str; 3] = ["allow", "deny", "approve"];

/// pgward's metrics.
pub struct Metrics {
    registry: Registry,
    /// Client connections accepted.
    pub connections: IntCounter,
    /// Sessions relaying now.
    pub sessions_open: IntGauge,
    /// Connections refused before relaying, by SQLSTATE.
    pub refused: IntCounterVec,
    /// `statements[class][decision]`.
    statements: Vec<[IntCounter; 3]>,
    /// Approval events by kind.
    pub approval_events: IntCounterVec,
    /// Time from an approval request to its decision, expiry or withdrawal.
    pub approval_wait: Histogram,
    /// Bytes relayed, client to server.
    pub bytes_from_clients: IntCounter,
    /// Bytes relayed, server to client.
    pub bytes_to_clients: IntCounter,
    /// Protocol messages from clients dealt with (forwarded, replaced or refused).
    pub frames_from_clients: IntCounter,
    /// Protocol messages from the server dealt with.
    pub frames_to_clients: IntCounter,
    /// Values masked in result rows, by mask rule (and `detector:KIND` for content detectors).
    pub masked_values: IntCounterVec,
    /// pgward's own time per client message batch: from its last byte read to its forwarding.
    pub added_latency: Histogram,
    /// Audit records written (fsynced) by the log writer.
    pub audit_records: IntCounter,
    /// Time of one audit write and fsync (a batch in batched mode, a group in strict mode).
    pub audit_write_seconds: Histogram,
    /// Server connections open now (in use and pooled).
    pub upstream_open: IntGauge,
    /// Server connections opened.
    pub upstream_opened: IntCounter,
    /// Sessions that took a pooled server connection instead of opening one.
    pub upstream_reused: IntCounter,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// The statement's decision, for [`Metrics::statement`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decided {
    /// Allowed.
    Allow,
    /// Refused.
    Deny,
    /// Held or refused for approval.
    Approve,
}

// === impl Metrics ===

impl Metrics {
    /// Every metric, registered.
    ///
    /// # Errors
    /// Only if two metrics here shared a name or had a bad one, which a unit test rules out.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let counter = |name: &str, help: &str| -> Result<IntCounter, prometheus::Error> {
            let c = IntCounter::new(name, help)?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let vec =
            |name: &str, help: &str, labels: &[&str]| -> Result<IntCounterVec, prometheus::Error> {
                let v = IntCounterVec::new(Opts::new(name, help), labels)?;
                registry.register(Box::new(v.clone()))?;
                Ok(v)
            };
        let connections = counter(
            "pgward_client_connections_total",
            "Client connections accepted",
        )?;
        let bytes_from_clients = counter(
            "pgward_client_bytes_total",
            "Bytes relayed from clients to the server",
        )?;
        let bytes_to_clients = counter(
            "pgward_server_bytes_total",
            "Bytes relayed from the server to clients",
        )?;
        let sessions_open = IntGauge::new("pgward_sessions_open", "Sessions relaying now")?;
        registry.register(Box::new(sessions_open.clone()))?;
        let refused = vec(
            "pgward_client_connections_refused_total",
            "Connections refused before relaying, by SQLSTATE",
            &["sqlstate"],
        )?;
        let statements_vec = vec(
            "pgward_statements_total",
            "Statements decided, by class and decision",
            &["class", "decision"],
        )?;
        let statements = StatementClass::ALL
            .iter()
            .map(|c| DECISIONS.map(|d| statements_vec.with_label_values(&[c.as_str(), d])))
            .collect();
        let approval_events = vec(
            "pgward_approval_events_total",
            "Approval request events (created, approved, rejected, expired, withdrawn, grant_used)",
            &["event"],
        )?;
        let approval_wait = Histogram::with_opts(
            HistogramOpts::new(
                "pgward_approval_wait_seconds",
                "Time from an approval request to its decision, expiry or withdrawal",
            )
            .buckets(vec![
                1.0, 10.0, 60.0, 300.0, 900.0, 3600.0, 14_400.0, 86_400.0,
            ]),
        )?;
        registry.register(Box::new(approval_wait.clone()))?;
        let frames_from_clients = counter(
            "pgward_client_messages_total",
            "Protocol messages from clients dealt with (forwarded, replaced or refused)",
        )?;
        let frames_to_clients = counter(
            "pgward_server_messages_total",
            "Protocol messages from the server dealt with (forwarded or rewritten)",
        )?;
        let masked_values = vec(
            "pgward_masked_values_total",
            "Values masked in result rows, by mask rule (detector:KIND for content detectors)",
            &["rule"],
        )?;
        let added_latency = Histogram::with_opts(
            HistogramOpts::new(
                "pgward_added_latency_seconds",
                "pgward's own time per client message batch: from its last byte read to forwarding it",
            )
            .buckets(vec![
                0.000_005, 0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001,
                0.002_5, 0.005, 0.01, 0.05, 0.25, 1.0,
            ]),
        )?;
        registry.register(Box::new(added_latency.clone()))?;
        let audit_records = counter(
            "pgward_audit_records_total",
            "Audit records written and fsynced",
        )?;
        let audit_write_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "pgward_audit_write_seconds",
                "Time of one audit log write and fsync (a batch or a strict group)",
            )
            .buckets(vec![
                0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5,
            ]),
        )?;
        registry.register(Box::new(audit_write_seconds.clone()))?;
        let upstream_open = IntGauge::new(
            "pgward_upstream_connections_open",
            "Server connections open now, in use or pooled",
        )?;
        registry.register(Box::new(upstream_open.clone()))?;
        let upstream_opened = counter(
            "pgward_upstream_connections_total",
            "Server connections opened",
        )?;
        let upstream_reused = counter(
            "pgward_upstream_connections_reused_total",
            "Sessions served by a pooled server connection",
        )?;
        Ok(Metrics {
            frames_from_clients,
            frames_to_clients,
            masked_values,
            added_latency,
            audit_records,
            audit_write_seconds,
            upstream_open,
            upstream_opened,
            upstream_reused,
            registry,
            connections,
            sessions_open,
            refused,
            statements,
            approval_events,
            approval_wait,
            bytes_from_clients,
            bytes_to_clients,
        })
    }

    /// Counts one decided statement.
    #[inline]
    pub fn statement(&self, class: StatementClass, decided: Decided) {
        let i = StatementClass::ALL
            .iter()
            .position(|c| *c == class)
            .unwrap_or(0);
        if let Some(row) = self.statements.get(i) {
            row[decided as usize].inc();
        }
    }

    /// Records how long a request waited before it closed.
    pub fn approval_closed(&self, waited: Duration) {
        self.approval_wait.observe(waited.as_secs_f64());
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        // Encoding into a Vec can't fail for the text format.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_registers_and_renders() {
        let m = Metrics::new().unwrap();
        m.statement(StatementClass::Write, Decided::Approve);
        m.refused.with_label_values(&["28P01"]).inc();
        let text = m.render();
        assert!(
            text.contains("pgward_statements_total{class=\"write\",decision=\"approve\"} 1"),
            "{text}"
        );
        assert!(text.contains("pgward_client_connections_refused_total{sqlstate=\"28P01\"} 1"));
        assert!(text.contains("pgward_approval_wait_seconds_bucket"));
    }
}
