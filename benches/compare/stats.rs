//! What a scenario measured, and how it prints.

use std::time::Duration;

/// Latencies of individual operations, in nanoseconds.
#[derive(Default)]
pub struct Latencies(Vec<u64>);

impl Latencies {
    pub fn record(&mut self, latency: Duration) {
        self.0.push(latency.as_nanos() as u64);
    }

    pub fn merge(&mut self, other: Latencies) {
        self.0.extend(other.0);
    }

    /// The `q` quantile (0..=1), or `None` when nothing was recorded.
    pub fn quantile(&mut self, q: f64) -> Option<Duration> {
        if self.0.is_empty() {
            return None;
        }
        self.0.sort_unstable();
        let rank = ((self.0.len() - 1) as f64 * q).round() as usize;
        Some(Duration::from_nanos(self.0[rank]))
    }
}

/// One contender's result in one scenario.
pub struct Measurement {
    /// Operations completed in the measured window (calls, callbacks, deliveries).
    pub ops: u64,
    pub elapsed: Duration,
    pub latencies: Latencies,
    /// Bytes of server memory per connection, where that is what is measured.
    pub memory_per_connection: Option<f64>,
}

impl Measurement {
    pub fn throughput(&self) -> f64 {
        if self.elapsed.is_zero() { 0.0 } else { self.ops as f64 / self.elapsed.as_secs_f64() }
    }
}

/// A row of the results table.
pub struct Row {
    pub contender: &'static str,
    pub scenario: &'static str,
    pub unit: &'static str,
    pub measurement: Measurement,
}

fn micros(d: Option<Duration>) -> String {
    d.map(|d| format!("{:.1} µs", d.as_secs_f64() * 1e6)).unwrap_or_else(|| "-".into())
}

pub fn print_table(rows: &mut [Row]) {
    println!("| contender | scenario | throughput | p50 | p99 | memory |");
    println!("|---|---|---|---|---|---|");
    for row in rows.iter_mut() {
        let m = &mut row.measurement;
        let throughput = if m.memory_per_connection.is_some() {
            "-".to_string()
        } else {
            format!("{:.0} {}", m.throughput(), row.unit)
        };
        let memory =
            m.memory_per_connection.map(|b| format!("{:.1} KiB/conn", b / 1024.0)).unwrap_or_else(|| "-".into());
        let (p50, p99) = (m.latencies.quantile(0.50), m.latencies.quantile(0.99));
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            row.contender,
            row.scenario,
            throughput,
            micros(p50),
            micros(p99),
            memory
        );
    }
}
