//! `pgward demo`: a throwaway PostgreSQL with sample data, identities, and pgward in front.

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context;
use pgward::config::{Config, ProcessEnv};
use pgward::localpg::LocalPostgres;
use pgward::server::Server;

const DEMO_SQL: &str = include_str!("../../fixtures/demo.sql");
/// The example rules of this checkout: edits to them apply to the running demo at once.
const RULES_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/rules");
/// pgward's own login on the demo server; not a superuser.
const UPSTREAM_USER: &str = "pgward_app";

pub fn run(listen: SocketAddr) -> anyhow::Result<ExitCode> {
    println!("Starting a throwaway PostgreSQL…");
    let pg = LocalPostgres::start(&random_secret()).context("starting PostgreSQL")?;
    let upstream_password = random_secret();
    let rt = super::runtime()?;
    rt.block_on(load_sample_data(&pg, &upstream_password))
        .context("loading fixtures/demo.sql")?;

    let dir = pg.dir().join("pgward");
    std::fs::create_dir_all(&dir)?;
    let mut identities = String::new();
    // carol, a second dba and an auditor, approves held statements and reads the audit log
    // through the admin API and the console with this token.
    let (carol_token, carol_token_hash) = pgward::auth::new_admin_token();
    for (name, password, roles, admin_token) in [
        ("alice", "alice-demo", &["dba"][..], None),
        ("agent-7", "agent-demo", &["agent"][..], None),
        (
            "carol",
            "carol-demo",
            &["dba", "auditor"][..],
            Some(&carol_token_hash),
        ),
    ] {
        let roles: Vec<String> = roles.iter().map(|r| (*r).to_owned()).collect();
        identities.push_str(&pgward::auth::entry_for(name, password, &roles));
        if let Some(hash) = admin_token {
            identities.push_str(&format!("admin_token = {hash:?}\n"));
        }
        identities.push('\n');
    }
    // The admin API listens on the next port, the CLI's default with the default listen port.
    let admin_listen = SocketAddr::new(
        listen.ip(),
        match listen.port() {
            0 => 0,
            port => port.checked_add(1).unwrap_or(0),
        },
    );
    std::fs::write(dir.join("identities.toml"), identities)?;
    std::fs::write(dir.join("upstream.password"), &upstream_password)?;
    std::fs::write(
        dir.join("pgward.toml"),
        format!(
            "listen = \"{listen}\"\nidentities = \"identities.toml\"\nrules = {rules:?}\ndata_dir = \"data\"\n\n\
             [upstream]\nhost = \"127.0.0.1\"\nport = {port}\nuser = \"{UPSTREAM_USER}\"\n\
             password_file = \"upstream.password\"\nsslmode = \"disable\"\n\n\
             [admin]\nlisten = \"{admin_listen}\"\n",
            port = pg.port(),
            rules = RULES_DIR,
        ),
    )?;
    let config = Config::load(&dir.join("pgward.toml"), &ProcessEnv)?;

    rt.block_on(async {
        let server = Server::bind(config).await.context("starting pgward")?;
        let addr = server.local_addr()?;
        println!();
        println!("pgward is listening on {addr}, in front of PostgreSQL on port {}.", pg.port());
        println!("Connect from another shell:");
        println!();
        println!(
            "    PGPASSWORD=alice-demo psql \"host={} port={} user=alice dbname=demo sslmode=disable\"",
            addr.ip(),
            addr.port()
        );
        println!();
        println!("Identities: alice (role dba, password alice-demo), agent-7 (role agent, password agent-demo),");
        println!("carol (roles dba and auditor, password carol-demo), who approves held statements:");
        if let Some(admin) = server.admin_addr() {
            println!();
            println!("    PGWARD_ADMIN_URL=http://{admin} PGWARD_ADMIN_TOKEN={carol_token} pgward approvals list");
            println!();
            println!("or in the web console, http://{admin}/console, signed in with that token.");
            println!();
        }
        println!("Try: SELECT full_name, email FROM people LIMIT 5;   then, as agent-7: DELETE FROM payments;");
        println!("The rules are {RULES_DIR}: edit them and the running sessions follow.");
        println!("Press Ctrl-C to stop; the demo's data is removed.");
        let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            () = server.run() => {}
            _ = tokio::signal::ctrl_c() => println!("\nStopping…"),
            _ = terminate.recv() => println!("Terminated; stopping…"),
        }
        anyhow::Ok(())
    })?;
    drop(pg);
    Ok(ExitCode::SUCCESS)
}

async fn load_sample_data(pg: &LocalPostgres, upstream_password: &str) -> anyhow::Result<()> {
    let (admin, conn) =
        tokio_postgres::connect(&pg.conninfo("postgres"), tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    // Separate statements: CREATE DATABASE can't run in the implicit transaction of a batch.
    admin
        .batch_execute(&format!(
            "CREATE ROLE {UPSTREAM_USER} LOGIN PASSWORD '{upstream_password}'"
        ))
        .await?;
    admin
        .batch_execute(&format!("CREATE DATABASE demo OWNER {UPSTREAM_USER}"))
        .await?;
    let conninfo = format!(
        "host=127.0.0.1 port={} user={UPSTREAM_USER} password={upstream_password} dbname=demo",
        pg.port()
    );
    let (app, conn) = tokio_postgres::connect(&conninfo, tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    app.batch_execute(DEMO_SQL).await?;
    Ok(())
}

fn random_secret() -> String {
    let bytes: [u8; 18] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
