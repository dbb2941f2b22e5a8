//! Unit tests of the analyzer: classes, tables, lineage, bad input.

use std::sync::Arc;

use super::*;

fn ctx_with<R>(f: impl FnOnce(&AnalyzeContext<'_>) -> R) -> R {
    let path = vec!["public".to_owned()];
    let catalog = FunctionCatalog::builtin_only();
    let ctx = AnalyzeContext::new(&path, &catalog);
    f(&ctx)
}

fn run(sql: &str) -> Analysis {
    ctx_with(|ctx| analyze(sql, ctx))
}

fn class(sql: &str) -> StatementClass {
    run(sql).combined.class
}

/// Runs `f` on a thread with the default 2 MiB stack, like a tokio worker.
fn on_small_stack<F: FnOnce() + Send + 'static>(f: F) {
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(f)
        .unwrap()
        .join()
        .unwrap();
}

#[test]
fn deep_parentheses_do_not_overflow() {
    on_small_stack(|| {
        let n = 100_000;
        let sql = format!("SELECT {}1{}", "(".repeat(n), ")".repeat(n));
        let a = run(&sql);
        assert_eq!(a.combined.class, StatementClass::Unknown);
        assert!(a.combined.has(Flag::Unparsed));
    });
}

#[test]
fn deep_subqueries_and_long_chains_do_not_overflow() {
    on_small_stack(|| {
        let n = 10_000;
        let sql = format!("SELECT {}1{}", "(SELECT ".repeat(n), ")".repeat(n));
        assert_eq!(class(&sql), StatementClass::Unknown);
        // Up to the limit, long chains are analyzed; beyond it they are unknown.
        let ors: Vec<String> = (0..MAX_OPERATOR_CHAIN / 4)
            .map(|i| format!("a = {i}"))
            .collect();
        let sql = format!("SELECT * FROM t WHERE {}", ors.join(" OR "));
        let a = run(&sql);
        assert_eq!(
            a.combined.class,
            StatementClass::Read,
            "{:?}",
            a.combined.error
        );
        let ors: Vec<String> = (0..100_000).map(|i| format!("a = {i}")).collect();
        let sql = format!("SELECT * FROM t WHERE {}", ors.join(" OR "));
        assert_eq!(class(&sql), StatementClass::Unknown);
        let sql = format!("SELECT {}", vec!["1"; 200_000].join(" + "));
        assert_eq!(class(&sql), StatementClass::Unknown);
        let sql = format!(
            "SELECT 1; SELECT {}",
            vec!["1"; MAX_OPERATOR_CHAIN - 1].join(" || ")
        );
        assert_eq!(class(&sql), StatementClass::Read);
    });
}

#[test]
fn megabyte_statement() {
    let rows: Vec<String> = (0..40_000)
        .map(|i| format!("({i}, 'name {i}', now())"))
        .collect();
    let sql = format!("INSERT INTO big (id, name, at) VALUES {}", rows.join(", "));
    assert!(sql.len() > 1_000_000);
    let a = run(&sql);
    assert_eq!(a.combined.class, StatementClass::Write);
    let sql = format!("SELECT '{}'", "x".repeat(2_000_000));
    assert_eq!(class(&sql), StatementClass::Read);
}

#[test]
fn too_long_is_unknown() {
    let sql = format!("SELECT '{}'", "x".repeat(MAX_SQL_BYTES));
    let a = run(&sql);
    assert_eq!(a.combined.class, StatementClass::Unknown);
    assert!(a.combined.has(Flag::Unparsed));
}

#[test]
fn invalid_utf8_and_nul_are_unknown() {
    ctx_with(|ctx| {
        for bytes in [
            &b"SELECT '\xff'"[..],
            b"\xc3",
            b"SELECT 1\0; DROP TABLE t",
            b"\0",
        ] {
            let a = analyze_bytes(bytes, ctx);
            assert_eq!(a.combined.class, StatementClass::Unknown, "{bytes:?}");
            assert!(a.combined.has(Flag::Unparsed));
        }
        assert_eq!(
            analyze_bytes(b"SELECT 1", ctx).combined.class,
            StatementClass::Read
        );
    });
}

#[test]
fn garbage_never_panics() {
    let samples = [
        "",
        ";",
        ";;;",
        "(",
        ")",
        "'",
        "\"",
        "$$",
        "$a$",
        "/*",
        "--",
        "E'\\",
        "U&'",
        "SELECT",
        "SELECT (",
        "SELECT * FROM",
        "WITH",
        "WITH x AS (",
        "EXPLAIN",
        "EXPLAIN ANALYZE",
        "PREPARE",
        "EXECUTE",
        "\u{feff}SELECT 1",
        "SELECT 'é' FROM «t»",
        "SELECT $1$",
        "CREATE",
        "ALTER",
        "DROP",
        "TABLE",
        "SELECT 1 FOR NO KEY",
        "TABLE ;",
        "COPY",
        "SET",
        "RESET",
        "DO",
        "\t\r\n",
    ];
    for s in samples {
        let a = run(s);
        if a.combined.has(Flag::Unparsed) {
            assert_eq!(a.combined.class, StatementClass::Unknown, "{s:?}");
        }
    }
}

#[test]
fn empty_text() {
    let a = run("  -- nothing\n /* at all */ ; ");
    assert!(a.statements.is_empty());
    assert!(a.combined.has(Flag::Empty));
    assert_eq!(a.combined.class, StatementClass::Session);
}

#[test]
fn whole_tree_is_walked() {
    use StatementClass::*;
    let cases = [
        (
            "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d",
            Write,
        ),
        ("SELECT * FROM t FOR UPDATE", Write),
        (
            "SELECT * FROM t WHERE id IN (SELECT id FROM u FOR SHARE)",
            Write,
        ),
        ("SELECT set_config('role', 'admin', false)", Privilege),
        ("SELECT nextval('s')", Write),
        ("SELECT (SELECT setval('s', 1))", Write),
        ("EXPLAIN ANALYZE DELETE FROM t", Write),
        ("EXPLAIN DELETE FROM t", Read),
        ("EXPLAIN (ANALYZE off) DELETE FROM t", Read),
        ("EXPLAIN (ANALYZE true, BUFFERS) DELETE FROM t", Write),
        ("EXPLAIN SELECT pg_terminate_backend(1)", Read),
        ("SELECT * INTO t2 FROM t", Ddl),
        (
            "SELECT 1 FROM t WHERE EXISTS (SELECT pg_read_file('x'))",
            Admin,
        ),
        (
            "SELECT * FROM t ORDER BY (SELECT lo_import('/etc/passwd'))",
            Admin,
        ),
        ("INSERT INTO t SELECT my_func() FROM u", Code),
        (
            "SELECT count(*) FROM t GROUP BY pg_catalog.pg_cancel_backend(1)",
            Admin,
        ),
        (
            "SELECT * FROM dblink('dbname=x', 'select 1') AS r(a int)",
            Admin,
        ),
    ];
    for (sql, want) in cases {
        assert_eq!(class(sql), want, "{sql}");
    }
}

#[test]
fn multi_statement_combines_and_keeps_ranges() {
    let sql = "SELECT 1; /* c */ DELETE FROM t WHERE 'a;b' = x ; BEGIN";
    let a = run(sql);
    assert_eq!(a.statements.len(), 3);
    assert_eq!(a.combined.class, StatementClass::Write);
    assert!(a.combined.has(Flag::MultiStatement));
    let texts: Vec<&str> = a.statements.iter().map(|s| &sql[s.range.clone()]).collect();
    assert_eq!(
        texts,
        ["SELECT 1", "DELETE FROM t WHERE 'a;b' = x", "BEGIN"]
    );
    let classes: Vec<StatementClass> = a.statements.iter().map(|s| s.profile.class).collect();
    assert_eq!(
        classes,
        [
            StatementClass::Read,
            StatementClass::Write,
            StatementClass::Tx
        ]
    );
}

#[test]
fn unparseable_statement_in_a_batch_is_isolated_and_fails_closed() {
    let a = run("SELECT 1; SELECT xmlelement(name foo); DELETE FROM t");
    assert_eq!(a.statements.len(), 3);
    assert_eq!(a.statements[1].profile.class, StatementClass::Unknown);
    assert_eq!(a.statements[2].profile.class, StatementClass::Write);
    assert_eq!(a.combined.class, StatementClass::Unknown);
    // A fallback-classified statement next to a DELETE.
    let a = run("ALTER TABLE t SET SCHEMA s; DELETE FROM t");
    assert_eq!(a.statements[0].profile.class, StatementClass::Ddl);
    assert!(a.statements[0].profile.has(Flag::KeywordFallback));
    assert_eq!(a.statements[1].profile.class, StatementClass::Write);
    assert_eq!(a.combined.class, StatementClass::Ddl);
}

#[test]
fn comment_and_quote_tricks() {
    use StatementClass::*;
    let cases = [
        ("SELECT 1 -- \r, pg_terminate_backend(1)", Admin),
        ("SELECT 1 -- \r DELETE FROM t", Read),
        ("SELECT 1 -- \n; DELETE FROM t", Write),
        ("SELECT /* /* nested */ DELETE FROM t; */ 1", Read),
        ("SELECT 1 /* /* nested */ */; DELETE FROM t", Write),
        ("SELECT $f$ ; DELETE FROM t; $f$", Read),
        ("SELECT E'\\'; DELETE FROM t; --'", Read),
        ("SELECT 'it''s; DROP TABLE x'", Read),
        ("SELECT \"delete\" FROM \"drop\"", Read),
        ("SELECT U&\"d\\0061ta\" FROM t", Read),
    ];
    for (sql, want) in cases {
        assert_eq!(class(sql), want, "{sql}");
    }
}

#[test]
fn prepare_and_execute() {
    let a = run("PREPARE del (int) AS DELETE FROM t WHERE id = $1");
    let p = &a.combined;
    assert_eq!(p.class, StatementClass::Write);
    let prepared = p.prepares.as_ref().unwrap();
    assert_eq!(prepared.name, "del");
    assert_eq!(prepared.profile.class, StatementClass::Write);

    let e = run("EXECUTE del(1)");
    let ex = &e.combined;
    assert_eq!(ex.class, StatementClass::Unknown);
    assert_eq!(ex.executes.as_ref().unwrap().name, "del");
    let resolved = ex.resolve_execute(Some(&prepared.profile));
    assert_eq!(resolved.class, StatementClass::Write);
    assert!(
        resolved
            .tables_written
            .contains(&TableName::new("public", "t"))
    );
    assert_eq!(ex.resolve_execute(None).class, StatementClass::Unknown);

    // Parameters are expressions too.
    let e = run("EXECUTE sel(pg_terminate_backend(1))");
    let sel = run("PREPARE sel AS SELECT 1");
    let r = e
        .combined
        .resolve_execute(Some(&sel.combined.prepares.as_ref().unwrap().profile));
    assert_eq!(r.class, StatementClass::Admin);
    assert_eq!(class("DEALLOCATE del"), StatementClass::Session);
}

#[test]
fn search_path_resolution() {
    let path = vec!["app".to_owned(), "public".to_owned()];
    let catalog = FunctionCatalog::builtin_only();
    let ctx = AnalyzeContext::new(&path, &catalog);
    let a = analyze(
        "SELECT * FROM users JOIN pg_class ON true JOIN other.t ON true",
        &ctx,
    );
    let read: Vec<String> = a
        .combined
        .tables_read
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(read, ["app.users", "other.t", "pg_catalog.pg_class"]);
    let empty: Vec<String> = Vec::new();
    let ctx = AnalyzeContext::new(&empty, &catalog);
    let a = analyze("SELECT * FROM Users", &ctx);
    assert!(
        a.combined
            .tables_read
            .contains(&TableName::new("public", "users"))
    );
    let a = analyze("SELECT * FROM \"Users\"", &ctx);
    assert!(
        a.combined
            .tables_read
            .contains(&TableName::new("public", "Users"))
    );
}

#[test]
fn lineage_over_approximates() {
    let a = run("SELECT name FROM users JOIN orders ON orders.user_id = users.id");
    let col = &a.combined.columns[0];
    assert_eq!(col.name, "name");
    let tables: Vec<String> = col.sources.iter().map(|s| s.table().to_string()).collect();
    assert_eq!(tables, ["public.orders", "public.users"]);

    let a = run("SELECT row_to_json(u) FROM users u");
    assert!(
        a.combined.columns[0]
            .sources
            .contains(&ColumnSource::WholeRow(TableName::new("public", "users")))
    );

    let a = run("SELECT x.e FROM (SELECT upper(ssn) AS e FROM users) x WHERE x.e LIKE '1%'");
    let ssn = ColumnSource::Column(ColumnRef {
        table: TableName::new("public", "users"),
        column: "ssn".into(),
    });
    assert!(a.combined.columns[0].sources.contains(&ssn));
    assert!(a.combined.predicate_columns.contains(&ssn));

    let a = run("WITH c AS (SELECT ssn FROM users) SELECT s FROM c AS c2(s) UNION ALL SELECT 'x'");
    assert!(a.combined.columns[0].sources.contains(&ssn));

    let a = run("UPDATE users SET email = 'x' WHERE ssn = '1' RETURNING *");
    assert!(a.combined.columns[0].wildcard);
    assert!(a.combined.predicate_columns.contains(&ssn));
}

#[test]
fn json_is_stable() {
    let a = run("SELECT u.email FROM users u WHERE u.id = 1 FOR UPDATE");
    let v: serde_json::Value = serde_json::to_value(&*a.combined).unwrap();
    for key in [
        "class",
        "tables_read",
        "tables_written",
        "functions",
        "columns",
        "flags",
        "predicate_columns",
        "written_sources",
    ] {
        assert!(v.get(key).is_some(), "{key}");
    }
    assert_eq!(v["class"], "write");
    assert_eq!(v["tables_read"][0], "public.users");
    assert_eq!(
        v["columns"][0]["sources"][0]["column"],
        "public.users.email"
    );
    assert_eq!(v["flags"][0], "locking_clause");
    let text = explain::render_text(&a.combined);
    assert!(text.contains("class:          write"));
    assert!(text.contains("email <- public.users.email"));
    let whole = serde_json::to_value(&a).unwrap();
    assert_eq!(whole["statements"][0]["range"]["start"], 0);
}

#[test]
fn cache_hits_share_and_keys_include_context() {
    let cache = ProfileCache::new(16);
    let path = vec!["public".to_owned()];
    let other = vec!["app".to_owned()];
    let catalog = FunctionCatalog::builtin_only();
    let ctx = AnalyzeContext::new(&path, &catalog);
    let a1 = cache.get_or_analyze("SELECT * FROM t", &ctx);
    let a2 = cache.get_or_analyze("SELECT * FROM t", &ctx);
    assert!(Arc::ptr_eq(&a1, &a2));
    let ctx2 = AnalyzeContext::new(&other, &catalog);
    let b = cache.get_or_analyze("SELECT * FROM t", &ctx2);
    assert!(!Arc::ptr_eq(&a1, &b));
    assert!(b.combined.tables_read.contains(&TableName::new("app", "t")));
    let loaded = FunctionCatalog::from_rows([FunctionInfo {
        schema: "pg_catalog".into(),
        name: "lower".into(),
        volatility: Volatility::Immutable,
        builtin: true,
    }]);
    let ctx3 = AnalyzeContext::new(&path, &loaded);
    let c = cache.get_or_analyze("SELECT * FROM t", &ctx3);
    assert!(!Arc::ptr_eq(&a1, &c));
    assert_eq!(cache.len(), 3);
    // Bounded.
    for i in 0..1000 {
        let _ = cache.get_or_analyze(&format!("SELECT {i}"), &ctx);
    }
    assert!(cache.len() <= 32, "{}", cache.len());
}

#[test]
fn cache_is_shared_across_threads() {
    let cache = Arc::new(ProfileCache::new(64));
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let cache = cache.clone();
            std::thread::spawn(move || {
                let path = vec!["public".to_owned()];
                let catalog = FunctionCatalog::builtin_only();
                let ctx = AnalyzeContext::new(&path, &catalog);
                for j in 0..50 {
                    let a = cache.get_or_analyze(&format!("SELECT {}", j % 10), &ctx);
                    assert_eq!(a.combined.class, StatementClass::Read, "{i}");
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

#[test]
fn every_prefix_fails_closed() {
    let texts = [
        "SELECT 'a;b' FROM t; /* x /* y */ z */ DELETE FROM u WHERE $q$;$q$ = E'\\';' -- c\r; BEGIN",
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; END; ALTER TABLE t OWNER TO x",
        "WITH d AS (DELETE FROM t RETURNING *) SELECT U&\"a\" FROM d FOR UPDATE; EXECUTE p(1); PREPARE q AS SELECT 1",
        "EXPLAIN (ANALYZE off) DELETE FROM t; COPY t FROM PROGRAM 'x'; SET search_path = a; DO $$ $$",
    ];
    for text in texts {
        for end in 0..=text.len() {
            if let Some(prefix) = text.get(..end) {
                fuzz_logic::analyze_arbitrary(prefix.as_bytes());
            }
        }
        fuzz_logic::analyze_arbitrary(&text.as_bytes()[1..]);
    }
}

#[test]
fn search_path_changes_apply_to_the_rest_of_the_batch() {
    let a = run("SET search_path = app, pg_catalog; SELECT lower(x) FROM t");
    assert_eq!(
        a.statements[0].profile.search_path.as_deref(),
        Some(&["app".to_owned(), "pg_catalog".to_owned()][..])
    );
    let second = &a.statements[1].profile;
    // app.lower could shadow pg_catalog.lower now.
    assert_eq!(second.class, StatementClass::Code);
    assert!(second.tables_read.contains(&TableName::new("app", "t")));
    let a = run("SET search_path TO DEFAULT; SELECT 1");
    assert_eq!(a.statements[1].profile.class, StatementClass::Unknown);
    let a = run("SELECT 1; SET search_path = app");
    assert_eq!(a.statements[0].profile.class, StatementClass::Read);
    assert_eq!(
        a.combined.search_path.as_deref(),
        Some(&["app".to_owned()][..])
    );
}
