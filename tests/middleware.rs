//! Call middleware on both ends, over real loopback connections: the order
//! they run in, what they see of a call, refusing a call (the handler never
//! runs), wrapping its future and reading how it was answered.

mod common;

use std::sync::{Arc, Mutex};

use common::{Raw, within};
use serde_json::json;
use wsduplex::middleware::{self, Call, Next, Running};
use wsduplex::server::{Handshake, Identity, Refusal};
use wsduplex::{Client, Connection, Error, ErrorObjectOwned, Server};

#[wsduplex::service(namespace = "m", callback = Screen)]
pub trait Desk {
    async fn echo(&self, text: String) -> String;
    async fn fail(&self) -> Result<u8, ErrorObjectOwned>;
    async fn panic(&self) -> u8;
    async fn secret(&self) -> u8;
    #[oneway]
    async fn poke(&self);
    /// Asks the caller's screen to show `text`; returns its answer.
    async fn show(&self, text: String) -> Result<String, Error>;
    /// How many times a handler ran on this connection.
    async fn runs(&self) -> usize;
}

#[wsduplex::callback(namespace = "screen")]
pub trait Screen {
    async fn show(&self, text: String) -> String;
}

/// What happened, in order: middleware and handlers write here.
type Log = Arc<Mutex<Vec<String>>>;

fn record(log: &Log, line: impl Into<String>) {
    log.lock().unwrap().push(line.into());
}

struct Session {
    conn: Connection<ScreenClient>,
    log: Log,
    runs: std::sync::atomic::AtomicUsize,
}

impl Session {
    fn ran(&self, what: &str) {
        self.runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        record(&self.log, format!("handler {what}"));
    }
}

impl Desk for Session {
    async fn echo(&self, text: String) -> String {
        self.ran("echo");
        text
    }
    async fn fail(&self) -> Result<u8, ErrorObjectOwned> {
        self.ran("fail");
        Err(ErrorObjectOwned::owned(4001, "no", None::<()>))
    }
    async fn panic(&self) -> u8 {
        self.ran("panic");
        panic!("on purpose")
    }
    async fn secret(&self) -> u8 {
        self.ran("secret");
        7
    }
    async fn poke(&self) {
        self.ran("poke");
    }
    async fn show(&self, text: String) -> Result<String, Error> {
        self.conn.callback().show(text).await
    }
    async fn runs(&self) -> usize {
        self.runs.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Records entering, and leaving with the answer's error code.
fn tracer(name: &'static str, log: &Log) -> impl middleware::Middleware {
    let log = log.clone();
    middleware::from_fn(move |call: &Call<'_>, next: Next<'_>| {
        record(&log, format!("{name} in {}", call.method()));
        let running = next.run();
        let log = log.clone();
        Ok(Running::new(async move {
            let answered = running.await;
            record(&log, format!("{name} out {:?}", answered.error_code()));
            answered
        }))
    })
}

/// Refuses `m.secret` and `m.poke` (and any call whose params say "forbidden").
fn guard(log: &Log) -> impl middleware::Middleware {
    let log = log.clone();
    middleware::from_fn(move |call: &Call<'_>, next: Next<'_>| {
        let forbidden = call.params().is_some_and(|p| p.get().contains("forbidden"));
        if call.method() == "m.secret" || call.method() == "m.poke" || forbidden {
            record(&log, format!("guard refused {}", call.method()));
            return Err(ErrorObjectOwned::owned(-32050, "not allowed", None::<()>));
        }
        Ok(next.run())
    })
}

fn ada(handshake: &Handshake) -> Result<Identity, Refusal> {
    let _ = handshake;
    Ok(Identity::user("ada"))
}

struct Setup {
    url: String,
    log: Log,
}

async fn serve(log: Log, builder: wsduplex::server::ServerBuilder) -> Setup {
    let server = within(builder.build("127.0.0.1:0")).await.unwrap();
    let url = format!("ws://{}", server.local_addr().unwrap());
    let session_log = log.clone();
    tokio::spawn(server.serve(move |conn: Connection<ScreenClient>| {
        Session { conn, log: session_log.clone(), runs: Default::default() }.into_service()
    }));
    Setup { url, log }
}

struct Tv(Log);

impl Screen for Tv {
    async fn show(&self, text: String) -> String {
        record(&self.0, format!("screen shows {text}"));
        format!("showing {text}")
    }
}

fn take(log: &Log) -> Vec<String> {
    std::mem::take(&mut *log.lock().unwrap())
}

#[tokio::test]
async fn middleware_run_in_order_around_the_handler_and_see_how_it_ended() {
    let log = Log::default();
    let builder = Server::builder().middleware(tracer("a", &log)).middleware(tracer("b", &log));
    let Setup { url, log } = serve(log, builder).await;
    let client = within(DeskClient::connect_with(Client::builder(), &url, Tv(log.clone()))).await.unwrap();

    assert_eq!(within(client.echo("hi".into())).await.unwrap(), "hi");
    assert_eq!(take(&log), ["a in m.echo", "b in m.echo", "handler echo", "b out None", "a out None"]);

    assert!(within(client.fail()).await.is_err());
    assert_eq!(take(&log), ["a in m.fail", "b in m.fail", "handler fail", "b out Some(4001)", "a out Some(4001)"]);

    assert!(within(client.panic()).await.is_err());
    assert_eq!(take(&log)[3], "b out Some(-32603)");
}

#[tokio::test]
async fn a_refused_call_never_reaches_its_handler() {
    let log = Log::default();
    let builder = Server::builder().middleware(tracer("outer", &log)).middleware(guard(&log));
    let Setup { url, log } = serve(log, builder).await;
    let client = within(DeskClient::connect_with(Client::builder(), &url, Tv(log.clone()))).await.unwrap();

    match within(client.secret()).await {
        Err(Error::Rpc(object)) => assert_eq!((object.code(), object.message()), (-32050, "not allowed")),
        other => panic!("expected the refusal, got {other:?}"),
    }
    // The outer middleware saw the refusal as the answer.
    assert_eq!(take(&log), ["outer in m.secret", "guard refused m.secret", "outer out Some(-32050)"]);
    // A refused notification runs nothing either, and gets no answer.
    within(client.poke()).await.unwrap();
    // The count says no handler ran (the call that asks for it is the first).
    assert_eq!(within(client.runs()).await.unwrap(), 0);
    let log = take(&log);
    assert_eq!(log[..3], ["outer in m.poke", "guard refused m.poke", "outer out Some(-32050)"]);
    assert!(!log.iter().any(|line| line.starts_with("handler")), "{log:?}");
}

#[tokio::test]
async fn middleware_see_unknown_methods_bad_params_and_notifications() {
    let log = Log::default();
    let builder = Server::builder().authenticate(ada).middleware(tracer("t", &log));
    let Setup { url, log } = serve(log, builder).await;
    let mut raw = Raw::connect(&url).await;
    let unknown = raw.exchange(r#"{"jsonrpc":"2.0","id":1,"method":"m.nope"}"#).await;
    assert_eq!(unknown["error"]["code"], json!(-32601));
    assert_eq!(unknown["error"]["data"], json!("m.nope"));
    assert_eq!(take(&log), ["t in m.nope", "t out Some(-32601)"]);

    let bad = raw.exchange(r#"{"jsonrpc":"2.0","id":2,"method":"m.echo","params":{"text":5}}"#).await;
    assert_eq!(bad["error"]["code"], json!(-32602));
    assert_eq!(take(&log), ["t in m.echo", "t out Some(-32602)"]);

    raw.send(r#"{"jsonrpc":"2.0","method":"m.poke"}"#).await;
    assert_eq!(raw.exchange(r#"{"jsonrpc":"2.0","id":3,"method":"m.runs"}"#).await["result"], json!(1));
    assert_eq!(take(&log), ["t in m.poke", "handler poke", "t out None", "t in m.runs", "t out None"]);
}

#[tokio::test]
async fn a_middleware_sees_the_connection_and_the_call() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let kept = seen.clone();
    let inspect = middleware::from_fn(move |call: &Call<'_>, next: Next<'_>| {
        kept.lock().unwrap().push(json!({
            "user": call.user(),
            "remote": call.remote_addr().map(|a| a.ip().to_string()),
            "method": call.method(),
            "id": call.id(),
            "notification": call.is_notification(),
            "params": call.params().map(|p| p.get().to_owned()),
            "connection": call.connection_id().to_string(),
        }));
        Ok(next.run())
    });
    let Setup { url, log } = serve(Log::default(), Server::builder().authenticate(ada).middleware(inspect)).await;
    let client = within(DeskClient::connect_with(Client::builder(), &url, Tv(log))).await.unwrap();
    assert_eq!(within(client.echo("hi".into())).await.unwrap(), "hi");
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    let call = &seen[0];
    assert_eq!(call["user"], json!("ada"));
    assert_eq!(call["remote"], json!("127.0.0.1"));
    assert_eq!(call["method"], json!("m.echo"));
    assert_eq!(call["id"], json!("1"));
    assert_eq!(call["notification"], json!(false));
    assert_eq!(call["params"], json!(r#"{"text":"hi"}"#));
    assert!(call["connection"].as_str().is_some_and(|id| !id.is_empty()));
}

#[tokio::test]
async fn a_clients_middleware_runs_around_its_callbacks() {
    let Setup { url, .. } = serve(Log::default(), Server::builder()).await;
    let log = Log::default();
    let builder = Client::builder().middleware(tracer("client", &log)).middleware(guard(&log));
    let client = within(DeskClient::connect_with(builder, &url, Tv(log.clone()))).await.unwrap();
    assert_eq!(within(client.show("news".into())).await.unwrap(), "showing news");
    assert_eq!(take(&log), ["client in screen.show", "screen shows news", "client out None"]);
    // Refused on the client: the server's callback call fails with the refusal.
    let failed = within(client.show("forbidden".into())).await.unwrap_err();
    // The server's handler propagated the callback's failure: -32025 with the refusal as data.
    let object = ErrorObjectOwned::from(failed);
    assert_eq!(object.code(), wsduplex::codes::PEER_ERROR);
    assert!(object.data().is_some_and(|data| data.get().contains("-32050")), "{object:?}");
    assert_eq!(take(&log), ["client in screen.show", "guard refused screen.show", "client out Some(-32050)"]);
}
