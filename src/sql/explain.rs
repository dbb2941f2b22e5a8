//! Human-readable rendering of profiles, for `pgward explain` and logs.
//!
//! Owns the text form only; the JSON form is the profile's serde
//! serialization (stable field names: `class`, `tables_read`,
//! `tables_written`, `functions`, `columns`, `predicate_columns`,
//! `written_sources`, `flags`,
//! `prepares`, `executes`, `error`). Never includes SQL text or values.

use std::fmt::Write as _;

use super::{Analysis, StatementProfile};

/// Renders one profile as indented text, one fact per line.
pub fn render_text(profile: &StatementProfile) -> String {
    let mut out = String::new();
    render_into(&mut out, profile, "");
    out
}

/// Renders a whole analysis: the combined profile, then each statement
/// (with its byte range) when there is more than one.
pub fn render_analysis(analysis: &Analysis) -> String {
    let mut out = String::new();
    render_into(&mut out, &analysis.combined, "");
    if analysis.statements.len() > 1 {
        for (i, s) in analysis.statements.iter().enumerate() {
            let _ = writeln!(
                out,
                "statement {} (bytes {}..{}):",
                i + 1,
                s.range.start,
                s.range.end
            );
            render_into(&mut out, &s.profile, "  ");
        }
    }
    out
}

fn list<I: IntoIterator<Item = String>>(items: I) -> String {
    let v: Vec<String> = items.into_iter().collect();
    if v.is_empty() {
        "-".to_owned()
    } else {
        v.join(", ")
    }
}

fn render_into(out: &mut String, p: &StatementProfile, indent: &str) {
    let _ = writeln!(out, "{indent}class:          {}", p.class);
    let _ = writeln!(
        out,
        "{indent}tables read:    {}",
        list(p.tables_read.iter().map(ToString::to_string))
    );
    let _ = writeln!(
        out,
        "{indent}tables written: {}",
        list(p.tables_written.iter().map(ToString::to_string))
    );
    let _ = writeln!(
        out,
        "{indent}functions:      {}",
        list(p.functions.iter().cloned())
    );
    if p.columns.is_empty() {
        let _ = writeln!(out, "{indent}columns:        -");
    } else {
        let _ = writeln!(out, "{indent}columns:");
        for c in &p.columns {
            let sources = list(c.sources.iter().map(ToString::to_string));
            let _ = writeln!(out, "{indent}  {} <- {sources}", c.name);
        }
    }
    let _ = writeln!(
        out,
        "{indent}predicates:     {}",
        list(p.predicate_columns.iter().map(ToString::to_string))
    );
    let _ = writeln!(
        out,
        "{indent}copies:         {}",
        list(p.written_sources.iter().map(ToString::to_string))
    );
    let _ = writeln!(
        out,
        "{indent}flags:          {}",
        list(p.flags.iter().map(ToString::to_string))
    );
    if let Some(prep) = &p.prepares {
        let _ = writeln!(
            out,
            "{indent}prepares:       {} ({})",
            prep.name, prep.profile.class
        );
    }
    if let Some(exec) = &p.executes {
        let _ = writeln!(
            out,
            "{indent}executes:       {} (unknown until resolved; own class {})",
            exec.name, exec.base_class
        );
    }
    if let Some(e) = &p.error {
        let _ = writeln!(out, "{indent}error:          {e}");
    }
}
