//! The client's side of the HTTP upgrade (RFC 6455 section 4.1), over TCP or TLS.

use std::fmt;

use http::header::{
    CONNECTION, HOST, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_EXTENSIONS, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_PROTOCOL,
    SEC_WEBSOCKET_VERSION, UPGRADE,
};
use http::{HeaderName, HeaderValue, Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::handshake::client::generate_key;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_util::either::Either;

use crate::error::Error;
use crate::socket::Socket;
use crate::transport::{ClientTls, ClientTlsStream, secure};

/// Why a handshake failed, when it is not an I/O error.
fn refused(why: String) -> Error {
    Error::transport(std::io::Error::other(why))
}

/// A URL as logs and errors show it: no credentials, no query string.
pub(crate) struct Shown<'a>(pub(crate) &'a str);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Ok(uri) = self.0.parse::<Uri>() else { return f.write_str("(not a URL)") };
        let host = uri.authority().map(|a| a.as_str().rsplit('@').next().unwrap_or_default()).unwrap_or_default();
        write!(f, "{}://{host}{}", uri.scheme_str().unwrap_or_default(), uri.path())
    }
}

/// The byte stream under a client's WebSocket: TCP, or TLS over TCP.
pub(crate) type ClientIo = Either<TcpStream, ClientTlsStream>;

/// Connects to `url` and performs the WebSocket handshake (RFC 6455 section 4.1).
pub(crate) async fn handshake(
    url: &str,
    headers: &[(HeaderName, HeaderValue)],
    max_message: usize,
    tls: &ClientTls,
) -> Result<Socket<ClientIo>, Error> {
    let uri: Uri = url.parse().map_err(Error::transport)?;
    // Errors name the URL without its query or credentials: tokens go there.
    let url = Shown(url);
    let is_secure = match uri.scheme_str() {
        Some("ws") => false,
        Some("wss") => true,
        _ => return Err(refused(format!("{url}: a WebSocket URL starts with ws:// or wss://"))),
    };
    let authority = uri.authority().ok_or_else(|| refused(format!("{url}: no host")))?.clone();
    // An IPv6 literal comes bracketed in a URL but not in a socket address.
    let host = authority.host().trim_start_matches('[').trim_end_matches(']');
    let port = authority.port_u16().unwrap_or(if is_secure { 443 } else { 80 });
    let stream = TcpStream::connect((host, port)).await?;
    // Latency over throughput: every message is a small frame.
    stream.set_nodelay(true)?;
    let stream: ClientIo =
        if is_secure { Either::Right(secure(tls, host, stream).await?) } else { Either::Left(stream) };

    let key = generate_key();
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let mut request = Request::get(path).body(String::new()).map_err(Error::transport)?;
    let request_headers = request.headers_mut();
    // Host and port only: credentials in the URL do not belong in a header.
    let host_header = match authority.port() {
        Some(port) => format!("{}:{port}", authority.host()),
        None => authority.host().to_owned(),
    };
    let host_value = HeaderValue::from_str(&host_header).map_err(Error::transport)?;
    request_headers.insert(HOST, host_value);
    request_headers.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    request_headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
    request_headers.insert(SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
    request_headers.insert(SEC_WEBSOCKET_KEY, HeaderValue::from_str(&key).map_err(Error::transport)?);
    for (name, value) in headers {
        request_headers.append(name.clone(), value.clone());
    }

    let (mut sender, connection) =
        hyper::client::conn::http1::handshake::<_, String>(TokioIo::new(stream)).await.map_err(Error::transport)?;
    // Drives the HTTP exchange until the connection is handed over.
    tokio::spawn(async move {
        if let Err(e) = connection.with_upgrades().await {
            tracing::debug!(error = %e, "the WebSocket handshake's HTTP connection failed");
        }
    });
    let response = sender.send_request(request).await.map_err(Error::transport)?;
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        tracing::debug!(%url, status = %response.status(), "the server refused the WebSocket handshake");
        return Err(Error::Refused { status: response.status().as_u16() });
    }
    check_upgrade_response(response.headers(), &key).map_err(|why| refused(format!("{url}: {why}")))?;
    let upgraded = hyper::upgrade::on(response).await.map_err(Error::transport)?;
    let parts = upgraded
        .downcast::<TokioIo<ClientIo>>()
        .map_err(|_| refused("the upgraded connection is not the stream it was made on".into()))?;
    Ok(Socket::new(parts.io.into_inner(), Role::Client, max_message, &parts.read_buf))
}

/// Checks a server's 101 answer (RFC 6455 section 4.1, steps 2 to 6).
fn check_upgrade_response(headers: &http::HeaderMap, key: &str) -> Result<(), &'static str> {
    let has_token = |name, token: &str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    if !has_token(UPGRADE, "websocket") || !has_token(CONNECTION, "upgrade") {
        return Err("the server's answer lacks Upgrade: websocket or Connection: upgrade");
    }
    let expected = derive_accept_key(key.as_bytes());
    if headers.get(SEC_WEBSOCKET_ACCEPT).map(HeaderValue::as_bytes) != Some(expected.as_bytes()) {
        return Err("the server's Sec-WebSocket-Accept does not match");
    }
    // Nothing was asked for, so nothing may be agreed to.
    if headers.contains_key(SEC_WEBSOCKET_EXTENSIONS) || headers.contains_key(SEC_WEBSOCKET_PROTOCOL) {
        return Err("the server chose an extension or subprotocol that was not offered");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(pairs: &[(&'static str, &str)]) -> http::HeaderMap {
        let mut headers = http::HeaderMap::new();
        for (name, value) in pairs {
            headers.append(*name, HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
    const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

    #[test]
    fn a_proper_answer_passes_and_every_flaw_is_named() {
        let good = [("upgrade", "websocket"), ("connection", "Upgrade"), ("sec-websocket-accept", ACCEPT)];
        assert_eq!(check_upgrade_response(&answer(&good), KEY), Ok(()));
        assert!(check_upgrade_response(&answer(&good[1..]), KEY).unwrap_err().contains("Upgrade"));
        let wrong_key = [good[0], good[1], ("sec-websocket-accept", "nope")];
        assert!(check_upgrade_response(&answer(&wrong_key), KEY).unwrap_err().contains("Accept"));
        let deflate = [good[0], good[1], good[2], ("sec-websocket-extensions", "permessage-deflate")];
        assert!(check_upgrade_response(&answer(&deflate), KEY).unwrap_err().contains("extension"));
    }

    #[test]
    fn urls_in_logs_and_errors_carry_no_credentials() {
        assert_eq!(Shown("wss://ada:pw@chat.example:8443/ws?token=s3cret").to_string(), "wss://chat.example:8443/ws");
        assert_eq!(Shown("ws://127.0.0.1/").to_string(), "ws://127.0.0.1/");
        assert_eq!(Shown("not a url at all").to_string(), "(not a URL)");
    }
}
