//! Records ⇄ Arrow record batches: one row per record, one column per field.
//!
//! The schema ([`schema`]) is flat so that `export`, DuckDB and pandas see plain columns: the
//! envelope (`seq`, `time`, `kind`, `instance`, `session`, `hash`, `prev_hash`) is never null;
//! every other column is null unless the row's kind has that field. Decoding ([`Columns::row`])
//! is strict: a value in a column the kind does not use is an error, so that no byte of a row
//! escapes the hash.

use std::sync::{Arc, OnceLock};

use arrow_array::builder::{
    BooleanBuilder, FixedSizeBinaryBuilder, ListBuilder, StringBuilder,
    TimestampMicrosecondBuilder, UInt64Builder,
};
use arrow_array::cast::AsArray;
use arrow_array::types::{TimestampMicrosecondType, UInt64Type};
use arrow_array::{
    Array, ArrayRef, BooleanArray, FixedSizeBinaryArray, ListArray, PrimitiveArray, RecordBatch,
    StringArray,
};
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef, TimeUnit};

use super::chain::Hash;
use super::record::{
    ApprovalEvent, ApprovalEventKind, Envelope, Kind, Outcome, Record, Rows, SessionEnd,
    SessionStart, Statement, from_micros, micros,
};

/// A stored row: the record with its chain hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    /// The record and its envelope.
    pub envelope: Envelope,
    /// The previous record's hash, as stored.
    pub prev_hash: Hash,
    /// This record's hash, as stored.
    pub hash: Hash,
}

/// The typed columns of one batch, for decoding rows.
pub struct Columns<'a> {
    batch: &'a RecordBatch,
    seq: &'a PrimitiveArray<UInt64Type>,
    time: &'a PrimitiveArray<TimestampMicrosecondType>,
    kind: &'a StringArray,
    instance: &'a StringArray,
    session: &'a PrimitiveArray<UInt64Type>,
    hash: &'a FixedSizeBinaryArray,
    prev_hash: &'a FixedSizeBinaryArray,
    identity: &'a StringArray,
    roles: &'a ListArray,
    client_addr: &'a StringArray,
    tls: &'a BooleanArray,
    application_name: &'a StringArray,
    database: &'a StringArray,
    upstream_user: &'a StringArray,
    stmt_seq: &'a PrimitiveArray<UInt64Type>,
    text: &'a StringArray,
    params: &'a ListArray,
    class: &'a StringArray,
    tables: &'a ListArray,
    decision: &'a StringArray,
    rule: &'a StringArray,
    approval_request: &'a StringArray,
    approvers: &'a ListArray,
    masked_columns: &'a ListArray,
    command_tag: &'a StringArray,
    rows: &'a PrimitiveArray<UInt64Type>,
    bytes: &'a PrimitiveArray<UInt64Type>,
    duration_us: &'a PrimitiveArray<UInt64Type>,
    sqlstate: &'a StringArray,
    message: &'a StringArray,
    approval_event: &'a StringArray,
    actor: &'a StringArray,
    reason: &'a StringArray,
    columns: &'a ListArray,
    cells: &'a ListArray,
    truncated: &'a BooleanArray,
}

/// Builds one batch from records.
pub struct BatchBuilder {
    seq: UInt64Builder,
    time: TimestampMicrosecondBuilder,
    kind: StringBuilder,
    instance: StringBuilder,
    session: UInt64Builder,
    hash: FixedSizeBinaryBuilder,
    prev_hash: FixedSizeBinaryBuilder,
    identity: StringBuilder,
    roles: ListBuilder<StringBuilder>,
    client_addr: StringBuilder,
    tls: BooleanBuilder,
    application_name: StringBuilder,
    database: StringBuilder,
    upstream_user: StringBuilder,
    stmt_seq: UInt64Builder,
    text: StringBuilder,
    params: ListBuilder<StringBuilder>,
    class: StringBuilder,
    tables: ListBuilder<StringBuilder>,
    decision: StringBuilder,
    rule: StringBuilder,
    approval_request: StringBuilder,
    approvers: ListBuilder<StringBuilder>,
    masked_columns: ListBuilder<StringBuilder>,
    command_tag: StringBuilder,
    rows: UInt64Builder,
    bytes: UInt64Builder,
    duration_us: UInt64Builder,
    sqlstate: StringBuilder,
    message: StringBuilder,
    approval_event: StringBuilder,
    actor: StringBuilder,
    reason: StringBuilder,
    columns: ListBuilder<StringBuilder>,
    cells: ListBuilder<ListBuilder<StringBuilder>>,
    truncated: BooleanBuilder,
    len: usize,
}

/// The envelope columns, never null.
const ENVELOPE: [&str; 7] = [
    "seq",
    "time",
    "kind",
    "instance",
    "session",
    "hash",
    "prev_hash",
];

/// The payload columns each kind fills; every other payload column must be null.
fn payload_columns(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::SessionStart => &[
            "identity",
            "roles",
            "client_addr",
            "tls",
            "application_name",
            "database",
            "upstream_user",
        ],
        Kind::Statement => &[
            "stmt_seq",
            "text",
            "params",
            "class",
            "tables",
            "decision",
            "rule",
            "approval_request",
            "approvers",
            "masked_columns",
        ],
        Kind::Outcome => &[
            "stmt_seq",
            "command_tag",
            "rows",
            "bytes",
            "duration_us",
            "sqlstate",
            "message",
        ],
        Kind::Approval => &["approval_request", "approval_event", "actor", "reason"],
        Kind::Rows => &["stmt_seq", "columns", "cells", "truncated"],
        Kind::SessionEnd => &["reason"],
    }
}

/// The schema of every audit file.
pub fn schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            let utf8 = || DataType::Utf8;
            let list = || DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true)));
            let hash = DataType::FixedSizeBinary(32);
            let f = Field::new;
            Arc::new(Schema::new(vec![
                f("seq", DataType::UInt64, false),
                f(
                    "time",
                    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                    false,
                ),
                f("kind", utf8(), false),
                f("instance", utf8(), false),
                f("session", DataType::UInt64, true),
                f("hash", hash.clone(), false),
                f("prev_hash", hash, false),
                f("identity", utf8(), true),
                f("roles", list(), true),
                f("client_addr", utf8(), true),
                f("tls", DataType::Boolean, true),
                f("application_name", utf8(), true),
                f("database", utf8(), true),
                f("upstream_user", utf8(), true),
                f("stmt_seq", DataType::UInt64, true),
                f("text", utf8(), true),
                f("params", list(), true),
                f("class", utf8(), true),
                f("tables", list(), true),
                f("decision", utf8(), true),
                f("rule", utf8(), true),
                f("approval_request", utf8(), true),
                f("approvers", list(), true),
                f("masked_columns", list(), true),
                f("command_tag", utf8(), true),
                f("rows", DataType::UInt64, true),
                f("bytes", DataType::UInt64, true),
                f("duration_us", DataType::UInt64, true),
                f("sqlstate", utf8(), true),
                f("message", utf8(), true),
                f("approval_event", utf8(), true),
                f("actor", utf8(), true),
                f("reason", utf8(), true),
                f("columns", list(), true),
                f(
                    "cells",
                    DataType::List(Arc::new(Field::new_list_field(list(), true))),
                    true,
                ),
                f("truncated", DataType::Boolean, true),
            ]))
        })
        .clone()
}

// === impl BatchBuilder ===

impl Default for BatchBuilder {
    fn default() -> Self {
        let list = || ListBuilder::new(StringBuilder::new());
        BatchBuilder {
            seq: UInt64Builder::new(),
            time: TimestampMicrosecondBuilder::new().with_timezone("UTC"),
            kind: StringBuilder::new(),
            instance: StringBuilder::new(),
            session: UInt64Builder::new(),
            hash: FixedSizeBinaryBuilder::new(32),
            prev_hash: FixedSizeBinaryBuilder::new(32),
            identity: StringBuilder::new(),
            roles: list(),
            client_addr: StringBuilder::new(),
            tls: BooleanBuilder::new(),
            application_name: StringBuilder::new(),
            database: StringBuilder::new(),
            upstream_user: StringBuilder::new(),
            stmt_seq: UInt64Builder::new(),
            text: StringBuilder::new(),
            params: list(),
            class: StringBuilder::new(),
            tables: list(),
            decision: StringBuilder::new(),
            rule: StringBuilder::new(),
            approval_request: StringBuilder::new(),
            approvers: list(),
            masked_columns: list(),
            command_tag: StringBuilder::new(),
            rows: UInt64Builder::new(),
            bytes: UInt64Builder::new(),
            duration_us: UInt64Builder::new(),
            sqlstate: StringBuilder::new(),
            message: StringBuilder::new(),
            approval_event: StringBuilder::new(),
            actor: StringBuilder::new(),
            reason: StringBuilder::new(),
            columns: list(),
            cells: ListBuilder::new(list()),
            truncated: BooleanBuilder::new(),
            len: 0,
        }
    }
}

impl BatchBuilder {
    /// Rows appended since the last [`BatchBuilder::finish`].
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no row was appended since the last [`BatchBuilder::finish`].
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends one row.
    pub fn push(&mut self, e: &Envelope, prev_hash: &Hash, hash: &Hash) -> Result<(), ArrowError> {
        let r = &e.record;
        self.seq.append_value(e.seq);
        self.time.append_value(micros(r.time()));
        self.kind.append_value(r.kind().as_str());
        self.instance.append_value(&e.instance);
        self.session.append_option(r.session());
        self.hash.append_value(hash.0)?;
        self.prev_hash.append_value(prev_hash.0)?;

        // Every payload column gets exactly one value or null per row; these hold the values.
        let mut start: Option<&SessionStart> = None;
        let mut stmt_seq = None;
        let mut statement: Option<&Statement> = None;
        let mut outcome: Option<&Outcome> = None;
        let mut approval: Option<&ApprovalEvent> = None;
        let mut rows: Option<&Rows> = None;
        let mut reason: Option<&str> = None;
        let mut approval_request: Option<&str> = None;
        match r {
            Record::SessionStart(s) => start = Some(s),
            Record::Statement(s) => {
                stmt_seq = Some(s.seq);
                approval_request = s.approval_request.as_deref();
                statement = Some(s);
            }
            Record::Outcome(s) => {
                stmt_seq = Some(s.seq);
                outcome = Some(s);
            }
            Record::Approval(s) => {
                approval_request = Some(&s.request);
                reason = s.reason.as_deref();
                approval = Some(s);
            }
            Record::Rows(s) => {
                stmt_seq = Some(s.seq);
                rows = Some(s);
            }
            Record::SessionEnd(SessionEnd { reason: r, .. }) => reason = Some(r),
        }

        self.identity.append_option(start.map(|s| &s.identity));
        append_list(&mut self.roles, start.map(|s| &s.roles[..]));
        self.client_addr
            .append_option(start.map(|s| &s.client_addr));
        self.tls.append_option(start.map(|s| s.tls));
        self.application_name
            .append_option(start.map(|s| &s.application_name));
        self.database.append_option(start.map(|s| &s.database));
        self.upstream_user
            .append_option(start.map(|s| &s.upstream_user));

        self.stmt_seq.append_option(stmt_seq);
        self.text.append_option(statement.map(|s| &s.text));
        match statement {
            Some(s) => {
                for p in &s.params {
                    self.params.values().append_option(p.as_deref());
                }
                self.params.append(true);
            }
            None => self.params.append(false),
        }
        self.class.append_option(statement.map(|s| &s.class));
        append_list(&mut self.tables, statement.map(|s| &s.tables[..]));
        self.decision.append_option(statement.map(|s| &s.decision));
        self.rule
            .append_option(statement.and_then(|s| s.rule.as_deref()));
        self.approval_request.append_option(approval_request);
        append_list(&mut self.approvers, statement.map(|s| &s.approvers[..]));
        append_list(
            &mut self.masked_columns,
            statement.map(|s| &s.masked_columns[..]),
        );

        self.command_tag
            .append_option(outcome.and_then(|s| s.command_tag.as_deref()));
        self.rows.append_option(outcome.and_then(|s| s.rows));
        self.bytes.append_option(outcome.map(|s| s.bytes));
        self.duration_us
            .append_option(outcome.map(|s| s.duration_us));
        self.sqlstate
            .append_option(outcome.and_then(|s| s.sqlstate.as_deref()));
        self.message
            .append_option(outcome.and_then(|s| s.message.as_deref()));

        self.approval_event
            .append_option(approval.map(|s| s.event.as_str()));
        self.actor.append_option(approval.map(|s| &s.actor));
        self.reason.append_option(reason);

        append_list(&mut self.columns, rows.map(|s| &s.columns[..]));
        match rows {
            Some(s) => {
                for row in &s.rows {
                    let inner = self.cells.values();
                    for cell in row {
                        inner.values().append_option(cell.as_deref());
                    }
                    inner.append(true);
                }
                self.cells.append(true);
            }
            None => self.cells.append(false),
        }
        self.truncated.append_option(rows.map(|s| s.truncated));
        self.len += 1;
        Ok(())
    }

    /// The batch of every row appended so far; the builder is empty afterwards.
    pub fn finish(&mut self) -> Result<RecordBatch, ArrowError> {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.seq.finish()),
            Arc::new(self.time.finish()),
            Arc::new(self.kind.finish()),
            Arc::new(self.instance.finish()),
            Arc::new(self.session.finish()),
            Arc::new(self.hash.finish()),
            Arc::new(self.prev_hash.finish()),
            Arc::new(self.identity.finish()),
            Arc::new(self.roles.finish()),
            Arc::new(self.client_addr.finish()),
            Arc::new(self.tls.finish()),
            Arc::new(self.application_name.finish()),
            Arc::new(self.database.finish()),
            Arc::new(self.upstream_user.finish()),
            Arc::new(self.stmt_seq.finish()),
            Arc::new(self.text.finish()),
            Arc::new(self.params.finish()),
            Arc::new(self.class.finish()),
            Arc::new(self.tables.finish()),
            Arc::new(self.decision.finish()),
            Arc::new(self.rule.finish()),
            Arc::new(self.approval_request.finish()),
            Arc::new(self.approvers.finish()),
            Arc::new(self.masked_columns.finish()),
            Arc::new(self.command_tag.finish()),
            Arc::new(self.rows.finish()),
            Arc::new(self.bytes.finish()),
            Arc::new(self.duration_us.finish()),
            Arc::new(self.sqlstate.finish()),
            Arc::new(self.message.finish()),
            Arc::new(self.approval_event.finish()),
            Arc::new(self.actor.finish()),
            Arc::new(self.reason.finish()),
            Arc::new(self.columns.finish()),
            Arc::new(self.cells.finish()),
            Arc::new(self.truncated.finish()),
        ];
        self.len = 0;
        RecordBatch::try_new(schema(), columns)
    }
}

fn append_list(b: &mut ListBuilder<StringBuilder>, items: Option<&[String]>) {
    match items {
        Some(items) => {
            for s in items {
                b.values().append_value(s);
            }
            b.append(true);
        }
        None => b.append(false),
    }
}

// === impl Columns ===

impl<'a> Columns<'a> {
    /// The typed columns of `batch`.
    ///
    /// # Errors
    /// When the batch's schema is not [`schema`].
    pub fn new(batch: &'a RecordBatch) -> Result<Self, String> {
        if batch.schema().fields() != schema().fields() {
            return Err("the batch does not have the audit schema".to_owned());
        }
        let col = |name: &str| -> Result<&'a ArrayRef, String> {
            batch
                .column_by_name(name)
                .ok_or_else(|| format!("column {name} is missing"))
        };
        let string = |name: &str| -> Result<&'a StringArray, String> {
            col(name)?
                .as_string_opt::<i32>()
                .ok_or_else(|| format!("column {name} is not text"))
        };
        let u64s = |name: &str| -> Result<&'a PrimitiveArray<UInt64Type>, String> {
            col(name)?
                .as_primitive_opt::<UInt64Type>()
                .ok_or_else(|| format!("column {name} is not u64"))
        };
        let list = |name: &str| -> Result<&'a ListArray, String> {
            col(name)?
                .as_list_opt::<i32>()
                .ok_or_else(|| format!("column {name} is not a list"))
        };
        let boolean = |name: &str| -> Result<&'a BooleanArray, String> {
            col(name)?
                .as_boolean_opt()
                .ok_or_else(|| format!("column {name} is not boolean"))
        };
        let fixed = |name: &str| -> Result<&'a FixedSizeBinaryArray, String> {
            col(name)?
                .as_fixed_size_binary_opt()
                .ok_or_else(|| format!("column {name} is not binary"))
        };
        Ok(Columns {
            batch,
            seq: u64s("seq")?,
            time: col("time")?
                .as_primitive_opt::<TimestampMicrosecondType>()
                .ok_or("column time is not a timestamp")?,
            kind: string("kind")?,
            instance: string("instance")?,
            session: u64s("session")?,
            hash: fixed("hash")?,
            prev_hash: fixed("prev_hash")?,
            identity: string("identity")?,
            roles: list("roles")?,
            client_addr: string("client_addr")?,
            tls: boolean("tls")?,
            application_name: string("application_name")?,
            database: string("database")?,
            upstream_user: string("upstream_user")?,
            stmt_seq: u64s("stmt_seq")?,
            text: string("text")?,
            params: list("params")?,
            class: string("class")?,
            tables: list("tables")?,
            decision: string("decision")?,
            rule: string("rule")?,
            approval_request: string("approval_request")?,
            approvers: list("approvers")?,
            masked_columns: list("masked_columns")?,
            command_tag: string("command_tag")?,
            rows: u64s("rows")?,
            bytes: u64s("bytes")?,
            duration_us: u64s("duration_us")?,
            sqlstate: string("sqlstate")?,
            message: string("message")?,
            approval_event: string("approval_event")?,
            actor: string("actor")?,
            reason: string("reason")?,
            columns: list("columns")?,
            cells: list("cells")?,
            truncated: boolean("truncated")?,
        })
    }

    /// Rows in the batch.
    pub fn len(&self) -> usize {
        self.batch.num_rows()
    }

    /// Whether the batch has no rows.
    pub fn is_empty(&self) -> bool {
        self.batch.num_rows() == 0
    }

    /// The global sequence number stored in row `i`, if it can be read.
    pub fn seq(&self, i: usize) -> Option<u64> {
        (i < self.len() && !self.seq.is_null(i)).then(|| self.seq.value(i))
    }

    /// Decodes row `i`.
    ///
    /// # Errors
    /// A message naming the column when the row is not a well-formed record: a required value
    /// is null, a name is unknown, or a column the kind does not use holds a value.
    pub fn row(&self, i: usize) -> Result<StoredRecord, String> {
        for name in ENVELOPE {
            if name != "session" && self.column(name).is_some_and(|c| c.is_null(i)) {
                return Err(format!("column {name} is null"));
            }
        }
        let kind_name = self.kind.value(i);
        let kind = Kind::parse(kind_name).ok_or_else(|| format!("unknown kind {kind_name:?}"))?;
        let used = payload_columns(kind);
        for (idx, field) in self.batch.schema().fields().iter().enumerate() {
            let name = field.name().as_str();
            if !ENVELOPE.contains(&name)
                && !used.contains(&name)
                && !self.batch.column(idx).is_null(i)
            {
                return Err(format!(
                    "column {name} holds a value, but a {kind_name} record has no such field"
                ));
            }
        }
        let time = from_micros(self.time.value(i));
        let session = opt_u64(self.session, i);
        let need_session = || session.ok_or_else(|| "column session is null".to_owned());
        let record = match kind {
            Kind::SessionStart => Record::SessionStart(SessionStart {
                session: need_session()?,
                time,
                identity: req_str(self.identity, "identity", i)?,
                roles: str_list(self.roles, "roles", i)?,
                client_addr: req_str(self.client_addr, "client_addr", i)?,
                tls: req_bool(self.tls, "tls", i)?,
                application_name: req_str(self.application_name, "application_name", i)?,
                database: req_str(self.database, "database", i)?,
                upstream_user: req_str(self.upstream_user, "upstream_user", i)?,
            }),
            Kind::Statement => Record::Statement(Statement {
                session: need_session()?,
                seq: req_u64(self.stmt_seq, "stmt_seq", i)?,
                time,
                text: req_str(self.text, "text", i)?,
                params: opt_str_list(self.params, "params", i)?,
                class: req_str(self.class, "class", i)?,
                tables: str_list(self.tables, "tables", i)?,
                decision: req_str(self.decision, "decision", i)?,
                rule: opt_str(self.rule, i),
                approval_request: opt_str(self.approval_request, i),
                approvers: str_list(self.approvers, "approvers", i)?,
                masked_columns: str_list(self.masked_columns, "masked_columns", i)?,
            }),
            Kind::Outcome => Record::Outcome(Outcome {
                session: need_session()?,
                seq: req_u64(self.stmt_seq, "stmt_seq", i)?,
                time,
                command_tag: opt_str(self.command_tag, i),
                rows: opt_u64(self.rows, i),
                bytes: req_u64(self.bytes, "bytes", i)?,
                duration_us: req_u64(self.duration_us, "duration_us", i)?,
                sqlstate: opt_str(self.sqlstate, i),
                message: opt_str(self.message, i),
            }),
            Kind::Approval => {
                let event = req_str(self.approval_event, "approval_event", i)?;
                Record::Approval(ApprovalEvent {
                    request: req_str(self.approval_request, "approval_request", i)?,
                    event: ApprovalEventKind::parse(&event)
                        .ok_or_else(|| format!("unknown approval event {event:?}"))?,
                    session,
                    actor: req_str(self.actor, "actor", i)?,
                    reason: opt_str(self.reason, i),
                    time,
                })
            }
            Kind::Rows => {
                if self.cells.is_null(i) {
                    return Err("column cells is null".to_owned());
                }
                let outer = self.cells.value(i);
                let inner = outer
                    .as_list_opt::<i32>()
                    .ok_or("column cells is not a list of lists")?;
                let mut rows = Vec::with_capacity(inner.len());
                for r in 0..inner.len() {
                    rows.push(opt_str_list(inner, "cells", r)?);
                }
                Record::Rows(Rows {
                    session: need_session()?,
                    seq: req_u64(self.stmt_seq, "stmt_seq", i)?,
                    time,
                    columns: str_list(self.columns, "columns", i)?,
                    rows,
                    truncated: req_bool(self.truncated, "truncated", i)?,
                })
            }
            Kind::SessionEnd => Record::SessionEnd(SessionEnd {
                session: need_session()?,
                time,
                reason: req_str(self.reason, "reason", i)?,
            }),
        };
        let hash = |a: &FixedSizeBinaryArray| Hash::from_slice(a.value(i));
        Ok(StoredRecord {
            envelope: Envelope {
                seq: self.seq.value(i),
                instance: self.instance.value(i).to_owned(),
                record,
            },
            prev_hash: hash(self.prev_hash).ok_or("column prev_hash is not 32 bytes")?,
            hash: hash(self.hash).ok_or("column hash is not 32 bytes")?,
        })
    }

    fn column(&self, name: &str) -> Option<&ArrayRef> {
        self.batch.column_by_name(name)
    }
}

fn req_str(a: &StringArray, name: &str, i: usize) -> Result<String, String> {
    opt_str(a, i).ok_or_else(|| format!("column {name} is null"))
}

fn opt_str(a: &StringArray, i: usize) -> Option<String> {
    (!a.is_null(i)).then(|| a.value(i).to_owned())
}

fn req_u64(a: &PrimitiveArray<UInt64Type>, name: &str, i: usize) -> Result<u64, String> {
    opt_u64(a, i).ok_or_else(|| format!("column {name} is null"))
}

fn opt_u64(a: &PrimitiveArray<UInt64Type>, i: usize) -> Option<u64> {
    (!a.is_null(i)).then(|| a.value(i))
}

fn req_bool(a: &BooleanArray, name: &str, i: usize) -> Result<bool, String> {
    if a.is_null(i) {
        return Err(format!("column {name} is null"));
    }
    Ok(a.value(i))
}

fn opt_str_list(a: &ListArray, name: &str, i: usize) -> Result<Vec<Option<String>>, String> {
    if a.is_null(i) {
        return Err(format!("column {name} is null"));
    }
    let values = a.value(i);
    let values = values
        .as_string_opt::<i32>()
        .ok_or_else(|| format!("column {name} does not hold text"))?;
    Ok((0..values.len()).map(|j| opt_str(values, j)).collect())
}

fn str_list(a: &ListArray, name: &str, i: usize) -> Result<Vec<String>, String> {
    opt_str_list(a, name, i)?
        .into_iter()
        .map(|v| v.ok_or_else(|| format!("column {name} holds a null item")))
        .collect()
}
