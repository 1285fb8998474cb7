//! One hub across three server nodes over a real `redis-server` (started by
//! each test on a free port, persistence off): every targeting mode, group
//! changes from any node, callbacks with replies across nodes with their
//! deadlines and closed connections, and Redis killed and restarted. A
//! server process that dies mid-call is in `chat_example.rs`.
//!
//! Skipped where `redis-server` is not installed, unless
//! `WSDUPLEX_REQUIRE_REDIS=1` (as in CI).

mod common;

use std::time::Duration;

use common::redis::RedisServer;
use common::{Raw, within};
use tokio::sync::mpsc;
use wsduplex::{
    Client, Connection, ConnectionId, Error, Hub, Server, hub::Audience, redis::RedisBackplane, redis::RedisOptions,
    server::Handshake, server::Identity, server::ServerHandle,
};

/// Distinct numbers for made-up connection ids.
fn made_up_sequence() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// What a client can ask of its node.
#[wsduplex::service(namespace = "bp", callback = Screen)]
pub trait Control {
    /// The caller's connection id.
    async fn me(&self) -> String;
    /// Joins `group`.
    async fn join(&self, group: String) -> bool;
}

/// What a node tells its clients.
#[wsduplex::callback(namespace = "bp")]
pub trait Screen {
    #[oneway]
    async fn show(&self, text: String);
    async fn ask(&self, question: String) -> String;
    /// Never answers.
    async fn stall(&self) -> String;
}

struct Session(Connection<ScreenClient>);

impl Control for Session {
    async fn me(&self) -> String {
        self.0.id().to_string()
    }

    async fn join(&self, group: String) -> bool {
        self.0.join_group(&group).await
    }
}

/// A client that records what it is shown, and says when it stalls.
struct Viewer {
    name: String,
    shown: mpsc::UnboundedSender<String>,
    stalling: mpsc::UnboundedSender<()>,
}

impl Screen for Viewer {
    async fn show(&self, text: String) {
        let _ = self.shown.send(text);
    }

    async fn ask(&self, question: String) -> String {
        format!("{} says {question}", self.name)
    }

    async fn stall(&self) -> String {
        let _ = self.stalling.send(());
        std::future::pending().await
    }
}

/// One server node: a hub on the Redis backplane and a server for it.
struct Node {
    hub: Hub<ScreenClient>,
    handle: ServerHandle,
}

impl Node {
    async fn start(redis: &RedisServer) -> Node {
        Node::start_with(redis, RedisOptions::new().prefix("test").call_timeout(Duration::from_secs(5))).await
    }

    async fn start_with(redis: &RedisServer, options: RedisOptions) -> Node {
        let backplane = within(RedisBackplane::connect(&redis.url(), options)).await.unwrap();
        let hub = Hub::<ScreenClient>::with_backplane(backplane);
        // `?user=NAME` names the connection's user.
        let authenticate = |handshake: &Handshake| match handshake.query("user") {
            Some(user) => Ok(Identity::user(user)),
            None => Ok(Identity::anonymous()),
        };
        let server = within(Server::builder().hub(&hub).authenticate(authenticate).build("127.0.0.1:0")).await.unwrap();
        let handle = server.start(|conn| Session(conn).into_service());
        Node { hub, handle }
    }

    fn url(&self, user: Option<&str>) -> String {
        let query = user.map(|u| format!("?user={u}")).unwrap_or_default();
        format!("ws://{}/{query}", self.handle.local_addr())
    }
}

/// A connected client and what it has been shown.
struct Viewing {
    client: ControlClient<Client>,
    id: ConnectionId,
    shown: mpsc::UnboundedReceiver<String>,
    stalling: mpsc::UnboundedReceiver<()>,
}

impl Viewing {
    async fn connect(node: &Node, name: &str, user: Option<&str>) -> Viewing {
        let (tx, shown) = mpsc::unbounded_channel();
        let (stalls, stalling) = mpsc::unbounded_channel();
        let viewer = Viewer { name: name.into(), shown: tx, stalling: stalls };
        let client = within(ControlClient::connect(&node.url(user), viewer)).await.unwrap();
        let id = within(client.me()).await.unwrap().parse().unwrap();
        Viewing { client, id, shown, stalling }
    }

    /// The id of a connection node `node` does not hold.
    fn dummy_id(node: &Node) -> ConnectionId {
        format!("{:016x}-{}", node.hub.node(), 1_000_000 + made_up_sequence()).parse().unwrap()
    }

    async fn next(&mut self) -> String {
        within(self.shown.recv()).await.expect("the client is gone")
    }

    /// The next thing shown is `expected`.
    async fn sees(&mut self, expected: &str) {
        assert_eq!(self.next().await, expected);
    }
}

/// Everyone gets `marker` from `node`; each of `viewers` must see `marker`
/// next, proving it saw nothing before it that it should not have.
async fn all_see_next(node: &Node, viewers: &mut [&mut Viewing], marker: &str) {
    within(node.hub.all().show(marker.into())).await.unwrap();
    for viewer in viewers.iter_mut() {
        viewer.sees(marker).await;
    }
}

/// The next text frame a raw socket gets, as it came.
async fn next_text(raw: &mut Raw) -> String {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    loop {
        match within(raw.socket.next()).await {
            Some(Ok(Message::Text(text))) => return text.to_string(),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            other => panic!("expected a text frame, got {other:?}"),
        }
    }
}

macro_rules! redis_or_skip {
    () => {
        match RedisServer::start().await {
            Some(redis) => redis,
            None => return,
        }
    };
}

#[tokio::test]
async fn every_targeting_mode_reaches_every_node() {
    let redis = redis_or_skip!();
    let nodes = [Node::start(&redis).await, Node::start(&redis).await, Node::start(&redis).await];
    // Connection ids are unique across nodes: each hub has its own node part.
    assert_ne!(nodes[0].hub.node(), nodes[1].hub.node());

    let mut a = Viewing::connect(&nodes[0], "a", Some("ada")).await;
    let mut b = Viewing::connect(&nodes[1], "b", None).await;
    let mut c = Viewing::connect(&nodes[2], "c", Some("ada")).await;
    let mut d = Viewing::connect(&nodes[2], "d", None).await;

    // all(), from each node.
    for (i, node) in nodes.iter().enumerate() {
        node.hub.all().show(format!("all from {i}")).await.unwrap();
        for viewer in [&mut a, &mut b, &mut c, &mut d] {
            viewer.sees(&format!("all from {i}")).await;
        }
    }

    // group(): members on nodes 0 and 2, sent from node 1, which has none.
    // A join returns once its node hears the group: a message right after reaches it.
    assert!(within(a.client.join("g".into())).await.unwrap());
    assert!(within(c.client.join("g".into())).await.unwrap());
    nodes[1].hub.group("g").show("to g".into()).await.unwrap();
    a.sees("to g").await;
    c.sees("to g").await;
    nodes[1].hub.group_except("g", a.id).show("to g but a".into()).await.unwrap();
    c.sees("to g but a").await;
    all_see_next(&nodes[1], &mut [&mut a, &mut b, &mut c, &mut d], "marker 1").await;

    // except(), user() and connection().
    nodes[0].hub.except(c.id).show("not c".into()).await.unwrap();
    for viewer in [&mut a, &mut b, &mut d] {
        viewer.sees("not c").await;
    }
    // A long list of exceptions (a long bus header): everyone else once, the sending node too.
    let mut except: Vec<ConnectionId> = (0..12).map(|_| Viewing::dummy_id(&nodes[1])).collect();
    except.push(b.id);
    nodes[0].hub.to(Audience::AllExcept(except)).show("not b".into()).await.unwrap();
    for viewer in [&mut a, &mut c, &mut d] {
        viewer.sees("not b").await;
    }
    all_see_next(&nodes[0], &mut [&mut a, &mut b, &mut c, &mut d], "marker 1b").await;
    nodes[1].hub.user("ada").show("to ada".into()).await.unwrap();
    a.sees("to ada").await;
    c.sees("to ada").await;
    within(nodes[0].hub.connection(d.id).show("to d".into())).await.unwrap();
    d.sees("to d").await;
    all_see_next(&nodes[0], &mut [&mut a, &mut b, &mut c, &mut d], "marker 2").await;

    // A node subscribes only to what it has members of: node 1 has no one in g.
    assert_eq!(redis.subscribers("test:group:g").await, 2);
    assert_eq!(redis.subscribers("test:user:ada").await, 2);
    assert_eq!(redis.subscribers("test:all").await, 3);

    // Group membership changed from a node that does not hold the connection.
    assert!(within(nodes[0].hub.add_to_group(b.id, "h")).await);
    assert!(!within(nodes[0].hub.add_to_group(b.id, "h")).await, "already a member");
    assert_eq!(nodes[1].hub.groups_of(b.id), ["h"]);
    nodes[2].hub.group("h").show("to h".into()).await.unwrap();
    b.sees("to h").await;
    assert!(within(nodes[2].hub.remove_from_group(b.id, "h")).await);
    redis.wait_for_subscribers("test:group:h", 0).await;
    nodes[2].hub.group("h").show("to h again".into()).await.unwrap();
    all_see_next(&nodes[2], &mut [&mut b], "marker 3").await;

    // The bytes a socket on another node gets are those a local broadcast sends.
    let mut here = Raw::connect(&nodes[0].url(None)).await;
    let mut there = Raw::connect(&nodes[2].url(None)).await;
    nodes[0].hub.all().show("same bytes".into()).await.unwrap();
    let (here, there) = (next_text(&mut here).await, next_text(&mut there).await);
    assert_eq!(here, r#"{"jsonrpc":"2.0","method":"bp.show","params":{"text":"same bytes"}}"#);
    assert_eq!(there, here);

    // The last member leaving a group unsubscribes its node.
    drop(c);
    redis.wait_for_subscribers("test:group:g", 1).await;
    redis.wait_for_subscribers("test:user:ada", 1).await;
}

#[tokio::test]
async fn callbacks_with_replies_cross_nodes_with_deadlines_and_closes() {
    let redis = redis_or_skip!();
    let nodes = [Node::start(&redis).await, Node::start(&redis).await];
    let mut b = Viewing::connect(&nodes[1], "b", None).await;

    // Asked from node 0, answered by b on node 1.
    let answer = within(nodes[0].hub.connection(b.id).ask("hello?".into())).await.unwrap();
    assert_eq!(answer, "b says hello?");

    // The caller's deadline holds across nodes.
    let stub = nodes[0].hub.connection(b.id).with_timeout(Duration::from_millis(300));
    match within(stub.stall()).await {
        Err(Error::Timeout(limit)) => assert_eq!(limit, Duration::from_millis(300)),
        other => panic!("expected a timeout, got {other:?}"),
    }

    // A connection that closes while asked: Closed, long before the deadline.
    let stalled = tokio::spawn({
        let hub = nodes[0].hub.clone();
        let id = b.id;
        async move { hub.connection(id).with_timeout(Duration::from_secs(60)).stall().await }
    });
    // Once b is working on it (twice: the timed-out call above stalled too) ...
    within(b.stalling.recv()).await.unwrap();
    within(b.stalling.recv()).await.unwrap();
    // ... it goes away.
    b.client.caller().close();
    match within(stalled).await.unwrap() {
        Err(Error::Closed) => {}
        other => panic!("expected Closed, got {other:?}"),
    }

    // Its node is up but no longer holds it: Closed, from that node. A
    // one-way message to it goes out (at most once) and is dropped there.
    assert!(matches!(within(nodes[0].hub.connection(b.id).ask("still there?".into())).await, Err(Error::Closed)));
    assert!(within(nodes[0].hub.connection(b.id).show("gone".into())).await.is_ok());

    // No node listens for it (its node died, or never was): Closed at once,
    // not at the deadline; a one-way message says so too.
    let nowhere: ConnectionId = "00000000deadbeef-1".parse().unwrap();
    let stub = nodes[0].hub.connection(nowhere).with_timeout(Duration::from_secs(60));
    assert!(matches!(within(stub.ask("anyone?".into())).await, Err(Error::Closed)));
    assert!(matches!(within(stub.show("anyone?".into())).await, Err(Error::Closed)));
    assert!(!within(nodes[0].hub.add_to_group(nowhere, "g")).await);
}

/// The ids of the pub/sub connections Redis has.
async fn subscriber_ids(redis: &RedisServer) -> Vec<String> {
    let mut connection = redis.connection().await;
    let list: String =
        within(redis::cmd("CLIENT").arg("LIST").arg("TYPE").arg("pubsub").query_async(&mut connection)).await.unwrap();
    let mut ids: Vec<String> = list.lines().filter_map(|l| l.split(' ').next()).map(str::to_owned).collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn keep_alive_pings_keep_the_subscription() {
    let redis = redis_or_skip!();
    let options = || RedisOptions::new().prefix("test").keep_alive(Duration::from_millis(100));
    let near = Node::start_with(&redis, options()).await;
    let far = Node::start_with(&redis, options()).await;
    let mut a = Viewing::connect(&near, "a", None).await;
    let before = subscriber_ids(&redis).await;
    assert_eq!(before.len(), 2);
    // Many pings later (each answered), the same connections, still delivering.
    for round in 0..8 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        within(far.hub.all().show(format!("round {round}"))).await.unwrap();
        a.sees(&format!("round {round}")).await;
    }
    assert_eq!(subscriber_ids(&redis).await, before, "a subscription was replaced");
}

#[tokio::test]
async fn nodes_ride_out_a_redis_restart() {
    let mut redis = redis_or_skip!();
    let nodes = [Node::start(&redis).await, Node::start(&redis).await];
    let mut a = Viewing::connect(&nodes[0], "a", None).await;
    let mut b = Viewing::connect(&nodes[1], "b", None).await;
    assert!(within(b.client.join("g".into())).await.unwrap());
    redis.wait_for_subscribers("test:group:g", 1).await;

    redis.kill().await;
    // Local delivery goes on; the other node misses what is published now.
    nodes[0].hub.all().show("during the outage".into()).await.unwrap();
    a.sees("during the outage").await;
    nodes[1].hub.all().show("during the outage, on 1".into()).await.unwrap();
    b.sees("during the outage, on 1").await;

    redis.restart().await;
    // Both nodes come back with every channel they had: all, their own, and g.
    redis.wait_for_subscribers("test:all", 2).await;
    redis.wait_for_subscribers("test:group:g", 1).await;
    // Node 0's publisher reconnects too; repeat until a message gets through.
    within(async {
        loop {
            nodes[0].hub.group("g").show("after".into()).await.unwrap();
            if let Ok(shown) = tokio::time::timeout(Duration::from_millis(200), b.shown.recv()).await {
                assert_ne!(shown.as_deref(), Some("during the outage"), "sent while Redis was down");
                break;
            }
        }
    })
    .await;
    // At most once: the outage's message never arrives; every "after" sent
    // (some may have gone out just as the publisher came back) arrives once at most.
    nodes[0].hub.all().show("marker".into()).await.unwrap();
    a.sees("marker").await;
    loop {
        match b.next().await.as_str() {
            "after" => continue,
            "marker" => break,
            other => panic!("b was shown {other:?}"),
        }
    }
    // Calls across nodes work again.
    let answer = within(nodes[1].hub.connection(a.id).ask("back?".into())).await.unwrap();
    assert_eq!(answer, "a says back?");
}

/// A connection to Redis for publishing what no node sent, and for
/// listening on a made-up node's channel for the answers.
struct Forger {
    publisher: redis::aio::MultiplexedConnection,
    replies: redis::aio::PubSub,
    /// The node this forger pretends to be.
    node: u64,
}

impl Forger {
    async fn connect(redis: &RedisServer) -> Forger {
        let client = redis::Client::open(redis.url()).unwrap();
        let publisher = within(client.get_multiplexed_async_connection()).await.unwrap();
        let mut replies = within(client.get_async_pubsub()).await.unwrap();
        let node = 0x0f0f_0f0f_0f0f_0f0f;
        within(replies.subscribe(format!("test:node:{node:016x}"))).await.unwrap();
        Forger { publisher, replies, node }
    }

    async fn publish(&mut self, channel: &str, message: &str) {
        let _: i64 =
            within(redis::cmd("PUBLISH").arg(channel).arg(message).query_async(&mut self.publisher)).await.unwrap();
    }

    /// A call of `method` with `params` on connection `target`, from this forger, with `millis` to answer.
    async fn call(&mut self, target: ConnectionId, call: u64, millis: u64, method: &str, params: &str) {
        let message = format!("C {:x} {call} {target} {millis} {}\n{method}{params}", self.node, method.len());
        self.publish(&format!("test:node:{:016x}", target.node()), &message).await;
    }

    /// The next answer a node sent this forger.
    async fn reply(&mut self) -> String {
        use futures_util::StreamExt;
        let message = within(self.replies.on_message().next()).await.unwrap();
        message.get_payload::<String>().unwrap()
    }
}

#[tokio::test]
async fn forged_bus_messages_are_bounded_and_answer_no_call() {
    let redis = redis_or_skip!();
    let options = RedisOptions::new()
        .prefix("test")
        .call_timeout(Duration::from_secs(5))
        .max_remote_calls(2)
        .max_call_timeout(Duration::from_millis(300));
    let nodes = [Node::start_with(&redis, options).await, Node::start(&redis).await];
    let mut a = Viewing::connect(&nodes[0], "a", None).await;
    let mut forger = Forger::connect(&redis).await;

    // A call from node 1 to a, which stalls, while someone publishes replies
    // from node 0 for every small call id: none of them answers it.
    let asked = tokio::spawn({
        let (hub, id) = (nodes[1].hub.clone(), a.id);
        async move { hub.connection(id).with_timeout(Duration::from_secs(1)).stall().await }
    });
    within(a.stalling.recv()).await.unwrap();
    let channel = format!("test:node:{:016x}", nodes[1].hub.node());
    for call in 0..1000u64 {
        let forged = format!("R {:x} {call} ok\n\"forged\"", nodes[0].hub.node());
        forger.publish(&channel, &forged).await;
    }
    match within(asked).await.unwrap() {
        Err(Error::Timeout(_)) => {}
        other => panic!("a forged reply answered the call: {other:?}"),
    }

    // Ten calls with a deadline of u64::MAX ms: two run (the place the stall
    // above held is free again once its 300 ms cap passed), eight are
    // refused at once, and the two that run end at the node's own cap.
    within(async {
        loop {
            forger.call(a.id, 1, 1000, "bp.ask", r#"["free?"]"#).await;
            if forger.reply().await.contains(" ok\n") {
                break;
            }
        }
    })
    .await;
    for call in 0..10 {
        forger.call(a.id, 100 + call, u64::MAX, "bp.stall", "[]").await;
    }
    let (mut busy, mut timed_out) = (0, 0);
    for _ in 0..10 {
        let reply = forger.reply().await;
        if reply.contains(" rpc\n") && reply.contains("-32009") {
            busy += 1;
        } else if reply.ends_with(" timeout\n") {
            timed_out += 1;
        } else {
            panic!("unexpected reply {reply:?}");
        }
    }
    assert_eq!((busy, timed_out), (8, 2));
    within(a.stalling.recv()).await.unwrap();
    within(a.stalling.recv()).await.unwrap();
    assert!(a.stalling.try_recv().is_err(), "more than two forged calls ran");
}

#[tokio::test]
async fn a_shared_secret_keeps_unsigned_and_foreign_messages_out() {
    let redis = redis_or_skip!();
    let signed = || RedisOptions::new().prefix("test").secret(b"32 bytes of a shared secret....!");
    let nodes = [
        Node::start_with(&redis, signed()).await,
        Node::start_with(&redis, signed()).await,
        Node::start_with(&redis, RedisOptions::new().prefix("test").secret(b"another secret")).await,
    ];
    let mut b = Viewing::connect(&nodes[1], "b", None).await;
    let mut forger = Forger::connect(&redis).await;

    // A fan-out from a node with the same secret arrives.
    within(nodes[0].hub.all().show("signed".into())).await.unwrap();
    b.sees("signed").await;
    // One from a node with another secret, and an unsigned one, do not.
    within(nodes[2].hub.all().show("foreign".into())).await.unwrap();
    let unsigned = format!(
        "F {:x} all 0 -\n{}",
        forger.node, r#"{"jsonrpc":"2.0","method":"bp.show","params":{"text":"unsigned"}}"#
    );
    forger.publish("test:all", &unsigned).await;
    // Nor do forged calls: no answer comes back, and b is not asked (an
    // unsigned call to b's own ask would be answered within the wait).
    forger.call(b.id, 7, 1000, "bp.ask", r#"["forged?"]"#).await;
    all_see_next(&nodes[0], &mut [&mut b], "marker").await;
    let answer = tokio::time::timeout(Duration::from_millis(500), forger.reply()).await;
    assert!(answer.is_err(), "an unsigned call was answered: {answer:?}");
    // Calls between nodes with the secret work.
    let answer = within(nodes[0].hub.connection(b.id).ask("signed?".into())).await.unwrap();
    assert_eq!(answer, "b says signed?");
}

/// The backplane's metrics, from a recorder installed for this test's
/// thread (the nodes' tasks run on it too).
#[cfg(feature = "metrics")]
#[tokio::test]
async fn publishes_and_failures_are_counted() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};

    /// Adds to `counts` (published, failed) what was counted since the
    /// last snapshot (a snapshot takes what it reads).
    fn add_taken(snapshotter: &Snapshotter, counts: &mut (u64, u64)) {
        for (key, _, _, value) in snapshotter.snapshot().into_vec() {
            let DebugValue::Counter(n) = value else { continue };
            match key.key().name() {
                "wsduplex_backplane_published_total" => counts.0 += n,
                "wsduplex_backplane_publish_errors_total" => counts.1 += n,
                _ => {}
            }
        }
    }

    /// Waits until the counts are `expected`. The publisher counts once
    /// Redis answers, and nothing signals that: this checks every
    /// millisecond until it holds.
    async fn counted(snapshotter: &Snapshotter, counts: &mut (u64, u64), expected: (u64, u64)) {
        within(async {
            loop {
                add_taken(snapshotter, counts);
                if *counts == expected {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
        .await;
    }

    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _recording = metrics::set_default_local_recorder(&recorder);
    let mut redis = redis_or_skip!();
    let nodes = [Node::start(&redis).await, Node::start(&redis).await];
    let mut b = Viewing::connect(&nodes[1], "b", None).await;
    let mut counts = (0, 0);
    nodes[0].hub.all().show("one".into()).await.unwrap();
    b.sees("one").await;
    counted(&snapshotter, &mut counts, (1, 0)).await;

    redis.kill().await;
    nodes[0].hub.all().show("lost".into()).await.unwrap();
    counted(&snapshotter, &mut counts, (1, 1)).await;
    // And nothing more.
    within(b.client.me()).await.unwrap();
    add_taken(&snapshotter, &mut counts);
    assert_eq!(counts, (1, 1));
}
