//! Who connected: the HTTP upgrade request ([`Handshake`]) and what the
//! authentication hook made of it ([`Identity`], with its roles).

use std::any::{Any, TypeId};
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use http::{HeaderMap, Uri};

/// What the HTTP upgrade request said: where it came from, its URI and its
/// headers. The authentication hook decides on it; every [`Connection`](crate::Connection)
/// keeps it.
#[derive(Clone, Default)]
pub struct Handshake {
    remote_addr: Option<SocketAddr>,
    uri: Uri,
    headers: HeaderMap,
}

/// Shows the path and the header names only: the query string and header
/// values may hold credentials.
impl fmt::Debug for Handshake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handshake")
            .field("remote_addr", &self.remote_addr)
            .field("path", &self.uri.path())
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Handshake {
    /// The client's address, when the transport knows it.
    pub fn remote_addr(&self) -> Option<SocketAddr> {
        self.remote_addr
    }

    /// The request's URI (path and query string).
    pub fn uri(&self) -> &Uri {
        &self.uri
    }

    /// The request's headers (cookies among them).
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The value of the first query parameter named `name`, percent-decoded;
    /// `None` if there is none or it does not decode (browsers cannot set
    /// headers on a WebSocket, so tokens often come this way).
    pub fn query(&self, name: &str) -> Option<String> {
        let pairs = self.uri.query()?.split('&').map(|pair| pair.split_once('=').unwrap_or((pair, "")));
        let (_, value) = pairs.into_iter().find(|(key, _)| percent_decode(key).is_some_and(|key| key == name))?;
        percent_decode(value)
    }

    /// The token of an `Authorization: Bearer TOKEN` header.
    pub fn bearer_token(&self) -> Option<&str> {
        let value = self.headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
        let (scheme, token) = value.trim().split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|token| !token.is_empty())
    }

    /// A copy that shares no memory with the request: hyper's headers and URI
    /// point into its 8 KiB read buffer, which would otherwise live as long as
    /// the connection.
    pub(crate) fn detached(remote_addr: Option<SocketAddr>, uri: &Uri, headers: &HeaderMap) -> Self {
        let mut copied = HeaderMap::with_capacity(headers.len());
        for (name, value) in headers {
            let name = http::HeaderName::from_bytes(name.as_str().as_bytes()).unwrap_or_else(|_| name.clone());
            let value = http::HeaderValue::from_bytes(value.as_bytes()).unwrap_or_else(|_| value.clone());
            copied.append(name, value);
        }
        let uri = uri.to_string().parse().unwrap_or_else(|_| uri.clone());
        Handshake { remote_addr, uri, headers: copied }
    }
}

/// Decodes `%XX` escapes and `+` (a space, in a query string); `None` when
/// the result is not UTF-8 or an escape is malformed.
fn percent_decode(text: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(text.len());
    let mut rest = text.as_bytes();
    while let Some((&byte, tail)) = rest.split_first() {
        rest = tail;
        match byte {
            b'%' => {
                let hex = rest.get(..2).filter(|hex| hex.iter().all(u8::is_ascii_hexdigit))?;
                bytes.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
                rest = rest.get(2..)?;
            }
            b'+' => bytes.push(b' '),
            other => bytes.push(other),
        }
    }
    String::from_utf8(bytes).ok()
}

/// Who a connection is, as the authentication hook decided: optionally a
/// user (so [`Hub::user`](crate::Hub::user) reaches all of that user's
/// connections), and optionally a value of your own that every handler can
/// read with [`Connection::data`](crate::Connection::data).
#[derive(Default)]
pub struct Identity {
    pub(crate) user: Option<Arc<str>>,
    pub(crate) roles: Roles,
    pub(crate) values: Vec<(TypeId, Box<dyn Any + Send + Sync>)>,
}

/// A connection's roles: shared by its handle and its engine, which checks
/// them against what each method requires.
#[derive(Clone, Debug, Default)]
pub(crate) struct Roles(Option<Arc<[Arc<str>]>>);

impl Roles {
    pub(crate) fn as_slice(&self) -> &[Arc<str>] {
        self.0.as_deref().unwrap_or_default()
    }

    fn add(&mut self, role: Arc<str>) {
        let mut roles = self.as_slice().to_vec();
        roles.push(role);
        self.0 = Some(roles.into());
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity").field("user", &self.user).field("roles", &self.roles).finish_non_exhaustive()
    }
}

impl Identity {
    /// Nobody in particular: the connection is let in without a user.
    pub fn anonymous() -> Self {
        Identity::default()
    }

    /// The connection belongs to user `id`.
    pub fn user(id: impl Into<Arc<str>>) -> Self {
        Identity { user: Some(id.into()), ..Identity::default() }
    }

    /// Gives the connection `role`: methods declared
    /// `#[authorize(role = "...")]` with it let the connection call them.
    pub fn with_role(mut self, role: impl Into<Arc<str>>) -> Self {
        self.roles.add(role.into());
        self
    }

    /// Attaches `value` (claims, roles, a session) to the connection, for
    /// [`Connection::data`](crate::Connection::data); one value per type, a
    /// later one of the same type replacing the earlier.
    pub fn with<T: Any + Send + Sync>(mut self, value: T) -> Self {
        self.values.push((TypeId::of::<T>(), Box::new(value)));
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parameters_are_found_decoded_and_never_guessed() {
        let handshake = |uri: &str| Handshake::detached(None, &uri.parse().unwrap(), &HeaderMap::new());
        assert_eq!(handshake("/ws?a=1&token=s%33cret+x").query("token").as_deref(), Some("s3cret x"));
        assert_eq!(handshake("/ws?t%6Fken=x").query("token").as_deref(), Some("x"));
        assert_eq!(handshake("/ws?token=%ZZ&token=x").query("token"), None, "the first one counts");
        assert_eq!(handshake("/ws?token=%+4").query("token"), None);
        assert_eq!(handshake("/ws?token=%4").query("token"), None);
        assert_eq!(handshake("/ws?token=%FF").query("token"), None, "not UTF-8");
        assert_eq!(handshake("/ws?token").query("token").as_deref(), Some(""));
        assert_eq!(handshake("/ws").query("token"), None);
        let debug = format!("{:?}", handshake("/ws?token=s3cret"));
        assert!(!debug.contains("s3cret"), "{debug}");
    }
}
