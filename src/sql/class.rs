//! Statement classes: the [`Sweep`] over the whole AST and each node's own class.
//!
//! Owns "the strictest of everything inside": a visitor walks every node of
//! a statement (nested statements in WITH, subqueries anywhere, every
//! function call, locking clauses, `SELECT … INTO`) and raises the class for
//! each. Because it uses sqlparser's derived visitor rather than a
//! hand-written walk, a function call or a DML statement hidden in an
//! unusual place is still seen.
//!
//! # Security
//! Only EXPLAIN without ANALYZE and PREPARE are exempt from the sweep (their
//! inner statement does not run); they are handled in [`super::statement`].
//! Any statement kind not matched here is `unknown`.

use std::collections::{BTreeSet, HashSet};
use std::ops::ControlFlow;

use sqlparser::ast::{
    AlterTableOperation, BinaryOperator, CopyTarget, DeclareType, DiscardObject, Expr, FunctionArg,
    FunctionArgExpr, FunctionArguments, FunctionSecurity, ObjectName, ObjectType, Query, Reset,
    SchemaName, Select, Set, SetExpr, Statement, TableFactor, Value, Visitor,
};

use super::AnalyzeContext;
use super::catalog::{CallClass, ConfigName, setting_class};
use super::lineage::{fold, object_parts};
use super::profile::{Flag, StatementClass};

/// Built-in PostgreSQL operators that sqlparser represents as custom ones
/// (geometric, range and text-search operators).
const BUILTIN_CUSTOM_OPERATORS: &[&str] = &[
    "!!", "##", "#-", "&<", "&<|", "&>", "-|-", "<#>", "<<=", "<<|", "<=>", "<^", ">>=", ">^",
    "?#", "?-", "?-|", "?||", "@-@", "@?", "@@", "@@@", "|&>", "|>>", "~=",
];

/// Accumulates the class, functions, flags and relation names of a statement.
pub(crate) struct Sweep<'c, 'a> {
    ctx: &'c AnalyzeContext<'a>,
    pub class: StatementClass,
    pub functions: BTreeSet<String>,
    pub flags: BTreeSet<Flag>,
    /// Every relation name seen anywhere (folded parts).
    pub relations: Vec<Vec<String>>,
    /// Every CTE name defined anywhere.
    pub cte_names: HashSet<String>,
    /// Names in FROM that are function calls (`FROM generate_series(…)`),
    /// which sqlparser also reports as relations.
    pub function_relations: HashSet<Vec<String>>,
}

// === impl Sweep ===

impl<'c, 'a> Sweep<'c, 'a> {
    pub fn new(ctx: &'c AnalyzeContext<'a>, start: StatementClass) -> Self {
        Sweep {
            ctx,
            class: start,
            functions: BTreeSet::new(),
            flags: BTreeSet::new(),
            relations: Vec::new(),
            cte_names: HashSet::new(),
            function_relations: HashSet::new(),
        }
    }

    fn raise(&mut self, class: StatementClass) {
        self.class = self.class.max(class);
    }

    /// Records and classifies a call of `name`.
    fn call(&mut self, name: &ObjectName, config: ConfigName<'_>) {
        let Some(c) = classify_call(self.ctx, name, config) else {
            return;
        };
        self.functions.insert(object_parts(name).join("."));
        self.raise(c.class);
        self.flags.extend(c.flags);
    }
}

/// The class of a call of `name` in `ctx`; `None` for the `ROW(…)` and
/// `ARRAY(…)` constructors, which are not calls (both words are reserved:
/// a function of that name must be quoted).
pub(crate) fn classify_call(
    ctx: &AnalyzeContext<'_>,
    name: &ObjectName,
    config: ConfigName<'_>,
) -> Option<CallClass> {
    let parts = object_parts(name);
    let fname = parts.last()?;
    let schema = parts.len().checked_sub(2).and_then(|i| parts.get(i));
    let unquoted = matches!(name.0.last(), Some(sqlparser::ast::ObjectNamePart::Identifier(id)) if id.quote_style.is_none());
    if schema.is_none() && unquoted && (fname == "row" || fname == "array") {
        return None;
    }
    Some(
        ctx.catalog
            .classify_call(schema.map(String::as_str), fname, ctx.search_path, config),
    )
}

/// Whether a call of `name` may store its arguments where a later statement
/// can read them back: anything classed `write` or stricter (tables, large
/// objects, notifications, locks, user code), and `set_config`, whose value
/// `current_setting` returns.
pub(crate) fn call_stores_arguments(
    ctx: &AnalyzeContext<'_>,
    name: &ObjectName,
    config: ConfigName<'_>,
) -> bool {
    let Some(c) = classify_call(ctx, name, config) else {
        return false;
    };
    c.class >= StatementClass::Write || object_parts(name).last().is_some_and(|n| n == "set_config")
}

impl Visitor for Sweep<'_, '_> {
    type Break = ();

    fn pre_visit_statement(&mut self, st: &Statement) -> ControlFlow<()> {
        let (class, flags) = statement_class(st);
        self.raise(class);
        self.flags.extend(flags);
        if let Statement::Call(f) = st {
            self.call(&f.name, ConfigName::Opaque);
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_query(&mut self, q: &Query) -> ControlFlow<()> {
        if !q.locks.is_empty() {
            self.raise(StatementClass::Write);
            self.flags.insert(Flag::LockingClause);
        }
        if let Some(with) = &q.with {
            for cte in &with.cte_tables {
                self.cte_names.insert(fold(&cte.alias.name));
                if matches!(
                    cte.query.body.as_ref(),
                    SetExpr::Insert(_)
                        | SetExpr::Update(_)
                        | SetExpr::Delete(_)
                        | SetExpr::Merge(_)
                ) {
                    self.flags.insert(Flag::DataModifyingCte);
                }
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_select(&mut self, s: &Select) -> ControlFlow<()> {
        if s.into.is_some() {
            self.raise(StatementClass::Ddl);
            self.flags.insert(Flag::SelectInto);
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
        match e {
            Expr::Function(f) => self.call(&f.name, config_arg(&f.args)),
            Expr::BinaryOp { op, .. } => {
                let user_defined = match op {
                    BinaryOperator::PGCustomBinaryOperator(parts) => {
                        parts.len() > 1
                            && parts
                                .first()
                                .is_some_and(|s| !s.eq_ignore_ascii_case("pg_catalog"))
                    }
                    BinaryOperator::Custom(op) => !BUILTIN_CUSTOM_OPERATORS.contains(&op.as_str()),
                    _ => false,
                };
                if user_defined {
                    // An operator pgward does not know calls a function it does not know.
                    self.raise(StatementClass::Code);
                    self.flags.insert(Flag::UnknownFunction);
                    self.flags.insert(Flag::VolatileFunction);
                }
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, t: &TableFactor) -> ControlFlow<()> {
        match t {
            TableFactor::Table {
                name,
                args: Some(a),
                ..
            } => {
                self.function_relations.insert(object_parts(name));
                self.call(name, first_string_arg(&a.args));
            }
            TableFactor::Function { name, args, .. } => self.call(name, first_string_arg(args)),
            _ => {}
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_relation(&mut self, r: &ObjectName) -> ControlFlow<()> {
        self.relations.push(object_parts(r));
        ControlFlow::Continue(())
    }
}

/// `set_config`'s first argument, if it is a string literal (possibly cast).
pub(crate) fn first_string_arg(args: &[FunctionArg]) -> ConfigName<'_> {
    match args.first() {
        Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(e))) => literal_in(e),
        _ => ConfigName::Opaque,
    }
}

/// `set_config`'s first argument among a call's arguments.
pub(crate) fn config_arg(args: &FunctionArguments) -> ConfigName<'_> {
    match args {
        FunctionArguments::List(list) => first_string_arg(&list.args),
        _ => ConfigName::Opaque,
    }
}

fn literal_in(e: &Expr) -> ConfigName<'_> {
    match e {
        Expr::Cast { expr, .. } | Expr::Nested(expr) => literal_in(expr),
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s)
            | Value::EscapedStringLiteral(s)
            | Value::UnicodeStringLiteral(s) => ConfigName::Literal(s.as_str()),
            Value::DollarQuotedString(d) => ConfigName::Literal(d.value.as_str()),
            _ => ConfigName::Opaque,
        },
        _ => ConfigName::Opaque,
    }
}

/// A setting name from a SET/RESET variable, folded, `.`-joined.
fn setting_name(name: &ObjectName) -> String {
    object_parts(name).join(".").to_lowercase()
}

/// The text of a SET value when it is a literal or a bare word.
fn value_text(e: &Expr) -> Option<String> {
    match e {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s)
            | Value::EscapedStringLiteral(s)
            | Value::DoubleQuotedString(s) => Some(s.clone()),
            Value::Number(n, _) => Some(n.clone()),
            Value::Boolean(b) => Some(if *b { "on".into() } else { "off".into() }),
            _ => None,
        },
        Expr::Identifier(id) => Some(id.value.clone()),
        _ => None,
    }
}

/// The class of one statement node by its own kind (not its children).
pub(crate) fn statement_class(st: &Statement) -> (StatementClass, Vec<Flag>) {
    use StatementClass::*;
    let c = |class: StatementClass| (class, Vec::new());
    match st {
        Statement::Query(_) => c(Read),
        Statement::Insert(_)
        | Statement::Update(_)
        | Statement::Delete(_)
        | Statement::Merge(_) => c(Write),
        // TRUNCATE bypasses MVCC, takes an exclusive lock and needs its own
        // privilege: DBAs gate it like DROP.
        Statement::Truncate(_) => c(Ddl),
        Statement::Copy { to, target, .. } => match target {
            CopyTarget::File { .. } | CopyTarget::Program { .. } => c(Admin),
            CopyTarget::Stdout => c(Read),
            CopyTarget::Stdin => c(if *to { Read } else { Write }),
        },
        Statement::Analyze(_)
        | Statement::Vacuum(_)
        | Statement::Lock(_)
        | Statement::Load { .. } => c(Admin),
        Statement::Set(set) => set_class(set),
        Statement::Reset(r) => match &r.reset {
            // RESET ALL restores search_path (not the role: it is GUC_NO_RESET_ALL).
            Reset::ALL => (Privilege, vec![Flag::SearchPathChange]),
            Reset::SessionAuthorization => (Privilege, vec![Flag::RoleChange]),
            Reset::ConfigurationParameter(name) => setting_class(&setting_name(name), None),
        },
        Statement::Discard { object_type } => match object_type {
            // DISCARD ALL includes SET SESSION AUTHORIZATION DEFAULT and RESET ALL.
            DiscardObject::ALL => (Privilege, vec![Flag::RoleChange, Flag::SearchPathChange]),
            _ => c(Session),
        },
        Statement::ShowVariable { .. } => c(Session),
        Statement::StartTransaction { .. }
        | Statement::Commit { .. }
        | Statement::Rollback { .. }
        | Statement::Savepoint { .. }
        | Statement::ReleaseSavepoint { .. } => c(Tx),
        Statement::LISTEN { .. } | Statement::UNLISTEN { .. } => c(Session),
        // NOTIFY wakes other sessions' listeners (job queues, cache
        // invalidation): a side effect others see, like a write.
        Statement::NOTIFY { .. } => c(Write),
        Statement::Prepare { .. } | Statement::Deallocate { .. } => c(Session),
        Statement::Execute { .. } => c(Unknown),
        Statement::Declare { stmts } => {
            if stmts
                .iter()
                .all(|d| matches!(d.declare_type, Some(DeclareType::Cursor)))
            {
                c(Read)
            } else {
                c(Unknown)
            }
        }
        Statement::Fetch { .. } => c(Read),
        Statement::Close { .. } => c(Session),
        // Without ANALYZE the inner statement only gets planned; the caller
        // handles both forms and never sweeps EXPLAIN's inside blindly.
        Statement::Explain { .. } => c(Read),
        Statement::CreateTable(_)
        | Statement::CreateView(_)
        | Statement::CreateIndex(_)
        | Statement::CreateSequence { .. }
        | Statement::CreateType { .. }
        | Statement::CreateDomain(_)
        | Statement::CreateCollation(_)
        | Statement::CreateTextSearch(_)
        | Statement::CreateOperator(_)
        | Statement::CreateOperatorFamily(_)
        | Statement::CreateOperatorClass(_)
        | Statement::AlterIndex { .. }
        | Statement::AlterView { .. }
        | Statement::AlterType(_)
        | Statement::AlterCollation(_)
        | Statement::AlterOperator(_)
        | Statement::AlterOperatorFamily(_)
        | Statement::AlterOperatorClass(_)
        | Statement::AlterTextSearch(_)
        | Statement::DropFunction(_)
        | Statement::DropDomain(_)
        | Statement::DropProcedure { .. }
        | Statement::DropTrigger(_)
        | Statement::DropOperator(_)
        | Statement::DropOperatorFamily(_)
        | Statement::DropOperatorClass(_)
        | Statement::Comment { .. } => c(Ddl),
        Statement::CreateSchema { schema_name, .. } => match schema_name {
            SchemaName::Simple(_) => c(Ddl),
            // Creates a schema owned by another role.
            _ => c(Privilege),
        },
        Statement::AlterSchema(a) => {
            if a.operations
                .iter()
                .any(|o| matches!(o, sqlparser::ast::AlterSchemaOperation::OwnerTo { .. }))
            {
                c(Privilege)
            } else {
                c(Ddl)
            }
        }
        Statement::AlterTable(a) => {
            let mut class = Ddl;
            for op in &a.operations {
                let op_class = match op {
                    AlterTableOperation::OwnerTo { .. }
                    | AlterTableOperation::EnableRowLevelSecurity
                    | AlterTableOperation::DisableRowLevelSecurity
                    | AlterTableOperation::ForceRowLevelSecurity
                    | AlterTableOperation::NoForceRowLevelSecurity => Privilege,
                    // Which triggers and rules run is which code runs (and
                    // disabling them can switch off auditing).
                    AlterTableOperation::DisableTrigger { .. }
                    | AlterTableOperation::EnableTrigger { .. }
                    | AlterTableOperation::EnableAlwaysTrigger { .. }
                    | AlterTableOperation::EnableReplicaTrigger { .. }
                    | AlterTableOperation::DisableRule { .. }
                    | AlterTableOperation::EnableRule { .. }
                    | AlterTableOperation::EnableAlwaysRule { .. }
                    | AlterTableOperation::EnableReplicaRule { .. } => Code,
                    _ => Ddl,
                };
                class = class.max(op_class);
            }
            c(class)
        }
        // SECURITY DEFINER, OWNER TO and SET search_path are among its forms.
        Statement::AlterFunction(_) => c(Privilege),
        Statement::CreatePolicy(_) | Statement::AlterPolicy(_) | Statement::DropPolicy(_) => {
            c(Privilege)
        }
        Statement::CreateRole(_)
        | Statement::AlterRole { .. }
        | Statement::CreateUser(_)
        | Statement::AlterUser(_)
        | Statement::Grant(_)
        | Statement::Revoke(_) => (Privilege, Vec::new()),
        Statement::Drop { object_type, .. } => match object_type {
            ObjectType::Role | ObjectType::User => c(Privilege),
            ObjectType::Database => c(Admin),
            ObjectType::Table
            | ObjectType::View
            | ObjectType::MaterializedView
            | ObjectType::Index
            | ObjectType::Schema
            | ObjectType::Sequence
            | ObjectType::Type
            | ObjectType::Collation => c(Ddl),
            _ => c(Unknown),
        },
        // Extensions run their install scripts with elevated rights.
        Statement::CreateExtension(_) | Statement::DropExtension(_) => c(Admin),
        Statement::CreateDatabase { .. } | Statement::CreateServer(_) => c(Admin),
        Statement::CreateFunction(f) => {
            if matches!(f.security, Some(FunctionSecurity::Definer)) {
                // Runs with its owner's rights: a delegation of privilege.
                c(Privilege)
            } else {
                c(Code)
            }
        }
        Statement::CreateProcedure { .. } | Statement::CreateTrigger(_) | Statement::Call(_) => {
            c(Code)
        }
        _ => c(Unknown),
    }
}

/// The class of a SET statement.
fn set_class(set: &Set) -> (StatementClass, Vec<Flag>) {
    use StatementClass::*;
    match set {
        Set::SingleAssignment {
            variable, values, ..
        } => {
            let value = if values.len() == 1 {
                values.first().and_then(value_text)
            } else {
                None
            };
            setting_class(&setting_name(variable), value.as_deref())
        }
        Set::ParenthesizedAssignments { variables, .. } => {
            let mut out = (Session, Vec::new());
            for v in variables {
                let (c, f) = setting_class(&setting_name(v), None);
                out.0 = out.0.max(c);
                out.1.extend(f);
            }
            out
        }
        Set::MultipleAssignments { assignments } => {
            let mut out = (Session, Vec::new());
            for a in assignments {
                let (c, f) = setting_class(&setting_name(&a.name), value_text(&a.value).as_deref());
                out.0 = out.0.max(c);
                out.1.extend(f);
            }
            out
        }
        Set::SetSessionAuthorization(_) | Set::SetRole { .. } => {
            (Privilege, vec![Flag::RoleChange])
        }
        Set::SetTimeZone { .. } | Set::SetNamesDefault {} => (Session, Vec::new()),
        Set::SetNames { charset_name, .. } => {
            setting_class("client_encoding", Some(&charset_name.value))
        }
        Set::SetTransaction { session, .. } => {
            if *session {
                (Session, Vec::new())
            } else {
                (Tx, Vec::new())
            }
        }
        Set::SetSessionParam(_) => (Unknown, Vec::new()),
    }
}
