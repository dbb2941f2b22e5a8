//! `pgward audit verify|sessions|export` and `pgward replay`: the auditor's tools.
//!
//! The log directory is either given (`DIR` or `--dir`) or found through `--config` (its
//! `[audit]` section, or `data_dir/audit`). Only the `[audit]` section is read, so these work on
//! a machine that doesn't have the server's secrets.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use pgward::audit::{self, replay, verify};

/// `pgward audit …`
#[derive(Debug, clap::Subcommand)]
pub enum AuditCommand {
    /// Check every file's hash chain and signatures; exit 1 naming the first broken record.
    Verify {
        #[command(flatten)]
        dir: DirArgs,
        /// A trusted key: the signing key file, or a file with the public key in hex. Without
        /// it, the `[audit]` signing key of `--config` is used when set.
        #[arg(long)]
        key: Option<PathBuf>,
    },
    /// List sessions with identity, start, statement and denial counts.
    Sessions {
        #[command(flatten)]
        dir: DirArgs,
        /// Only sessions of this identity.
        #[arg(long)]
        identity: Option<String>,
        /// Only sessions started since then: RFC 3339, a date, or Unix seconds.
        #[arg(long)]
        since: Option<String>,
        /// Only sessions started until then: RFC 3339, a date, or Unix seconds.
        #[arg(long)]
        until: Option<String>,
        /// Only sessions with a statement of this decision (allow, deny, approve …).
        #[arg(long)]
        decision: Option<String>,
    },
    /// Write every record to one Parquet file.
    Export {
        /// The Parquet file to write.
        #[arg(long)]
        parquet: PathBuf,
        #[command(flatten)]
        dir: DirArgs,
    },
}

/// Where the log is.
#[derive(Debug, clap::Args)]
pub struct DirArgs {
    /// The audit log directory.
    #[arg(value_name = "DIR")]
    dir: Option<PathBuf>,
    /// The audit log directory (same as DIR).
    #[arg(long = "dir", value_name = "DIR", conflicts_with = "dir")]
    dir_flag: Option<PathBuf>,
    /// pgward's configuration file, to find the log through `[audit]` or `data_dir`.
    #[arg(long, short)]
    config: Option<PathBuf>,
}

/// `pgward replay SESSION_ID`
#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// The session: INSTANCE-NUMBER, or NUMBER when only one instance used it.
    session: String,
    #[command(flatten)]
    dir: DirArgs,
    /// Keep printing new records until the session ends.
    #[arg(long)]
    follow: bool,
}

pub fn run(cmd: AuditCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        AuditCommand::Verify { dir, key } => {
            let log = dir.resolve()?;
            let key_file = match key {
                Some(k) => Some(k),
                None => dir.config()?.and_then(|a| a.signing_key_file),
            };
            let key = key_file
                .as_deref()
                .map(verify::read_verifying_key)
                .transpose()?;
            let report = audit::verify(&log, key.as_ref())?;
            print!("{report}");
            Ok(if report.is_ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        AuditCommand::Sessions {
            dir,
            identity,
            since,
            until,
            decision,
        } => {
            let log = dir.resolve()?;
            let since_us = since
                .as_deref()
                .map(audit::time::parse_since)
                .transpose()
                .map_err(anyhow::Error::msg)
                .context("--since")?;
            let until_us = until
                .as_deref()
                .map(audit::time::parse_since)
                .transpose()
                .map_err(anyhow::Error::msg)
                .context("--until")?;
            let records = replay::load(&log)?;
            let filter = replay::Filter {
                identity,
                since_us,
                until_us,
                decision,
            };
            print!(
                "{}",
                replay::render_sessions(&replay::sessions(&records, &filter))
            );
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Export { parquet, dir } => {
            let log = dir.resolve()?;
            let done = audit::export::export_parquet(&log, &parquet)?;
            println!(
                "{}: {} records from {} files",
                parquet.display(),
                done.rows,
                done.files
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

pub fn replay(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let log = args.dir.resolve()?;
    let mut out = std::io::stdout().lock();
    match replay::follow(
        &log,
        &args.session,
        args.follow,
        Duration::from_millis(250),
        &mut out,
    ) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(audit::Error::NoSession(m)) => {
            eprintln!("error: {m}");
            Ok(ExitCode::from(1))
        }
        Err(e) => Err(e.into()),
    }
}

// === impl DirArgs ===

impl DirArgs {
    fn config(&self) -> anyhow::Result<Option<pgward::config::Audit>> {
        match &self.config {
            None => Ok(None),
            Some(path) => Ok(pgward::config::Config::load_audit(path)?),
        }
    }

    fn resolve(&self) -> anyhow::Result<PathBuf> {
        if let Some(d) = self.dir.as_ref().or(self.dir_flag.as_ref()) {
            return Ok(d.clone());
        }
        match (&self.config, self.config()?) {
            (_, Some(a)) => Ok(a.dir),
            (Some(path), None) => bail!(
                "{}: auditing is off (no `[audit]` section and no `data_dir`)",
                path.display()
            ),
            (None, None) => bail!("give the audit log directory, or --config"),
        }
    }
}
