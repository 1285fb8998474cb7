//! `cargo bench --bench compare --features redis,metrics [-- --quick]`: wsduplex side by side with
//! jsonrpsee 0.26 and a raw tokio-tungstenite floor, same machine, same run,
//! same payloads. Prints a Markdown table and a summary line of ratios
//! (wsduplex / jsonrpsee), and a line for the Redis backplane (which needs
//! `redis-server`; its scenarios are skipped without it). Under `cargo test`
//! it runs every scenario briefly,
//! scaled down, so the harness cannot rot; it asserts nothing about speed.

mod backplane;
mod broadcast;
mod calls;
mod idle;
mod jsonrpsee_side;
mod raw_side;
mod stats;
mod streams;
mod wsduplex_side;

use std::sync::Arc;
use std::time::Duration;

use broadcast::Deliveries;
use calls::Window;
use stats::{Measurement, Row};
use wsduplex_side::Around;

/// How long and how big each scenario is.
struct Plan {
    name: &'static str,
    /// `--only PREFIX`: run just the scenarios whose names start with it.
    only: Option<String>,
    window: Window,
    broadcast_sizes: [usize; 2],
    broadcast_rounds: usize,
    per_round: usize,
    idle_connections: usize,
    settle: Duration,
}

impl Plan {
    fn runs(&self, scenario: &str) -> bool {
        self.only.as_deref().is_none_or(|prefix| scenario.starts_with(prefix))
    }

    fn from_args(args: &[String]) -> Plan {
        let quick = args.iter().any(|a| a == "--quick");
        let only = args.iter().position(|a| a == "--only").and_then(|at| args.get(at + 1)).cloned();
        let benching = args.iter().any(|a| a == "--bench");
        if quick {
            Plan {
                name: "quick",
                only,
                window: Window { warmup: Duration::from_millis(300), measure: Duration::from_millis(1500) },
                broadcast_sizes: [1000, 4000],
                broadcast_rounds: 10,
                per_round: 100,
                idle_connections: 5000,
                settle: Duration::from_millis(500),
            }
        } else if benching {
            Plan {
                name: "full",
                only,
                window: Window { warmup: Duration::from_secs(1), measure: Duration::from_secs(5) },
                broadcast_sizes: [1000, 4000],
                broadcast_rounds: 40,
                per_round: 100,
                idle_connections: 5000,
                settle: Duration::from_secs(1),
            }
        } else {
            Plan {
                name: "smoke (scaled down; not a measurement)",
                only,
                window: Window { warmup: Duration::from_millis(20), measure: Duration::from_millis(100) },
                broadcast_sizes: [10, 40],
                broadcast_rounds: 2,
                per_round: 10,
                idle_connections: 40,
                settle: Duration::from_millis(50),
            }
        }
    }
}

const SMALL: &str = "0123456789abcdef";
const TICK_DATA: &str = "price=101.25;size=300;venue=X";

async fn call_scenarios(plan: &Plan, rows: &mut Vec<Row>) {
    let large = "x".repeat(16 * 1024);
    // (scenario, connections, calls in flight per connection, payload)
    let scenarios: [(&'static str, usize, usize, &str); 4] = [
        ("calls_seq_16B", 1, 1, SMALL),
        ("calls_inflight64_16B", 1, 64, SMALL),
        ("calls_64conn_16B", 64, 1, SMALL),
        ("calls_seq_16KiB", 1, 1, &large),
    ];
    for (scenario, connections, in_flight, payload) in scenarios {
        if !plan.runs(scenario) {
            continue;
        }
        let server = wsduplex_side::serve("127.0.0.1:0", false).await;
        let deliveries = Arc::new(Deliveries::default());
        let mut clients = Vec::new();
        for _ in 0..connections {
            clients.push(wsduplex_side::connect(&server.url, &deliveries).await);
        }
        let measurement = calls::run(&clients, in_flight, payload, plan.window).await;
        rows.push(Row { contender: "wsduplex", scenario, unit: "calls/s", measurement });
        drop((clients, server));

        let server = jsonrpsee_side::serve("127.0.0.1:0", 16).await;
        let mut clients = Vec::new();
        for _ in 0..connections {
            clients.push(jsonrpsee_side::connect(&server.url).await);
        }
        let measurement = calls::run(&clients, in_flight, payload, plan.window).await;
        rows.push(Row { contender: "jsonrpsee", scenario, unit: "calls/s", measurement });
        drop((clients, server));

        let server = raw_side::serve("127.0.0.1:0").await;
        let measurement = raw_side::calls(&server.url, connections, in_flight, payload, plan.window).await;
        rows.push(Row { contender: "raw floor", scenario, unit: "calls/s", measurement });
    }
}

async fn broadcast_scenarios(plan: &Plan, rows: &mut Vec<Row>) {
    for (scenario, clients) in ["broadcast_1000", "broadcast_4000"].into_iter().zip(plan.broadcast_sizes) {
        if !plan.runs(scenario) {
            continue;
        }
        {
            let server = wsduplex_side::serve("127.0.0.1:0", false).await;
            let deliveries = Arc::new(Deliveries::default());
            let audience = wsduplex_side::broadcast_audience(&server, clients, &deliveries).await;
            let hub = server.hub.clone();
            let measurement = broadcast::run(clients, plan.broadcast_rounds, plan.per_round, &deliveries, |seq| {
                let hub = hub.clone();
                async move { wsduplex_side::publish(&hub, seq, TICK_DATA).await }
            })
            .await;
            rows.push(Row { contender: "wsduplex", scenario, unit: "deliveries/s", measurement });
            drop(audience);
        }
        {
            let server = jsonrpsee_side::serve("127.0.0.1:0", plan.per_round * 2).await;
            let deliveries = Arc::new(Deliveries::default());
            let readers = jsonrpsee_side::broadcast_audience(&server.url, clients, &deliveries).await;
            let ticks = server.ticks.clone();
            let measurement = broadcast::run(clients, plan.broadcast_rounds, plan.per_round, &deliveries, |seq| {
                let _ = ticks.send(jsonrpsee_side::Tick { seq, data: TICK_DATA.to_owned() });
                std::future::ready(())
            })
            .await;
            rows.push(Row { contender: "jsonrpsee", scenario, unit: "deliveries/s", measurement });
            for reader in readers {
                reader.abort();
            }
        }
    }
}

fn throughput(rows: &[Row], contender: &str, scenario: &str) -> f64 {
    rows.iter()
        .find(|r| r.contender == contender && r.scenario == scenario)
        .map_or(f64::NAN, |r| r.measurement.throughput())
}

fn memory(rows: &[Row], contender: &str) -> f64 {
    rows.iter()
        .find(|r| r.contender == contender && r.scenario == "idle_mem")
        .and_then(|r| r.measurement.memory_per_connection)
        .unwrap_or(f64::NAN)
}

fn summary(rows: &[Row]) -> String {
    let ratio = |scenario: &str| throughput(rows, "wsduplex", scenario) / throughput(rows, "jsonrpsee", scenario);
    let own = |scenario: &str| throughput(rows, "wsduplex", scenario) / throughput(rows, "wsduplex", "calls_seq_16B");
    format!(
        "summary: calls_seq_16B={:.2} calls_inflight64_16B={:.2} calls_64conn_16B={:.2} calls_seq_16KiB={:.2} \
         middleware_vs_calls={:.2} observed_vs_calls={:.2} callbacks_vs_calls={:.2} stream_16B={:.2} broadcast_1000={:.2} broadcast_4000={:.2} \
         idle_mem={:.2}",
        ratio("calls_seq_16B"),
        ratio("calls_inflight64_16B"),
        ratio("calls_64conn_16B"),
        ratio("calls_seq_16KiB"),
        own("calls_seq_16B_middleware"),
        own("calls_seq_16B_observed"),
        own("callbacks_vs_calls"),
        ratio("stream_16B"),
        ratio("broadcast_1000"),
        ratio("broadcast_4000"),
        memory(rows, "wsduplex") / memory(rows, "jsonrpsee"),
    )
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|a| a == "--idle-server") {
        return idle::server_main(args.get(at + 1).map(String::as_str).unwrap_or("wsduplex"));
    }
    if args.iter().any(|a| a == "--paused-stream") {
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        return runtime.block_on(wsduplex_side::paused_stream_main(SMALL));
    }
    let plan = Plan::from_args(&args);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let mut rows = runtime.block_on(async {
        let mut rows = Vec::new();
        call_scenarios(&plan, &mut rows).await;
        if plan.runs("calls_seq_16B_middleware") {
            let server = wsduplex_side::serve_with("127.0.0.1:0", false, Around::FilterAndTimer).await;
            let client = wsduplex_side::connect(&server.url, &Arc::new(Deliveries::default())).await;
            let measurement = calls::run(&[client], 1, SMALL, plan.window).await;
            rows.push(Row {
                contender: "wsduplex",
                scenario: "calls_seq_16B_middleware",
                unit: "calls/s",
                measurement,
            });
        }
        if plan.runs("callbacks_vs_calls") {
            let measurement: Measurement = wsduplex_side::callbacks(SMALL, plan.window).await;
            rows.push(Row { contender: "wsduplex", scenario: "callbacks_vs_calls", unit: "callbacks/s", measurement });
        }
        if plan.runs("stream_16B") {
            let measurement = wsduplex_side::stream(SMALL, plan.window).await;
            rows.push(Row { contender: "wsduplex", scenario: "stream_16B", unit: "values/s", measurement });
            let measurement = jsonrpsee_side::stream(SMALL, plan.window).await;
            rows.push(Row { contender: "jsonrpsee", scenario: "stream_16B", unit: "values/s", measurement });
        }
        if plan.runs("stream_paused_1M") {
            let measurement = streams::paused_memory();
            rows.push(Row { contender: "wsduplex", scenario: "stream_paused_1M", unit: "", measurement });
        }
        broadcast_scenarios(&plan, &mut rows).await;
        backplane::scenarios(&plan, &mut rows).await;
        for contender in ["wsduplex", "jsonrpsee", "raw floor"].into_iter().filter(|_| plan.runs("idle_mem")) {
            let process_name = if contender == "raw floor" { "raw" } else { contender };
            let measurement = idle::measure(process_name, plan.idle_connections, plan.settle).await;
            rows.push(Row { contender, scenario: "idle_mem", unit: "", measurement });
        }
        // Last: the recorder it installs is the process's for good.
        if plan.runs("calls_seq_16B_observed") {
            let prometheus =
                metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder().expect("recorder");
            let server = wsduplex_side::serve_with("127.0.0.1:0", false, Around::Filter).await;
            let client = wsduplex_side::connect(&server.url, &Arc::new(Deliveries::default())).await;
            let measurement = calls::run(&[client], 1, SMALL, plan.window).await;
            let scraped = prometheus.render();
            assert!(scraped.contains("wsduplex_calls_total{method=\"bench.echo\",outcome=\"ok\"}"), "{scraped}");
            rows.push(Row { contender: "wsduplex", scenario: "calls_seq_16B_observed", unit: "calls/s", measurement });
        }
        rows
    });
    println!("run: {}, {} CPUs", plan.name, std::thread::available_parallelism().map_or(0, |n| n.get()));
    println!();
    stats::print_table(&mut rows);
    println!();
    println!("{}", summary(&rows));
    if let Some(line) = backplane::summary(&rows) {
        println!("{line}");
    }
}
