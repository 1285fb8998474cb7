//! wsduplex across server nodes on one Redis (started here, on a free port):
//! broadcast deliveries per second with 1, 2 and 4 nodes, and callback round
//! trips to a connection on another node against one on the same node.

use std::sync::Arc;
use std::time::Duration;

use wsduplex::{Connection, ConnectionId, Hub, Server, redis::RedisBackplane, redis::RedisOptions};

use crate::broadcast::{self, Deliveries};
use crate::calls::Window;
use crate::stats::{Measurement, Row};
use crate::wsduplex_side::{Bench, BenchEventsClient, Session, connect, time_callbacks};
use crate::{Plan, SMALL, TICK_DATA};

// The tests' helper; the bench uses only part of it.
#[allow(dead_code)]
#[path = "../../tests/common/redis.rs"]
mod redis_server;

use redis_server::RedisServer;

/// One server node on the backplane.
struct Node {
    hub: Hub<BenchEventsClient>,
    url: String,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Drop for Node {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn node(redis: &RedisServer, prefix: &str) -> Node {
    let options = RedisOptions::new().prefix(prefix);
    let backplane = RedisBackplane::connect(&redis.url(), options).await.expect("the backplane connects");
    let hub = Hub::<BenchEventsClient>::with_backplane(backplane);
    let server = Server::builder().hub(&hub).build("127.0.0.1:0").await.expect("bind");
    let url = format!("ws://{}/", server.local_addr().expect("address"));
    let task = tokio::spawn(server.serve(|_conn: Connection<BenchEventsClient>| Session.into_service()));
    Node { hub, url, task }
}

pub async fn scenarios(plan: &Plan, rows: &mut Vec<Row>) {
    let wanted = ["backplane_broadcast_1node", "backplane_broadcast_2nodes", "backplane_broadcast_4nodes"];
    if !wanted.iter().chain(&["backplane_callbacks"]).any(|s| plan.runs(s)) {
        return;
    }
    let Some(redis) = RedisServer::start().await else {
        eprintln!("backplane scenarios skipped: redis-server is not installed");
        return;
    };
    let clients = plan.broadcast_sizes[0];
    for (scenario, nodes) in wanted.into_iter().zip([1, 2, 4]) {
        if plan.runs(scenario) {
            let measurement = broadcast_across(&redis, scenario, nodes, clients, plan).await;
            rows.push(Row { contender: "wsduplex", scenario, unit: "deliveries/s", measurement });
        }
    }
    if plan.runs("backplane_callbacks") {
        let (local, remote) = callbacks(&redis, plan.window).await;
        rows.push(Row {
            contender: "same node",
            scenario: "backplane_callbacks",
            unit: "callbacks/s",
            measurement: local,
        });
        rows.push(Row {
            contender: "other node",
            scenario: "backplane_callbacks",
            unit: "callbacks/s",
            measurement: remote,
        });
    }
}

/// `clients` clients spread evenly over `nodes` nodes; node 0 publishes.
async fn broadcast_across(redis: &RedisServer, prefix: &str, nodes: usize, clients: usize, plan: &Plan) -> Measurement {
    let mut servers = Vec::with_capacity(nodes);
    for _ in 0..nodes {
        servers.push(node(redis, prefix).await);
    }
    let deliveries = Arc::new(Deliveries::default());
    let mut audience = Vec::with_capacity(clients);
    for (i, server) in servers.iter().enumerate() {
        let share = clients / nodes + usize::from(i < clients % nodes);
        for chunk in (0..share).collect::<Vec<_>>().chunks(64) {
            let batch = chunk.iter().map(|_| connect(&server.url, &deliveries));
            audience.extend(futures_util::future::join_all(batch).await);
        }
        while server.hub.connection_ids().len() < share {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let hub = servers[0].hub.clone();
    let measurement = broadcast::run(clients, plan.broadcast_rounds, plan.per_round, &deliveries, |seq| {
        let hub = hub.clone();
        async move { hub.all().tick(seq, TICK_DATA.to_owned()).await.expect("publish") }
    })
    .await;
    drop(audience);
    measurement
}

/// Sequential callback round trips to one client: from its own node, then
/// from another node through Redis.
async fn callbacks(redis: &RedisServer, window: Window) -> (Measurement, Measurement) {
    let near = node(redis, "backplane_callbacks").await;
    let far = node(redis, "backplane_callbacks").await;
    let deliveries = Arc::new(Deliveries::default());
    let _client = connect(&near.url, &deliveries).await;
    while near.hub.connection_ids().is_empty() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let id = near.hub.connection_ids()[0];
    let local = round_trips(near.hub.clone(), id, window).await;
    let remote = round_trips(far.hub.clone(), id, window).await;
    (local, remote)
}

async fn round_trips(hub: Hub<BenchEventsClient>, id: ConnectionId, window: Window) -> Measurement {
    time_callbacks(SMALL, window, move |payload| {
        let hub = hub.clone();
        async move { hub.connection(id).echo_back(payload).await.expect("callback") }
    })
    .await
}

/// The backplane's line under the summary: deliveries per second by node
/// count, and cross-node callbacks as a share of same-node ones.
pub fn summary(rows: &[Row]) -> Option<String> {
    let throughput = |contender: &str, scenario: &str| {
        rows.iter().find(|r| r.contender == contender && r.scenario == scenario).map(|r| r.measurement.throughput())
    };
    let one = throughput("wsduplex", "backplane_broadcast_1node")?;
    let two = throughput("wsduplex", "backplane_broadcast_2nodes")?;
    let four = throughput("wsduplex", "backplane_broadcast_4nodes")?;
    let local = throughput("same node", "backplane_callbacks")?;
    let remote = throughput("other node", "backplane_callbacks")?;
    Some(format!(
        "backplane: broadcast deliveries/s 1node={one:.0} 2nodes={two:.0} 4nodes={four:.0}; \
         callbacks/s same_node={local:.0} other_node={remote:.0} (ratio {:.2})",
        remote / local
    ))
}
