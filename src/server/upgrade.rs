//! The HTTP side of a WebSocket upgrade (RFC 6455 section 4.2): which
//! requests are accepted, and the answers to those that are not.

use http::header::{CONNECTION, RETRY_AFTER, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_VERSION, UPGRADE};
use http::{HeaderValue, Method, Request, Response, StatusCode, Version};

/// How long a client refused for lack of room is asked to wait, in seconds.
const RETRY_AFTER_SECONDS: &str = "5";

pub(crate) fn plain(status: StatusCode, body: &str) -> Response<String> {
    let mut response = Response::new(body.to_owned());
    *response.status_mut() = status;
    response.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

/// True when a comma-separated header holds `token` (case-insensitive).
fn header_has_token<B>(request: &Request<B>, name: http::header::HeaderName, token: &str) -> bool {
    request
        .headers()
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Why an HTTP request is not a WebSocket upgrade we accept.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Rejection {
    NotAnUpgrade,
    UnsupportedVersion,
    BadKey,
    /// The request's `Origin` is not on the allow-list.
    ForbiddenOrigin,
    /// The server holds `max_connections` already.
    Full,
    /// The server is shutting down.
    ShuttingDown,
    /// The authentication hook did not decide within the handshake timeout.
    SlowAuthentication,
}

impl Rejection {
    pub(crate) fn response(&self) -> Response<String> {
        match self {
            Rejection::NotAnUpgrade => plain(
                StatusCode::BAD_REQUEST,
                "This is a WebSocket endpoint (JSON-RPC 2.0): a WebSocket upgrade request is expected.\n",
            ),
            Rejection::UnsupportedVersion => {
                let mut response = plain(StatusCode::UPGRADE_REQUIRED, "Only WebSocket version 13 is supported.\n");
                response.headers_mut().insert(SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
                response
            }
            Rejection::BadKey => plain(StatusCode::BAD_REQUEST, "missing or malformed Sec-WebSocket-Key\n"),
            Rejection::ForbiddenOrigin => plain(StatusCode::FORBIDDEN, "This origin may not open a WebSocket here.\n"),
            Rejection::Full => unavailable("The server is at its connection limit; try again later.\n"),
            Rejection::ShuttingDown => unavailable("The server is shutting down; try again later.\n"),
            Rejection::SlowAuthentication => unavailable("Authentication did not finish in time; try again later.\n"),
        }
    }
}

/// Checks a WebSocket upgrade request (RFC 6455 section 4.2.1); returns its key.
pub(crate) fn check_upgrade<B>(request: &Request<B>) -> Result<String, Rejection> {
    let is_upgrade = request.method() == Method::GET
        && request.version() == Version::HTTP_11
        && header_has_token(request, CONNECTION, "upgrade")
        && header_has_token(request, UPGRADE, "websocket");
    if !is_upgrade {
        return Err(Rejection::NotAnUpgrade);
    }
    if request.headers().get(SEC_WEBSOCKET_VERSION).map(HeaderValue::as_bytes) != Some(b"13") {
        return Err(Rejection::UnsupportedVersion);
    }
    match request.headers().get(SEC_WEBSOCKET_KEY).and_then(|k| k.to_str().ok()) {
        // A key is 16 random bytes in base64: 24 characters.
        Some(key) if key.trim().len() == 24 => Ok(key.trim().to_owned()),
        _ => Err(Rejection::BadKey),
    }
}

/// 503 with `Retry-After`: the client may come back (to this server or another).
fn unavailable(body: &str) -> Response<String> {
    let mut response = plain(StatusCode::SERVICE_UNAVAILABLE, body);
    response.headers_mut().insert(RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECONDS));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: &str, headers: &[(&str, &str)]) -> Request<()> {
        let mut builder = Request::builder().method(method).uri("/ws");
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap()
    }

    const GOOD: &[(&str, &str)] = &[
        ("connection", "keep-alive, Upgrade"),
        ("upgrade", "WebSocket"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];

    #[test]
    fn a_valid_upgrade_yields_its_key() {
        assert_eq!(check_upgrade(&request("GET", GOOD)), Ok("dGhlIHNhbXBsZSBub25jZQ==".into()));
    }

    #[test]
    fn everything_else_is_rejected_with_the_right_status() {
        assert_eq!(check_upgrade(&request("POST", GOOD)), Err(Rejection::NotAnUpgrade));
        assert_eq!(check_upgrade(&request("GET", &GOOD[1..])), Err(Rejection::NotAnUpgrade));
        assert_eq!(check_upgrade(&request("GET", &[GOOD[0], GOOD[2], GOOD[3]])), Err(Rejection::NotAnUpgrade));
        let old = [GOOD[0], GOOD[1], ("sec-websocket-version", "8"), GOOD[3]];
        assert_eq!(check_upgrade(&request("GET", &old)), Err(Rejection::UnsupportedVersion));
        let short = [GOOD[0], GOOD[1], GOOD[2], ("sec-websocket-key", "abc")];
        assert_eq!(check_upgrade(&request("GET", &short)), Err(Rejection::BadKey));
        assert_eq!(Rejection::NotAnUpgrade.response().status(), StatusCode::BAD_REQUEST);
        let upgrade_required = Rejection::UnsupportedVersion.response();
        assert_eq!(upgrade_required.status(), StatusCode::UPGRADE_REQUIRED);
        assert_eq!(upgrade_required.headers()[SEC_WEBSOCKET_VERSION], "13");
        for refusal in [Rejection::Full, Rejection::ShuttingDown, Rejection::SlowAuthentication] {
            let response = refusal.response();
            assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(response.headers()[RETRY_AFTER], RETRY_AFTER_SECONDS);
        }
    }
}
