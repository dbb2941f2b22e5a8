//! The lineage facts masking relies on: output columns, predicate columns
//! and written sources (issue 5).

use std::collections::BTreeSet;

use super::*;

fn profile(sql: &str) -> Arc<StatementProfile> {
    let path = vec!["public".to_owned()];
    let catalog = FunctionCatalog::builtin_only();
    let ctx = AnalyzeContext::new(&path, &catalog);
    let a = analyze(sql, &ctx);
    assert!(
        !a.combined.has(Flag::Unparsed),
        "{sql}: {:?}",
        a.combined.error
    );
    a.combined
}

fn col(table: &str, column: &str) -> ColumnSource {
    ColumnSource::Column(ColumnRef {
        table: TableName::new("public", table),
        column: column.to_owned(),
    })
}

fn whole(table: &str) -> ColumnSource {
    ColumnSource::WholeRow(TableName::new("public", table))
}

fn set<const N: usize>(sources: [ColumnSource; N]) -> BTreeSet<ColumnSource> {
    sources.into()
}

/// Each output column's name, wildcard flag and sources.
fn columns(sql: &str) -> Vec<(String, bool, BTreeSet<ColumnSource>)> {
    profile(sql)
        .columns
        .iter()
        .map(|c| (c.name.clone(), c.wildcard, c.sources.clone()))
        .collect()
}

/// The only output column's sources.
fn only_column(sql: &str) -> BTreeSet<ColumnSource> {
    let cols = columns(sql);
    assert_eq!(cols.len(), 1, "{sql}: {cols:?}");
    cols.into_iter().next().map(|c| c.2).unwrap_or_default()
}

fn named(name: &str, sources: BTreeSet<ColumnSource>) -> (String, bool, BTreeSet<ColumnSource>) {
    (name.to_owned(), false, sources)
}

fn wildcard(sources: BTreeSet<ColumnSource>) -> (String, bool, BTreeSet<ColumnSource>) {
    ("*".to_owned(), true, sources)
}

#[test]
fn computed_outputs_derive_from_their_inputs() {
    let ssn = col("people", "ssn");
    for sql in [
        "SELECT upper(ssn) FROM people",
        "SELECT ssn || '' FROM people",
        "SELECT substr(ssn, 1, 3) FROM people",
        "SELECT string_agg(ssn, ',') FROM people",
        "SELECT array_agg(ssn) FROM people",
        "SELECT CASE WHEN ssn LIKE '1%' THEN 1 END FROM people",
        "SELECT count(*) FILTER (WHERE ssn LIKE '1%') FROM people",
        "SELECT (coalesce(ssn, 'x') COLLATE \"C\")::text FROM people",
    ] {
        assert!(only_column(sql).contains(&ssn), "{sql}");
    }
    for sql in [
        "SELECT row_to_json(p) FROM people p",
        "SELECT to_jsonb(p.*) FROM people p",
        "SELECT json_agg(p) FROM people p",
        "SELECT p FROM people p",
    ] {
        assert!(only_column(sql).contains(&whole("people")), "{sql}");
    }
}

#[test]
fn lineage_through_ctes_subqueries_and_lateral() {
    let ssn = set([col("people", "ssn")]);
    for sql in [
        "WITH x AS (SELECT ssn s FROM people) SELECT s FROM x",
        "SELECT a FROM (SELECT b AS a FROM (SELECT ssn AS b FROM people) y) z",
        "SELECT z.a FROM (SELECT y.b AS a FROM (SELECT ssn AS b FROM people) y) z",
        "SELECT l.x FROM people p, LATERAL (SELECT p.ssn AS x) l",
        "SELECT (SELECT ssn FROM people LIMIT 1) AS s",
        // PostgreSQL names these columns `ssn`, and so does pgward.
        "SELECT ssn FROM (SELECT (SELECT ssn FROM people LIMIT 1)) x",
        "SELECT ssn FROM (SELECT CASE WHEN true THEN '' ELSE ssn END FROM people) x",
        "SELECT ssn FROM (SELECT ssn::text FROM people) x",
    ] {
        assert_eq!(only_column(sql), ssn, "{sql}");
    }
    // A column pgward cannot name may be whatever an outer query calls it.
    for sql in [
        "SELECT substring FROM (SELECT substring(ssn from 1 for 3) FROM people) x",
        "SELECT x.text FROM (SELECT (ssn || '')::text FROM people) x",
        "SELECT x.case FROM (SELECT CASE WHEN true THEN ssn END::varchar FROM people) x",
    ] {
        assert!(only_column(sql).contains(&col("people", "ssn")), "{sql}");
    }
    // A function's columns are not the table's, even when it reads the whole row.
    assert_eq!(
        only_column("SELECT j.value FROM people p, LATERAL jsonb_each_text(to_jsonb(p)) j"),
        set([col("people", "p"), whole("people")])
    );
    assert!(
        only_column("SELECT x FROM people p, LATERAL unnest(ARRAY[p.ssn]) AS x")
            .contains(&col("people", "ssn"))
    );
}

#[test]
fn set_operations_line_up_by_position() {
    assert_eq!(
        columns(
            "SELECT id, ssn FROM people UNION SELECT name, id FROM other \
             EXCEPT SELECT 1, card FROM third"
        ),
        [
            named("id", set([col("people", "id"), col("other", "name")])),
            named(
                "ssn",
                set([
                    col("people", "ssn"),
                    col("other", "id"),
                    col("third", "card")
                ])
            ),
        ]
    );
    assert_eq!(
        columns("SELECT ssn FROM people INTERSECT SELECT name FROM other"),
        [named(
            "ssn",
            set([col("people", "ssn"), col("other", "name")])
        )]
    );
    // With a `*` on one side the positions are unknown: a name in the
    // result may be any column of either side, never narrowed.
    assert_eq!(
        only_column(
            "SELECT x.ssn FROM (SELECT 1 AS pad, * FROM people UNION ALL SELECT * FROM people) x"
        ),
        set([whole("people")])
    );
}

#[test]
fn wildcards_tables_values_and_copy() {
    assert_eq!(
        columns("SELECT * FROM people p JOIN orders o ON o.pid = p.id"),
        [
            wildcard(set([whole("people")])),
            wildcard(set([whole("orders")]))
        ]
    );
    assert_eq!(
        columns("SELECT * FROM (people p JOIN orders o ON p.id = o.pid) AS j"),
        [
            wildcard(set([whole("people")])),
            wildcard(set([whole("orders")]))
        ]
    );
    assert_eq!(columns("TABLE people"), [wildcard(set([whole("people")]))]);
    assert_eq!(
        columns("VALUES (1, 'a'), ((SELECT ssn FROM people LIMIT 1), 'b')"),
        [
            named("column1", set([col("people", "ssn")])),
            named("column2", BTreeSet::new()),
        ]
    );
    assert_eq!(
        columns("COPY (SELECT upper(ssn) AS u FROM people) TO STDOUT"),
        [named("u", set([col("people", "ssn")]))]
    );
    assert_eq!(
        columns("COPY people (ssn, name) TO STDOUT"),
        [
            named("ssn", set([col("people", "ssn")])),
            named("name", set([col("people", "name")])),
        ]
    );
    assert_eq!(
        columns("COPY people TO STDOUT"),
        [wildcard(set([whole("people")]))]
    );
}

#[test]
fn returning_lists_once_and_sees_what_was_stored() {
    // Once, not once more for EXCLUDED; and the row now holds ssn.
    assert_eq!(
        columns("INSERT INTO t SELECT ssn FROM people RETURNING *"),
        [wildcard(set([whole("t"), col("people", "ssn")]))]
    );
    assert_eq!(
        columns("INSERT INTO t (a) VALUES (1) ON CONFLICT (a) DO UPDATE SET b = 2 RETURNING *"),
        [wildcard(set([whole("t")]))]
    );
    assert_eq!(
        columns("INSERT INTO t (a, b) SELECT ssn, name FROM people RETURNING a, b"),
        [
            named("a", set([col("t", "a"), col("people", "ssn")])),
            named("b", set([col("t", "b"), col("people", "name")])),
        ]
    );
    assert_eq!(
        columns("UPDATE people SET name = ssn RETURNING name, old.ssn"),
        [
            named("name", set([col("people", "name"), col("people", "ssn")])),
            named("ssn", set([col("people", "ssn")])),
        ]
    );
    assert_eq!(
        columns("UPDATE t SET a = u.x FROM u RETURNING *"),
        [
            wildcard(set([whole("t"), col("u", "x")])),
            wildcard(set([whole("u")])),
        ]
    );
    assert_eq!(
        columns("DELETE FROM t WHERE a = 1 RETURNING *"),
        [wildcard(set([whole("t")]))]
    );
    assert_eq!(
        columns("WITH u AS (UPDATE people SET name = ssn RETURNING name) SELECT * FROM u"),
        [named(
            "name",
            set([col("people", "name"), col("people", "ssn")])
        )]
    );
}

#[test]
fn predicates_cover_everything_that_steers_a_result() {
    let ssn = col("people", "ssn");
    for sql in [
        "SELECT id FROM people WHERE ssn LIKE '1%'",
        "SELECT o.id FROM orders o JOIN people p ON p.ssn = o.ref",
        "SELECT 1 FROM orders JOIN people USING (ssn)",
        "SELECT count(*) FROM people GROUP BY ssn",
        "SELECT count(*) FROM people GROUP BY 1 HAVING max(ssn) > '5'",
        "SELECT id FROM people ORDER BY ssn",
        "SELECT upper(ssn) AS u, id FROM people ORDER BY u",
        "SELECT DISTINCT ON (ssn) id FROM people",
        "SELECT DISTINCT ssn FROM people",
        "SELECT rank() OVER (PARTITION BY ssn) FROM people",
        "SELECT rank() OVER (ORDER BY ssn) FROM people",
        "SELECT sum(id) OVER w FROM people WINDOW w AS (PARTITION BY ssn)",
        "SELECT id FROM people LIMIT (SELECT count(*) FROM people WHERE ssn > '5')",
        "SELECT id FROM people OFFSET (SELECT length(max(ssn)) FROM people)",
        "SELECT id FROM orders LIMIT (SELECT length(max(ssn)) FROM people)",
        "SELECT CASE WHEN ssn LIKE '1%' THEN 1 END FROM people",
        "SELECT CASE ssn WHEN '1' THEN 1 END FROM people",
        "SELECT count(*) FILTER (WHERE ssn LIKE '1%') FROM people",
        "SELECT string_agg(name, ',' ORDER BY ssn) FROM people",
        "SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY ssn) FROM people",
        "SELECT 1 FROM orders o WHERE EXISTS (SELECT 1 FROM people p WHERE p.ssn = o.ref)",
        "SELECT 1 FROM orders WHERE ref IN (SELECT ssn FROM people)",
        "SELECT 1 FROM orders WHERE (SELECT max(ssn) FROM people) > ref",
        "SELECT ref FROM orders GROUP BY ref HAVING ref IN (SELECT ssn FROM people)",
        "WITH x AS (SELECT id FROM people WHERE ssn = '1') SELECT id FROM x",
        "SELECT ssn FROM people UNION SELECT '123-45-6789'",
        "SELECT ssn FROM people INTERSECT SELECT '123-45-6789'",
        "SELECT '123-45-6789' EXCEPT ALL SELECT ssn FROM people",
        "SELECT 1 FROM people p, generate_series(1, length(p.ssn))",
        "UPDATE people SET name = 'x' WHERE ssn LIKE '1%'",
        "DELETE FROM people WHERE ssn LIKE '1%'",
        "DELETE FROM orders USING people WHERE people.ssn = orders.ref",
        "INSERT INTO people (ssn) VALUES ('1') ON CONFLICT (ssn) DO NOTHING",
        "MERGE INTO orders o USING people p ON p.ssn = o.ref WHEN MATCHED THEN DELETE",
        "EXECUTE q((SELECT ssn FROM people LIMIT 1))",
    ] {
        let p = profile(sql);
        assert!(
            p.predicate_columns.contains(&ssn),
            "{sql}: {:?}",
            p.predicate_columns
        );
    }
    // Only output: nothing steers.
    for sql in [
        "SELECT ssn FROM people",
        "SELECT upper(ssn), row_to_json(p) FROM people p",
        "SELECT ssn FROM people UNION ALL SELECT name FROM other",
        "SELECT lag(ssn) OVER (ORDER BY id) FROM people",
        "INSERT INTO t SELECT ssn FROM people",
    ] {
        let p = profile(sql);
        assert!(
            !p.predicate_columns.contains(&ssn),
            "{sql}: {:?}",
            p.predicate_columns
        );
    }
}

#[test]
fn written_sources_are_what_a_statement_stores() {
    let ssn = set([col("people", "ssn")]);
    for sql in [
        "INSERT INTO t SELECT ssn FROM people",
        "INSERT INTO t (a) SELECT upper(ssn) FROM people WHERE id = 1",
        "INSERT INTO t VALUES ((SELECT ssn FROM people LIMIT 1), 'x')",
        "INSERT INTO t (a) VALUES (1) ON CONFLICT (a) DO UPDATE SET b = (SELECT max(p.ssn) FROM people p)",
        "UPDATE t SET a = p.ssn FROM people p WHERE p.id = t.id",
        "UPDATE t SET (a, b) = (SELECT p.ssn, 'x' FROM people p LIMIT 1)",
        "UPDATE people SET name = CASE WHEN ssn LIKE '1%' THEN 'a' END",
        "CREATE TABLE x AS SELECT ssn FROM people",
        "SELECT ssn INTO x FROM people",
        "SELECT ssn INTO x FROM people UNION SELECT ssn FROM people",
        "CREATE MATERIALIZED VIEW mv AS SELECT lower(ssn) FROM people",
        "CREATE VIEW v AS SELECT ssn FROM people",
        "MERGE INTO t USING people p ON t.id = p.id WHEN MATCHED THEN UPDATE SET a = p.ssn",
        "MERGE INTO t USING people p ON t.id = p.id \
         WHEN NOT MATCHED THEN INSERT (id, a) VALUES (1, p.ssn)",
        "WITH d AS (INSERT INTO t SELECT ssn FROM people RETURNING 1) SELECT count(*) FROM d",
        "EXPLAIN ANALYZE INSERT INTO t SELECT ssn FROM people",
        "COPY (SELECT ssn FROM people) TO 'export.csv'",
        "SELECT pg_notify('c', ssn) FROM people",
        "SELECT set_config('app.x', ssn, false) FROM people",
        "SELECT lo_from_bytea(0, ssn::bytea) FROM people",
        "SELECT my_function(ssn) FROM people",
        "SELECT 1 FROM people WHERE my_function(ssn)",
        "SELECT * FROM people p, my_table_function(p.ssn)",
        "CALL my_procedure((SELECT ssn FROM people LIMIT 1))",
        "EXECUTE q((SELECT ssn FROM people LIMIT 1))",
    ] {
        let p = profile(sql);
        assert_eq!(p.written_sources, ssn, "{sql}");
    }
    // Nothing is copied.
    for sql in [
        "SELECT ssn FROM people",
        "SELECT upper(ssn) FROM people WHERE ssn LIKE '1%'",
        "COPY people TO STDOUT",
        "COPY (SELECT ssn FROM people) TO STDOUT",
        "COPY t FROM STDIN",
        "DELETE FROM people WHERE ssn = '1' RETURNING ssn",
        "UPDATE t SET a = 1 WHERE b = 2",
        "INSERT INTO t DEFAULT VALUES",
        "EXPLAIN INSERT INTO t SELECT ssn FROM people",
        "CREATE TABLE x (LIKE people)",
    ] {
        let p = profile(sql);
        assert!(
            p.written_sources.is_empty(),
            "{sql}: {:?}",
            p.written_sources
        );
    }
    // Whole rows where the columns cannot be pinned down.
    for (sql, want) in [
        ("INSERT INTO t SELECT * FROM people", set([whole("people")])),
        ("CREATE TABLE x AS TABLE people", set([whole("people")])),
        ("COPY people TO PROGRAM 'cat'", set([whole("people")])),
        (
            "INSERT INTO t SELECT to_jsonb(p) FROM people p",
            set([whole("people"), col("people", "p")]),
        ),
        (
            "MERGE INTO t USING people p ON t.id = p.id WHEN NOT MATCHED THEN INSERT VALUES (p.*)",
            set([whole("people")]),
        ),
        (
            "ALTER TABLE people RENAME COLUMN ssn TO x",
            set([whole("people")]),
        ),
        ("ALTER TABLE people RENAME TO folks", set([whole("people")])),
    ] {
        assert_eq!(profile(sql).written_sources, want, "{sql}");
    }
}

#[test]
fn written_sources_survive_combination_and_execute() {
    let ssn = col("people", "ssn");
    let p = profile("SELECT 1; INSERT INTO t SELECT ssn FROM people");
    assert!(p.written_sources.contains(&ssn));

    let prepared = profile("PREPARE q AS SELECT $1 AS v");
    let execute = profile("EXECUTE q((SELECT ssn FROM people LIMIT 1))");
    let resolved = execute.resolve_execute(prepared.prepares.as_ref().map(|p| &*p.profile));
    assert_eq!(resolved.columns.len(), 1);
    assert!(resolved.columns[0].sources.contains(&ssn));
    assert!(resolved.written_sources.contains(&ssn));
    assert!(resolved.predicate_columns.contains(&ssn));
}

#[test]
fn written_sources_in_json_and_text() {
    let p = profile("INSERT INTO t SELECT ssn FROM people");
    let v: serde_json::Value = serde_json::to_value(&*p).unwrap_or_default();
    assert_eq!(
        v["written_sources"],
        serde_json::json!([{"column": "public.people.ssn"}])
    );
    assert!(explain::render_text(&p).contains("copies:         public.people.ssn"));
}

/// Asserts that each statement does (`want`) or does not report `source`
/// as a predicate column.
fn assert_predicate(want: bool, source: &ColumnSource, statements: &[&str]) {
    for sql in statements {
        let p = profile(sql);
        assert_eq!(
            p.predicate_columns.contains(source),
            want,
            "{sql}: {:?}",
            p.predicate_columns
        );
    }
}

#[test]
fn output_comparisons_are_predicates() {
    let ssn = col("people", "ssn");
    assert_predicate(
        true,
        &ssn,
        &[
            "SELECT ssn = '123' FROM people",
            "SELECT '123' <> ssn FROM people",
            "SELECT name, (ssn < '5'), (ssn >= '1') FROM people",
            "SELECT upper(ssn) > 'A' FROM people",
            "SELECT ssn LIKE '1%', ssn NOT ILIKE '1%' FROM people",
            "SELECT ssn SIMILAR TO '1%' FROM people",
            "SELECT ssn ~ '^1', ssn ~* '^1', ssn !~ '^1', ssn !~* '^1' FROM people",
            "SELECT ssn ~~ '1%' FROM people",
            "SELECT ssn ^@ '1' FROM people",
            "SELECT ssn IN ('1', '2') FROM people",
            "SELECT ssn IN (SELECT '1') FROM people",
            "SELECT 'x' IN (SELECT ssn FROM people)",
            "SELECT (SELECT ssn FROM people LIMIT 1) = 'x'",
            "SELECT ssn BETWEEN '1' AND '2' FROM people",
            "SELECT ssn IS DISTINCT FROM '1', ssn IS NOT DISTINCT FROM '2' FROM people",
            "SELECT ssn = ANY (ARRAY['1', '2']) FROM people",
            "SELECT ssn <> ALL (ARRAY['1', '2']) FROM people",
            "SELECT ARRAY[ssn] @> ARRAY['1'] FROM people",
            "SELECT ssn OPERATOR(pg_catalog.=) '1' FROM people",
            "SELECT 1 / (ssn = '123')::int FROM people",
            "SELECT nullif(ssn, 'x') FROM people",
            "SELECT nullif('x', ssn) FROM people",
            "SELECT greatest(ssn, '5'), least(ssn, '5') FROM people",
            "SELECT position('1' IN ssn) FROM people",
            "SELECT strpos(ssn, '1'), starts_with(ssn, '1') FROM people",
            "SELECT regexp_like(ssn, '^1'), regexp_count(ssn, '1') FROM people",
            "SELECT regexp_match(ssn, '^1'), regexp_instr(ssn, '1') FROM people",
            "SELECT regexp_substr(ssn, '^1') FROM people",
            "SELECT array_position(ARRAY['1'], ssn) FROM people",
            "SELECT pg_input_is_valid(ssn, 'int') FROM people",
            "SELECT substring(ssn from '^1') FROM people",
            "SELECT substring(ssn, '^1') FROM people",
            // An ascii or a length is a masked output, until it is compared.
            "SELECT ascii(ssn) = 49 FROM people",
            "SELECT length(ssn) > 10 FROM people",
        ],
    );
    // Both operands count.
    let p = profile("SELECT name = ssn FROM people");
    assert!(p.predicate_columns.contains(&col("people", "name")));
    assert!(p.predicate_columns.contains(&ssn));
    // Comparisons on other columns, and values that compare nothing.
    assert_predicate(
        false,
        &ssn,
        &[
            "SELECT CASE WHEN id = 1 THEN ssn END FROM people",
            "SELECT CASE WHEN id = 1 THEN ssn ELSE email END FROM people",
            "SELECT ssn, id = 1, id IN (1, 2), name LIKE 'a%' FROM people",
            "SELECT nullif(name, 'x'), greatest(id, 2), ssn FROM people",
            "SELECT coalesce(ssn, 'x') FROM people",
            "SELECT substring(ssn from 1 for 3), substring(ssn, 1, 3) FROM people",
            "SELECT substring(ssn from length(ssn) - 3) FROM people",
            "SELECT ssn IS NULL FROM people",
        ],
    );
}

#[test]
fn casts_that_may_fail_are_predicates() {
    let ssn = col("people", "ssn");
    assert_predicate(
        true,
        &ssn,
        &[
            "SELECT ssn::int FROM people",
            "SELECT CAST(ssn AS uuid) FROM people",
            "SELECT ssn::regclass FROM people",
            "SELECT ssn::date, ssn::timestamptz FROM people",
            "SELECT ssn::json FROM people",
            "SELECT ssn::jsonb FROM people",
            "SELECT ssn::numeric(10, 2) FROM people",
            "SELECT ssn::boolean FROM people",
            "SELECT ssn::bytea FROM people",
            "SELECT ssn::text[] FROM people",
            "SELECT ssn::my_domain FROM people",
            "SELECT (ssn || '')::text::int FROM people",
            "SELECT upper(ssn)::inet FROM people",
            "SELECT int4(ssn), date(ssn) FROM people",
            "SELECT to_number(ssn, '999') FROM people",
            "SELECT to_date(ssn, 'YYYY') FROM people",
            "SELECT to_timestamp(ssn, 'YYYY') FROM people",
            "SELECT to_regclass(ssn) FROM people",
            "SELECT now() AT TIME ZONE ssn FROM people",
        ],
    );
    assert_predicate(
        false,
        &ssn,
        &[
            "SELECT ssn::text, ssn::varchar, ssn::varchar(100) FROM people",
            "SELECT ssn::char(20), ssn::character(3), ssn::bpchar FROM people",
            "SELECT ssn::character varying, ssn::name, ssn::citext FROM people",
            "SELECT ssn::pg_catalog.text, ssn::pg_catalog.varchar FROM people",
            "SELECT CAST(ssn AS text), CAST(ssn AS varchar(5)) FROM people",
            "SELECT (ssn || '')::text, ssn::text::varchar FROM people",
            "SELECT text(ssn), varchar(ssn) FROM people",
            "SELECT ROW(p.*)::text, p::text FROM people p",
            "SELECT id::int, ssn FROM people",
            "SELECT to_char(id, '999'), ssn FROM people",
        ],
    );
}

#[test]
fn divisors_and_domain_errors_are_predicates() {
    let ssn = col("people", "ssn");
    assert_predicate(
        true,
        &ssn,
        &[
            "SELECT 1 / length(ssn) FROM people",
            "SELECT 10 % ascii(ssn) FROM people",
            "SELECT 100 / (ascii(ssn) - 49) FROM people",
            "SELECT div(10, ascii(ssn)), mod(10, length(ssn)) FROM people",
            "SELECT 1.0 / (SELECT ascii(ssn) FROM people WHERE id = 1)",
            "SELECT sqrt(ascii(ssn) - 50), ln(ascii(ssn) - 49) FROM people",
            "SELECT |/ (ascii(ssn) - 50) FROM people",
            "SELECT 0 ^ (ascii(ssn) - 50) FROM people",
            "SELECT chr(ascii(ssn) - 49) FROM people",
            "SELECT format(ssn) FROM people",
            // NULL when the key or index misses.
            "SELECT (ARRAY['a'])[ascii(ssn) - 48] FROM people",
            "SELECT (ARRAY['a', 'b'])[1:ascii(ssn) - 48] FROM people",
            "SELECT '{\"1\": 1}'::jsonb -> ssn FROM people",
            "SELECT jsonb_extract_path('{}'::jsonb, ssn) FROM people",
        ],
    );
    // The dividend, and arithmetic that cannot fail on a value, are outputs.
    assert_predicate(
        false,
        &ssn,
        &[
            "SELECT length(ssn) / 2, ascii(ssn) % 10 FROM people",
            "SELECT div(length(ssn), 2), mod(ascii(ssn), 10) FROM people",
            "SELECT ascii(ssn) + 0, length(ssn) * 2 FROM people",
            "SELECT ascii(ssn), length(ssn), char_length(ssn) FROM people",
            "SELECT octet_length(ssn), bit_length(ssn) FROM people",
            "SELECT length(ssn) / id FROM people",
            "SELECT format('%s/%s', ssn, email) FROM people",
            "SELECT to_jsonb(p) ->> 'ssn', to_jsonb(p) -> 'email' FROM people p",
            "SELECT (string_to_array(ssn, '-'))[1] FROM people",
        ],
    );
}

#[test]
fn set_returning_arguments_are_predicates() {
    let ssn = col("people", "ssn");
    assert_predicate(
        true,
        &ssn,
        &[
            "SELECT generate_series(1, (SELECT ascii(ssn) FROM people WHERE id = 1))",
            "SELECT generate_series(1, ascii(ssn)) FROM people",
            "SELECT unnest(ARRAY[ssn]) FROM people",
            "SELECT unnest(string_to_array(ssn, '-')) FROM people",
            "SELECT regexp_split_to_table(ssn, '-') FROM people",
            "SELECT regexp_matches(ssn, '\\d', 'g') FROM people",
            "SELECT string_to_table(ssn, '-') FROM people",
            "SELECT jsonb_array_elements(to_jsonb(ARRAY[ssn])) FROM people",
            "SELECT jsonb_array_elements_text(to_jsonb(ARRAY[ssn])) FROM people",
            "SELECT json_array_elements(to_json(ARRAY[ssn])) FROM people",
            "SELECT json_array_elements_text(to_json(ARRAY[ssn])) FROM people",
            "SELECT jsonb_each(jsonb_build_object(ssn, 1)) FROM people",
            "SELECT jsonb_each_text(jsonb_build_object('k', ssn)) FROM people",
            "SELECT json_each(json_build_object(ssn, 1)) FROM people",
            "SELECT json_each_text(json_build_object(ssn, 1)) FROM people",
            "SELECT jsonb_object_keys(jsonb_build_object(ssn, 1)) FROM people",
            "SELECT json_object_keys(json_build_object(ssn, 1)) FROM people",
            "SELECT generate_subscripts(string_to_array(ssn, '-'), 1) FROM people",
            "SELECT upper(unnest(ARRAY[ssn])) FROM people",
            // FROM, as before.
            "SELECT * FROM people p, unnest(ARRAY[p.ssn])",
            "SELECT * FROM people p, LATERAL regexp_split_to_table(p.ssn, '-')",
        ],
    );
    // Arrays and aggregates are one value: a masked output.
    assert_predicate(
        false,
        &ssn,
        &[
            "SELECT string_to_array(ssn, '-'), regexp_split_to_array(ssn, '-') FROM people",
            "SELECT ARRAY[ssn], array_agg(ssn), json_agg(ssn) FROM people",
            "SELECT generate_series(1, id), ssn FROM people",
            "SELECT unnest(ARRAY[name]), ssn FROM people",
        ],
    );
}

#[test]
fn distinct_aggregates_are_predicates() {
    let ssn = col("people", "ssn");
    assert_predicate(
        true,
        &ssn,
        &[
            "SELECT count(DISTINCT ssn) FROM people",
            "SELECT string_agg(DISTINCT ssn, ',') FROM people",
            "SELECT array_agg(DISTINCT upper(ssn)) FROM people",
            "SELECT count(DISTINCT (id, ssn)) FROM people",
        ],
    );
    assert!(
        profile("SELECT count(DISTINCT p) FROM people p")
            .predicate_columns
            .contains(&whole("people"))
    );
    assert_predicate(
        false,
        &ssn,
        &[
            "SELECT count(ssn), string_agg(ssn, ','), array_agg(ssn) FROM people",
            "SELECT count(DISTINCT id), max(ssn) FROM people",
            "SELECT count(ALL ssn) FROM people",
        ],
    );
}

#[test]
fn oracles_count_wherever_they_are() {
    let ssn = col("people", "ssn");
    assert_predicate(
        true,
        &ssn,
        &[
            "DELETE FROM people WHERE id = 1 RETURNING ssn::int",
            "UPDATE people SET name = 'x' WHERE id = 1 RETURNING nullif(ssn, '1')",
            "INSERT INTO t (a) VALUES (1) RETURNING (SELECT ssn::int FROM people LIMIT 1)",
            "VALUES ((SELECT ssn::int FROM people LIMIT 1))",
            "SELECT upper(lower(nullif(ssn, '1'))) FROM people",
            "SELECT coalesce(ssn::int, 0) FROM people",
            "SELECT (SELECT (SELECT 1 / length(p.ssn)) FROM people p LIMIT 1)",
            "SELECT x FROM (SELECT ssn::int AS x FROM people) s",
            "WITH c AS (SELECT ssn ~ '^1' AS m FROM people) SELECT 1 FROM c",
            "SELECT l.x FROM people p, LATERAL (SELECT p.ssn::int AS x) l",
            "SELECT CASE WHEN id = 1 THEN ssn::int END FROM people",
            "SELECT sum(length(ssn) / length(ssn)) FROM people",
            "SELECT 1 FROM people GROUP BY id HAVING count(DISTINCT ssn) > 0",
            "UPDATE people SET name = (ssn = '1')::text",
        ],
    );
}

#[test]
fn plain_outputs_are_not_predicates() {
    assert_predicate(
        false,
        &col("people", "ssn"),
        &[
            "SELECT upper(ssn) FROM people",
            "SELECT substr(ssn, 1, 3) FROM people",
            "SELECT ssn || '' FROM people",
            "SELECT length(ssn) FROM people",
            "SELECT md5(ssn) FROM people",
            "SELECT string_agg(ssn, ',') FROM people",
            "SELECT coalesce(ssn, 'x') FROM people",
            "SELECT CASE WHEN id = 1 THEN ssn END FROM people",
            "SELECT replace(ssn, '-', ''), reverse(ssn), left(ssn, 6) FROM people",
            "SELECT to_json(ssn), ARRAY[ssn, phone], row(ssn, name) FROM people",
            "SELECT encode(convert_to(ssn, 'UTF8'), 'base64') FROM people",
            "SELECT min(ssn), max(ssn) FROM people",
            "DELETE FROM people WHERE id = 1 RETURNING upper(ssn)",
        ],
    );
    assert_predicate(
        false,
        &whole("people"),
        &["SELECT row_to_json(p), to_jsonb(p) FROM people p"],
    );
}
