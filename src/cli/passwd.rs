//! `pgward passwd NAME`

use std::io::{BufRead, IsTerminal};
use std::process::ExitCode;

use anyhow::bail;

pub fn run(name: &str, roles: &[String], admin_token: bool) -> anyhow::Result<ExitCode> {
    let password = if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password(format!("Password for {name}: "))?;
        let again = rpassword::prompt_password("Again: ")?;
        if first != again {
            bail!("passwords do not match");
        }
        first
    } else {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    };
    if password.is_empty() {
        bail!("empty password");
    }
    print!("{}", pgward::auth::entry_for(name, &password, roles));
    if admin_token {
        let (token, stored) = pgward::auth::new_admin_token();
        println!("admin_token = {stored:?}");
        // The token goes to stderr so that redirecting the entry into a file never stores it.
        eprintln!("admin API token for {name} (shown once; keep it secret): {token}");
    }
    Ok(ExitCode::SUCCESS)
}
