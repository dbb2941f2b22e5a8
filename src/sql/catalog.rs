//! Which functions are safe to call: [`FunctionCatalog`] and the built-in lists.
//!
//! Owns the classification of a function call. Three sources, in this order:
//! 1. name lists compiled into pgward: server-level functions (`admin`, e.g.
//!    `pg_read_file`, `dblink*`), functions that change data or other
//!    sessions' view (`write`, e.g. `nextval`, `pg_notify`, advisory locks),
//!    functions that run SQL given as a string (`code`, e.g. `query_to_xml`),
//!    `set_config` (classified like the `SET` it performs), and volatile
//!    built-ins that only read (`random`, `clock_timestamp`, `pg_sleep`, …);
//! 2. the rows loaded by the session from `pg_proc` ([`FunctionCatalog::from_rows`]):
//!    a built-in immutable or stable function is `read`, anything volatile or
//!    not built in is `code`;
//! 3. without rows ([`FunctionCatalog::builtin_only`]), a compiled-in list of
//!    common immutable/stable `pg_catalog` functions stands in for `pg_proc`,
//!    so the analyzer works without a server. Anything else is `code`.
//!
//! Invariant: a name this module does not know is never weaker than `code`.
//! Must never do I/O: the session loads the rows and hands them in.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use super::profile::{Flag, StatementClass};

/// A function's volatility, as in `pg_proc.provolatile`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Volatility {
    /// `i`: same result for the same arguments, no side effects.
    Immutable,
    /// `s`: no side effects, result fixed within a statement.
    Stable,
    /// `v`: may have side effects.
    Volatile,
}

/// One row of the function catalog, as loaded from `pg_proc`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FunctionInfo {
    /// The function's schema (`pg_catalog`, `public`, …), case-folded.
    pub schema: String,
    /// The function's name, case-folded.
    pub name: String,
    /// Its volatility.
    pub volatility: Volatility,
    /// True for functions shipped with the server (owned by the bootstrap
    /// superuser / in `pg_catalog`); the loader decides.
    pub builtin: bool,
}

/// The functions known to the analyzer; see the module docs.
#[derive(Debug, Clone)]
pub struct FunctionCatalog {
    /// name → every (schema, volatility, builtin) with that name.
    by_name: HashMap<String, Vec<(String, Volatility, bool)>>,
    /// True when built from `pg_proc` rows rather than the compiled-in list.
    loaded: bool,
    /// A digest of the rows: part of the profile cache key.
    fingerprint: u64,
}

/// The outcome of classifying one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CallClass {
    pub class: StatementClass,
    pub flags: Vec<Flag>,
}

/// What `set_config`'s first argument is, as far as the analyzer can see.
#[derive(Debug, Clone, Copy)]
pub(crate) enum ConfigName<'a> {
    /// A string literal naming the setting.
    Literal(&'a str),
    /// Anything else: the setting cannot be known.
    Opaque,
}

/// Server-level functions: files, processes, other backends, replication,
/// outbound connections. `admin` whatever schema they are called in.
const ADMIN_FUNCTIONS: &[&str] = &[
    "binary_upgrade_create_empty_extension",
    "lo_export",
    "lo_import",
    "pg_backup_start",
    "pg_backup_stop",
    "pg_cancel_backend",
    "pg_clear_attribute_stats",
    "pg_clear_relation_stats",
    "pg_create_logical_replication_slot",
    "pg_create_physical_replication_slot",
    "pg_create_restore_point",
    "pg_current_logfile",
    "pg_drop_replication_slot",
    "pg_import_system_collations",
    "pg_log_backend_memory_contexts",
    "pg_log_standby_snapshot",
    "pg_logdir_ls",
    "pg_prewarm",
    "pg_promote",
    "pg_read_binary_file",
    "pg_read_file",
    "pg_read_file_old",
    "pg_reload_conf",
    "pg_replication_slot_advance",
    "pg_restore_attribute_stats",
    "pg_restore_relation_stats",
    "pg_rotate_logfile",
    "pg_set_attribute_stats",
    "pg_set_relation_stats",
    "pg_signal_backend",
    "pg_start_backup",
    "pg_stat_file",
    "pg_stop_backup",
    "pg_switch_wal",
    "pg_switch_xlog",
    "pg_sync_replication_slots",
    "pg_terminate_backend",
    "pg_truncate_visibility_map",
    "pg_xlog_replay_pause",
    "pg_xlog_replay_resume",
];

/// Name prefixes of server-level function families.
const ADMIN_PREFIXES: &[&str] = &[
    "binary_upgrade_",
    "dblink",
    "pg_copy_",
    "pg_file_",
    "pg_logical_",
    "pg_ls_",
    "pg_replication_origin_",
    "pg_stat_reset",
    "pg_stat_statements_reset",
    "pg_wal_replay_",
];

/// Functions that change data or state other sessions see.
const WRITE_FUNCTIONS: &[&str] = &[
    "lo_creat",
    "lo_create",
    "lo_from_bytea",
    "lo_put",
    "lo_truncate",
    "lo_truncate64",
    "lo_unlink",
    "lowrite",
    "nextval",
    "pg_advisory_lock",
    "pg_advisory_lock_shared",
    "pg_advisory_unlock",
    "pg_advisory_unlock_all",
    "pg_advisory_unlock_shared",
    "pg_advisory_xact_lock",
    "pg_advisory_xact_lock_shared",
    "pg_notify",
    "pg_try_advisory_lock",
    "pg_try_advisory_lock_shared",
    "pg_try_advisory_xact_lock",
    "pg_try_advisory_xact_lock_shared",
    "setval",
];

/// Built-ins that run SQL (or read a table) named in a string argument:
/// what they run is invisible here, like a DO block.
const DYNAMIC_SQL_FUNCTIONS: &[&str] = &[
    "cursor_to_xml",
    "cursor_to_xmlschema",
    "database_to_xml",
    "database_to_xml_and_xmlschema",
    "database_to_xmlschema",
    "query_to_xml",
    "query_to_xml_and_xmlschema",
    "query_to_xmlschema",
    "schema_to_xml",
    "schema_to_xml_and_xmlschema",
    "schema_to_xmlschema",
    "table_to_xml",
    "table_to_xml_and_xmlschema",
    "table_to_xmlschema",
    "ts_stat",
];

/// Volatile built-ins that only read or wait: `read`, but flagged volatile.
/// `pg_sleep` holds only the caller's own backend; `setseed` only affects
/// the caller's own `random()`; `txid_current` assigns an xid, which others
/// cannot observe as data.
const HARMLESS_VOLATILE_FUNCTIONS: &[&str] = &[
    "clock_timestamp",
    "currval",
    "gen_random_uuid",
    "lastval",
    "lo_get",
    "lo_open",
    "loread",
    "pg_current_xact_id",
    "pg_sleep",
    "pg_sleep_for",
    "pg_sleep_until",
    "random",
    "random_normal",
    "setseed",
    "timeofday",
    "txid_current",
    "uuidv4",
    "uuidv7",
];

/// Common immutable or stable `pg_catalog` functions, standing in for
/// `pg_proc` when no rows were loaded. Sorted (checked by a test).
const SAFE_BUILTINS: &[&str] = &[
    "abbrev",
    "abs",
    "acos",
    "age",
    "array_agg",
    "array_append",
    "array_cat",
    "array_dims",
    "array_fill",
    "array_length",
    "array_lower",
    "array_ndims",
    "array_position",
    "array_positions",
    "array_prepend",
    "array_remove",
    "array_replace",
    "array_to_json",
    "array_to_string",
    "array_upper",
    "ascii",
    "asin",
    "atan",
    "atan2",
    "avg",
    "bit_and",
    "bit_length",
    "bit_or",
    "bool_and",
    "bool_or",
    "broadcast",
    "btrim",
    "cardinality",
    "cbrt",
    "ceil",
    "ceiling",
    "char_length",
    "character_length",
    "chr",
    "coalesce",
    "col_description",
    "concat",
    "concat_ws",
    "convert_from",
    "convert_to",
    "corr",
    "cos",
    "count",
    "covar_pop",
    "covar_samp",
    "cume_dist",
    "current_catalog",
    "current_database",
    "current_date",
    "current_role",
    "current_schema",
    "current_schemas",
    "current_setting",
    "current_time",
    "current_timestamp",
    "current_user",
    "date_bin",
    "date_part",
    "date_trunc",
    "datemultirange",
    "daterange",
    "decode",
    "degrees",
    "dense_rank",
    "div",
    "encode",
    "every",
    "exp",
    "extract",
    "factorial",
    "family",
    "first_value",
    "floor",
    "format",
    "format_type",
    "gcd",
    "generate_series",
    "generate_subscripts",
    "greatest",
    "grouping",
    "has_column_privilege",
    "has_database_privilege",
    "has_function_privilege",
    "has_schema_privilege",
    "has_sequence_privilege",
    "has_table_privilege",
    "host",
    "hostmask",
    "inet_client_addr",
    "inet_client_port",
    "inet_server_addr",
    "inet_server_port",
    "initcap",
    "int4multirange",
    "int4range",
    "int8multirange",
    "int8range",
    "isempty",
    "isfinite",
    "json_agg",
    "json_array_elements",
    "json_array_elements_text",
    "json_array_length",
    "json_build_array",
    "json_build_object",
    "json_each",
    "json_each_text",
    "json_extract_path",
    "json_extract_path_text",
    "json_object",
    "json_object_agg",
    "json_object_keys",
    "json_populate_record",
    "json_populate_recordset",
    "json_strip_nulls",
    "json_to_record",
    "json_to_recordset",
    "json_typeof",
    "jsonb_agg",
    "jsonb_array_elements",
    "jsonb_array_elements_text",
    "jsonb_array_length",
    "jsonb_build_array",
    "jsonb_build_object",
    "jsonb_each",
    "jsonb_each_text",
    "jsonb_extract_path",
    "jsonb_extract_path_text",
    "jsonb_insert",
    "jsonb_object",
    "jsonb_object_agg",
    "jsonb_object_keys",
    "jsonb_path_exists",
    "jsonb_path_match",
    "jsonb_path_query",
    "jsonb_path_query_array",
    "jsonb_path_query_first",
    "jsonb_populate_record",
    "jsonb_populate_recordset",
    "jsonb_pretty",
    "jsonb_set",
    "jsonb_set_lax",
    "jsonb_strip_nulls",
    "jsonb_to_record",
    "jsonb_to_recordset",
    "jsonb_typeof",
    "justify_days",
    "justify_hours",
    "justify_interval",
    "lag",
    "last_value",
    "lcm",
    "lead",
    "least",
    "left",
    "length",
    "ln",
    "localtime",
    "localtimestamp",
    "log",
    "log10",
    "lower",
    "lower_inc",
    "lower_inf",
    "lpad",
    "ltrim",
    "make_date",
    "make_interval",
    "make_time",
    "make_timestamp",
    "make_timestamptz",
    "masklen",
    "max",
    "md5",
    "min",
    "mod",
    "mode",
    "multirange",
    "netmask",
    "network",
    "now",
    "nth_value",
    "ntile",
    "nullif",
    "num_nonnulls",
    "num_nulls",
    "nummultirange",
    "numrange",
    "obj_description",
    "octet_length",
    "overlay",
    "percent_rank",
    "percentile_cont",
    "percentile_disc",
    "pg_backend_pid",
    "pg_column_size",
    "pg_database_size",
    "pg_encoding_to_char",
    "pg_get_constraintdef",
    "pg_get_expr",
    "pg_get_function_arguments",
    "pg_get_function_identity_arguments",
    "pg_get_function_result",
    "pg_get_functiondef",
    "pg_get_indexdef",
    "pg_get_keywords",
    "pg_get_partkeydef",
    "pg_get_ruledef",
    "pg_get_serial_sequence",
    "pg_get_statisticsobjdef",
    "pg_get_triggerdef",
    "pg_get_userbyid",
    "pg_get_viewdef",
    "pg_has_role",
    "pg_indexes_size",
    "pg_input_is_valid",
    "pg_is_in_recovery",
    "pg_jit_available",
    "pg_listening_channels",
    "pg_postmaster_start_time",
    "pg_relation_size",
    "pg_size_bytes",
    "pg_size_pretty",
    "pg_table_is_visible",
    "pg_table_size",
    "pg_tablespace_size",
    "pg_total_relation_size",
    "pg_trigger_depth",
    "pg_typeof",
    "phraseto_tsquery",
    "pi",
    "plainto_tsquery",
    "position",
    "power",
    "quote_ident",
    "quote_literal",
    "quote_nullable",
    "radians",
    "range_agg",
    "range_intersect_agg",
    "range_merge",
    "rank",
    "regexp_count",
    "regexp_instr",
    "regexp_like",
    "regexp_match",
    "regexp_matches",
    "regexp_replace",
    "regexp_split_to_array",
    "regexp_split_to_table",
    "regexp_substr",
    "regr_avgx",
    "regr_avgy",
    "regr_count",
    "regr_intercept",
    "regr_r2",
    "regr_slope",
    "repeat",
    "replace",
    "reverse",
    "right",
    "round",
    "row_number",
    "row_to_json",
    "rpad",
    "rtrim",
    "session_user",
    "setweight",
    "sha224",
    "sha256",
    "sha384",
    "sha512",
    "sign",
    "sin",
    "split_part",
    "sqrt",
    "starts_with",
    "statement_timestamp",
    "stddev",
    "stddev_pop",
    "stddev_samp",
    "string_agg",
    "string_to_array",
    "strpos",
    "substr",
    "substring",
    "sum",
    "system_user",
    "tan",
    "timezone",
    "to_char",
    "to_date",
    "to_hex",
    "to_json",
    "to_jsonb",
    "to_number",
    "to_regclass",
    "to_regproc",
    "to_regtype",
    "to_timestamp",
    "to_tsquery",
    "to_tsvector",
    "transaction_timestamp",
    "translate",
    "trim",
    "trunc",
    "ts_headline",
    "ts_rank",
    "ts_rank_cd",
    "tsmultirange",
    "tsrange",
    "tstzmultirange",
    "tstzrange",
    "unnest",
    "upper",
    "upper_inc",
    "upper_inf",
    "user",
    "var_pop",
    "var_samp",
    "variance",
    "version",
    "websearch_to_tsquery",
    "width_bucket",
    "xmlagg",
];

/// Client encodings whose multi-byte characters may contain the bytes of
/// ASCII `'`, `\` or `;`: text pgward lexes as UTF-8 would lex differently
/// on the server.
/// Client encodings in which an ASCII byte can be the second byte of a character, so that a
/// quote or backslash pgward's UTF-8 lexer sees is not one the server sees.
pub(crate) const UNSAFE_CLIENT_ENCODINGS: &[&str] = &[
    "big5",
    "cp932",
    "cp936",
    "cp949",
    "cp950",
    "gb18030",
    "gbk",
    "johab",
    "mskanji",
    "shift_jis",
    "shiftjis",
    "sjis",
    "tcvn",
    "tcvn5712",
    "uhc",
    "win932",
    "win936",
    "win949",
    "win950",
    "windows932",
    "windows936",
    "windows949",
    "windows950",
];

/// Settings only a superuser may change, or that turn off auditing or
/// integrity checks, or load code.
const ADMIN_SETTINGS: &[&str] = &[
    "allow_in_place_tablespaces",
    "allow_system_table_mods",
    "dynamic_library_path",
    "ignore_checksum_failure",
    "ignore_invalid_pages",
    "ignore_system_indexes",
    "jit_provider",
    "lo_compat_privileges",
    "local_preload_libraries",
    "session_preload_libraries",
    "session_replication_role",
    "track_activities",
    "track_counts",
    "track_functions",
    "track_io_timing",
    "track_wal_io_timing",
    "zero_damaged_pages",
];

/// Prefixes of admin settings (server logging, debugging, audit extensions).
const ADMIN_SETTING_PREFIXES: &[&str] = &["debug_", "log_", "pgaudit.", "trace_"];

/// Expressions written like calls but built by PostgreSQL's parser, never looked up in `pg_proc`
/// (so a schema-qualified `public.coalesce` is a real, unknown function): the conditional
/// expressions, and the SQL value functions (`CURRENT_TIMESTAMP`, `CURRENT_USER` …).
const SQL_CONSTRUCTS: &[&str] = &[
    "coalesce",
    "current_catalog",
    "current_date",
    "current_role",
    "current_time",
    "current_timestamp",
    "current_user",
    "greatest",
    "least",
    "localtime",
    "localtimestamp",
    "nullif",
    "session_user",
    "system_user",
    "user",
];

// === impl FunctionCatalog ===

impl FunctionCatalog {
    /// A catalog with no `pg_proc` rows: the compiled-in list of common safe
    /// built-ins stands in for `pg_catalog`.
    pub fn builtin_only() -> Self {
        FunctionCatalog {
            by_name: HashMap::new(),
            loaded: false,
            fingerprint: 0,
        }
    }

    /// A catalog from `pg_proc` rows. The rows are authoritative: a name
    /// they do not hold is unknown (`code`), even if the compiled-in list
    /// has it. Names are expected case-folded, as `pg_proc` stores them.
    pub fn from_rows(rows: impl IntoIterator<Item = FunctionInfo>) -> Self {
        let mut rows: Vec<FunctionInfo> = rows.into_iter().collect();
        rows.sort_by(|a, b| {
            (&a.name, &a.schema, a.volatility, a.builtin).cmp(&(
                &b.name,
                &b.schema,
                b.volatility,
                b.builtin,
            ))
        });
        rows.dedup();
        // Deterministic (fixed-key SipHash) and order-independent because the
        // rows are sorted: two sessions loading the same catalog share cache entries.
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        rows.hash(&mut hasher);
        let fingerprint = hasher.finish() | 1;
        let mut by_name: HashMap<String, Vec<(String, Volatility, bool)>> = HashMap::new();
        for row in rows {
            by_name
                .entry(row.name)
                .or_default()
                .push((row.schema, row.volatility, row.builtin));
        }
        FunctionCatalog {
            by_name,
            loaded: true,
            fingerprint,
        }
    }

    /// A digest of the catalog's rows, for cache keys: equal catalogs give
    /// equal fingerprints; the built-in-only catalog has fingerprint 0.
    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
    }

    /// True when built from `pg_proc` rows.
    pub fn is_loaded(&self) -> bool {
        self.loaded
    }

    /// Classifies a call of `schema.name` (schema `None` when unqualified),
    /// resolved against `search_path` the way PostgreSQL does: `pg_catalog`
    /// first unless the path names it elsewhere.
    ///
    /// `config_name` is `set_config`'s first argument (ignored for other names).
    pub(crate) fn classify_call(
        &self,
        schema: Option<&str>,
        name: &str,
        search_path: &[String],
        config_name: ConfigName<'_>,
    ) -> CallClass {
        if is_admin_function(name) {
            return CallClass::of(StatementClass::Admin);
        }
        // Expressions with function syntax that are not in pg_proc: the parser builds them.
        if schema.is_none() && SQL_CONSTRUCTS.contains(&name) {
            return CallClass::of(StatementClass::Read);
        }
        let path = resolution_path(schema, search_path);
        if self.loaded {
            let Some(entries) = self.by_name.get(name) else {
                return CallClass::unknown_function();
            };
            let mut out: Option<CallClass> = None;
            for schema in &path {
                for (s, vol, builtin) in entries {
                    if s != schema {
                        continue;
                    }
                    let c = if *builtin {
                        builtin_class(name, Some(*vol), config_name)
                    } else {
                        CallClass::user_function(*vol)
                    };
                    out = Some(match out {
                        Some(prev) => prev.max(c),
                        None => c,
                    });
                }
            }
            out.unwrap_or_else(CallClass::unknown_function)
        } else {
            // Without rows, only pg_catalog's contents are (partly) known.
            let Some(pos) = path.iter().position(|s| s == "pg_catalog") else {
                return CallClass::unknown_function();
            };
            let builtin = builtin_class(name, None, config_name);
            if pos == 0 {
                builtin
            } else {
                // A schema searched before pg_catalog may shadow the built-in.
                builtin.max(CallClass::unknown_function())
            }
        }
    }
}

impl Default for FunctionCatalog {
    fn default() -> Self {
        FunctionCatalog::builtin_only()
    }
}

// === impl CallClass ===

impl CallClass {
    fn of(class: StatementClass) -> Self {
        CallClass {
            class,
            flags: Vec::new(),
        }
    }

    fn unknown_function() -> Self {
        CallClass {
            class: StatementClass::Code,
            flags: vec![Flag::UnknownFunction, Flag::VolatileFunction],
        }
    }

    fn user_function(vol: Volatility) -> Self {
        let mut flags = vec![Flag::UserFunction];
        if vol == Volatility::Volatile {
            flags.push(Flag::VolatileFunction);
        }
        CallClass {
            class: StatementClass::Code,
            flags,
        }
    }

    fn max(mut self, other: CallClass) -> CallClass {
        self.class = self.class.max(other.class);
        for f in other.flags {
            if !self.flags.contains(&f) {
                self.flags.push(f);
            }
        }
        self
    }
}

/// True for the server-level functions of [`ADMIN_FUNCTIONS`] / [`ADMIN_PREFIXES`].
pub(crate) fn is_admin_function(name: &str) -> bool {
    ADMIN_FUNCTIONS.binary_search(&name).is_ok()
        || ADMIN_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// True for any name the compiled-in lists know as a built-in function.
pub(crate) fn is_known_builtin(name: &str) -> bool {
    SAFE_BUILTINS.binary_search(&name).is_ok()
        || HARMLESS_VOLATILE_FUNCTIONS.binary_search(&name).is_ok()
        || WRITE_FUNCTIONS.binary_search(&name).is_ok()
        || name == "set_config"
}

/// The schemas an unqualified (or qualified) function name may resolve to, in order.
fn resolution_path(schema: Option<&str>, search_path: &[String]) -> Vec<String> {
    if let Some(s) = schema {
        return vec![s.to_owned()];
    }
    let mut path: Vec<String> = Vec::with_capacity(search_path.len() + 1);
    // PostgreSQL searches pg_catalog first unless the path names it explicitly.
    if !search_path.iter().any(|s| s == "pg_catalog") {
        path.push("pg_catalog".to_owned());
    }
    for s in search_path {
        // $user must be substituted by the session; pg_temp is never searched
        // for functions unless named explicitly.
        if s == "$user" || s.starts_with("pg_temp") {
            continue;
        }
        path.push(s.clone());
    }
    path
}

/// The class of a built-in function. `vol` is its volatility when the catalog
/// knows it; `None` means "use the compiled-in lists".
fn builtin_class(name: &str, vol: Option<Volatility>, config_name: ConfigName<'_>) -> CallClass {
    if is_admin_function(name) {
        return CallClass::of(StatementClass::Admin);
    }
    if name == "set_config" {
        let (class, flags) = match config_name {
            ConfigName::Literal(setting) => setting_class(setting, None),
            ConfigName::Opaque => (StatementClass::Admin, Vec::new()),
        };
        return CallClass {
            class: class.max(StatementClass::Read),
            flags: {
                let mut f = flags;
                f.push(Flag::VolatileFunction);
                f
            },
        };
    }
    if WRITE_FUNCTIONS.binary_search(&name).is_ok() {
        return CallClass {
            class: StatementClass::Write,
            flags: vec![Flag::VolatileFunction],
        };
    }
    if DYNAMIC_SQL_FUNCTIONS.binary_search(&name).is_ok() {
        return CallClass {
            class: StatementClass::Code,
            flags: vec![Flag::VolatileFunction],
        };
    }
    if HARMLESS_VOLATILE_FUNCTIONS.binary_search(&name).is_ok() {
        return CallClass {
            class: StatementClass::Read,
            flags: vec![Flag::VolatileFunction],
        };
    }
    match vol {
        Some(Volatility::Immutable | Volatility::Stable) => CallClass::of(StatementClass::Read),
        Some(Volatility::Volatile) => CallClass {
            class: StatementClass::Code,
            flags: vec![Flag::VolatileFunction],
        },
        None if SAFE_BUILTINS.binary_search(&name).is_ok() => CallClass::of(StatementClass::Read),
        None => CallClass::unknown_function(),
    }
}

/// Whether the server reporting `name = value` (a ParameterStatus) leaves pgward's lexer
/// unable to see statements as the server will: a client-only multibyte encoding, or
/// `standard_conforming_strings = off`.
pub fn lexer_unsafe_parameter(name: &str, value: &str) -> bool {
    match name {
        "client_encoding" => {
            UNSAFE_CLIENT_ENCODINGS.contains(&value.to_ascii_lowercase().replace('-', "_").as_str())
        }
        "standard_conforming_strings" => !value.eq_ignore_ascii_case("on"),
        _ => false,
    }
}

/// The class of changing setting `name` (case-folded) to `value` (when
/// known), by `SET`, `RESET` or `set_config`, with the flags to raise.
pub(crate) fn setting_class(name: &str, value: Option<&str>) -> (StatementClass, Vec<Flag>) {
    let name = name.trim();
    match name {
        "role" | "session_authorization" | "session authorization" => {
            (StatementClass::Privilege, vec![Flag::RoleChange])
        }
        "search_path" => (StatementClass::Privilege, vec![Flag::SearchPathChange]),
        "standard_conforming_strings" => {
            let on = value.is_some_and(|v| {
                matches!(v.to_ascii_lowercase().as_str(), "on" | "true" | "1" | "yes")
            });
            if on {
                (StatementClass::Session, vec![Flag::LexerChange])
            } else {
                (StatementClass::Privilege, vec![Flag::LexerChange])
            }
        }
        "client_encoding" | "names" => match value {
            Some(v) => {
                let v = v.to_ascii_lowercase().replace('-', "_");
                if UNSAFE_CLIENT_ENCODINGS.contains(&v.as_str()) {
                    (StatementClass::Privilege, vec![Flag::LexerChange])
                } else {
                    (StatementClass::Session, Vec::new())
                }
            }
            None => (StatementClass::Privilege, vec![Flag::LexerChange]),
        },
        _ if ADMIN_SETTINGS.contains(&name)
            || ADMIN_SETTING_PREFIXES.iter().any(|p| name.starts_with(p)) =>
        {
            (StatementClass::Admin, Vec::new())
        }
        _ => (StatementClass::Session, Vec::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sorted(list: &[&str]) -> bool {
        list.windows(2).all(|w| w[0] < w[1])
    }

    #[test]
    fn lists_are_sorted_for_binary_search() {
        assert!(sorted(ADMIN_FUNCTIONS));
        assert!(sorted(WRITE_FUNCTIONS));
        assert!(sorted(DYNAMIC_SQL_FUNCTIONS));
        assert!(sorted(HARMLESS_VOLATILE_FUNCTIONS));
        assert!(sorted(SAFE_BUILTINS));
    }

    #[test]
    fn builtin_only_resolution() {
        let cat = FunctionCatalog::builtin_only();
        let path = vec!["public".to_owned()];
        let c = |s: Option<&str>, n: &str| cat.classify_call(s, n, &path, ConfigName::Opaque).class;
        assert_eq!(c(None, "lower"), StatementClass::Read);
        assert_eq!(c(Some("pg_catalog"), "lower"), StatementClass::Read);
        assert_eq!(c(Some("public"), "lower"), StatementClass::Code);
        assert_eq!(c(None, "my_func"), StatementClass::Code);
        assert_eq!(c(None, "nextval"), StatementClass::Write);
        assert_eq!(c(None, "random"), StatementClass::Read);
        assert_eq!(c(None, "pg_read_file"), StatementClass::Admin);
        assert_eq!(c(Some("ext"), "dblink_exec"), StatementClass::Admin);
        assert_eq!(c(None, "set_config"), StatementClass::Admin);
        let set_role = cat.classify_call(None, "set_config", &path, ConfigName::Literal("role"));
        assert_eq!(set_role.class, StatementClass::Privilege);
        let set_mem = cat.classify_call(None, "set_config", &path, ConfigName::Literal("work_mem"));
        assert_eq!(set_mem.class, StatementClass::Read);
    }

    #[test]
    fn pg_catalog_late_in_path_can_be_shadowed() {
        let cat = FunctionCatalog::builtin_only();
        let path = vec!["public".to_owned(), "pg_catalog".to_owned()];
        let c = cat.classify_call(None, "lower", &path, ConfigName::Opaque);
        assert_eq!(c.class, StatementClass::Code);
    }

    #[test]
    fn loaded_rows_are_authoritative() {
        let row = |schema: &str, name: &str, v, builtin| FunctionInfo {
            schema: schema.into(),
            name: name.into(),
            volatility: v,
            builtin,
        };
        let cat = FunctionCatalog::from_rows([
            row("pg_catalog", "lower", Volatility::Immutable, true),
            row("pg_catalog", "random", Volatility::Volatile, true),
            row(
                "pg_catalog",
                "pg_stat_clear_snapshot",
                Volatility::Volatile,
                true,
            ),
            row("public", "lower", Volatility::Immutable, false),
            row("public", "slugify", Volatility::Immutable, false),
        ]);
        assert!(cat.fingerprint() != 0);
        let path = vec!["public".to_owned()];
        let c = |n: &str| cat.classify_call(None, n, &path, ConfigName::Opaque).class;
        // public.lower exists too: overload resolution might pick it.
        assert_eq!(c("lower"), StatementClass::Code);
        assert_eq!(c("random"), StatementClass::Read);
        assert_eq!(c("pg_stat_clear_snapshot"), StatementClass::Code);
        assert_eq!(c("slugify"), StatementClass::Code);
        assert_eq!(c("upper"), StatementClass::Code);
        // SQL value functions are not in pg_proc, and are no code.
        assert_eq!(c("current_timestamp"), StatementClass::Read);
        assert_eq!(c("current_user"), StatementClass::Read);
        let other =
            FunctionCatalog::from_rows([row("pg_catalog", "lower", Volatility::Immutable, true)]);
        let path2 = vec!["app".to_owned()];
        assert_eq!(
            other
                .classify_call(None, "lower", &path2, ConfigName::Opaque)
                .class,
            StatementClass::Read
        );
    }

    #[test]
    fn settings() {
        assert_eq!(setting_class("role", None).0, StatementClass::Privilege);
        assert_eq!(
            setting_class("search_path", None).0,
            StatementClass::Privilege
        );
        assert_eq!(setting_class("work_mem", None).0, StatementClass::Session);
        assert_eq!(
            setting_class("session_replication_role", None).0,
            StatementClass::Admin
        );
        assert_eq!(
            setting_class("log_statement", None).0,
            StatementClass::Admin
        );
        assert_eq!(
            setting_class("client_encoding", Some("SJIS")).0,
            StatementClass::Privilege
        );
        assert_eq!(
            setting_class("client_encoding", Some("UTF8")).0,
            StatementClass::Session
        );
        assert_eq!(
            setting_class("standard_conforming_strings", Some("off")).0,
            StatementClass::Privilege
        );
    }
}
