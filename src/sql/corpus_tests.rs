//! The reviewed corpus under `fixtures/sql/*.toml`, run through the analyzer.
//!
//! Each case names the class a DBA expects and, optionally, tables that
//! must be reported. The test prints a per-class table (how many cases,
//! how many classified exactly, stricter, weaker) and fails on any weaker
//! classification or missing table. Stricter is allowed: it fails closed.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use super::*;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CorpusFile {
    case: Vec<Case>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    sql: String,
    class: StatementClass,
    #[serde(default)]
    tables_read: Vec<String>,
    #[serde(default)]
    tables_written: Vec<String>,
    #[serde(default)]
    #[allow(dead_code)]
    note: Option<String>,
}

#[derive(Default)]
struct Row {
    total: usize,
    exact: usize,
    stricter: usize,
    weaker: usize,
}

fn load() -> Vec<(String, Case)> {
    let dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/sql"));
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("fixtures/sql exists")
        .map(|e| e.expect("readable dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    let mut cases = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).expect("readable corpus file");
        let parsed: CorpusFile =
            toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        let name = f
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        cases.extend(parsed.case.into_iter().map(|c| (name.clone(), c)));
    }
    cases
}

#[test]
fn corpus() {
    let cases = load();
    assert!(
        cases.len() >= 400,
        "the corpus must hold at least 400 statements, has {}",
        cases.len()
    );
    let path = vec!["public".to_owned()];
    let catalog = FunctionCatalog::builtin_only();
    let ctx = AnalyzeContext::new(&path, &catalog);
    let mut rows: BTreeMap<StatementClass, Row> = BTreeMap::new();
    let mut failures = Vec::new();
    let mut stricter = Vec::new();
    for (file, case) in &cases {
        let a = analyze(&case.sql, &ctx);
        let got = a.combined.class;
        let row = rows.entry(case.class).or_default();
        row.total += 1;
        match got.cmp(&case.class) {
            std::cmp::Ordering::Equal => row.exact += 1,
            std::cmp::Ordering::Greater => {
                row.stricter += 1;
                stricter.push(format!(
                    "  {file}: {:?} expected {} got {got}",
                    case.sql, case.class
                ));
            }
            std::cmp::Ordering::Less => {
                row.weaker += 1;
                failures.push(format!(
                    "{file}: {:?}\n    expected {} got {got} (flags {:?}, error {:?})",
                    case.sql, case.class, a.combined.flags, a.combined.error
                ));
            }
        }
        let read: Vec<String> = a
            .combined
            .tables_read
            .iter()
            .map(ToString::to_string)
            .collect();
        let written: Vec<String> = a
            .combined
            .tables_written
            .iter()
            .map(ToString::to_string)
            .collect();
        for t in &case.tables_read {
            if !read.contains(t) {
                failures.push(format!(
                    "{file}: {:?}\n    missing read table {t} (got {read:?})",
                    case.sql
                ));
            }
        }
        for t in &case.tables_written {
            if !written.contains(t) {
                failures.push(format!(
                    "{file}: {:?}\n    missing written table {t} (got {written:?})",
                    case.sql
                ));
            }
        }
    }
    println!("corpus: {} statements", cases.len());
    println!(
        "{:<10} {:>6} {:>6} {:>9} {:>7}",
        "expected", "count", "exact", "stricter", "weaker"
    );
    let mut total = Row::default();
    for (class, r) in &rows {
        println!(
            "{:<10} {:>6} {:>6} {:>9} {:>7}",
            class.as_str(),
            r.total,
            r.exact,
            r.stricter,
            r.weaker
        );
        total.total += r.total;
        total.exact += r.exact;
        total.stricter += r.stricter;
        total.weaker += r.weaker;
    }
    println!(
        "{:<10} {:>6} {:>6} {:>9} {:>7}",
        "total", total.total, total.exact, total.stricter, total.weaker
    );
    if !stricter.is_empty() {
        println!("stricter than expected (allowed):");
        for s in &stricter {
            println!("{s}");
        }
    }
    assert!(
        failures.is_empty(),
        "{} corpus failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
