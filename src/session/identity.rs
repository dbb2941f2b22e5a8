//! Who a session is, beyond SCRAM: client certificates and tokens; and what that identity
//! means for the server connection (its login, what `pg_stat_activity` shows).

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{BufMut, BytesMut};
use pgwire::messages::startup::Authentication;
use tokio::io::AsyncWriteExt;
use tracing::info;

use super::{Refusal, Shared};
use crate::auth::{AuthMethod, Identity};
use crate::config::Upstream;
use crate::net::Stream;
use crate::policy::RuleSet;
use crate::proto::{self, HEADER_LEN, MessageReader, SqlState, tag};
use crate::upstream::Login;

/// PostgreSQL keeps `application_name` to NAMEDATALEN - 1 bytes.
const APPLICATION_NAME_MAX: usize = 63;

/// The one answer to every failed certificate, token or rule check: the client learns nothing
/// about why (the log says).
pub(super) fn refused(user: &str) -> Refusal {
    Refusal::new(
        SqlState::INVALID_AUTHORIZATION_SPECIFICATION,
        format!("authentication failed for user \"{user}\""),
    )
}

/// The identity of a client that presented a certificate chaining to `[tls] client_ca`: it must
/// name the startup user.
pub(super) fn by_certificate(
    stream: &Stream,
    shared: &Shared,
    user: &str,
) -> Result<Identity, Refusal> {
    let check = shared
        .client_tls
        .load_full()
        .and_then(|t| t.client_auth.clone());
    let (Some(certs), Some(check)) = (&shared.config.tls.client_certs, check) else {
        info!(
            user,
            "Certificate authentication refused: no [tls] client_ca"
        );
        return Err(refused(user));
    };
    let chain = match stream {
        Stream::ServerTls(tls) => tls.get_ref().1.peer_certificates(),
        _ => None,
    };
    let Some(chain) = chain.filter(|c| !c.is_empty()) else {
        info!(
            user,
            tls = stream.is_tls(),
            "Certificate authentication refused: no client certificate"
        );
        return Err(refused(user));
    };
    if let Err(e) = check.check(chain) {
        info!(user, reason = %e, "Certificate authentication refused: the chain is not trusted");
        return Err(refused(user));
    }
    let named = crate::auth::cert::identity_of(&chain[0], certs.identity).map_err(|reason| {
        info!(user, %reason, "Certificate authentication refused");
        refused(user)
    })?;
    if named != user {
        info!(user, certificate = %named, "Certificate authentication refused: the certificate names another identity");
        return Err(refused(user));
    }
    let roles = shared
        .identities
        .get(user)
        .map(|e| e.roles.clone())
        .unwrap_or_default();
    Ok(Identity {
        name: user.to_owned(),
        roles,
        groups: Vec::new(),
        method: AuthMethod::Cert,
    })
}

/// The token method: asks for a password and verifies it as a JWT (an OIDC provider's or a
/// `pgward token issue` agent token). Only over TLS, or plaintext from loopback when
/// `allow_plaintext_loopback` is set: a token is a bearer credential, so pgward refuses before
/// asking for it rather than let it cross the network in clear.
///
/// The identity's roles are the agent token's `roles` and those whose members match its name
/// or OIDC groups; the identities file is not consulted, so an IdP user can never pick up the
/// roles of a same-named SCRAM identity.
pub(super) async fn by_token(
    stream: &mut Stream,
    peer: SocketAddr,
    shared: &Arc<Shared>,
    user: &str,
    out: &mut BytesMut,
) -> Result<Option<Identity>, Refusal> {
    let (Some(verifier), Some(settings)) = (&shared.tokens, &shared.config.token) else {
        info!(
            user,
            "Token authentication refused: no [token] section is configured"
        );
        return Err(refused(user));
    };
    let loopback_allowed = settings.allow_plaintext_loopback && peer.ip().is_loopback();
    if !(stream.is_tls() || loopback_allowed) {
        info!(
            user,
            "Token authentication refused: tokens are accepted only over TLS"
        );
        return Err(refused(user)
            .hint("connect with sslmode=require; pgward does not take tokens in plaintext"));
    }
    proto::write_auth(out, Authentication::CleartextPassword);
    stream
        .write_all(out)
        .await
        .map_err(super::handshake::client_gone)?;
    stream
        .flush()
        .await
        .map_err(super::handshake::client_gone)?;
    out.clear();
    let mut buf = BytesMut::new();
    let Some(body) = super::handshake::read_password_message(stream, &mut buf).await? else {
        return Ok(None);
    };
    let token = body.strip_suffix(b"\0").unwrap_or(&body);
    let verified = std::str::from_utf8(token)
        .map_err(|_| "the password is not UTF-8".to_owned())
        .and_then(|t| verifier.verify(t, user).map_err(|e| e.to_string()));
    match verified {
        Ok(v) => {
            info!(user, issuer = %v.issuer, kind = ?v.kind, "Token accepted");
            Ok(Some(Identity {
                name: v.name,
                roles: v.roles,
                groups: v.groups,
                method: AuthMethod::Token,
            }))
        }
        Err(reason) => {
            info!(user, %reason, "Token authentication failed");
            Err(crate::auth::Error::Failed {
                user: user.to_owned(),
            }
            .into())
        }
    }
}

/// The server login for a session: that of its first role (in the order roles are resolved:
/// the identities file's, then the token's, then those whose members match) that names an
/// `upstream_user`; pgward's own `[upstream] user` when none does.
pub(super) fn upstream_login(cfg: &Upstream, rules: &RuleSet, roles: &[String]) -> Login {
    let user = roles
        .iter()
        .find_map(|r| rules.role(r).and_then(|role| role.upstream_user()));
    match user {
        Some(user) if user != cfg.user => Login {
            user: user.to_owned(),
            password: cfg.logins.get(user).cloned().flatten(),
        },
        _ => Login {
            user: cfg.user.clone(),
            password: cfg.password.clone(),
        },
    }
}

/// The `application_name` the server sees, or `None` to pass the client's own. The identity
/// part is kept whole: the client's part is shortened to fit PostgreSQL's limit.
pub(super) fn server_application_name(
    format: &str,
    client_app: &str,
    identity: &str,
) -> Option<String> {
    if format.is_empty() {
        return None;
    }
    let render = |app: &str| {
        format
            .replace("{identity}", identity)
            .replace("{application_name}", app)
            .trim()
            .to_owned()
    };
    let mut app = client_app;
    let mut name = render(app);
    while name.len() > APPLICATION_NAME_MAX && !app.is_empty() {
        let cut = app.len().saturating_sub(name.len() - APPLICATION_NAME_MAX);
        let mut cut = cut.min(app.len().saturating_sub(1));
        while !app.is_char_boundary(cut) {
            cut -= 1;
        }
        app = &app[..cut];
        name = render(app);
    }
    Some(name)
}

/// Appends a startup frame as the client should see it: the server's `application_name` is
/// shown as the client set it, as on a direct connection.
pub(super) fn client_view_of_startup_frame(
    frame: &[u8],
    rewritten_app: bool,
    client_app: &str,
    out: &mut BytesMut,
) {
    let is_app = rewritten_app
        && frame.first() == Some(&tag::PARAMETER_STATUS)
        && frame
            .get(HEADER_LEN..)
            .and_then(|body| MessageReader::new(body, "ParameterStatus").cstr().ok())
            == Some(b"application_name".as_slice());
    if !is_app {
        out.put_slice(frame);
        return;
    }
    let name = b"application_name";
    out.put_u8(tag::PARAMETER_STATUS);
    out.put_i32((4 + name.len() + 1 + client_app.len() + 1) as i32);
    out.put_slice(name);
    out.put_u8(0);
    out.put_slice(client_app.as_bytes());
    out.put_u8(0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn application_name_keeps_the_identity_whole() {
        let f = crate::config::DEFAULT_APPLICATION_NAME;
        assert_eq!(
            server_application_name(f, "psql", "alice").unwrap(),
            "psql (pgward:alice)"
        );
        assert_eq!(
            server_application_name(f, "", "alice").unwrap(),
            "(pgward:alice)"
        );
        let long = "x".repeat(100);
        let name = server_application_name(f, &long, "agent-7").unwrap();
        assert_eq!(name.len(), APPLICATION_NAME_MAX);
        assert!(name.ends_with(" (pgward:agent-7)"));
        let multibyte = "é".repeat(40);
        let name = server_application_name(f, &multibyte, "bob").unwrap();
        assert!(name.len() <= APPLICATION_NAME_MAX && name.ends_with("(pgward:bob)"));
        assert_eq!(server_application_name("", "psql", "alice"), None);
    }

    #[test]
    fn the_client_sees_its_own_application_name() {
        let mut frame = BytesMut::new();
        let body = b"application_name\0psql (pgward:alice)\0";
        frame.put_u8(b'S');
        frame.put_i32(4 + body.len() as i32);
        frame.put_slice(body);
        let mut out = BytesMut::new();
        client_view_of_startup_frame(&frame, true, "psql", &mut out);
        assert_eq!(&out[5..], b"application_name\0psql\0");
        assert_eq!(
            i32::from_be_bytes(out[1..5].try_into().unwrap()) as usize,
            out.len() - 1
        );
        out.clear();
        client_view_of_startup_frame(&frame, false, "psql", &mut out);
        assert_eq!(&out[..], &frame[..]);
    }
}
