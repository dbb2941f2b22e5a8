use super::*;

const MINIMAL: &str = r#"
listen = "127.0.0.1:6432"
identities = "identities.toml"
rules = "rules"

[upstream]
host = "127.0.0.1"
user = "pgward"
password_env = "PGWARD_TEST_PW"
"#;

fn env() -> HashMap<String, String> {
    HashMap::from([("PGWARD_TEST_PW".to_owned(), "s3cret".to_owned())])
}

fn parse(text: &str) -> Result<Config, Error> {
    Config::parse(text, "pgward.toml", Path::new("/etc/pgward"), &env())
}

fn invalid(text: &str) -> (usize, String, String) {
    match parse(text) {
        Err(Error::Invalid {
            line, key, message, ..
        }) => (line, key, message),
        other => panic!("expected an invalid-config error, got {other:?}"),
    }
}

#[test]
fn minimal_config_has_sane_defaults() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(c.listen.port(), 6432);
    assert_eq!(c.upstream.port, 5432);
    assert_eq!(c.upstream.sslmode, SslMode::Prefer);
    assert_eq!(c.tls.mode, TlsMode::Disable);
    assert_eq!(c.identities, Path::new("/etc/pgward/identities.toml"));
    assert_eq!(
        c.upstream.password.as_ref().map(Secret::expose),
        Some("s3cret")
    );
    assert_eq!(c.max_message_bytes, DEFAULT_MAX_MESSAGE_BYTES);
}

#[test]
fn the_password_never_reaches_debug_output() {
    let c = parse(MINIMAL).unwrap();
    assert!(!format!("{c:?}").contains("s3cret"));
}

#[test]
fn unknown_keys_name_their_line() {
    let text = MINIMAL.replace("user = \"pgward\"", "user = \"pgward\"\npasword = \"x\"");
    let (line, _, message) = invalid(&text);
    assert_eq!(line, 9);
    assert!(message.contains("pasword"), "{message}");
}

#[test]
fn bad_values_name_key_and_line() {
    let (line, key, _) = invalid(&MINIMAL.replace("127.0.0.1:6432", "nowhere"));
    assert_eq!((line, key.as_str()), (2, "listen"));
    let (line, key, _) = invalid(&format!("{MINIMAL}sslmode = \"verify-full\"\n"));
    assert_eq!((line, key.as_str()), (10, "upstream.ca_file"));
    let (line, _, message) = invalid(&format!("{MINIMAL}sslmode = \"sometimes\"\n"));
    assert_eq!(line, 10);
    assert!(
        message.contains("sometimes") || message.contains("variant"),
        "{message}"
    );
    let (_, key, message) = invalid(&MINIMAL.replace("PGWARD_TEST_PW", "NOT_SET_ANYWHERE"));
    assert_eq!(key, "upstream.password_env");
    assert!(message.contains("NOT_SET_ANYWHERE"));
}

#[test]
fn tls_needs_cert_and_key() {
    let (_, key, _) = invalid(&format!("{MINIMAL}\n[tls]\nmode = \"require\"\n"));
    assert_eq!(key, "tls.mode");
}

#[test]
fn database_mapping() {
    let c = parse(&format!(
        "{MINIMAL}\n[upstream.databases]\napp = \"app_prod\"\n"
    ))
    .unwrap();
    assert_eq!(c.upstream.map_database("app"), Some("app_prod"));
    assert_eq!(c.upstream.map_database("other"), None);
    let c = parse(MINIMAL).unwrap();
    assert_eq!(c.upstream.map_database("other"), Some("other"));
}

#[test]
fn durations() {
    assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
    assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
    assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
    assert_eq!(parse_duration("5"), Ok(Duration::from_secs(5)));
    assert!(parse_duration("soon").is_err());
    assert!(parse_duration("5 fortnights").is_err());
}

#[test]
fn audit_is_batched_under_data_dir_by_default_and_off_without_one() {
    assert_eq!(parse(MINIMAL).unwrap().audit, None);
    let c = parse(&format!("data_dir = \"state\"\n{MINIMAL}")).unwrap();
    let a = c.audit.unwrap();
    assert_eq!(a.mode, AuditMode::Batched);
    assert_eq!(a.dir, Path::new("/etc/pgward/state/audit"));
    assert_eq!(a.flush_interval, Duration::from_millis(20));
    assert_eq!(a.signing_key_file, None);
}

#[test]
fn audit_settings_are_read_and_checked() {
    let text = format!(
        "{MINIMAL}\n[audit]\nmode = \"strict\"\ndir = \"/var/log/pgward\"\nroll_bytes = 1048576\n\
         roll_seconds = 60\nsigning_key_file = \"audit.key\"\ncapture_rows_max_bytes = 0\n"
    );
    let a = parse(&text).unwrap().audit.unwrap();
    assert_eq!(a.mode, AuditMode::Strict);
    assert_eq!(a.dir, Path::new("/var/log/pgward"));
    assert_eq!(a.roll_bytes, 1 << 20);
    assert_eq!(a.roll_age, Duration::from_secs(60));
    assert_eq!(
        a.signing_key_file.as_deref(),
        Some(Path::new("/etc/pgward/audit.key"))
    );
    assert_eq!(a.capture_rows_max_bytes, 0);

    let (_, key, message) = invalid(&format!("{MINIMAL}\n[audit]\nmode = \"strict\"\n"));
    assert_eq!(key, "audit.dir");
    assert!(message.contains("data_dir"), "{message}");
    let (line, key, _) = invalid(&format!(
        "data_dir = \"s\"\n{MINIMAL}\n[audit]\nflush_interval_ms = 0\n"
    ));
    assert_eq!((line, key.as_str()), (13, "audit.flush_interval_ms"));
    let (_, _, message) = invalid(&format!("{MINIMAL}\n[audit]\nmode = \"sometimes\"\n"));
    assert!(
        message.contains("sometimes") || message.contains("variant"),
        "{message}"
    );
}

#[test]
fn audit_mode_off_turns_it_off() {
    let c = parse(&format!(
        "data_dir = \"s\"\n{MINIMAL}\n[audit]\nmode = \"off\"\n"
    ))
    .unwrap();
    assert_eq!(c.audit, None);
}

#[test]
fn token_section_defaults_and_oidc() {
    assert_eq!(parse(MINIMAL).unwrap().token, None);
    let c = parse(&format!(
        "data_dir = \"state\"\n{MINIMAL}\n[token]\nissuer = \"https://idp.example\"\n\
         audience = \"pgward\"\njwks_url = \"https://idp.example/jwks\"\njwks_ca_file = \"ca.pem\"\n\
         groups_claim = \"roles\"\nuser_claim = \"email\"\n"
    ))
    .unwrap();
    let t = c.token.unwrap();
    assert_eq!(t.leeway, Duration::from_secs(30));
    assert!(!t.allow_plaintext_loopback);
    let o = t.oidc.unwrap();
    assert_eq!(o.issuer, "https://idp.example");
    assert_eq!(
        o.jwks,
        JwksSource::Url("https://idp.example/jwks".to_owned())
    );
    assert_eq!(
        o.jwks_ca_file.as_deref(),
        Some(Path::new("/etc/pgward/ca.pem"))
    );
    assert_eq!(o.jwks_refresh, Duration::from_secs(300));
    assert_eq!(o.user_claim, UserClaim::Email);
    assert_eq!(o.groups_claim, "roles");
    let a = t.agent.unwrap();
    assert_eq!(a.key_file, Path::new("/etc/pgward/state/token.key"));
    assert_eq!(
        (a.issuer.as_str(), a.audience.as_str()),
        ("pgward", "pgward")
    );
    assert_eq!(a.max_ttl, Duration::from_secs(3600));
}

#[test]
fn token_agent_only() {
    let c = parse(&format!(
        "{MINIMAL}\n[token]\nagent_key_file = \"t.key\"\nagent_max_ttl = \"15m\"\n\
         allow_plaintext_loopback = true\n"
    ))
    .unwrap();
    let t = c.token.unwrap();
    assert_eq!(t.oidc, None);
    assert!(t.allow_plaintext_loopback);
    let a = t.agent.unwrap();
    assert_eq!(a.key_file, Path::new("/etc/pgward/t.key"));
    assert_eq!(a.max_ttl, Duration::from_secs(900));
}

#[test]
fn token_errors_name_the_key() {
    let with = |body: &str| invalid(&format!("data_dir = \"s\"\n{MINIMAL}\n[token]\n{body}"));
    let oidc = "issuer = \"https://idp\"\naudience = \"db\"\n";
    let (line, key, _) = with("issuer = \"https://idp\"\njwks_file = \"k.json\"\n");
    assert_eq!((line, key.as_str()), (13, "token.audience"));
    let (_, key, _) = with(oidc);
    assert_eq!(key, "token.jwks_file");
    let (_, key, _) = with(&format!(
        "{oidc}jwks_file = \"k.json\"\njwks_url = \"https://idp/k\"\n"
    ));
    assert_eq!(key, "token.jwks_url");
    let (_, key, m) = with(&format!("{oidc}jwks_url = \"http://idp/k\"\n"));
    assert_eq!(key, "token.jwks_url");
    assert!(m.contains("https"), "{m}");
    let (_, key, _) = with(&format!(
        "{oidc}jwks_file = \"k.json\"\njwks_ca_file = \"ca.pem\"\n"
    ));
    assert_eq!(key, "token.jwks_ca_file");
    let (_, key, m) = with(&format!(
        "{oidc}jwks_file = \"k.json\"\nuser_claim = \"name\"\n"
    ));
    assert_eq!(key, "token.user_claim");
    assert!(m.contains("name"), "{m}");
    let (_, key, _) = with("audience = \"db\"\n");
    assert_eq!(key, "token.audience");
    let (_, key, _) = with("agent_tokens = false\n");
    assert_eq!(key, "token.agent_tokens");
    let (_, key, _) = with("agent_max_ttl = \"2d\"\n");
    assert_eq!(key, "token.agent_max_ttl");
    let (_, key, _) = with("agent_max_ttl = \"48h\"\n");
    assert_eq!(key, "token.agent_max_ttl");
    let (_, key, _) = with(&format!(
        "{oidc}jwks_file = \"k.json\"\nagent_issuer = \"https://idp\"\n"
    ));
    assert_eq!(key, "token.agent_issuer");
    let (_, _, m) = with("isuer = \"x\"\n");
    assert!(m.contains("isuer"), "{m}");
    let (_, key, m) = invalid(&format!("{MINIMAL}\n[token]\n"));
    assert_eq!(key, "token.agent_key_file");
    assert!(m.contains("data_dir"), "{m}");
}

#[test]
fn the_production_sample_is_valid() {
    let secrets = ["upstream-s3cret", "agent-s3cret", "readonly-s3cret"];
    let env = HashMap::from([
        ("PGWARD_UPSTREAM_PASSWORD".to_owned(), secrets[0].to_owned()),
        ("APP_AGENT_PASSWORD".to_owned(), secrets[1].to_owned()),
        ("APP_READONLY_PASSWORD".to_owned(), secrets[2].to_owned()),
    ]);
    let c = Config::parse(
        include_str!("../../docs/pgward.production.toml"),
        "pgward.production.toml",
        Path::new("/etc/pgward"),
        &env,
    )
    .unwrap();
    assert!(c.auth.uses(crate::auth::AuthMethod::Cert));
    assert!(c.tls.client_certs.is_some());
    assert_eq!(c.pool.max_size, 40);
    assert_eq!(c.upstream.logins.len(), 2);
    assert_eq!(
        c.upstream.logins["app_agent"].as_ref().map(Secret::expose),
        Some(secrets[1])
    );
    let shown = format!("{c:?}");
    for secret in secrets {
        assert!(
            !shown.contains(secret),
            "{secret} in the config's Debug output"
        );
    }
}

#[test]
fn identity_sections_are_validated_with_their_key() {
    let with = |extra: &str| format!("{MINIMAL}\n{extra}");
    let (_, key, message) = invalid(&with("[[auth]]\nmethod = \"ldap\"\n"));
    assert_eq!(key, "auth[0].method");
    assert!(
        message.contains("scram, token, cert or reject"),
        "{message}"
    );
    let (_, key, message) = invalid(&with(
        "[[auth]]\nmethod = \"scram\"\n[[auth]]\naddresses = [\"10.0.0.1/8\"]\nmethod = \"scram\"\n",
    ));
    assert_eq!(key, "auth[1].addresses");
    assert!(message.contains("10.0.0.0/8"), "{message}");
    let (_, key, _) = invalid(&with("[[auth]]\nmethod = \"cert\"\n"));
    assert_eq!(key, "tls.client_ca");
    let (_, key, _) = invalid(&with("[[auth]]\nmethod = \"token\"\n"));
    assert_eq!(key, "token");
    let (_, key, _) = invalid(&with("[pool]\nmax_size = 0\n"));
    assert_eq!(key, "pool.max_size");
    let (_, key, _) = invalid(&with("[pool]\nidle_timeout = \"soon\"\n"));
    assert_eq!(key, "pool.idle_timeout");
    let (_, key, message) = invalid(&with(
        "[upstream.logins.app_agent]\npassword_env = \"NOT_SET_ANYWHERE\"\n",
    ));
    assert_eq!(key, "upstream.logins.app_agent.password_env");
    assert!(message.contains("NOT_SET_ANYWHERE"), "{message}");
    let (_, key, _) = invalid(&MINIMAL.replace(
        "password_env = \"PGWARD_TEST_PW\"",
        "password_env = \"PGWARD_TEST_PW\"\napplication_name = \"{application_name}\"",
    ));
    assert_eq!(key, "upstream.application_name");
    let (_, key, _) = invalid(&MINIMAL.replace(
        "[upstream]",
        "[tls]\nmode = \"disable\"\nclient_ca = \"ca.pem\"\n\n[upstream]",
    ));
    assert_eq!(key, "tls.client_ca");
}

#[test]
fn identity_defaults() {
    let c = parse(MINIMAL).unwrap();
    assert!(c.auth.is_empty());
    assert!(c.pool.enabled);
    assert_eq!(c.pool.max_size, 20);
    assert_eq!(c.upstream.application_name, DEFAULT_APPLICATION_NAME);
    assert!(c.tls.client_certs.is_none());
}
