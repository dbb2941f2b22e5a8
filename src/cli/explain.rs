//! `pgward explain SQL`: the statement profile pgward computes for a text.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use pgward::policy::RuleSet;
use pgward::sql::{AnalyzeContext, FunctionCatalog, analyze, explain};

/// Output formats.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Format {
    /// Indented text, one fact per line.
    Text,
    /// JSON: the combined profile's fields at the top level, plus `statements`.
    Json,
}

/// With rules: whose decision to show.
#[derive(Debug, clap::Args)]
pub struct DecisionArgs {
    /// A rules directory: also show the decision and the rule that made it.
    #[arg(long)]
    rules: Option<PathBuf>,
    /// The requester's roles, comma-separated (with --rules).
    #[arg(long, value_delimiter = ',')]
    role: Vec<String>,
    /// The requester's identity name, for role membership by `members` (with --rules).
    #[arg(long, default_value = "")]
    identity: String,
    /// The database the session is connected to (with --rules).
    #[arg(long, default_value = "postgres")]
    database: String,
}

pub fn run(
    sql: &str,
    format: Format,
    search_path: &[String],
    who: &DecisionArgs,
) -> anyhow::Result<ExitCode> {
    let path = if search_path.is_empty() {
        vec!["public".to_owned()]
    } else {
        search_path.to_vec()
    };
    // Without a server there is no pg_proc: the compiled-in list of safe built-ins stands in, and
    // every other function is code, as in a session whose catalog could not be loaded.
    let catalog = FunctionCatalog::builtin_only();
    let analysis = analyze(sql, &AnalyzeContext::new(&path, &catalog));
    let rules = match &who.rules {
        Some(dir) => Some(
            RuleSet::load_dir(dir)
                .map(|(set, _)| set)
                .with_context(|| format!("loading {}", dir.display()))?,
        ),
        None => None,
    };
    let roles = rules
        .as_ref()
        .map(|r| r.roles_for(&who.identity, &who.role, &[]))
        .unwrap_or_default();
    let decision = rules
        .as_ref()
        .map(|r| r.decide_all(&roles, &who.database, &analysis));
    match format {
        Format::Text => {
            print!("{}", explain::render_analysis(&analysis));
            if let Some(d) = &decision {
                print!("{}", pgward::policy::explain::render(d));
            }
        }
        Format::Json => {
            let mut value = serde_json::to_value(&*analysis.combined)?;
            let statements = serde_json::to_value(&analysis.statements)?;
            if let Some(obj) = value.as_object_mut() {
                obj.insert("statements".to_owned(), statements);
                if let Some(d) = &decision {
                    let d = serde_json::to_value(d)?;
                    for key in ["decision", "rule"] {
                        if let Some(v) = d.get(key) {
                            obj.insert(key.to_owned(), v.clone());
                        }
                    }
                }
            }
            println!("{}", serde_json::to_string_pretty(&value)?);
        }
    }
    Ok(ExitCode::SUCCESS)
}
