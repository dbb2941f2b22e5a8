//! Subcommands: one file each.

mod approvals;
mod audit;
mod check;
mod demo;
mod explain;
mod passwd;
mod serve;
mod test;
mod token;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// pgward: a PostgreSQL wire-protocol firewall.
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the proxy.
    Serve {
        /// The configuration file.
        #[arg(long, short)]
        config: PathBuf,
        /// Log lines as text (default) or one JSON object per line.
        #[arg(long, value_enum, default_value = "text", env = "PGWARD_LOG_FORMAT")]
        log_format: LogFormat,
    },
    /// Print an identities-file entry for NAME with a SCRAM verifier of a password read from the
    /// terminal (or the first line of standard input).
    Passwd {
        /// The identity's name.
        name: String,
        /// Roles to give it, comma-separated.
        #[arg(long, value_delimiter = ',')]
        roles: Vec<String>,
        /// Also make an admin API bearer token: printed once on stderr, its hash in the entry.
        #[arg(long)]
        admin_token: bool,
    },
    /// Show how pgward classifies a SQL text: class, tables, functions, lineage, flags.
    Explain {
        /// The SQL text (one or more statements).
        sql: String,
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        format: explain::Format,
        /// Schemas for unqualified names, comma-separated (default: public).
        #[arg(long, value_delimiter = ',')]
        search_path: Vec<String>,
        #[command(flatten)]
        who: explain::DecisionArgs,
    },
    /// Validate a rules directory: exit 1 with the errors, naming file, line and key.
    Check {
        /// The rules directory.
        dir: PathBuf,
    },
    /// Run the rule test cases in DIR/tests/*.toml against the rules in DIR.
    Test {
        /// The rules directory.
        dir: PathBuf,
    },
    /// Review and decide approval requests through the admin API.
    Approvals {
        #[command(flatten)]
        conn: approvals::Connection,
        #[command(subcommand)]
        action: approvals::Action,
    },
    /// The audit log: verify it, list its sessions, export it.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Print a recorded session as its client saw it.
    Replay(audit::ReplayArgs),
    /// Agent tokens: short-lived JWTs signed with pgward's own key.
    #[command(subcommand)]
    Token(token::TokenCommand),
    /// Start a throwaway PostgreSQL with sample data and pgward in front of it.
    Demo {
        /// Where pgward listens.
        #[arg(long, default_value = "127.0.0.1:6432")]
        listen: std::net::SocketAddr,
    },
}

/// Runs the chosen subcommand.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        Command::Serve { config, log_format } => serve::run(&config, log_format),
        Command::Passwd {
            name,
            roles,
            admin_token,
        } => passwd::run(&name, &roles, admin_token),
        Command::Demo { listen } => {
            init_logging(LogFormat::Text);
            demo::run(listen)
        }
        Command::Explain {
            sql,
            format,
            search_path,
            who,
        } => explain::run(&sql, format, &search_path, &who),
        Command::Approvals { conn, action } => approvals::run(&conn, &action),
        Command::Check { dir } => check::run(&dir),
        Command::Test { dir } => test::run(&dir),
        Command::Audit(cmd) => audit::run(cmd),
        Command::Replay(args) => audit::replay(args),
        Command::Token(cmd) => token::run(cmd),
    }
}

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line (time, level, target, message, fields, span fields), for
    /// log shippers.
    Json,
}

/// Logs to stderr; `RUST_LOG` overrides the default `info`.
fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}
