//! Oracles inside expressions: the parts of an expression whose sources a
//! result reveals through something other than the expression's value.
//!
//! A masked column in an output expression is masked as a whole, so its
//! value never shows. But some expressions answer questions about their
//! operands through a channel the masker does not touch:
//! - an **error**: `ssn::int`, `CAST(email AS uuid)`, `1 / (ssn = '1')::int`,
//!   `sqrt(ascii(ssn) - 50)` fail for some values and not for others;
//! - **NULL-ness**: `nullif(ssn, '1')`, `regexp_match(ssn, '^1')` and
//!   `'{"1": 1}'::jsonb -> ssn` are NULL for some values only;
//! - the **row count**: `generate_series(1, ascii(ssn))`, `unnest(…)` in the
//!   select list, `count(DISTINCT ssn)`, which deduplicates;
//! - a **comparison** (`=`, LIKE, regex, IN, BETWEEN, `greatest`, …), whose
//!   yes/no answer any of the above turns into an unmasked fact.
//!
//! [`revealed_parts`] names those parts for one node; the lineage collector
//! ([`super::lineage`]) records their sources as predicate columns, at any
//! depth and in any clause, so the policy refuses them as inference.
//!
//! Deliberately not oracles: computing a value (`upper`, `substr(ssn, 1, 3)`,
//! `||`, `length`, `md5`, `coalesce`, `string_agg`, arithmetic other than
//! division), casts to text types (they cannot fail), and choosing between
//! values (`CASE`, whose conditions the collector handles itself). Their
//! results are masked outputs. Arithmetic overflow (`ascii(ssn) +
//! 2147483600`) also raises an error, but counting it would make every
//! computed number a predicate. This is why a comparison counts even when
//! its answer is only output: it could reach an overflow instead.
//!
//! Pure: looks at one node and its direct children, never resolves names.

use sqlparser::ast::{
    AccessExpr, BinaryOperator, DataType, DuplicateTreatment, Expr, Function, FunctionArg,
    FunctionArgExpr, FunctionArguments, Subscript, UnaryOperator, Value,
};

use super::lineage::{fold, object_parts};

/// How a binary operator uses its operands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operands {
    /// Computes a value from both (`+`, `||`, `AND`): a masked output.
    Value,
    /// Compares them, or may fail on some values of either (`=`, `~`, `^`).
    Reveal,
    /// Divides by the right one: zero is an error.
    Divisor,
    /// Looks the right one up in the left (`->`): a missing key is NULL.
    Key,
}

/// Which arguments of a call a result reveals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Arguments {
    None,
    All,
    /// Only the argument at this position.
    Only(usize),
    /// The arguments from this position on.
    From(usize),
}

/// Calls `mark` for every part of `e` whose sources `e` reveals through a
/// comparison, an error, NULL-ness or a row count (see the module docs);
/// `mark(e)` means all of `e`. Only `e` itself is looked at: its
/// sub-expressions are visited (and asked) on their own.
pub(crate) fn revealed_parts<'e>(e: &'e Expr, mut mark: impl FnMut(&'e Expr)) {
    match e {
        Expr::IsDistinctFrom(..)
        | Expr::IsNotDistinctFrom(..)
        | Expr::IsJson { .. }
        | Expr::IsNormalized { .. }
        | Expr::InList { .. }
        | Expr::InSubquery { .. }
        | Expr::InUnnest { .. }
        | Expr::Between { .. }
        | Expr::Like { .. }
        | Expr::ILike { .. }
        | Expr::SimilarTo { .. }
        | Expr::RLike { .. }
        | Expr::AnyOp { .. }
        | Expr::AllOp { .. }
        | Expr::Position { .. }
        | Expr::MatchAgainst { .. }
        | Expr::MemberOf(_)
        | Expr::Convert { .. } => mark(e),
        Expr::BinaryOp { op, right, .. } => match binary_operands(op) {
            Operands::Value => {}
            Operands::Reveal => mark(e),
            Operands::Divisor | Operands::Key => mark(right),
        },
        // Square root and factorial of a negative number are errors.
        Expr::UnaryOp {
            op:
                UnaryOperator::PGSquareRoot
                | UnaryOperator::PGPostfixFactorial
                | UnaryOperator::PGPrefixFactorial,
            ..
        } => mark(e),
        // `ssn::int` fails unless the value is numeric.
        Expr::Cast { data_type, .. } if !is_text_type(data_type) => mark(e),
        // An unknown time zone name is an error.
        Expr::AtTimeZone { time_zone, .. } => mark(time_zone),
        // `substring(ssn from '^1')` is a regex match: NULL when it fails.
        Expr::Substring {
            substring_from,
            substring_for,
            ..
        } if !substring_from
            .iter()
            .chain(substring_for)
            .all(|x| is_integer_like(x)) =>
        {
            mark(e)
        }
        Expr::CompoundFieldAccess { access_chain, .. } => {
            // `(ARRAY['a'])[ascii(ssn) - 48]` is NULL out of bounds.
            for a in access_chain {
                match a {
                    AccessExpr::Subscript(Subscript::Index { index }) => mark(index),
                    AccessExpr::Subscript(Subscript::Slice {
                        lower_bound,
                        upper_bound,
                        stride,
                    }) => {
                        for b in [lower_bound, upper_bound, stride].into_iter().flatten() {
                            mark(b);
                        }
                    }
                    AccessExpr::Dot(_) => {}
                }
            }
        }
        Expr::Function(f) => match call_arguments(f) {
            Arguments::None => {}
            Arguments::All => mark(e),
            Arguments::Only(i) => argument_exprs(f).skip(i).take(1).for_each(mark),
            Arguments::From(i) => argument_exprs(f).skip(i).for_each(mark),
        },
        _ => {}
    }
}

/// How `op` uses its operands. Operators pgward does not know compare, as
/// most PostgreSQL operators returning something do (fail closed).
fn binary_operands(op: &BinaryOperator) -> Operands {
    use BinaryOperator as B;
    match op {
        B::Plus
        | B::Minus
        | B::Multiply
        | B::StringConcat
        | B::And
        | B::Or
        | B::Xor
        | B::BitwiseOr
        | B::BitwiseAnd
        | B::BitwiseXor
        | B::PGBitwiseXor
        | B::HashMinus
        | B::DoubleHash
        | B::LtDashGt => Operands::Value,
        B::Divide | B::Modulo | B::DuckIntegerDivide | B::MyIntegerDivide => Operands::Divisor,
        B::Arrow | B::LongArrow | B::HashArrow | B::HashLongArrow => Operands::Key,
        B::Custom(symbol) => symbol_operands(symbol),
        B::PGCustomBinaryOperator(parts) => parts
            .last()
            .map_or(Operands::Reveal, |s| symbol_operands(s)),
        // `0 ^ -1` is an error; comparisons, matches, containment, overlap.
        _ => Operands::Reveal,
    }
}

/// [`binary_operands`] for an operator known only by its symbol
/// (`OPERATOR(pg_catalog.+)` and operators sqlparser has no name for).
fn symbol_operands(symbol: &str) -> Operands {
    match symbol {
        "+" | "-" | "*" | "||" | "&" | "|" | "#" | "#-" | "##" | "<->" => Operands::Value,
        "/" | "%" => Operands::Divisor,
        "->" | "->>" | "#>" | "#>>" => Operands::Key,
        _ => Operands::Reveal,
    }
}

/// The argument expressions of a call, in order (not `t.*` or `*`).
fn argument_exprs(f: &Function) -> impl Iterator<Item = &Expr> {
    let args: &[FunctionArg] = match &f.args {
        FunctionArguments::List(list) => &list.args,
        _ => &[],
    };
    args.iter().filter_map(|a| match a {
        FunctionArg::Named { arg, .. }
        | FunctionArg::ExprNamed { arg, .. }
        | FunctionArg::Unnamed(arg) => match arg {
            FunctionArgExpr::Expr(x) => Some(x),
            _ => None,
        },
    })
}

/// Which arguments of the call `f` its result reveals.
fn call_arguments(f: &Function) -> Arguments {
    if let FunctionArguments::List(list) = &f.args
        && list.duplicate_treatment == Some(DuplicateTreatment::Distinct)
    {
        // `count(DISTINCT ssn)`: deduplication compares the values.
        return Arguments::All;
    }
    let Some(name) = object_parts(&f.name).pop() else {
        return Arguments::None;
    };
    match name.as_str() {
        // Comparisons, matches and searches: yes/no, a position, or NULL.
        "array_position"
        | "array_positions"
        | "greatest"
        | "jsonb_path_exists"
        | "jsonb_path_exists_tz"
        | "jsonb_path_match"
        | "jsonb_path_match_tz"
        | "jsonb_path_query_array"
        | "jsonb_path_query_array_tz"
        | "jsonb_path_query_first"
        | "jsonb_path_query_first_tz"
        | "least"
        | "nullif"
        | "pg_input_error_info"
        | "pg_input_is_valid"
        | "position"
        | "regexp_count"
        | "regexp_instr"
        | "regexp_like"
        | "regexp_match"
        | "regexp_substr"
        | "starts_with"
        | "strpos" => Arguments::All,
        // Parsers and range checks: an error (or NULL) for a value that is not one.
        "make_date" | "make_time" | "make_timestamp" | "make_timestamptz" | "to_date"
        | "to_number" | "to_regclass" | "to_regcollation" | "to_regnamespace" | "to_regoper"
        | "to_regoperator" | "to_regproc" | "to_regprocedure" | "to_regrole" | "to_regtype"
        | "to_regtypemod" | "to_timestamp" => Arguments::All,
        // Defined only on part of their domain: an error elsewhere.
        "acos" | "acosh" | "asin" | "atanh" | "chr" | "factorial" | "ln" | "log" | "log10"
        | "pow" | "power" | "sqrt" => Arguments::All,
        // Set-returning: the row count derives from the arguments.
        "generate_series"
        | "generate_subscripts"
        | "json_array_elements"
        | "json_array_elements_text"
        | "json_each"
        | "json_each_text"
        | "json_object_keys"
        | "json_populate_recordset"
        | "json_to_recordset"
        | "jsonb_array_elements"
        | "jsonb_array_elements_text"
        | "jsonb_each"
        | "jsonb_each_text"
        | "jsonb_object_keys"
        | "jsonb_path_query"
        | "jsonb_path_query_tz"
        | "jsonb_populate_recordset"
        | "jsonb_to_recordset"
        | "regexp_matches"
        | "regexp_split_to_table"
        | "string_to_table"
        | "unnest" => Arguments::All,
        "div" | "mod" => Arguments::Only(1),
        // A bad format string is an error.
        "format" => Arguments::Only(0),
        "json_extract_path"
        | "json_extract_path_text"
        | "jsonb_extract_path"
        | "jsonb_extract_path_text" => Arguments::From(1),
        // The regex forms `substring(s, pattern)` and `substring(s, pattern, escape)`.
        "substring" if !argument_exprs(f).skip(1).all(is_integer_like) => Arguments::All,
        // A type name called as a function is a cast (`int4(ssn)`).
        n if is_non_text_type_name(n) && argument_exprs(f).count() == 1 => Arguments::All,
        _ => Arguments::None,
    }
}

/// True for the types a cast to which cannot fail: text and its relatives.
fn is_text_type(t: &DataType) -> bool {
    match t {
        DataType::Text
        | DataType::Varchar(_)
        | DataType::CharacterVarying(_)
        | DataType::CharVarying(_)
        | DataType::Char(_)
        | DataType::Character(_)
        | DataType::Nvarchar(_)
        | DataType::String(_)
        | DataType::TinyText
        | DataType::MediumText
        | DataType::LongText => true,
        // `"char"` (quoted) is a one-byte type, not `char`; it does not fail
        // either, but pgward only vouches for the names below.
        DataType::Custom(name, _) => name.0.last().is_some_and(|p| {
            let n = match p {
                sqlparser::ast::ObjectNamePart::Identifier(id) => fold(id),
                sqlparser::ast::ObjectNamePart::Function(f) => fold(&f.name),
            };
            matches!(
                n.as_str(),
                "bpchar" | "citext" | "name" | "text" | "varchar"
            )
        }),
        _ => false,
    }
}

/// Built-in type names that PostgreSQL also accepts as one-argument
/// functions performing a cast (text types left out).
fn is_non_text_type_name(n: &str) -> bool {
    matches!(
        n,
        "bit"
            | "bool"
            | "box"
            | "bytea"
            | "cidr"
            | "circle"
            | "date"
            | "float4"
            | "float8"
            | "inet"
            | "int2"
            | "int4"
            | "int8"
            | "interval"
            | "json"
            | "jsonb"
            | "line"
            | "lseg"
            | "macaddr"
            | "macaddr8"
            | "money"
            | "numeric"
            | "oid"
            | "path"
            | "pg_lsn"
            | "point"
            | "polygon"
            | "regclass"
            | "regcollation"
            | "regconfig"
            | "regdictionary"
            | "regnamespace"
            | "regoper"
            | "regoperator"
            | "regproc"
            | "regprocedure"
            | "regrole"
            | "regtype"
            | "time"
            | "timestamp"
            | "timestamptz"
            | "timetz"
            | "tsquery"
            | "tsvector"
            | "uuid"
            | "varbit"
            | "xid8"
            | "xml"
    )
}

/// True when `e` is surely an integer (a number, a length, a position, or
/// arithmetic on one): the positional form of `substring`. Anything else
/// may be a pattern.
fn is_integer_like(e: &Expr) -> bool {
    use BinaryOperator as B;
    match e {
        Expr::Value(v) => matches!(v.value, Value::Number(..)),
        Expr::Nested(x)
        | Expr::UnaryOp {
            op: UnaryOperator::Plus | UnaryOperator::Minus,
            expr: x,
        } => is_integer_like(x),
        Expr::BinaryOp {
            left,
            op: B::Plus | B::Minus | B::Multiply | B::Divide | B::Modulo,
            right,
        } => is_integer_like(left) || is_integer_like(right),
        Expr::Position { .. } => true,
        Expr::Cast { data_type, .. } => matches!(
            data_type,
            DataType::Int(_)
                | DataType::Int2(_)
                | DataType::Int4(_)
                | DataType::Int8(_)
                | DataType::Integer(_)
                | DataType::SmallInt(_)
                | DataType::BigInt(_)
        ),
        Expr::Function(f) => object_parts(&f.name).pop().is_some_and(|n| {
            matches!(
                n.as_str(),
                "array_length"
                    | "ascii"
                    | "bit_length"
                    | "cardinality"
                    | "char_length"
                    | "character_length"
                    | "length"
                    | "octet_length"
                    | "strpos"
            )
        }),
        _ => false,
    }
}
