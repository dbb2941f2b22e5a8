//! pgward as a separate process (`pgward serve`), for tests that kill it.

use std::path::Path;

use super::pg;

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Writes `pgward.toml` (listening on `port`, data in `dir/data`, in front of the test server,
/// followed by `extra` sections), `identities.toml` with `identities` (name, password) and the
/// rules directory with `rules`.
pub fn write_config(dir: &Path, port: u16, identities: &[(&str, &str)], rules: &str, extra: &str) {
    let mut ids = String::new();
    for (name, password) in identities {
        ids.push_str(&pgward::auth::entry_for(name, password, &[]));
    }
    std::fs::write(dir.join("identities.toml"), ids).expect("write identities");
    std::fs::create_dir_all(dir.join("rules")).expect("rules dir");
    std::fs::write(dir.join("rules/main.toml"), rules).expect("write rules");
    std::fs::write(
        dir.join("pgward.toml"),
        format!(
            "listen = \"127.0.0.1:{port}\"\nidentities = \"identities.toml\"\nrules = \"rules\"\n\
             data_dir = \"data\"\n{extra}\n[upstream]\nhost = \"127.0.0.1\"\nport = {}\n\
             user = \"postgres\"\npassword_env = \"PGWARD_TEST_UPSTREAM_PASSWORD\"\nsslmode = \"disable\"\n",
            pg::server().port()
        ),
    )
    .expect("write config");
}

/// Starts `pgward serve` on the config in `dir`, and waits until it accepts on `port`.
pub async fn serve(dir: &Path, port: u16) -> tokio::process::Child {
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_pgward"))
        .args(["serve", "--config"])
        .arg(dir.join("pgward.toml"))
        .env("PGWARD_TEST_UPSTREAM_PASSWORD", pg::SUPERUSER_PASSWORD)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("pgward serve starts");
    crate::assert_eventually!(
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok(),
        "pgward listening"
    );
    child
}
