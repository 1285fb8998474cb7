//! Per-method authorization over real loopback connections: a method
//! declared `#[authorize(role = "...")]` runs only for a connection whose
//! identity (from the authentication hook) has one of its roles; others get
//! -32030 before the params are read, and the handler never runs. The
//! requirement shows in the OpenRPC document and the TypeScript docs.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::{Raw, within};
use serde_json::json;
use wsduplex::server::{Handshake, Identity, Refusal};
use wsduplex::{Connection, Error, Server, codes};

/// Moderation.
#[wsduplex::service(namespace = "mod")]
pub trait Moderation {
    /// Deletes messages older than `before`; returns how many.
    #[authorize(role = "admin")]
    async fn purge(&self, before: u64) -> u64;
    /// Mutes `nick`.
    #[authorize(roles = "admin, moderator")]
    async fn mute(&self, nick: String) -> bool;
    #[oneway]
    #[authorize(role = "admin")]
    async fn announce(&self, text: String);
    /// Anyone: how many guarded handlers ran.
    async fn runs(&self) -> usize;
}

struct Desk(Arc<AtomicUsize>);

impl Moderation for Desk {
    async fn purge(&self, before: u64) -> u64 {
        self.0.fetch_add(1, Ordering::SeqCst);
        before / 2
    }
    async fn mute(&self, _nick: String) -> bool {
        self.0.fetch_add(1, Ordering::SeqCst);
        true
    }
    async fn announce(&self, _text: String) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
    async fn runs(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// `?token=root` is an admin, `mod` a moderator, `guest` has no role.
fn roles(handshake: &Handshake) -> Result<Identity, Refusal> {
    Ok(match handshake.query("token").as_deref() {
        Some("root") => Identity::user("ada").with_role("admin"),
        Some("mod") => Identity::user("bob").with_role("moderator").with_role("reader"),
        Some("guest") => Identity::user("carol"),
        _ => Identity::anonymous(),
    })
}

/// Serves `Moderation`; each connection counts its own guarded runs.
async fn serve() -> String {
    let server = within(Server::builder().authenticate(roles).build("127.0.0.1:0")).await.unwrap();
    let url = format!("ws://{}", server.local_addr().unwrap());
    tokio::spawn(server.serve(|_conn: Connection| Desk(Arc::default()).into_service()));
    url
}

async fn client(url: &str, token: &str) -> ModerationClient {
    within(ModerationClient::connect(&format!("{url}/?token={token}"))).await.unwrap()
}

#[tokio::test]
async fn a_method_runs_only_for_a_connection_with_one_of_its_roles() {
    let url = serve().await;
    let admin = client(&url, "root").await;
    assert_eq!(within(admin.purge(10)).await.unwrap(), 5);
    assert!(within(admin.mute("eve".into())).await.unwrap());
    assert_eq!(within(admin.runs()).await.unwrap(), 2);

    let moderator = client(&url, "mod").await;
    assert!(within(moderator.mute("eve".into())).await.unwrap(), "one of the roles is enough");
    match within(moderator.purge(10)).await {
        Err(Error::Rpc(object)) => {
            assert_eq!(object.code(), codes::NOT_AUTHORIZED);
            assert_eq!(object.message(), "Not authorized: the method requires the role `admin`");
            assert_eq!(object.data().map(|d| d.get()), Some(r#"{"roles":["admin"]}"#));
        }
        other => panic!("expected -32030, got {other:?}"),
    }
    assert_eq!(within(moderator.runs()).await.unwrap(), 1, "only mute ran");

    for token in ["guest", "nobody"] {
        let guest = client(&url, token).await;
        let refused = within(guest.mute("eve".into())).await.unwrap_err();
        assert_eq!(refused.code(), Some(codes::NOT_AUTHORIZED));
        // A one-way call is dropped as quietly as it came.
        within(guest.announce("hi".into())).await.unwrap();
        assert_eq!(within(guest.runs()).await.unwrap(), 0, "no guarded handler ran for {token}");
    }
}

#[tokio::test]
async fn the_roles_are_checked_before_the_params_are_read() {
    let url = serve().await;
    let mut guest = Raw::connect(&format!("{url}/?token=guest")).await;
    let bad = r#"{"jsonrpc":"2.0","id":1,"method":"mod.purge","params":{"before":"not a number"}}"#;
    assert_eq!(guest.exchange(bad).await["error"]["code"], json!(codes::NOT_AUTHORIZED));
    let mut admin = Raw::connect(&format!("{url}/?token=root")).await;
    assert_eq!(admin.exchange(bad).await["error"]["code"], json!(codes::INVALID_PARAMS));
}

#[test]
fn the_requirement_shows_in_openrpc_and_typescript() {
    let doc = wsduplex::codegen::openrpc::document(ModerationClient::contract());
    assert_eq!(doc["methods"][0]["x-wsduplex-authorize"], json!({"roles": ["admin"]}));
    assert_eq!(doc["methods"][1]["x-wsduplex-authorize"], json!({"roles": ["admin", "moderator"]}));
    assert!(doc["methods"][3].get("x-wsduplex-authorize").is_none());
    assert_eq!(ModerationClient::contract().method("mod.mute").unwrap().roles, ["admin", "moderator"]);

    let ts = wsduplex::codegen::typescript::render(&[ModerationClient::contract()]);
    assert!(ts.declarations.contains("Requires the role `admin` (else -32030)."), "{}", ts.declarations);
    assert!(ts.declarations.contains("Requires the role `admin` or `moderator` (else -32030)."));
}

#[tokio::test]
async fn middleware_see_the_connections_roles() {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let kept = seen.clone();
    let inspect = wsduplex::middleware::from_fn(move |call, next| {
        kept.lock().unwrap().push(call.roles().iter().map(|r| r.to_string()).collect::<Vec<_>>());
        Ok(next.run())
    });
    let server = within(Server::builder().authenticate(roles).middleware(inspect).build("127.0.0.1:0")).await.unwrap();
    let url = format!("ws://{}", server.local_addr().unwrap());
    tokio::spawn(server.serve(|_conn: Connection| Desk(Arc::default()).into_service()));
    let moderator = client(&url, "mod").await;
    assert_eq!(within(moderator.runs()).await.unwrap(), 0);
    assert_eq!(seen.lock().unwrap().as_slice(), [vec!["moderator".to_owned(), "reader".to_owned()]]);
}
