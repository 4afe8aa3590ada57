//! Acknowledged publishes one at a time, each awaited before the next, from the main
//! future of `#[tokio::main]`: the way a script, a blocking wrapper (`block_on`) or a
//! binding to another language's event loop calls the client, outside the runtime's
//! worker threads. Prints the rate, the round trip's median and 99th percentile, and
//! the context switches this process made per request (Linux).
//!
//! ```sh
//! switchboard serve --listen 127.0.0.1:4300 --no-unix --no-http --memory &
//! cargo run --release -p switchboard-client --example sequential_requests -- 127.0.0.1:4300 20000
//! ```

use std::time::{Duration, Instant};

use switchboard_client::{Client, ClientConfig, Payload};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let server = args.next().unwrap_or_else(|| "127.0.0.1:4300".to_owned());
    let count: usize = args.next().map_or(Ok(20_000), |count| count.parse())?;
    let client = Client::connect(ClientConfig::new(server, "sequential")).await?;
    let body = vec![7u8; 1024];
    // A warm-up, so that the channel exists and the connection is settled.
    for _ in 0..1000 {
        client
            .publish("seq.bench", Payload::bytes(body.clone()))
            .await?;
    }
    let switches_before = context_switches();
    let mut round_trips = Vec::with_capacity(count);
    let started = Instant::now();
    for _ in 0..count {
        let sent = Instant::now();
        client
            .publish("seq.bench", Payload::bytes(body.clone()))
            .await?;
        round_trips.push(sent.elapsed());
    }
    let elapsed = started.elapsed();
    let switches = context_switches().zip(switches_before);
    round_trips.sort();
    let at = |share: f64| round_trips[((round_trips.len() as f64 * share) as usize).min(count - 1)];
    println!(
        "{count} requests in {:.2} s: {:.0}/s, p50 {} µs, p99 {} µs",
        elapsed.as_secs_f64(),
        count as f64 / elapsed.as_secs_f64(),
        micros(at(0.5)),
        micros(at(0.99)),
    );
    if let Some(((voluntary, involuntary), (voluntary_before, involuntary_before))) = switches {
        println!(
            "context switches per request: {:.2} voluntary, {:.2} involuntary",
            (voluntary - voluntary_before) as f64 / count as f64,
            (involuntary - involuntary_before) as f64 / count as f64,
        );
    }
    client.close().await?;
    Ok(())
}

fn micros(duration: Duration) -> u128 {
    duration.as_micros()
}

/// This process's voluntary and involuntary context switches, summed over its threads.
fn context_switches() -> Option<(u64, u64)> {
    let tasks = std::fs::read_dir("/proc/self/task").ok()?;
    let mut total = (0, 0);
    for task in tasks.flatten() {
        let status = std::fs::read_to_string(task.path().join("status")).ok()?;
        for line in status.lines() {
            if let Some(count) = line.strip_prefix("voluntary_ctxt_switches:") {
                total.0 += count.trim().parse::<u64>().ok()?;
            } else if let Some(count) = line.strip_prefix("nonvoluntary_ctxt_switches:") {
                total.1 += count.trim().parse::<u64>().ok()?;
            }
        }
    }
    Some(total)
}
