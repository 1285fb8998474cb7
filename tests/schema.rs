//! Contract metadata, OpenRPC documents and generated TypeScript, for the chat
//! contract and for contracts of every shape the macros accept.
//!
//! The checks that need Node (the OpenRPC meta-schema, `tsc --strict`, the
//! generated client against a live server) use the packages of
//! `clients/js/package.json`, installed with `npm ci` on first use; without
//! Node and npm they are skipped, unless `WSDUPLEX_REQUIRE_NODE=1` (as in CI)
//! makes that a failure.

// `Odd::twins` has a parameter in camelCase on purpose; generated code binds it too.
#![allow(non_snake_case)]

mod common;

#[path = "../examples/shared/chat_contract.rs"]
#[allow(dead_code)]
mod chat_contract;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use common::{Raw, within, within_for};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::Notify;
use wsduplex::{Connection, Server, server::ServerBuilder};

// ---- Contracts of every shape -------------------------------------------

/// A point on the canvas.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct Point {
    /// Across.
    pub x: f64,
    /// Down.
    pub y: f64,
    pub label: Option<String>,
}

/// Something to draw (an externally tagged enum: unit, struct and tuple variants).
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub enum Shape {
    Dot,
    Circle { center: Point, radius: f64 },
    Polygon(Vec<Point>),
}

/// A command for the cursor (an internally tagged enum).
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Command_ {
    Move { to: Point },
    Stop,
}

/// What drawing can fail with.
#[derive(Debug, thiserror::Error, wsduplex::RpcError)]
pub enum DrawError {
    /// The canvas is full.
    #[error("the canvas is full")]
    #[rpc(code = 2001)]
    Full,
    /// A point lies outside the canvas; `data` is the point.
    #[error("outside the canvas")]
    #[rpc(code = 2002)]
    Outside(Point),
    /// Too many shapes at once.
    #[error("too many shapes: {asked} > {limit}")]
    #[rpc(code = 2003)]
    TooMany { limit: u32, asked: u32, note: Option<String> },
    /// A viewer failed us.
    #[error(transparent)]
    #[rpc(transparent)]
    Viewer(#[from] wsduplex::Error),
}

/// A shared canvas.
#[wsduplex::service(namespace = "canvas", callback = Viewer)]
pub trait Canvas {
    /// Adds a shape, on `layer` (0 when left out); returns its id.
    async fn add(&self, shape: Shape, layer: Option<u32>) -> Result<u64, DrawError>;
    /// Adds several shapes, moved to `at` when given.
    async fn add_many(&self, shapes: Vec<Shape>, at: Option<Point>, replace: bool) -> Result<Vec<u64>, DrawError>;
    /// Clears everything.
    async fn clear(&self);
    /// Moves the cursor.
    #[oneway]
    async fn nudge(&self, command: Command_);
    /// Width and height.
    #[method(name = "size")]
    async fn dimensions(&self) -> (u32, u32);
    /// Tags and what carries them.
    async fn tags(&self) -> HashMap<String, Vec<String>>;
    /// The caller's viewport, as it says.
    async fn view(&self) -> Result<Point, DrawError>;
    /// Asks the caller to confirm `question`.
    async fn check(&self, question: String) -> Result<bool, DrawError>;
}

/// What a canvas tells its viewers.
#[wsduplex::callback(namespace = "canvas")]
pub trait Viewer {
    /// Shape `id` was drawn.
    #[oneway]
    async fn drawn(&self, id: u64, shape: Shape);
    /// Asks whether to go on.
    async fn confirm(&self, question: String, default_answer: Option<bool>) -> bool;
    /// Where the viewer looks.
    async fn viewport(&self) -> Result<Point, DrawError>;
}

/// No namespace, no callbacks, no docs on the method.
#[wsduplex::service]
pub trait Plain {
    async fn echo(&self, text: String) -> String;
}

/// Names that clash with what the generated module uses.
#[derive(Serialize, Deserialize, JsonSchema)]
pub struct Peer {
    pub nick: String,
}

/// A type named like TypeScript's own `Record`.
#[derive(Serialize, Deserialize, JsonSchema)]
pub struct Record {
    pub id: u32,
}

/// A non-ASCII type name.
#[derive(Serialize, Deserialize, JsonSchema)]
pub struct Größe {
    pub cm: u32,
}

/// Another, that an ASCII-only name would merge with the first.
#[derive(Serialize, Deserialize, JsonSchema)]
pub struct Grüße {
    pub text: String,
}

/// Fixed fields beside a flattened map.
#[derive(Serialize, Deserialize, JsonSchema)]
pub struct Labels {
    pub name: String,
    #[serde(flatten)]
    pub extra: HashMap<String, i64>,
}

/// Shapes that trip up naive generators.
#[wsduplex::service(namespace = "odd")]
pub trait Odd {
    /// Integer map keys, and a parameter named like the options argument.
    async fn scores(&self, options: Option<u8>) -> HashMap<u32, String>;
    /// Type names of the module's own, or not ASCII.
    async fn names(&self, peer: Peer, record: Record, size: Größe, greeting: Grüße) -> Vec<Peer>;
    /// Two Rust names that are one in camelCase.
    async fn twins(&self, room_id: u32, roomId: u32) -> Labels;
    /// Only for some (an extension the meta-schema must accept).
    #[authorize(roles = "admin, owner")]
    async fn reset(&self) -> bool;
}

struct CanvasSession {
    conn: Connection<ViewerClient>,
    nudges: Arc<(Mutex<Vec<Command_>>, Notify)>,
}

impl Canvas for CanvasSession {
    async fn add(&self, shape: Shape, layer: Option<u32>) -> Result<u64, DrawError> {
        let layer = layer.unwrap_or(0);
        if layer > 10 {
            return Err(DrawError::TooMany { limit: 10, asked: layer, note: None });
        }
        let id = 100 + u64::from(layer);
        self.conn.callback().drawn(id, shape).await?;
        Ok(id)
    }

    async fn add_many(&self, shapes: Vec<Shape>, at: Option<Point>, replace: bool) -> Result<Vec<u64>, DrawError> {
        match at {
            Some(point) if point.x < 0.0 => Err(DrawError::Outside(point)),
            _ => Ok((0..shapes.len() as u64).map(|i| if replace { i } else { i + 10 }).collect()),
        }
    }

    async fn clear(&self) {}

    async fn nudge(&self, command: Command_) {
        let (nudges, signal) = &*self.nudges;
        nudges.lock().unwrap().push(command);
        signal.notify_one();
    }

    async fn dimensions(&self) -> (u32, u32) {
        (640, 480)
    }

    async fn tags(&self) -> HashMap<String, Vec<String>> {
        HashMap::from([("red".to_owned(), vec!["dot".to_owned()])])
    }

    async fn view(&self) -> Result<Point, DrawError> {
        Ok(self.conn.callback().viewport().await.map_err(wsduplex::Error::from)?)
    }

    async fn check(&self, question: String) -> Result<bool, DrawError> {
        Ok(self.conn.callback().confirm(question, None).await?)
    }
}

/// One quote of a symbol's history.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct Quote {
    pub symbol: String,
    pub seq: u64,
}

/// Streams both ways.
#[wsduplex::service(namespace = "quotes", callback = Desk)]
pub trait Quotes {
    /// `count` quotes of `symbol`.
    async fn history(&self, symbol: String, count: u64) -> wsduplex::Outgoing<Quote>;
    /// The sum of the values sent.
    async fn total(&self, values: wsduplex::Incoming<f64>) -> Result<f64, wsduplex::Error>;
    /// The sum of the caller's `series(count)`.
    async fn pull(&self, count: u64) -> Result<u64, wsduplex::Error>;
    /// What the caller's `count` counts of 0..n.
    async fn push(&self, n: u64) -> Result<u64, wsduplex::Error>;
    /// How many streams the server still sends on this connection.
    async fn open_streams(&self) -> usize;
}

/// The page's side of `Quotes`.
#[wsduplex::callback(namespace = "desk")]
pub trait Desk {
    async fn series(&self, count: u64) -> wsduplex::Outgoing<u64>;
    async fn count(&self, values: wsduplex::Incoming<u64>) -> u64;
}

struct QuotesSession {
    conn: Connection<DeskClient>,
}

impl Quotes for QuotesSession {
    async fn history(&self, symbol: String, count: u64) -> wsduplex::Outgoing<Quote> {
        wsduplex::Outgoing::iter((0..count).map(move |seq| Quote { symbol: symbol.clone(), seq }))
    }

    async fn total(&self, values: wsduplex::Incoming<f64>) -> Result<f64, wsduplex::Error> {
        use futures_util::TryStreamExt;
        values.try_fold(0.0, |sum, value| async move { Ok(sum + value) }).await
    }

    async fn pull(&self, count: u64) -> Result<u64, wsduplex::Error> {
        use futures_util::TryStreamExt;
        let series = self.conn.callback().series(count).await?;
        series.try_fold(0, |sum, value| async move { Ok(sum + value) }).await
    }

    async fn push(&self, n: u64) -> Result<u64, wsduplex::Error> {
        self.conn.callback().count(futures_util::stream::iter(0..n)).await
    }

    async fn open_streams(&self) -> usize {
        self.conn.peer().open_streams()
    }
}

type Nudges = Arc<(Mutex<Vec<Command_>>, Notify)>;

/// Serves `Canvas` on loopback; returns its `ws://` URL and what it was nudged with.
async fn serve_canvas(builder: ServerBuilder) -> (String, Nudges) {
    let server = builder.build("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/", server.local_addr().unwrap());
    let nudges: Nudges = Arc::default();
    let kept = nudges.clone();
    tokio::spawn(server.serve(move |conn| CanvasSession { conn, nudges: kept.clone() }.into_service()));
    (url, nudges)
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

// ---- Metadata -------------------------------------------------------------

#[test]
fn metadata_records_params_results_errors_and_docs() {
    let canvas = CanvasClient::contract();
    assert_eq!((canvas.name, canvas.namespace, canvas.docs), ("Canvas", Some("canvas"), "A shared canvas."));
    assert_eq!(canvas.version, env!("CARGO_PKG_VERSION"));
    let viewer = canvas.callback().expect("the callback contract is recorded");
    assert_eq!(viewer.name, "Viewer");
    assert!(PlainClient::contract().callback().is_none());

    let add = canvas.method("canvas.add").unwrap();
    let params: Vec<_> = add.params.iter().map(|p| (p.name, p.ty, p.optional)).collect();
    assert_eq!(params, [("shape", "Shape", false), ("layer", "Option<u32>", true)]);
    let codes: Vec<i32> = add.documented_errors().iter().map(|e| e.code).collect();
    assert_eq!(codes, [2001, 2002, 2003, -32025, -32021, -32020, -32023, -32024]);
    let too_many = &add.documented_errors()[2];
    assert_eq!((too_many.name, too_many.summary()), ("TooMany", "Too many shapes at once."));

    // Renamed, unit, one-way, infallible: each recorded as declared.
    let size = canvas.method("canvas.size").unwrap();
    assert_eq!((size.name, size.returns), ("dimensions", "(u32, u32)"));
    assert!(size.documented_errors().is_empty());
    assert!(canvas.method("canvas.nudge").unwrap().oneway);
    assert_eq!(canvas.method("canvas.clear").unwrap().returns, "()");
    assert_eq!(PlainClient::contract().method("echo").unwrap().docs, "");
}

#[test]
fn rpc_error_derive_converts_each_variant_into_its_error_object() {
    let object = wsduplex::ErrorObjectOwned::from(DrawError::TooMany { limit: 10, asked: 12, note: None });
    assert_eq!((object.code(), object.message()), (2003, "too many shapes: 12 > 10"));
    assert_eq!(serde_json::to_value(object.data()).unwrap(), json!({"limit": 10, "asked": 12, "note": null}));
    let object = wsduplex::ErrorObjectOwned::from(DrawError::Outside(Point { x: -1.0, y: 0.0, label: None }));
    assert_eq!(serde_json::to_value(object.data()).unwrap(), json!({"x": -1.0, "y": 0.0, "label": null}));
    let object = wsduplex::ErrorObjectOwned::from(DrawError::Full);
    assert!(object.data().is_none());
    let object = wsduplex::ErrorObjectOwned::from(DrawError::Viewer(wsduplex::Error::Closed));
    assert_eq!(object.code(), wsduplex::codes::PEER_CLOSED);
}

// ---- OpenRPC --------------------------------------------------------------

/// Compares `actual` with the checked-in file, or rewrites the file when
/// `WSDUPLEX_UPDATE_SNAPSHOTS=1`.
fn assert_snapshot(path: &Path, actual: &str) {
    if std::env::var_os("WSDUPLEX_UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        expected == actual,
        "{} is out of date with the Rust contracts; regenerate it (run with WSDUPLEX_UPDATE_SNAPSHOTS=1). Now:\n{actual}",
        path.display()
    );
}

#[test]
fn the_chat_openrpc_document_matches_its_snapshot() {
    let doc = wsduplex::codegen::openrpc::document(chat_contract::ChatClient::contract());
    let text = serde_json::to_string_pretty(&doc).unwrap() + "\n";
    assert_snapshot(&repo().join("tests/snapshots/chat.openrpc.json"), &text);
}

#[test]
fn the_canvas_openrpc_document_describes_every_shape() {
    let doc = wsduplex::codegen::openrpc::document(CanvasClient::contract());
    let add = &doc["methods"][0];
    assert_eq!(add["name"], "canvas.add");
    assert_eq!(
        add["params"][0],
        json!({"name": "shape", "required": true, "schema": {"$ref": "#/components/schemas/Shape"}})
    );
    assert_eq!(add["params"][1]["required"], false);
    assert_eq!(add["errors"][2], json!({"code": 2003, "message": "Too many shapes at once."}));
    // Error data is written by the server: `Point` as serde writes it (its
    // `label` always there), unlike the `Point` it reads (`label` optional).
    assert_eq!(add["x-error-data"]["2002"], json!({"$ref": "#/components/schemas/PointOut"}));
    assert_eq!(add["x-error-data"]["2003"]["required"], json!(["limit", "asked"]));
    let nudge = doc["methods"].as_array().unwrap().iter().find(|m| m["name"] == "canvas.nudge").unwrap();
    assert!(nudge.get("result").is_none() && nudge.get("errors").is_none(), "a notification: {nudge}");
    let clear = doc["methods"].as_array().unwrap().iter().find(|m| m["name"] == "canvas.clear").unwrap();
    assert_eq!(clear["result"]["schema"], json!({"type": "null"}));
    assert_eq!(doc["x-callbacks"]["name"], "Viewer");
    assert_eq!(doc["x-callbacks"]["methods"][1]["params"][1]["required"], false);
    let schemas = &doc["components"]["schemas"];
    for name in ["Point", "Shape", "Command_", "ErrorObject"] {
        assert!(schemas.get(name).is_some(), "{name} is defined: {schemas}");
    }
    assert_eq!(schemas["Point"]["properties"]["x"]["description"], "Across.");
    let plain = wsduplex::codegen::openrpc::document(PlainClient::contract());
    assert!(plain.get("x-callbacks").is_none() && plain.get("components").is_none());
    assert_eq!(plain["methods"][0]["name"], "echo");
}

#[tokio::test]
async fn servers_answer_rpc_discover_unless_told_not_to() {
    let (url, _) = serve_canvas(Server::builder()).await;
    let mut raw = Raw::connect(&url).await;
    let reply = raw.exchange(r#"{"jsonrpc":"2.0","id":1,"method":"rpc.discover"}"#).await;
    assert_eq!(reply["result"], wsduplex::codegen::openrpc::document(CanvasClient::contract()));

    let (url, _) = serve_canvas(Server::builder().without_discovery()).await;
    let mut raw = Raw::connect(&url).await;
    let reply = raw.exchange(r#"{"jsonrpc":"2.0","id":1,"method":"rpc.discover"}"#).await;
    assert_eq!(reply["error"]["code"], -32601);
    // The contract is still served.
    let reply = raw.exchange(r#"{"jsonrpc":"2.0","id":2,"method":"canvas.size"}"#).await;
    assert_eq!(reply["result"], json!([640, 480]));
}

#[test]
fn the_openrpc_document_marks_streams() {
    let doc = wsduplex::codegen::openrpc::document(QuotesClient::contract());
    let history = &doc["methods"][0];
    assert_eq!(history["result"]["x-wsduplex-stream"], json!(true));
    assert_eq!(history["result"]["schema"]["properties"]["values"]["items"]["$ref"], "#/components/schemas/Quote");
    assert!(history["params"][0].get("x-wsduplex-stream").is_none());
    let total = &doc["methods"][1];
    assert_eq!(total["params"][0]["x-wsduplex-stream"], json!(true));
    assert_eq!(total["params"][0]["schema"]["properties"]["values"]["items"]["type"], "number");
    assert!(total["result"].get("x-wsduplex-stream").is_none());
    let callbacks = &doc["x-callbacks"]["methods"];
    assert_eq!(callbacks[0]["result"]["x-wsduplex-stream"], json!(true));
    assert_eq!(callbacks[1]["params"][0]["x-wsduplex-stream"], json!(true));
}

// ---- TypeScript -----------------------------------------------------------

#[test]
fn the_generated_chat_client_is_up_to_date() {
    let ts = wsduplex::codegen::typescript::render(&[chat_contract::ChatClient::contract()]);
    assert_snapshot(&repo().join("clients/js/chat.js"), &ts.javascript);
    assert_snapshot(&repo().join("clients/js/chat.d.ts"), &ts.declarations);
}

#[test]
fn the_generated_canvas_client_types_every_shape() {
    let ts = wsduplex::codegen::typescript::render(&[
        CanvasClient::contract(),
        PlainClient::contract(),
        OddClient::contract(),
    ]);
    let dts = &ts.declarations;
    for line in [
        "add(shape: Shape, layer?: number | null, options?: wsduplex.CallOptions): Promise<number>;",
        "addMany(shapes: Shape[], at: Point | null | undefined, replace: boolean, options?: wsduplex.CallOptions): Promise<number[]>;",
        "clear(options?: wsduplex.CallOptions): Promise<void>;",
        "nudge(command: Command_): void;",
        "size(options?: wsduplex.CallOptions): Promise<[number, number]>;",
        "tags(options?: wsduplex.CallOptions): Promise<{ [key: string]: string[] }>;",
        "static connect(url: string, events: Viewer, options?: Omit<wsduplex.ConnectOptions, \"handlers\">): CanvasClient;",
        "confirm(question: string, defaultAnswer: boolean | null | undefined, context: wsduplex.HandlerContext): boolean | Promise<boolean>;",
        "drawn(id: number, shape: ShapeOut, context: wsduplex.HandlerContext): void | Promise<void>;",
        "view(options?: wsduplex.CallOptions): Promise<PointOut>;",
        "export declare function viewerHandlers(events: Viewer): Record<string, wsduplex.Handler>;",
        "static connect(url: string, options?: Omit<wsduplex.ConnectOptions, \"handlers\">): PlainClient;",
        "@throws {RpcError} 2002 Outside: A point lies outside the canvas; `data` is the point. (`data`: `PointOut`)",
        "/** Across. */",
        "scores(options?: number | null, _options?: wsduplex.CallOptions): Promise<{ [key: string]: string }>;",
        "names(peer: Peer, record: Record2, size: Gr__e, greeting: Gr__e2, options?: wsduplex.CallOptions): Promise<Peer[]>;",
        "twins(roomId: number, roomId_: number, options?: wsduplex.CallOptions): Promise<Labels>;",
        "export type Record2 = {",
    ] {
        assert!(dts.contains(line), "missing `{line}` in:\n{dts}");
    }
    let js = &ts.javascript;
    for line in [
        r#"return this.peer.call("canvas.add_many", { shapes, at, replace }, options);"#,
        r#"this.peer.notify("canvas.nudge", { command });"#,
        r#""canvas.confirm": (params, context) => events.confirm(...argumentsOf(params, ["question","default_answer"], ["default_answer"]), context),"#,
        r#"return this.peer.call("odd.twins", { room_id: roomId, roomId: roomId_ }, options);"#,
    ] {
        assert!(js.contains(line), "missing `{line}` in:\n{js}");
    }
}

#[test]
fn the_generated_client_types_streams_as_async_iterables() {
    let ts = wsduplex::codegen::typescript::render(&[QuotesClient::contract()]);
    let dts = &ts.declarations;
    for line in [
        "history(symbol: string, count: number, options?: wsduplex.CallOptions): Promise<AsyncIterable<Quote>>;",
        "total(values: AsyncIterable<number> | Iterable<number>, options?: wsduplex.CallOptions): Promise<number>;",
        "series(count: number, context: wsduplex.HandlerContext): AsyncIterable<number> | Iterable<number> | Promise<AsyncIterable<number> | Iterable<number>>;",
        "count(values: AsyncIterable<number>, context: wsduplex.HandlerContext): number | Promise<number>;",
    ] {
        assert!(dts.contains(line), "missing `{line}` in:\n{dts}");
    }
    let js = &ts.javascript;
    for line in [
        r#"async history(symbol, count, options) {
    return this.peer.incoming(await this.peer.call("quotes.history", { symbol, count }, options));"#,
        r#"return this.peer.call("quotes.total", { values: this.peer.outgoing(values) }, options);"#,
        r#""desk.series": async (params, context) => context.peer.outgoing(await events.series(...argumentsOf(params, ["count"]), context)),"#,
        r#""desk.count": (params, context) => events.count(...incomingAt(argumentsOf(params, ["values"]), [0], context.peer), context),"#,
    ] {
        assert!(js.contains(line), "missing `{line}` in:\n{js}");
    }
}

// ---- With Node: meta-schema, tsc --strict, the generated client live -------

/// `clients/js/node_modules`, installed with `npm ci` on first use; `None`
/// (with a note) when Node or npm is missing and `WSDUPLEX_REQUIRE_NODE` is
/// not `1`.
fn node_tools() -> Option<PathBuf> {
    static TOOLS: OnceLock<Option<PathBuf>> = OnceLock::new();
    TOOLS
        .get_or_init(|| {
            let dir = repo().join("clients/js");
            let modules = dir.join("node_modules");
            let installed = || modules.join("typescript").exists() && modules.join("ajv").exists();
            if !installed() {
                // Bounded: a registry that does not answer must not hang the tests.
                let npm = Command::new("npm").args(["ci", "--no-audit", "--no-fund"]).current_dir(&dir).spawn();
                let status = npm.map(|mut child| {
                    let deadline = std::time::Instant::now() + Duration::from_secs(300);
                    loop {
                        match child.try_wait() {
                            Ok(Some(status)) => break Some(status),
                            Ok(None) if std::time::Instant::now() < deadline => {
                                std::thread::sleep(Duration::from_millis(100))
                            }
                            _ => {
                                let _ = child.kill();
                                break None;
                            }
                        }
                    }
                });
                eprintln!("npm ci in clients/js: {status:?}");
            }
            if installed() {
                return Some(modules);
            }
            if std::env::var("WSDUPLEX_REQUIRE_NODE").is_ok_and(|v| v == "1") {
                panic!("WSDUPLEX_REQUIRE_NODE=1, but `npm ci` in clients/js did not install the tools");
            }
            eprintln!("skipped: Node and npm are needed (npm ci in clients/js)");
            None
        })
        .clone()
}

/// Runs a Node tool, killed if it outlives the test's bound.
async fn run(command: &mut tokio::process::Command) -> Output {
    let output = within_for(Duration::from_secs(120), command.kill_on_drop(true).output()).await.expect("node runs");
    eprintln!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    output
}

async fn validate_openrpc(files: &[&Path]) -> Output {
    run(tokio::process::Command::new("node").arg(repo().join("clients/js/tools/validate-openrpc.mjs")).args(files))
        .await
}

/// `tsc --strict -p dir`; with `files`, through a `tsconfig.json` in `dir`
/// that extends `clients/js/tsconfig.json`.
async fn tsc(dir: &Path, files: &[&str]) -> Output {
    if !files.is_empty() {
        let config = json!({
            "extends": repo().join("clients/js/tsconfig.json"),
            "files": files,
        });
        std::fs::write(dir.join("tsconfig.json"), config.to_string()).unwrap();
    }
    let tsc = repo().join("clients/js/node_modules/typescript/bin/tsc");
    run(tokio::process::Command::new("node").arg(tsc).arg("--strict").arg("-p").arg(dir)).await
}

/// A fresh directory holding `wsduplex.js` and its typings, for generated
/// modules; removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        Scratch::new_in(&std::env::temp_dir(), name)
    }

    fn new_in(base: &Path, name: &str) -> Scratch {
        let scratch = Scratch::empty(base, name);
        for file in ["wsduplex.js", "wsduplex.d.ts"] {
            std::fs::copy(repo().join("clients/js").join(file), scratch.join(file)).unwrap();
        }
        scratch
    }

    /// A fresh directory with nothing in it.
    fn empty(base: &Path, name: &str) -> Scratch {
        let dir = base.join(format!(".wsduplex-schema-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl std::ops::Deref for Scratch {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test]
async fn openrpc_documents_validate_against_the_meta_schema() {
    if node_tools().is_none() {
        return;
    }
    let dir = Scratch::new("openrpc");
    let mut files = vec![repo().join("tests/snapshots/chat.openrpc.json")];
    let odd = wsduplex::codegen::openrpc::document(OddClient::contract());
    assert_eq!(odd["methods"][3]["x-wsduplex-authorize"], json!({"roles": ["admin", "owner"]}));
    for (name, contract) in [
        ("canvas", CanvasClient::contract()),
        ("plain", PlainClient::contract()),
        ("odd", OddClient::contract()),
        ("quotes", QuotesClient::contract()),
    ] {
        let file = dir.join(format!("{name}.openrpc.json"));
        std::fs::write(&file, wsduplex::codegen::openrpc::document(contract).to_string()).unwrap();
        files.push(file);
    }
    let files: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    assert!(validate_openrpc(&files).await.status.success());

    // The validator does reject: an error object with a member OpenRPC does not have.
    let mut broken = wsduplex::codegen::openrpc::document(CanvasClient::contract());
    broken["methods"][0]["errors"][0]["data-schema"] = json!({});
    let broken_file = dir.join("broken.openrpc.json");
    std::fs::write(&broken_file, broken.to_string()).unwrap();
    let output = validate_openrpc(&[&broken_file]).await;
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).contains("/methods/0/errors/0"));
    // ... and checks the callback contract's method objects too.
    let mut broken = wsduplex::codegen::openrpc::document(CanvasClient::contract());
    broken["x-callbacks"]["methods"][0]["params"] = json!("not a list");
    std::fs::write(&broken_file, broken.to_string()).unwrap();
    let output = validate_openrpc(&[&broken_file]).await;
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).contains("/x-callbacks/methods/0/params"));
}

/// TypeScript that uses every generated method and type, as a page would.
const CANVAS_USAGE: &str = r#"
import {
  CanvasClient, OddClient, PlainClient, type Gr__e, type Gr__e2, type Labels, type Peer, type Point, type Record2,
  type Shape, type Viewer,
} from "./canvas.js";

const viewer: Viewer = {
  drawn(id: number, shape: Shape) {
    console.log(id, shape);
  },
  confirm: async (question, defaultAnswer) => defaultAnswer ?? question.length > 0,
  viewport: () => ({ x: 1, y: 2, label: null }),
};
const canvas = CanvasClient.connect("ws://127.0.0.1:1/", viewer, { timeout: 1000 });
async function use(): Promise<void> {
  const id: number = await canvas.add({ Circle: { center: { x: 1, y: 2 }, radius: 3 } });
  const onLayer: number = await canvas.add("Dot", 2, { timeout: 10 });
  const ids: number[] = await canvas.addMany([{ Polygon: [] }], null, true);
  await canvas.clear();
  canvas.nudge({ kind: "move", to: { x: 0, y: 0 } });
  canvas.nudge({ kind: "stop" });
  const [width, height] = await canvas.size();
  const tags: Record<string, string[]> = await canvas.tags();
  const seen: Point = await canvas.view();
  const ok: boolean = await canvas.check("sure?");
  const echoed: string = await PlainClient.connect("ws://127.0.0.1:1/").echo("hi");
  console.log(id, onLayer, ids, width, height, tags, seen, ok, echoed);

  const odd = OddClient.connect("ws://127.0.0.1:1/");
  const scores: { [key: string]: string } = await odd.scores(3, { timeout: 5 });
  const size: Gr__e = { cm: 180 };
  const greeting: Gr__e2 = { text: "hi" };
  const record: Record2 = { id: 1 };
  const peers: Peer[] = await odd.names({ nick: "ada" }, record, size, greeting);
  const labels: Labels = await odd.twins(1, 2);
  const named: string = labels.name;
  const extra: number | string | undefined = labels["weight"];
  console.log(scores, peers, named, extra, odd.peer.closed);
}
void use;
"#;

#[tokio::test]
async fn generated_typescript_type_checks_strictly() {
    if node_tools().is_none() {
        return;
    }
    // The checked-in chat client and the page-like code that uses it.
    let chat = tsc(&repo().join("clients/js"), &[]).await;
    assert!(chat.status.success(), "tsc --strict -p clients/js failed");

    // Every other shape, next to a copy of the module: imported by its path.
    let dir = Scratch::new("tsc");
    let contracts = [CanvasClient::contract(), PlainClient::contract(), OddClient::contract()];
    wsduplex::codegen::typescript::render_importing(&contracts, "./wsduplex.js").write(&dir, "canvas").unwrap();
    std::fs::write(dir.join("usage.ts"), CANVAS_USAGE).unwrap();
    assert!(tsc(&dir, &["usage.ts"]).await.status.success(), "the canvas client does not type-check");

    // Streams both ways.
    let quotes = wsduplex::codegen::typescript::render_importing(&[QuotesClient::contract()], "./wsduplex.js");
    quotes.write(&dir, "quotes").unwrap();
    std::fs::write(dir.join("quotes_usage.ts"), QUOTES_USAGE).unwrap();
    assert!(tsc(&dir, &["quotes_usage.ts"]).await.status.success(), "the quotes client does not type-check");
}

/// TypeScript using streams both ways, as a page would.
const QUOTES_USAGE: &str = r#"
import { QuotesClient, type Desk, type Quote } from "./quotes.js";

const desk: Desk = {
  series: async function* (count: number) {
    for (let i = 0; i < count; i++) yield i;
  },
  count: async (values: AsyncIterable<number>) => {
    let n = 0;
    for await (const _ of values) n++;
    return n;
  },
};
const quotes = QuotesClient.connect("ws://127.0.0.1:1/", desk);
async function use(): Promise<void> {
  for await (const quote of await quotes.history("ACME", 3)) {
    const seq: number = quote.seq;
    const symbol: string = quote.symbol;
    console.log(seq, symbol);
  }
  const first: Quote[] = [];
  for await (const quote of await quotes.history("ACME", 3, { timeout: 100 })) first.push(quote);
  const fromArray: number = await quotes.total([1, 2, 3]);
  async function* numbers() {
    yield 1.5;
  }
  const fromGenerator: number = await quotes.total(numbers());
  const sync: Desk = { series: () => [1, 2, 3], count: () => 0 };
  console.log(first, fromArray, fromGenerator, sync);
}
void use;
"#;

#[tokio::test]
async fn a_wrong_parameter_type_fails_to_type_check() {
    if node_tools().is_none() {
        return;
    }
    let dir = Scratch::new("wrong");
    let wrong = repo().join("clients/js/typecheck/wrong_param_type.ts");
    let output = tsc(&dir, &[wrong.to_str().unwrap()]).await;
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success());
    assert!(
        text.contains("wrong_param_type.ts(")
            && text
                .contains("error TS2345: Argument of type 'number' is not assignable to parameter of type 'string'."),
        "{text}"
    );
    assert_eq!(text.matches("error TS").count(), 1, "exactly the one expected error: {text}");
}

#[tokio::test]
async fn a_documented_error_s_data_is_typed_by_its_code() {
    if node_tools().is_none() {
        return;
    }
    let dir = Scratch::new("wrong-error");
    let wrong = repo().join("clients/js/typecheck/wrong_error_data.ts");
    let output = tsc(&dir, &[wrong.to_str().unwrap()]).await;
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success());
    assert!(
        text.contains("wrong_error_data.ts(")
            && text.contains("error TS2322: Type 'unknown' is not assignable to type 'string'."),
        "{text}"
    );
    assert_eq!(text.matches("error TS").count(), 1, "exactly the one expected error: {text}");
}

#[test]
fn the_npm_package_is_versioned_with_the_crate() {
    let package: Value =
        serde_json::from_str(&std::fs::read_to_string(repo().join("clients/js/package.json")).unwrap()).unwrap();
    assert_eq!(package["name"], "wsduplex");
    assert_eq!(package["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(package["exports"]["."], json!({"types": "./wsduplex.d.ts", "default": "./wsduplex.js"}));
}

/// What a project that installed the package does from Node: import it by
/// name, connect (with `ws` before Node 22), ask the server for its contract.
const PACKAGE_USE: &str = r#"
import { connect, codes } from "wsduplex";
import { createRequire } from "node:module";

const WebSocket = globalThis.WebSocket ?? createRequire(process.argv[3])("ws");
const peer = connect(process.argv[2], { WebSocket, reconnect: true });
await peer.ready;
const document = await peer.call("rpc.discover");
console.log(JSON.stringify({ title: document.info.title, state: peer.state, peerClosed: codes.PEER_CLOSED }));
peer.close();
"#;

/// What a TypeScript project that installed the package writes, under --strict.
const PACKAGE_TYPES: &str = r#"
import { connect, type Peer, type ReconnectingDetail } from "wsduplex";

export function open(url: string): Peer {
  const peer = connect(url, { reconnect: { delays: [0, 2000, 10000, 30000] }, onReconnect: (p) => p.call("rooms.rejoin") });
  peer.addEventListener("reconnecting", (event) => {
    const detail: ReconnectingDetail = event.detail;
    console.log(detail.attempt, detail.error.code);
  });
  return peer;
}
"#;

#[tokio::test]
async fn the_npm_package_packs_installs_and_works_from_node_and_typescript() {
    if node_tools().is_none() {
        return;
    }
    // Outside the repository, so only the installed package can be found.
    let project = Scratch::empty(&std::env::temp_dir(), "npm-project");
    let packed = run(tokio::process::Command::new("npm")
        .args(["pack", "--json", "--pack-destination"])
        .arg(&*project)
        .current_dir(repo().join("clients/js")))
    .await;
    assert!(packed.status.success());
    let packed: Value = serde_json::from_slice(&packed.stdout).unwrap();
    let files: Vec<&str> = packed[0]["files"].as_array().unwrap().iter().map(|f| f["path"].as_str().unwrap()).collect();
    assert_eq!(files, ["LICENSE-APACHE", "LICENSE-MIT", "README.md", "package.json", "wsduplex.d.ts", "wsduplex.js"]);
    let tarball = project.join(packed[0]["filename"].as_str().unwrap());

    std::fs::write(project.join("package.json"), r#"{"name": "uses-wsduplex", "private": true, "type": "module"}"#)
        .unwrap();
    let installed = run(tokio::process::Command::new("npm")
        .args(["install", "--no-audit", "--no-fund", "--offline"])
        .arg(&tarball)
        .current_dir(&*project))
    .await;
    assert!(installed.status.success());
    // The package brings nothing but itself.
    let modules: Vec<String> = std::fs::read_dir(project.join("node_modules"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| !name.starts_with('.'))
        .collect();
    assert_eq!(modules, ["wsduplex"]);

    let (url, _) = serve_canvas(Server::builder()).await;
    std::fs::write(project.join("use.mjs"), PACKAGE_USE).unwrap();
    // `ws` is found next to the repository's tools, for Node before 22.
    let tools = repo().join("clients/js/package.json");
    let output = run(tokio::process::Command::new("node").arg(project.join("use.mjs")).arg(&url).arg(&tools)).await;
    assert!(output.status.success());
    let seen: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(seen, json!({"title": "Canvas", "state": "connected", "peerClosed": -32021}));

    std::fs::write(project.join("use.ts"), PACKAGE_TYPES).unwrap();
    let config = json!({
        "compilerOptions": {
            "strict": true, "noEmit": true, "target": "ES2022", "module": "ES2022",
            "moduleResolution": "bundler", "lib": ["ES2022", "DOM"]
        },
        "files": ["use.ts"],
    });
    std::fs::write(project.join("tsconfig.json"), config.to_string()).unwrap();
    let tsc = repo().join("clients/js/node_modules/typescript/bin/tsc");
    let checked = run(tokio::process::Command::new("node").arg(tsc).arg("-p").arg(&*project)).await;
    assert!(checked.status.success(), "tsc --strict against the installed package failed");
}

/// Drives the generated canvas client from Node against a live server and
/// prints what it saw as JSON.
const CANVAS_LIVE: &str = r#"
import { CanvasClient } from "./canvas.js";
import { WebSocket } from "ws";

const drawn = [];
const canvas = CanvasClient.connect(process.argv[2], {
  drawn: (id, shape) => { drawn.push([id, shape]); },
  confirm: (question, defaultAnswer) => defaultAnswer ?? question === "go on?",
  viewport: () => ({ x: 3, y: 4, label: "here" }),
}, { WebSocket });
const seen = {};
seen.add = await canvas.add({ Circle: { center: { x: 1, y: 2, label: null }, radius: 3 } });
seen.onLayer = await canvas.add("Dot", 4);
seen.tooMany = await canvas.add("Dot", 99).catch((e) => ({ code: e.code, message: e.message, data: e.data }));
seen.outside = await canvas.addMany(["Dot"], { x: -1, y: 0, label: null }, true).catch((e) => ({ code: e.code, data: e.data }));
seen.many = await canvas.addMany(["Dot", "Dot"], undefined, false);
seen.clear = await canvas.clear();
canvas.nudge({ kind: "move", to: { x: 5, y: 6, label: null } });
seen.size = await canvas.size();
seen.tags = await canvas.tags();
seen.view = await canvas.view();
seen.check = await canvas.check("go on?");
seen.drawn = drawn;
console.log(JSON.stringify(seen));
canvas.peer.close();
"#;

/// Drives the generated quotes client from Node: streams both ways, on
/// both contracts, against a live server; prints what it saw as JSON.
const QUOTES_LIVE: &str = r#"
import { QuotesClient } from "./quotes.js";
import { WebSocket } from "ws";

const counted = [];
const quotes = QuotesClient.connect(process.argv[2], {
  series: async function* (count) {
    for (let i = 0; i < count; i++) yield i;
  },
  count: async (values) => {
    let n = 0;
    for await (const value of values) {
      counted.push(value);
      n++;
    }
    return n;
  },
}, { WebSocket });
const seen = {};
seen.history = [];
for await (const quote of await quotes.history("ACME", 2500)) seen.history.push(quote.seq);
seen.last = seen.history.at(-1);
seen.length = seen.history.length;
seen.inOrder = seen.history.every((seq, i) => seq === i);
delete seen.history;
// Leaving early disposes of the server's stream.
for await (const quote of await quotes.history("ACME", 1000000)) {
  if (quote.seq === 2) break;
}
seen.openAfterBreak = await quotes.openStreams();
async function* numbers() {
  for (let i = 1; i <= 100; i++) yield i;
}
seen.totalGenerator = await quotes.total(numbers());
seen.totalArray = await quotes.total([0.5, 1.5]);
seen.pull = await quotes.pull(100);
seen.push = await quotes.push(300);
seen.counted = counted.length;
seen.pageOpen = quotes.peer.openStreams;
console.log(JSON.stringify(seen));
quotes.peer.close();
"#;

#[tokio::test]
async fn generated_clients_stream_both_ways_with_a_live_server() {
    if node_tools().is_none() {
        return;
    }
    let server = Server::builder().build("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/", server.local_addr().unwrap());
    tokio::spawn(server.serve(|conn: Connection<DeskClient>| QuotesSession { conn }.into_service()));
    let dir = Scratch::new_in(&repo().join("clients/js"), "quotes-live");
    wsduplex::codegen::typescript::render(&[QuotesClient::contract()]).write(&dir, "quotes").unwrap();
    std::fs::write(dir.join("live.mjs"), QUOTES_LIVE).unwrap();
    let output = run(tokio::process::Command::new("node").arg(dir.join("live.mjs")).arg(&url)).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    let seen: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(
        seen,
        json!({
            "last": 2499, "length": 2500, "inOrder": true,
            "openAfterBreak": 0,
            "totalGenerator": 5050, "totalArray": 2,
            "pull": 4950, "push": 300, "counted": 300,
            "pageOpen": 0,
        })
    );
}

#[tokio::test]
async fn the_generated_client_calls_and_answers_a_live_server() {
    if node_tools().is_none() {
        return;
    }
    let (url, nudges) = serve_canvas(Server::builder()).await;
    // Inside clients/js, so the script finds `ws` there (Node has a
    // WebSocket of its own only from version 22).
    let dir = Scratch::new_in(&repo().join("clients/js"), "live");
    wsduplex::codegen::typescript::render(&[CanvasClient::contract()]).write(&dir, "canvas").unwrap();
    std::fs::write(dir.join("live.mjs"), CANVAS_LIVE).unwrap();
    let output = run(tokio::process::Command::new("node").arg(dir.join("live.mjs")).arg(&url)).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    let seen: Value = serde_json::from_str(stdout.trim()).unwrap();

    assert_eq!(seen["add"], 100);
    assert_eq!(seen["onLayer"], 104);
    assert_eq!(
        seen["tooMany"],
        json!({"code": 2003, "message": "too many shapes: 99 > 10", "data": {"limit": 10, "asked": 99, "note": null}})
    );
    // (Numbers as JavaScript prints them: 1.0 is 1.)
    assert_eq!(seen["outside"], json!({"code": 2002, "data": {"x": -1, "y": 0, "label": null}}));
    assert_eq!(seen["many"], json!([10, 11]));
    assert_eq!(seen["clear"], Value::Null);
    assert_eq!(seen["size"], json!([640, 480]));
    assert_eq!(seen["tags"], json!({"red": ["dot"]}));
    assert_eq!(seen["view"], json!({"x": 3, "y": 4, "label": "here"}));
    assert_eq!(seen["check"], true);
    assert_eq!(
        seen["drawn"],
        json!([[100, {"Circle": {"center": {"x": 1, "y": 2, "label": null}, "radius": 3}}], [104, "Dot"]])
    );
    // The one-way nudge reached the server.
    let (list, signal) = &*nudges;
    within(async {
        while list.lock().unwrap().is_empty() {
            signal.notified().await;
        }
    })
    .await;
    let expected = Command_::Move { to: Point { x: 5.0, y: 6.0, label: None } };
    assert_eq!(list.lock().unwrap().as_slice(), [expected]);
}
