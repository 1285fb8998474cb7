//! The HTTP side of a WebSocket upgrade (RFC 6455 section 4.2): which
//! requests are accepted, and the answers to those that are not.

use http::header::{CONNECTION, HOST, HeaderName, RETRY_AFTER, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_VERSION, UPGRADE};
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
    /// No `Host` header, or more than one (RFC 9112 section 3.2).
    BadHost,
    UnsupportedVersion,
    /// `Sec-WebSocket-Version` given more than once.
    RepeatedVersion,
    /// `Sec-WebSocket-Key` missing, repeated, or not 16 bytes in base64.
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
            Rejection::BadHost => plain(StatusCode::BAD_REQUEST, "exactly one Host header is expected\n"),
            Rejection::RepeatedVersion => {
                plain(StatusCode::BAD_REQUEST, "Sec-WebSocket-Version is expected exactly once\n")
            }
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
    if only(request, HOST).is_none() {
        return Err(Rejection::BadHost);
    }
    match request.headers().get_all(SEC_WEBSOCKET_VERSION).iter().count() {
        0 => return Err(Rejection::UnsupportedVersion),
        1 => {}
        _ => return Err(Rejection::RepeatedVersion),
    }
    if request.headers().get(SEC_WEBSOCKET_VERSION).map(HeaderValue::as_bytes) != Some(b"13") {
        return Err(Rejection::UnsupportedVersion);
    }
    // A key is 16 random bytes in base64 (24 characters), sent once.
    let key = only(request, SEC_WEBSOCKET_KEY).and_then(|k| k.to_str().ok()).map(str::trim);
    match key {
        Some(key) if data_encoding::BASE64.decode(key.as_bytes()).is_ok_and(|bytes| bytes.len() == 16) => {
            Ok(key.to_owned())
        }
        _ => Err(Rejection::BadKey),
    }
}

/// The header's value when it is given exactly once.
fn only<B>(request: &Request<B>, name: HeaderName) -> Option<&HeaderValue> {
    let mut values = request.headers().get_all(name).iter();
    match (values.next(), values.next()) {
        (Some(value), None) => Some(value),
        _ => None,
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
        ("host", "example.com"),
        ("connection", "keep-alive, Upgrade"),
        ("upgrade", "WebSocket"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];

    /// A GET with the good headers, less those named in `without`, plus `with`.
    fn changed(without: &[&str], with: &[(&str, &str)]) -> Request<()> {
        let kept = GOOD.iter().filter(|(name, _)| !without.contains(name));
        request("GET", &kept.chain(with).copied().collect::<Vec<_>>())
    }

    #[test]
    fn a_valid_upgrade_yields_its_key() {
        assert_eq!(check_upgrade(&request("GET", GOOD)), Ok("dGhlIHNhbXBsZSBub25jZQ==".into()));
    }

    #[test]
    fn everything_else_is_rejected_with_the_right_status() {
        assert_eq!(check_upgrade(&request("POST", GOOD)), Err(Rejection::NotAnUpgrade));
        assert_eq!(check_upgrade(&changed(&["connection"], &[])), Err(Rejection::NotAnUpgrade));
        assert_eq!(check_upgrade(&changed(&["upgrade"], &[])), Err(Rejection::NotAnUpgrade));
        let old = changed(&["sec-websocket-version"], &[("sec-websocket-version", "8")]);
        assert_eq!(check_upgrade(&old), Err(Rejection::UnsupportedVersion));
        assert_eq!(check_upgrade(&changed(&["sec-websocket-version"], &[])), Err(Rejection::UnsupportedVersion));
        let twice = changed(&[], &[("sec-websocket-version", "13")]);
        assert_eq!(check_upgrade(&twice), Err(Rejection::RepeatedVersion));
        assert_eq!(check_upgrade(&changed(&["host"], &[])), Err(Rejection::BadHost));
        assert_eq!(check_upgrade(&changed(&[], &[("host", "other.example")])), Err(Rejection::BadHost));
        for key in ["abc", "dGhlIHNhbXBsZSBub25jZQ", "dGhlIHNhbXBsZSBub25jZQ=!", "dGhlIHNhbXBsZSBub25jZS4u", ""] {
            let bad = changed(&["sec-websocket-key"], &[("sec-websocket-key", key)]);
            assert_eq!(check_upgrade(&bad), Err(Rejection::BadKey), "{key:?}");
        }
        assert_eq!(check_upgrade(&changed(&["sec-websocket-key"], &[])), Err(Rejection::BadKey));
        let two_keys = changed(&[], &[("sec-websocket-key", "AAAAAAAAAAAAAAAAAAAAAA==")]);
        assert_eq!(check_upgrade(&two_keys), Err(Rejection::BadKey));
        for rejection in [Rejection::BadHost, Rejection::RepeatedVersion, Rejection::BadKey] {
            assert_eq!(rejection.response().status(), StatusCode::BAD_REQUEST);
        }
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
