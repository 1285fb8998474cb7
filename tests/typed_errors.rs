//! Typed errors on the calling side: a method declared `-> Result<T, E>` with
//! `#[derive(RpcError)]` gives the caller back an `E` to match on, decoded
//! from the error object's code and data, over a real loopback connection;
//! objects `E` does not decode stay `Error::Rpc`. The server side answers
//! with whatever object the test asks for, so every shape is exercised.

mod common;

use common::within;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use wsduplex::{CallError, Connection, Error, ErrorObjectOwned, Server, codes};

#[derive(Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Point {
    x: i32,
    y: i32,
}

const FULL: i32 = 2001;

/// What drawing fails with.
#[derive(Debug, PartialEq, thiserror::Error, wsduplex::RpcError)]
pub enum DrawError {
    /// Full (a code given as a constant).
    #[error("the canvas is full")]
    #[rpc(code = FULL)]
    Full,
    /// Outside; `data` is the point.
    #[error("outside the canvas")]
    #[rpc(code = 2002)]
    Outside(Point),
    /// Too many.
    #[error("too many shapes: {asked} > {limit}")]
    #[rpc(code = 2003)]
    TooMany { limit: u32, asked: u32, note: Option<String> },
    /// A layer's own error, passed through.
    #[error(transparent)]
    #[rpc(transparent)]
    Layer(#[from] LayerError),
    /// A peer failed us.
    #[error(transparent)]
    #[rpc(transparent)]
    Peer(#[from] PeerFailure),
}

/// A nested error enum.
#[derive(Debug, PartialEq, thiserror::Error, wsduplex::RpcError)]
pub enum LayerError {
    /// Locked.
    #[error("the layer is locked")]
    #[rpc(code = 3001)]
    Locked,
}

/// `wsduplex::Error` is not `PartialEq`: compare its code.
#[derive(Debug, thiserror::Error, wsduplex::RpcError)]
pub enum PeerFailure {
    /// What a handler answers with when a callback fails.
    #[error(transparent)]
    #[rpc(transparent)]
    Call(#[from] Error),
}

impl PartialEq for PeerFailure {
    fn eq(&self, other: &Self) -> bool {
        let (PeerFailure::Call(a), PeerFailure::Call(b)) = (self, other);
        a.code() == b.code()
    }
}

/// What the server implements: it fails with the object it is given.
#[wsduplex::service(namespace = "draw")]
pub trait Answering {
    async fn fail(&self, code: i32, data: Option<Value>) -> Result<u8, ErrorObjectOwned>;
}

/// What the client calls: the same wire method, declared with typed errors.
#[wsduplex::service(namespace = "draw")]
pub trait Typed {
    async fn fail(&self, code: i32, data: Option<Value>) -> Result<u8, DrawError>;
}

struct Echoing;

impl Answering for Echoing {
    async fn fail(&self, code: i32, data: Option<Value>) -> Result<u8, ErrorObjectOwned> {
        Err(ErrorObjectOwned::owned(code, "as asked", data))
    }
}

async fn typed_client() -> TypedClient {
    let server = within(Server::builder().build("127.0.0.1:0")).await.unwrap();
    let url = format!("ws://{}", server.local_addr().unwrap());
    tokio::spawn(server.serve(|_conn: Connection| Echoing.into_service()));
    within(TypedClient::connect(&url)).await.unwrap()
}

/// The method's own error, or the code of what it was instead.
async fn outcome(client: &TypedClient, code: i32, data: Option<Value>) -> Result<DrawError, Option<i32>> {
    match within(client.fail(code, data)).await {
        Err(CallError::Method(error)) => Ok(error),
        Err(CallError::Call(error)) => Err(error.code()),
        Ok(_) => panic!("the server always fails"),
    }
}

#[tokio::test]
async fn each_variant_comes_back_from_its_code_and_data() {
    let client = typed_client().await;
    assert_eq!(outcome(&client, FULL, None).await, Ok(DrawError::Full));
    assert_eq!(
        outcome(&client, 2002, Some(json!({"x": 1, "y": -2}))).await,
        Ok(DrawError::Outside(Point { x: 1, y: -2 }))
    );
    let too_many = json!({"limit": 3, "asked": 5, "note": "slow down"});
    assert_eq!(
        outcome(&client, 2003, Some(too_many)).await,
        Ok(DrawError::TooMany { limit: 3, asked: 5, note: Some("slow down".into()) })
    );
    // A missing `Option` field reads as `None`.
    assert_eq!(
        outcome(&client, 2003, Some(json!({"limit": 3, "asked": 5}))).await,
        Ok(DrawError::TooMany { limit: 3, asked: 5, note: None })
    );
    // Pass-through variants: a nested enum's code, and the codes a handler
    // answers with when it propagates a `wsduplex::Error`.
    assert_eq!(outcome(&client, 3001, None).await, Ok(DrawError::Layer(LayerError::Locked)));
    let peer_closed = Error::Rpc(ErrorObjectOwned::owned(codes::PEER_CLOSED, "closed", None::<()>));
    assert_eq!(outcome(&client, codes::PEER_CLOSED, None).await, Ok(DrawError::Peer(PeerFailure::Call(peer_closed))));
}

#[tokio::test]
async fn objects_the_error_type_does_not_decode_stay_error_objects() {
    let client = typed_client().await;
    // A code no variant has.
    assert_eq!(outcome(&client, 4040, None).await, Err(Some(4040)));
    // A variant's code with data of another shape, or without its required fields.
    assert_eq!(outcome(&client, 2002, Some(json!("left"))).await, Err(Some(2002)));
    assert_eq!(outcome(&client, 2003, Some(json!({"limit": 3}))).await, Err(Some(2003)));
    // The peer refusing the call is not the method's error, though `Error` passes through.
    assert_eq!(outcome(&client, codes::SERVER_BUSY, None).await, Err(Some(codes::SERVER_BUSY)));
    // And nothing is lost: the object is whole.
    match within(client.fail(2002, Some(json!("left")))).await {
        Err(CallError::Call(Error::Rpc(object))) => {
            assert_eq!((object.message(), object.data().map(|d| d.get())), ("as asked", Some("\"left\"")));
        }
        other => panic!("expected the error object, got {other:?}"),
    }
}

#[tokio::test]
async fn a_method_declared_with_error_objects_gets_its_own_codes_back_as_its_errors() {
    let server = within(Server::builder().build("127.0.0.1:0")).await.unwrap();
    let url = format!("ws://{}", server.local_addr().unwrap());
    tokio::spawn(server.serve(|_conn: Connection| Echoing.into_service()));
    let client = within(AnsweringClient::connect(&url)).await.unwrap();
    let code = |outcome: Result<u8, CallError<ErrorObjectOwned>>| match outcome {
        Err(CallError::Method(object)) => Ok(object.code()),
        Err(CallError::Call(error)) => Err(error.code()),
        Ok(_) => panic!("the server always fails"),
    };
    assert_eq!(code(within(client.fail(4040, None)).await), Ok(4040));
    assert_eq!(code(within(client.fail(codes::PEER_CLOSED, None)).await), Ok(codes::PEER_CLOSED));
    // What the peer's engine answers with is not the method's error.
    assert_eq!(code(within(client.fail(codes::SERVER_BUSY, None)).await), Err(Some(codes::SERVER_BUSY)));
    assert_eq!(code(within(client.fail(codes::INVALID_PARAMS, None)).await), Err(Some(codes::INVALID_PARAMS)));
}

#[tokio::test]
async fn a_call_error_propagates_into_a_handler_error_object_as_a_peer_error() {
    let client = typed_client().await;
    let failure = within(client.fail(FULL, None)).await.unwrap_err();
    assert_eq!(failure.to_string(), "the method failed: the canvas is full");
    let object = ErrorObjectOwned::from(failure);
    assert_eq!(object.code(), codes::PEER_ERROR);
    let inner: Value = serde_json::from_str(object.data().unwrap().get()).unwrap();
    assert_eq!(inner["code"], json!(FULL));
}

/// The other way: a callback declared with typed errors gives the server
/// back the client's error to match on.
#[wsduplex::service(namespace = "board", callback = Pen)]
pub trait Board {
    /// What the server saw when it asked the client's pen to draw at (x, y).
    async fn try_pen(&self, x: i32, y: i32) -> Result<String, ErrorObjectOwned>;
}

#[wsduplex::callback(namespace = "pen")]
pub trait Pen {
    async fn draw(&self, x: i32, y: i32) -> Result<u8, DrawError>;
}

struct Boarding(Connection<PenClient>);

impl Board for Boarding {
    async fn try_pen(&self, x: i32, y: i32) -> Result<String, ErrorObjectOwned> {
        Ok(match self.0.callback().draw(x, y).await {
            Ok(drawn) => format!("drew {drawn}"),
            Err(CallError::Method(DrawError::Outside(Point { x, y }))) => format!("outside at {x},{y}"),
            Err(CallError::Method(DrawError::TooMany { limit, asked, note })) => {
                format!("too many: {asked} > {limit} ({note:?})")
            }
            Err(CallError::Method(other)) => format!("another error: {other}"),
            Err(CallError::Call(error)) => format!("no answer: {error}"),
        })
    }
}

struct Drawing;

impl Pen for Drawing {
    async fn draw(&self, x: i32, y: i32) -> Result<u8, DrawError> {
        match (x, y) {
            (x, y) if x < 0 || y < 0 => Err(DrawError::Outside(Point { x, y })),
            (x, _) if x > 100 => Err(DrawError::TooMany { limit: 100, asked: x as u32, note: None }),
            _ => Ok(1),
        }
    }
}

#[tokio::test]
async fn a_callback_with_typed_errors_gives_the_server_the_clients_error() {
    let server = within(Server::builder().build("127.0.0.1:0")).await.unwrap();
    let url = format!("ws://{}", server.local_addr().unwrap());
    tokio::spawn(server.serve(|conn| Boarding(conn).into_service()));
    let board = within(BoardClient::connect(&url, Drawing)).await.unwrap();
    assert_eq!(within(board.try_pen(3, 4)).await.unwrap(), "drew 1");
    assert_eq!(within(board.try_pen(-1, 2)).await.unwrap(), "outside at -1,2");
    assert_eq!(within(board.try_pen(101, 0)).await.unwrap(), "too many: 101 > 100 (None)");
}

/// A method's `#[errors(..)]` documents only the variants it names: its own
/// codes, and a pass-through variant's codes only where it is listed.
#[wsduplex::service(namespace = "doc")]
pub trait Documented {
    #[errors(Full)]
    async fn fill(&self) -> Result<u8, DrawError>;
    #[errors(TooMany, Outside, Layer)]
    async fn place(&self) -> Result<u8, DrawError>;
    #[errors()]
    async fn quiet(&self) -> Result<u8, DrawError>;
    async fn everything(&self) -> Result<u8, DrawError>;
}

#[test]
fn errors_named_on_a_method_are_the_only_ones_it_documents() {
    let codes = |wire: &str| -> Vec<i32> {
        DocumentedClient::contract().method(wire).unwrap().documented_errors().iter().map(|e| e.code).collect()
    };
    assert_eq!(codes("doc.fill"), [FULL]);
    // In the order listed; a pass-through variant brings its field's codes.
    assert_eq!(codes("doc.place"), [2003, 2002, 3001]);
    assert_eq!(codes("doc.quiet"), Vec::<i32>::new());
    // Without the attribute: every variant, the pass-through `wsduplex::Error` codes included.
    let all = codes("doc.everything");
    assert_eq!(&all[..4], [FULL, 2002, 2003, 3001]);
    assert!(all.contains(&codes::PEER_CLOSED) && all.contains(&codes::TIMED_OUT));
}
