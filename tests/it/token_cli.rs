//! `pgward token issue` (issue 8): the printed token verifies with the server's verifier, and
//! `--ttl` is capped by `token.agent_max_ttl`.

use std::process::Command;

use pgward::auth::{TokenKind, TokenVerifier};
use pgward::config::Config;

const CONFIG: &str = r#"
listen = "127.0.0.1:6432"
identities = "identities.toml"
rules = "rules"
data_dir = "state"

[upstream]
host = "127.0.0.1"
user = "pgward"
password_env = "PGWARD_NOT_NEEDED_BY_TOKEN_ISSUE"

[token]
agent_max_ttl = "30m"
"#;

fn pgward(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_pgward"))
        .args(args)
        .output()
        .expect("run pgward")
}

#[test]
fn issued_agent_tokens_verify_and_the_ttl_is_capped() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("pgward.toml");
    std::fs::write(&config, CONFIG).expect("write config");
    let config_arg = config.to_str().expect("utf-8 path");

    let out = pgward(&[
        "token",
        "issue",
        "--identity",
        "agent-7",
        "--roles",
        "reader,ai-agents",
        "--ttl",
        "10m",
        "--config",
        config_arg,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).expect("utf-8");
    let key_file = dir.path().join("state/token.key");
    assert!(key_file.exists(), "the key file is created on first issue");

    let settings = Config::load_token(&config)
        .expect("config")
        .expect("[token]");
    let verifier = TokenVerifier::new(&settings).expect("verifier");
    let ok = verifier
        .verify(&token, "agent-7")
        .expect("the token verifies");
    assert_eq!(ok.kind, TokenKind::Agent);
    assert_eq!(ok.roles, ["reader", "ai-agents"]);
    assert!(verifier.verify(&token, "agent-8").is_err());

    let out = pgward(&[
        "token",
        "issue",
        "--identity",
        "agent-7",
        "--ttl",
        "2h",
        "--config",
        config_arg,
    ]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("30m") && stderr.contains("agent_max_ttl"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}
