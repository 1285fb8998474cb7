//! Who may open a connection: the origin allow-list and the authentication
//! hook, both decided on the HTTP upgrade request, before any upgrade.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use http::header::{ORIGIN, WWW_AUTHENTICATE};
use http::{HeaderValue, Response, StatusCode};

use super::upgrade::plain;
use crate::identity::{Handshake, Identity};

/// Why a handshake is refused: `401 Unauthorized` or `403 Forbidden`, with a
/// short body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    status: StatusCode,
    reason: String,
}

impl Refusal {
    /// 401: no credentials, or credentials that are not valid.
    pub fn unauthorized(reason: impl Into<String>) -> Self {
        Refusal { status: StatusCode::UNAUTHORIZED, reason: reason.into() }
    }

    /// 403: valid credentials that do not allow this.
    pub fn forbidden(reason: impl Into<String>) -> Self {
        Refusal { status: StatusCode::FORBIDDEN, reason: reason.into() }
    }

    /// The status this refusal answers with.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub(crate) fn response(&self) -> Response<String> {
        let mut response = plain(self.status, &format!("{}\n", self.reason));
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// Decides, from the HTTP upgrade request, whether a connection may open and
/// who it is. Set with [`ServerBuilder::authenticate`](crate::server::ServerBuilder::authenticate).
///
/// Implemented for every `Fn(&Handshake) -> Result<Identity, Refusal>`; implement
/// it on your own type when the decision needs to await something (a token
/// store, a database).
pub trait Authenticate: Send + Sync + 'static {
    /// Accepts the handshake as `Identity`, or refuses it.
    fn authenticate(&self, handshake: &Handshake) -> impl Future<Output = Result<Identity, Refusal>> + Send;
}

impl<F> Authenticate for F
where
    F: Fn(&Handshake) -> Result<Identity, Refusal> + Send + Sync + 'static,
{
    fn authenticate(&self, handshake: &Handshake) -> impl Future<Output = Result<Identity, Refusal>> + Send {
        std::future::ready(self(handshake))
    }
}

type Verdict<'a> = Pin<Box<dyn Future<Output = Result<Identity, Refusal>> + Send + 'a>>;

/// [`Authenticate`] behind a pointer.
pub(crate) trait DynAuthenticate: Send + Sync {
    fn authenticate<'a>(&'a self, handshake: &'a Handshake) -> Verdict<'a>;
}

impl<A: Authenticate> DynAuthenticate for A {
    fn authenticate<'a>(&'a self, handshake: &'a Handshake) -> Verdict<'a> {
        Box::pin(Authenticate::authenticate(self, handshake))
    }
}

/// The origins a browser page may connect from.
#[derive(Clone, Debug, Default)]
pub(crate) struct Origins(Option<Arc<[String]>>);

impl Origins {
    pub(crate) fn allow(&mut self, origin: &str) {
        let mut allowed: Vec<String> = self.0.as_deref().map(<[String]>::to_vec).unwrap_or_default();
        allowed.push(normalize(origin));
        self.0 = Some(allowed.into());
    }

    /// True unless an allow-list is set and the request's `Origin` is not on
    /// it. A request without `Origin` (not from a browser) passes.
    pub(crate) fn admit(&self, handshake: &Handshake) -> bool {
        let Some(allowed) = &self.0 else { return true };
        match handshake.headers().get(ORIGIN) {
            None => true,
            Some(origin) => origin.to_str().is_ok_and(|origin| allowed.iter().any(|a| *a == normalize(origin))),
        }
    }
}

/// Origins compare as ASCII without case, without a trailing slash, and
/// without the scheme's default port (browsers leave it out).
fn normalize(origin: &str) -> String {
    let origin = origin.trim().trim_end_matches('/').to_ascii_lowercase();
    for (scheme, port) in [("https://", ":443"), ("http://", ":80")] {
        if origin.starts_with(scheme)
            && let Some(bare) = origin.strip_suffix(port)
        {
            return bare.to_owned();
        }
    }
    origin
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handshake(headers: &[(&'static str, &str)]) -> Handshake {
        let mut map = http::HeaderMap::new();
        for (name, value) in headers {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        Handshake::detached(None, &"/ws".parse().unwrap(), &map)
    }

    #[test]
    fn the_allow_list_refuses_other_origins_but_not_requests_without_one() {
        let mut origins = Origins::default();
        assert!(origins.admit(&handshake(&[("origin", "https://evil.example")])), "off by default");
        origins.allow("https://chat.example:443/");
        origins.allow("http://localhost:8080");
        assert!(origins.admit(&handshake(&[("origin", "https://Chat.Example")])));
        assert!(origins.admit(&handshake(&[("origin", "http://localhost:8080")])));
        assert!(origins.admit(&handshake(&[])), "no Origin: not a browser");
        assert!(!origins.admit(&handshake(&[("origin", "https://evil.example")])));
        assert!(!origins.admit(&handshake(&[("origin", "https://chat.example.evil.example")])));
        assert!(!origins.admit(&handshake(&[("origin", "null")])));
        assert!(!origins.admit(&handshake(&[("origin", "http://localhost")])), "another port");
        assert!(origins.admit(&handshake(&[("origin", "https://chat.example:443")])));
    }

    #[test]
    fn refusals_answer_401_with_a_challenge_or_403() {
        let response = Refusal::unauthorized("a token is required").response();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(response.headers()[WWW_AUTHENTICATE], "Bearer");
        assert_eq!(response.body(), "a token is required\n");
        let response = Refusal::forbidden("not here").response();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert!(!response.headers().contains_key(WWW_AUTHENTICATE));
    }
}
