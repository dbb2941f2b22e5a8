//! The web console: a page for approvers and auditors, served by pgward itself.
//!
//! The files under `console/` are embedded in the binary at build time; there is no build step,
//! no CDN and nothing fetched at run time. The page is plain HTML, CSS and JavaScript that signs
//! in with a bearer token (kept in the tab's `sessionStorage`) and then only calls the `/v1`
//! API, exactly as `pgward approvals` or a script would: it has no privileged shortcut, and
//! what it may show or offer is what the API answers for that token.
//!
//! # Security
//! Every file is sent with a strict Content-Security-Policy: scripts, styles and API calls only
//! from this origin, no inline script or style, no frames, no forms posted elsewhere. The
//! script renders every value from the API as text (`textContent`), never as markup, because SQL
//! text, parameters and reasons are written by clients and approvers. Nothing is cached by the
//! browser, so a new pgward never serves a stale console.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};

/// Where the console lives.
pub const PATH: &str = "/console";

/// The policy every console answer carries.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

const INDEX_HTML: &str = include_str!("console/index.html");
const APP_JS: &str = include_str!("console/app.js");
const APP_CSS: &str = include_str!("console/app.css");

/// The console file at `path`, or `None` when there is none.
pub fn asset(path: &str) -> Option<Response<Full<Bytes>>> {
    let (body, content_type) = match path {
        "/console" | "/console/" | "/console/index.html" => {
            (INDEX_HTML, "text/html; charset=utf-8")
        }
        "/console/app.js" => (APP_JS, "text/javascript; charset=utf-8"),
        "/console/app.css" => (APP_CSS, "text/css; charset=utf-8"),
        _ => return None,
    };
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    secure(headers);
    Some(response)
}

/// `/` sends people to the console.
pub fn redirect() -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::FOUND;
    let headers = response.headers_mut();
    headers.insert(header::LOCATION, HeaderValue::from_static(PATH));
    secure(headers);
    response
}

fn secure(headers: &mut hyper::HeaderMap) {
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_served_with_the_policy_and_nothing_else_is() {
        for path in [
            "/console",
            "/console/",
            "/console/app.js",
            "/console/app.css",
        ] {
            let r = asset(path).unwrap();
            assert_eq!(
                r.headers()[header::CONTENT_SECURITY_POLICY],
                CONTENT_SECURITY_POLICY
            );
            assert_eq!(r.headers()[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        }
        for path in ["/console/../Cargo.toml", "/console/x.js", "/consolex"] {
            assert!(asset(path).is_none(), "{path}");
        }
    }

    /// The page must work under its own policy: no inline script or style, no other origin.
    #[test]
    fn the_page_needs_nothing_the_policy_forbids() {
        let html = INDEX_HTML.to_ascii_lowercase();
        assert!(!html.contains("<script>"), "inline script");
        assert!(!html.contains("style="), "inline style");
        assert!(!html.contains("<style"), "inline style");
        for handler in [
            "onclick", "onload", "onsubmit", "onerror", "onchange", "oninput",
        ] {
            assert!(!html.contains(handler), "inline event handler {handler}");
        }
        for text in [INDEX_HTML, APP_JS, APP_CSS] {
            assert!(!text.contains("http://") && !text.contains("https://"));
        }
        assert!(!APP_JS.contains("innerHTML"), "values must be set as text");
        assert!(!APP_JS.contains("eval("));
    }
}
