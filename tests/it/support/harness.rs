//! Starts pgward in-process on 127.0.0.1:0 in front of the test server.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use pgward::config::Config;
use pgward::server::Server;
use pgward::session::Shared;

use super::pg;

/// Builder for a pgward under test.
pub struct Harness {
    identities: Vec<(String, String, Vec<String>)>,
    extra_top: String,
    tls: Option<&'static str>,
    upstream_port: Option<u16>,
    rules: String,
    upstream_tls: (&'static str, Option<String>),
    admin: Option<AdminListener>,
    admin_tokens: HashMap<String, String>,
    client_ca: Option<PathBuf>,
}

/// How the admin API listens, when enabled.
#[derive(Clone, Copy, PartialEq, Eq)]
enum AdminListener {
    Http,
    Https,
}

/// A running pgward and the database it fronts.
pub struct Running {
    /// Where pgward listens.
    pub addr: SocketAddr,
    /// The database created for this test (same name through pgward and on the server).
    pub database: String,
    /// The directory with the config, identities and TLS files.
    pub dir: tempfile::TempDir,
    /// What pgward's sessions and admin API share (its approval service, identities, rules).
    pub shared: Arc<Shared>,
    /// Where the admin API listens, when enabled.
    pub admin_addr: Option<SocketAddr>,
    admin_https: bool,
    rules: std::sync::Arc<pgward::session::RulesHandle>,
    task: tokio::task::JoinHandle<()>,
}

/// The rules every harness has unless told otherwise: the transparency tests need a pgward that
/// allows everything, including what it cannot classify.
pub const ALLOW_ALL: &str = r#"
[roles.everyone]
members = ["*"]

[[rules]]
id = "allow-everything"
roles = ["everyone"]
classes = ["tx", "session", "read", "write", "ddl", "code", "privilege", "admin", "unknown"]
action = "allow"
"#;

/// The identity every harness has unless told otherwise.
pub const USER: &str = "alice";
/// Its password.
pub const PASSWORD: &str = "alice-pw";

// === impl Harness ===

impl Harness {
    pub fn new() -> Self {
        Harness {
            identities: vec![(USER.into(), PASSWORD.into(), vec!["dba".into()])],
            extra_top: String::new(),
            tls: None,
            upstream_port: None,
            rules: ALLOW_ALL.to_owned(),
            upstream_tls: ("disable", None),
            admin: None,
            admin_tokens: HashMap::new(),
            client_ca: None,
        }
    }

    /// Enables the admin API on `127.0.0.1:0`, plain HTTP.
    pub fn admin(mut self) -> Self {
        self.admin.get_or_insert(AdminListener::Http);
        self
    }

    /// Enables the admin API on `127.0.0.1:0` over HTTPS, with a fresh self-signed certificate
    /// for `localhost` and `127.0.0.1` ([`Running::admin_cert_path`]).
    pub fn admin_https(mut self) -> Self {
        self.admin = Some(AdminListener::Https);
        self
    }

    /// Gives the identity `name` (added before, or the default one) a new admin API token and
    /// returns it; enables the admin API if it isn't.
    pub fn admin_token(&mut self, name: &str) -> String {
        assert!(
            self.identities.iter().any(|(n, _, _)| n == name),
            "add identity {name} before giving it an admin token"
        );
        let (token, stored) = pgward::auth::new_admin_token();
        self.admin_tokens.insert(name.to_owned(), stored);
        self.admin.get_or_insert(AdminListener::Http);
        token
    }

    /// Adds an identity.
    pub fn identity(mut self, name: &str, password: &str, roles: &[&str]) -> Self {
        self.identities.push((
            name.into(),
            password.into(),
            roles.iter().map(|r| r.to_string()).collect(),
        ));
        self
    }

    /// Adds top-level config lines (`max_message_bytes = …`, `startup_timeout = …`).
    pub fn config(mut self, lines: &str) -> Self {
        self.extra_top.push_str(lines);
        self.extra_top.push('\n');
        self
    }

    /// Replaces the default allow-everything rules with `toml` (one file, `rules/main.toml`).
    pub fn rules(mut self, toml: &str) -> Self {
        self.rules = toml.to_owned();
        self
    }

    /// Client-facing TLS with a fresh self-signed certificate for `localhost`.
    pub fn tls(mut self, mode: &'static str) -> Self {
        self.tls = Some(mode);
        self
    }

    /// Upstream `sslmode`, and the CA certificate (PEM) to trust for `verify-full`.
    pub fn upstream_tls(mut self, sslmode: &'static str, ca_pem: Option<&str>) -> Self {
        self.upstream_tls = (sslmode, ca_pem.map(str::to_owned));
        self
    }

    /// Points pgward at another upstream port (e.g. one nobody listens on).
    /// Client certificates must chain to the CA at `path` (with [`Harness::tls`]).
    pub fn client_ca(mut self, path: &std::path::Path) -> Self {
        self.client_ca = Some(path.to_owned());
        self
    }

    pub fn upstream_port(mut self, port: u16) -> Self {
        self.upstream_port = Some(port);
        self
    }

    pub async fn start(self) -> Running {
        let server = pg::server();
        let database = pg::fresh_database().await;
        let dir = tempfile::tempdir().expect("temp dir");
        let mut identities = String::new();
        for (name, pw, roles) in &self.identities {
            identities.push_str(&pgward::auth::entry_for(name, pw, roles));
            if let Some(stored) = self.admin_tokens.get(name) {
                identities.push_str(&format!("admin_token = {stored:?}\n"));
            }
        }
        std::fs::write(dir.path().join("identities.toml"), identities).expect("write identities");
        std::fs::create_dir(dir.path().join("rules")).expect("rules dir");
        std::fs::write(dir.path().join("rules/main.toml"), &self.rules).expect("write rules");
        let mut tls = String::new();
        if let Some(mode) = self.tls {
            let cert =
                rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("cert");
            std::fs::write(dir.path().join("server.crt"), cert.cert.pem()).expect("write cert");
            std::fs::write(
                dir.path().join("server.key"),
                cert.signing_key.serialize_pem(),
            )
            .expect("write key");
            tls =
                format!("[tls]\nmode = \"{mode}\"\ncert = \"server.crt\"\nkey = \"server.key\"\n");
            if let Some(ca) = &self.client_ca {
                tls.push_str(&format!("client_ca = {:?}\n", ca.display().to_string()));
            }
        }
        let text = format!(
            "listen = \"127.0.0.1:0\"\nidentities = \"identities.toml\"\nrules = \"rules\"\n{}\n{tls}\n\
             [upstream]\nhost = \"127.0.0.1\"\nport = {}\nuser = \"postgres\"\n\
             password_env = \"PGWARD_TEST_UPSTREAM_PASSWORD\"\nsslmode = \"disable\"\nconnect_timeout = \"5s\"\n",
            self.extra_top,
            self.upstream_port.unwrap_or(server.port()),
        );
        let (sslmode, ca) = &self.upstream_tls;
        let mut text = text.replace("sslmode = \"disable\"", &format!("sslmode = \"{sslmode}\""));
        if let Some(ca) = ca {
            std::fs::write(dir.path().join("upstream-ca.crt"), ca).expect("write CA");
            text.push_str("ca_file = \"upstream-ca.crt\"\n");
        }
        match self.admin {
            None => {}
            Some(AdminListener::Http) => text.push_str("\n[admin]\nlisten = \"127.0.0.1:0\"\n"),
            Some(AdminListener::Https) => {
                let cert = rcgen::generate_simple_self_signed(vec![
                    "localhost".to_owned(),
                    "127.0.0.1".to_owned(),
                ])
                .expect("admin cert");
                std::fs::write(dir.path().join("admin.crt"), cert.cert.pem()).expect("write cert");
                std::fs::write(
                    dir.path().join("admin.key"),
                    cert.signing_key.serialize_pem(),
                )
                .expect("write key");
                text.push_str(
                    "\n[admin]\nlisten = \"127.0.0.1:0\"\ncert = \"admin.crt\"\nkey = \"admin.key\"\n",
                );
            }
        }
        let env = HashMap::from([(
            "PGWARD_TEST_UPSTREAM_PASSWORD".to_owned(),
            pg::SUPERUSER_PASSWORD.to_owned(),
        )]);
        let config =
            Config::parse(&text, "test.toml", dir.path(), &env).expect("valid test config");
        let server = Server::bind(config).await.expect("pgward binds");
        let addr = server.local_addr().expect("local addr");
        let rules = server.rules();
        let shared = server.shared();
        let admin_addr = server.admin_addr();
        let task = tokio::spawn(server.run());
        Running {
            addr,
            database,
            dir,
            shared,
            admin_addr,
            admin_https: self.admin == Some(AdminListener::Https),
            rules,
            task,
        }
    }
}

// === impl Running ===

impl Running {
    /// A libpq-style connection string through pgward.
    pub fn conninfo(&self, user: &str, password: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user={user} password={password} dbname={} sslmode=disable",
            self.addr.port(),
            self.database
        )
    }

    /// A libpq-style connection string through pgward over TLS (`sslmode=require`), without a
    /// password: certificates and tokens say who the client is.
    pub fn tls_conninfo(&self, user: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user={user} dbname={} sslmode=require",
            self.addr.port(),
            self.database
        )
    }

    /// A tokio-postgres client through pgward as the default identity.
    pub async fn client(&self) -> tokio_postgres::Client {
        self.client_as(USER, PASSWORD)
            .await
            .expect("connect through pgward")
    }

    /// A tokio-postgres client through pgward as `user`.
    pub async fn client_as(
        &self,
        user: &str,
        password: &str,
    ) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        let (client, conn) =
            tokio_postgres::connect(&self.conninfo(user, password), tokio_postgres::NoTls).await?;
        tokio::spawn(conn);
        Ok(client)
    }

    /// A client through pgward whose asynchronous messages (notices, notifications) arrive on
    /// the returned channel; the channel closes when the connection ends.
    pub async fn client_with_messages(
        &self,
    ) -> (
        tokio_postgres::Client,
        futures::channel::mpsc::UnboundedReceiver<tokio_postgres::AsyncMessage>,
    ) {
        use futures::{FutureExt, StreamExt, TryStreamExt};
        let (client, mut conn) =
            tokio_postgres::connect(&self.conninfo(USER, PASSWORD), tokio_postgres::NoTls)
                .await
                .expect("connect through pgward");
        let (tx, rx) = futures::channel::mpsc::unbounded();
        let messages =
            futures::stream::poll_fn(move |cx| conn.poll_message(cx)).map_err(|e| panic!("{e}"));
        tokio::spawn(messages.forward(tx).map(|_| ()));
        (client, rx)
    }

    /// pgward's live rule set.
    pub fn rules(&self) -> &pgward::session::RulesHandle {
        &self.rules
    }

    /// The admin API's base URL (`http://127.0.0.1:PORT`, or `https://…` with
    /// [`Harness::admin_https`]).
    pub fn admin_url(&self) -> String {
        let addr = self.admin_addr.expect("the admin API is enabled");
        let scheme = if self.admin_https { "https" } else { "http" };
        format!("{scheme}://{addr}")
    }

    /// The admin API's self-signed certificate, with [`Harness::admin_https`].
    pub fn admin_cert_path(&self) -> PathBuf {
        self.dir.path().join("admin.crt")
    }

    /// The self-signed certificate pgward presents, when TLS is on.
    pub fn cert_path(&self) -> PathBuf {
        self.dir.path().join("server.crt")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}
