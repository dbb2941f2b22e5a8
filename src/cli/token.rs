//! `pgward token issue`: print a short-lived agent token signed with pgward's own key.
//!
//! The key file, issuer, audience and lifetime limit come from `--config` (its `[token]`
//! section and `data_dir`); only that part of the file is read, so no server secret is needed.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use pgward::auth::AgentKey;
use pgward::auth::agent::human;
use pgward::config::{AgentTokenSettings, Config};

/// Default lifetime of an issued token (lowered to `agent_max_ttl` when that is shorter).
const DEFAULT_TTL: Duration = Duration::from_secs(15 * 60);

/// `pgward token …`
#[derive(Debug, clap::Subcommand)]
pub enum TokenCommand {
    /// Print an agent token (a JWT signed EdDSA with pgward's key) for an identity and roles.
    Issue(IssueArgs),
}

/// `pgward token issue`
#[derive(Debug, clap::Args)]
pub struct IssueArgs {
    /// The identity: clients must connect with this user name.
    #[arg(long)]
    identity: String,
    /// pgward roles the token grants, comma-separated.
    #[arg(long, value_delimiter = ',')]
    roles: Vec<String>,
    /// Lifetime, e.g. 15m, 1h (at most `[token] agent_max_ttl`, 1h by default). Default 15m.
    #[arg(long)]
    ttl: Option<String>,
    /// pgward's configuration file: its `[token]` section and `data_dir` give the key and limits.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// The agent-token key file (created if missing); overrides the configuration's.
    #[arg(long)]
    key_file: Option<PathBuf>,
}

pub fn run(cmd: TokenCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        TokenCommand::Issue(args) => issue(&args),
    }
}

fn issue(args: &IssueArgs) -> anyhow::Result<ExitCode> {
    let mut settings = match &args.config {
        Some(path) => {
            let token = Config::load_token(path)?.with_context(|| {
                format!(
                    "{}: token authentication is off (no `[token]` section)",
                    path.display()
                )
            })?;
            match token.agent {
                Some(agent) => agent,
                None => bail!(
                    "{}: agent tokens are off (`agent_tokens = false` in `[token]`)",
                    path.display()
                ),
            }
        }
        None => AgentTokenSettings {
            key_file: PathBuf::new(),
            issuer: "pgward".to_owned(),
            audience: "pgward".to_owned(),
            max_ttl: Duration::from_secs(3600),
        },
    };
    match (&args.key_file, &args.config) {
        (Some(k), _) => settings.key_file = k.clone(),
        (None, Some(_)) => {}
        (None, None) => bail!("give --config (pgward's configuration file) or --key-file"),
    }
    let ttl = match &args.ttl {
        Some(t) => pgward::config::parse_duration(t)
            .map_err(anyhow::Error::msg)
            .context("--ttl")?,
        None => DEFAULT_TTL.min(settings.max_ttl),
    };
    if ttl > settings.max_ttl {
        bail!(
            "--ttl {} exceeds the maximum agent token lifetime of {} (token.agent_max_ttl)",
            human(ttl),
            human(settings.max_ttl)
        );
    }
    let roles: Vec<String> = args
        .roles
        .iter()
        .map(|r| r.trim().to_owned())
        .filter(|r| !r.is_empty())
        .collect();
    let key = AgentKey::load_or_create(&settings.key_file)?;
    let token = key.issue(&settings, &args.identity, &roles, ttl, SystemTime::now())?;
    eprintln!(
        "agent token for {} (roles: {}), valid for {}, key {}",
        args.identity,
        if roles.is_empty() {
            "none".to_owned()
        } else {
            roles.join(", ")
        },
        human(ttl),
        key.kid()
    );
    println!("{token}");
    Ok(ExitCode::SUCCESS)
}
