//! `pgward explain SQL`: the statement profile pgward computes for a text.

use std::process::ExitCode;

use pgward::sql::{AnalyzeContext, FunctionCatalog, analyze, explain};

/// Output formats.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Format {
    /// Indented text, one fact per line.
    Text,
    /// JSON: the combined profile's fields at the top level, plus `statements`.
    Json,
}

pub fn run(sql: &str, format: Format, search_path: &[String]) -> anyhow::Result<ExitCode> {
    let path = if search_path.is_empty() {
        vec!["public".to_owned()]
    } else {
        search_path.to_vec()
    };
    // Without a server there is no pg_proc: the compiled-in list of safe built-ins stands in, and
    // every other function is code, as in a session whose catalog could not be loaded.
    let catalog = FunctionCatalog::builtin_only();
    let analysis = analyze(sql, &AnalyzeContext::new(&path, &catalog));
    match format {
        Format::Text => print!("{}", explain::render_analysis(&analysis)),
        Format::Json => {
            let mut value = serde_json::to_value(&*analysis.combined)?;
            let statements = serde_json::to_value(&analysis.statements)?;
            if let Some(obj) = value.as_object_mut() {
                obj.insert("statements".to_owned(), statements);
            }
            println!("{}", serde_json::to_string_pretty(&value)?);
        }
    }
    Ok(ExitCode::SUCCESS)
}
