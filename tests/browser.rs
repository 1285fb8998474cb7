//! End to end in a real browser: two headless Chromium pages, driven through
//! chromedriver (WebDriver, with fantoccini), chat through the chat example's
//! page and its JavaScript module.
//!
//! Without Chromium and chromedriver these tests say so and pass, unless
//! `WSDUPLEX_REQUIRE_BROWSER` is set (as `.ci/run` does, after installing
//! them): then a missing browser is a failure.

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// A child process, killed on drop.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// True when the browser is there; a skip note (or a failure, when required) otherwise.
fn browser_available() -> bool {
    let present = Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists();
    if !present {
        assert!(
            std::env::var_os("WSDUPLEX_REQUIRE_BROWSER").is_none(),
            "WSDUPLEX_REQUIRE_BROWSER is set, but {CHROMIUM} or {CHROMEDRIVER} is missing"
        );
        eprintln!("skipping the browser tests: {CHROMIUM} and {CHROMEDRIVER} are not installed");
    }
    present
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Waits for `condition`, checking every 50 ms, for up to 20 s: a page's
/// state is only visible by asking for it.
async fn eventually<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    for _ in 0..400 {
        if condition().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

/// Starts chromedriver on a free port and waits until it answers.
async fn chromedriver() -> (Process, String) {
    let port = free_port();
    let child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let process = Process(child);
    eventually("chromedriver to listen", || async move {
        tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok()
    })
    .await;
    (process, format!("http://127.0.0.1:{port}"))
}

/// A fresh headless Chromium session with its own profile.
async fn page(webdriver: &str, profile: &Path) -> Client {
    let args = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=900,1000",
        &format!("--user-data-dir={}", profile.display()),
    ];
    let capabilities = json!({"goog:chromeOptions": {"binary": CHROMIUM, "args": args}});
    let serde_json::Value::Object(capabilities) = capabilities else { unreachable!() };
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    common::within(ClientBuilder::new(connector).capabilities(capabilities).connect(webdriver)).await.unwrap()
}

async fn text_of(page: &Client, id: &str) -> String {
    page.find(Locator::Id(id)).await.unwrap().text().await.unwrap()
}

async fn type_into(page: &Client, id: &str, text: &str) {
    let field = page.find(Locator::Id(id)).await.unwrap();
    field.clear().await.unwrap();
    field.send_keys(text).await.unwrap();
}

async fn click(page: &Client, id: &str) {
    page.find(Locator::Id(id)).await.unwrap().click().await.unwrap();
}

async fn log_shows(page: &Client, text: &str) {
    eventually(&format!("the log to show {text:?}"), || async { text_of(page, "log").await.contains(text) }).await;
}

async fn join(page: &Client, nick: &str, room: &str) {
    type_into(page, "nick", nick).await;
    type_into(page, "room", room).await;
    click(page, "join").await;
    log_shows(page, &format!("You joined {room} as {nick}")).await;
}

/// The chat example on a free port, with its page at `/`.
fn chat() -> (Process, String) {
    chat_at("127.0.0.1:0")
}

/// The chat example listening on `addr`, with its page at `/`.
fn chat_at(addr: &str) -> (Process, String) {
    let exe = std::env::current_exe().unwrap();
    let binary = exe.parent().unwrap().parent().unwrap().join("examples").join("chat");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let built = Command::new(cargo)
        .args(["build", "--quiet", "--example", "chat", "--features", "axum,tls,redis,codegen,metrics"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .unwrap();
    assert!(built.success());
    let mut child =
        Command::new(binary).args(["--listen", addr]).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    // The first line, read on a thread so that a server that never prints fails the test in time.
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut first = String::new();
        let _ = std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut first);
        let _ = tx.send(first);
    });
    let process = Process(child);
    let first = rx.recv_timeout(Duration::from_secs(20)).expect("the chat example printed its address");
    let url = first.trim().strip_prefix("listening on ").unwrap().to_owned();
    (process, url)
}

fn profile(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wsduplex-chromium-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Alice's and bob's pages (profiles named with `tag`), both showing Connected at `url`.
async fn connected_pages(webdriver: &str, url: &str, tag: &str) -> [(Client, PathBuf); 2] {
    let mut pages = Vec::new();
    for name in ["alice", "bob"] {
        let dir = profile(&format!("{name}{tag}"));
        let page = page(webdriver, &dir).await;
        page.goto(url).await.unwrap();
        eventually("the page to connect", || async { text_of(&page, "status").await == "Connected" }).await;
        pages.push((page, dir));
    }
    pages.try_into().unwrap_or_else(|_| unreachable!("two names, two pages"))
}

#[tokio::test]
async fn two_pages_chat_invite_and_see_each_other_leave() {
    if !browser_available() {
        return;
    }
    let (_chat, url) = chat();
    let (_driver, webdriver) = chromedriver().await;
    let [(alice, alice_profile), (bob, bob_profile)] = connected_pages(&webdriver, &url, "").await;

    join(&alice, "alice", "lobby").await;
    join(&bob, "bob", "den").await;

    // An invite from alice's page is answered in bob's, and the answer comes back.
    type_into(&alice, "invitee", "bob").await;
    click(&alice, "invite").await;
    eventually("bob's page to show the invite", || async {
        text_of(&bob, "invite-text").await.contains("alice invites you")
    })
    .await;
    click(&bob, "accept").await;
    log_shows(&alice, "bob accepted your invite.").await;
    log_shows(&alice, "bob joined.").await;

    // Messages both ways.
    type_into(&alice, "text", "hello bob").await;
    click(&alice, "say").await;
    log_shows(&bob, "alice: hello bob").await;
    type_into(&bob, "text", "hi alice, nice page").await;
    click(&bob, "say").await;
    log_shows(&alice, "bob: hi alice, nice page").await;

    // The page mid-conversation.
    let screenshot = alice.screenshot().await.unwrap();
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("chat-page.png");
    std::fs::write(&path, screenshot).unwrap();
    eprintln!("screenshot: {}", path.display());

    // A call from JavaScript to an unknown method rejects with -32601.
    let code = alice
        .execute_async(
            "const done = arguments[0]; window.chat.call('chat.nope', {}).then(() => done(0), (e) => done(e.code));",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(code, json!(-32601));

    // Bob's page goes away: alice sees him leave.
    bob.close().await.unwrap();
    log_shows(&alice, "bob left.").await;
    alice.close().await.unwrap();
    let _ = std::fs::remove_dir_all(alice_profile);
    let _ = std::fs::remove_dir_all(bob_profile);
}

/// Two pages in a room; the server is killed and started again on the same
/// port: both pages reconnect by themselves, rejoin the room under their
/// nicks, and chat on. Closing one for good shows Disconnected.
#[tokio::test]
async fn pages_ride_through_a_server_restart() {
    if !browser_available() {
        return;
    }
    let addr = format!("127.0.0.1:{}", free_port());
    let (server, url) = chat_at(&addr);
    let (_driver, webdriver) = chromedriver().await;
    let [(alice, alice_profile), (bob, bob_profile)] = connected_pages(&webdriver, &url, "-restart").await;
    join(&alice, "alice", "lobby").await;
    join(&bob, "bob", "lobby").await;
    log_shows(&alice, "bob joined.").await;

    drop(server);
    for page in [&alice, &bob] {
        eventually("the page to say it is reconnecting", || async {
            text_of(page, "status").await.starts_with("Reconnecting (attempt ")
        })
        .await;
    }
    let (_server, _) = chat_at(&addr);
    for (page, nick) in [(&alice, "alice"), (&bob, "bob")] {
        eventually("the page to connect again", || async { text_of(page, "status").await == "Connected" }).await;
        log_shows(page, &format!("Reconnected: back in lobby as {nick}.")).await;
    }
    type_into(&alice, "text", "still here after the restart").await;
    click(&alice, "say").await;
    log_shows(&bob, "alice: still here after the restart").await;

    // With "always accept" ticked, bob's page answers an invite by itself.
    join(&bob, "bob", "den").await;
    click(&bob, "always-accept").await;
    type_into(&alice, "invitee", "bob").await;
    click(&alice, "invite").await;
    log_shows(&alice, "bob accepted your invite.").await;
    log_shows(&bob, "You accepted alice's invite to lobby.").await;

    // Closed for good from the page: no more attempts, and it says so.
    alice.execute("window.chat.close()", vec![]).await.unwrap();
    eventually("the page to show it is disconnected", || async {
        text_of(&alice, "status").await.starts_with("Disconnected (1000")
    })
    .await;
    log_shows(&bob, "alice left.").await;
    for page in [alice, bob] {
        page.close().await.unwrap();
    }
    let _ = std::fs::remove_dir_all(alice_profile);
    let _ = std::fs::remove_dir_all(bob_profile);
}

/// The page's module reads a stream from the ticker example and streams one
/// back, in the browser: `for await` over `ticker.history`, and an async
/// generator as `ticker.total`'s parameter.
#[tokio::test]
async fn a_page_reads_a_stream_and_streams_one_back() {
    if !browser_available() {
        return;
    }
    let (_chat, url) = chat();
    let ticker = common::example::start("ticker", "codegen", &[]);
    let (_driver, webdriver) = chromedriver().await;
    let profile = profile("streams");
    let page = page(&webdriver, &profile).await;
    common::within(page.goto(&url)).await.unwrap();
    let script = r#"
        const [tickerUrl, done] = arguments;
        import("/wsduplex.js").then(async ({ connect }) => {
          const peer = connect(tickerUrl);
          await peer.ready;
          const seqs = [];
          const history = peer.incoming(await peer.call("ticker.history", { symbol: "ACME", count: 300 }));
          for await (const tick of history) seqs.push(tick.seq);
          // Leaving early tells the ticker to drop the rest.
          for await (const tick of peer.incoming(await peer.call("ticker.history", ["UMBRELLA", 100000]))) {
            if (tick.seq === 5) break;
          }
          async function* values() {
            for (let i = 1; i <= 10; i++) yield i;
          }
          const total = await peer.call("ticker.total", { values: values() });
          const fromArray = await peer.call("ticker.total", { values: peer.outgoing([0.25, 0.75]) });
          peer.close();
          done(JSON.stringify({ count: seqs.length, inOrder: seqs.every((s, i) => s === i), total, fromArray }));
        }).catch((e) => done("failed: " + e));
    "#;
    let ticker_url = json!(format!("ws://{}", ticker.addr));
    let result = common::within(page.execute_async(script, vec![ticker_url])).await.unwrap();
    let result: serde_json::Value = serde_json::from_str(result.as_str().expect("a JSON string")).unwrap_or_else(|e| {
        panic!("the page answered {result}: {e}");
    });
    assert_eq!(result, json!({"count": 300, "inOrder": true, "total": 55, "fromArray": 1}));
    let _ = page.close().await;
}
