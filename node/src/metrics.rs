//! The optional Prometheus endpoint (`--metrics ADDR`): `GET /metrics` answers with the
//! node's status in the Prometheus text format (version 0.0.4). Plain HTTP/1.1, one
//! request per connection, bounded in size and time; it asks the driver for a status
//! like any client does, so it decides nothing and shares no state.
//!
//! A hand-written responder rather than an HTTP framework keeps the edge binary small;
//! the request it understands is one line.

use crate::frame::{Request, Response};
use crate::handoff::Input;
use crate::status::{NodeStatus, LATENCY_BUCKETS_US};
use std::fmt::Write as _;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

/// A request head larger than this is refused.
const REQUEST_BYTES_MAX: usize = 8 * 1024;
/// A scrape that does not send its request, or get its answer, within this is dropped.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves scrapes until the driver goes away.
pub async fn serve(listener: tokio::net::TcpListener, inputs: mpsc::Sender<Input>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let inputs = inputs.clone();
        tokio::spawn(async move {
            if let Err(error) = tokio::time::timeout(SCRAPE_TIMEOUT, answer(stream, inputs)).await {
                tracing::debug!(%error, "metrics scrape timed out");
            }
        });
    }
}

async fn answer(mut stream: tokio::net::TcpStream, inputs: mpsc::Sender<Input>) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let mut buffer = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
        let read = stream.read(&mut buffer).await?;
        if read == 0 || head.len() + read > REQUEST_BYTES_MAX {
            return Ok(());
        }
        head.extend_from_slice(&buffer[..read]);
    }
    let line = String::from_utf8_lossy(head.split(|b| *b == b'\n').next().unwrap_or_default()).into_owned();
    let mut parts = line.split_whitespace();
    let (status_line, body) = match (parts.next(), parts.next()) {
        (Some("GET"), Some("/metrics")) => match fetch_status(&inputs).await {
            Some(status) => ("200 OK", render(&status)),
            None => ("503 Service Unavailable", "the node is stopping\n".to_string()),
        },
        (Some("GET"), _) => ("404 Not Found", "try /metrics\n".to_string()),
        _ => ("405 Method Not Allowed", "only GET\n".to_string()),
    };
    let response = format!(
        "HTTP/1.1 {status_line}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

async fn fetch_status(inputs: &mpsc::Sender<Input>) -> Option<NodeStatus> {
    let (reply, answer) = oneshot::channel();
    inputs.send(Input::Client { request: Request::Status, operator: false, forwarded: false, reply }).await.ok()?;
    match answer.await.ok()? {
        Response::Status(crate::frame::Json(status)) => Some(*status),
        _ => None,
    }
}

/// The status in the Prometheus text format.
pub fn render(status: &NodeStatus) -> String {
    let mut out = String::new();
    let node = &status.id;
    let mut counter = |name: &str, help: &str, value: f64| {
        let _ = writeln!(
            out,
            "# HELP baton_{name} {help}\n# TYPE baton_{name} counter\nbaton_{name}{{node=\"{node}\"}} {value}"
        );
    };
    let cost = &status.cost;
    if let Some(bytes) = cost.write_bytes {
        counter("process_write_bytes_total", "Bytes the node process caused to be written to storage.", bytes as f64);
    }
    counter("fsyncs_total", "Fsyncs made by the node's storage.", cost.fsyncs as f64);
    counter(
        "duplicate_writes_total",
        "Resent client writes answered with their first outcome, not applied again.",
        status.duplicate_writes as f64,
    );
    counter("watch_changes_sent_total", "Changes sent to watches.", status.watch_changes_sent as f64);
    counter(
        "watches_ended_total",
        "Watches the node ended because their next entry was compacted or discarded.",
        status.watches_ended as f64,
    );
    if let Some(us) = cost.cpu_us {
        counter("process_cpu_seconds_total", "User and system CPU time of the node process.", us as f64 / 1e6);
    }
    let _ = writeln!(
        out,
        "# HELP baton_storage_written_bytes_total Bytes the node's storage handed to the kernel, by what they were for.\n\
         # TYPE baton_storage_written_bytes_total counter"
    );
    let written = &cost.written;
    for (kind, bytes) in [
        ("log_records", written.log_records),
        ("log_zeros", written.log_zeros),
        ("snapshots", written.snapshots),
        ("other", written.other),
    ] {
        let _ = writeln!(out, "baton_storage_written_bytes_total{{node=\"{node}\",kind=\"{kind}\"}} {bytes}");
    }
    let mut gauge = |name: &str, help: &str, value: f64| {
        let _ = writeln!(
            out,
            "# HELP baton_{name} {help}\n# TYPE baton_{name} gauge\nbaton_{name}{{node=\"{node}\"}} {value}"
        );
    };
    if let Some(bytes) = cost.rss_bytes {
        gauge("process_resident_memory_bytes", "Resident memory of the node process.", bytes as f64);
    }
    gauge("keys", "Keys in the key-value map.", status.keys as f64);
    gauge("data_bytes", "Bytes of the keys and values in the key-value map.", status.data_bytes as f64);
    gauge("client_sessions", "Client sessions held by the state machine.", status.sessions as f64);
    gauge("watchers", "Watches the node serves now.", status.watchers as f64);
    let role_code = match status.role.as_str() {
        "leader" => 2.0,
        "candidate" | "pre-candidate" => 1.0,
        _ => 0.0,
    };
    gauge("role", "0 follower, 1 candidate, 2 leader.", role_code);
    gauge("term", "Current term.", status.term as f64);
    gauge("last_index", "Index of the last log entry.", status.last_index as f64);
    gauge("commit_index", "Highest index known committed.", status.commit_index as f64);
    gauge("applied_index", "Highest index applied to the key-value map.", status.applied_index as f64);
    gauge("durable_index", "Highest index fsynced to the log.", status.durable_index as f64);
    gauge("snapshot_index", "Index the latest snapshot covers.", status.snapshot_index as f64);
    gauge("wal_bytes", "Bytes in the log on disk.", status.wal_bytes as f64);
    if let Some(free) = status.disk_free_bytes {
        gauge("disk_free_bytes", "Free space on the disk holding the data directory.", free as f64);
    }
    gauge("paused", "1 when automatic failover is paused.", f64::from(u8::from(status.paused)));
    gauge(
        "discarded_entries",
        "Entries discarded by this node since start (async mode).",
        status.discarded_entries as f64,
    );
    if let Some(safe) = status.failover_safe {
        gauge(
            "failover_safe",
            "On the leader: 1 if every acknowledged write survives a failover now.",
            f64::from(u8::from(safe)),
        );
        gauge(
            "failover_loss_entries",
            "On the leader: acknowledged entries the best follower lacks.",
            status.failover_loss_entries as f64,
        );
    }
    if !status.followers.is_empty() {
        let _ = writeln!(out, "# HELP baton_follower_lag_entries Entries a follower lacks, as the leader sees it.");
        let _ = writeln!(out, "# TYPE baton_follower_lag_entries gauge");
        for follower in &status.followers {
            let _ = writeln!(
                out,
                "baton_follower_lag_entries{{node=\"{node}\",follower=\"{}\"}} {}",
                follower.id, follower.lag_entries
            );
        }
        let _ = writeln!(out, "# HELP baton_follower_lag_seconds Age of the oldest entry a follower lacks.");
        let _ = writeln!(out, "# TYPE baton_follower_lag_seconds gauge");
        for follower in &status.followers {
            let seconds = follower.lag_ms as f64 / 1000.0;
            let _ =
                writeln!(out, "baton_follower_lag_seconds{{node=\"{node}\",follower=\"{}\"}} {seconds}", follower.id);
        }
        let _ = writeln!(out, "# HELP baton_follower_in_sync 1 when the follower is in the in-sync set.");
        let _ = writeln!(out, "# TYPE baton_follower_in_sync gauge");
        for follower in &status.followers {
            let _ = writeln!(
                out,
                "baton_follower_in_sync{{node=\"{node}\",follower=\"{}\"}} {}",
                follower.id,
                u8::from(follower.in_sync)
            );
        }
    }
    let fsync = &status.fsync_latency;
    let _ = writeln!(out, "# HELP baton_fsync_seconds Latency of the log's group-commit fsyncs.");
    let _ = writeln!(out, "# TYPE baton_fsync_seconds histogram");
    for (bound_us, count) in LATENCY_BUCKETS_US.iter().zip(fsync.buckets) {
        let le = *bound_us as f64 / 1e6;
        let _ = writeln!(out, "baton_fsync_seconds_bucket{{node=\"{node}\",le=\"{le}\"}} {count}");
    }
    let _ = writeln!(out, "baton_fsync_seconds_bucket{{node=\"{node}\",le=\"+Inf\"}} {}", fsync.count);
    let _ = writeln!(out, "baton_fsync_seconds_sum{{node=\"{node}\"}} {}", fsync.sum_us as f64 / 1e6);
    let _ = writeln!(out, "baton_fsync_seconds_count{{node=\"{node}\"}} {}", fsync.count);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Goal: the text names every metric the issue asks for, once per series, with the
    /// node label, and the histogram is cumulative.
    #[test]
    fn renders_prometheus_text() {
        let mut status =
            NodeStatus { id: "n1".into(), role: "leader".into(), term: 7, commit_index: 42, ..Default::default() };
        status.followers.push(crate::status::FollowerStatus {
            id: "n2".into(),
            lag_entries: 3,
            lag_ms: 1500,
            ..Default::default()
        });
        status.fsync_latency.record(Duration::from_micros(150));
        status.fsync_latency.record(Duration::from_millis(3));
        status.failover_safe = Some(true);
        status.cost = crate::cost::ProcessCost {
            write_bytes: Some(4096),
            fsyncs: 9,
            cpu_us: Some(2_500_000),
            rss_bytes: Some(8 << 20),
            written: crate::cost::WrittenBytes { log_records: 3000, log_zeros: 1000, snapshots: 96, other: 0 },
        };
        status.keys = 12;
        let text = render(&status);
        for line in [
            "baton_role{node=\"n1\"} 2",
            "baton_term{node=\"n1\"} 7",
            "baton_commit_index{node=\"n1\"} 42",
            "baton_follower_lag_entries{node=\"n1\",follower=\"n2\"} 3",
            "baton_follower_lag_seconds{node=\"n1\",follower=\"n2\"} 1.5",
            "baton_fsync_seconds_bucket{node=\"n1\",le=\"0.00025\"} 1",
            "baton_fsync_seconds_bucket{node=\"n1\",le=\"0.005\"} 2",
            "baton_fsync_seconds_count{node=\"n1\"} 2",
            "baton_failover_safe{node=\"n1\"} 1",
            "baton_process_write_bytes_total{node=\"n1\"} 4096",
            "# TYPE baton_fsyncs_total counter",
            "baton_fsyncs_total{node=\"n1\"} 9",
            "baton_storage_written_bytes_total{node=\"n1\",kind=\"log_zeros\"} 1000",
            "baton_process_cpu_seconds_total{node=\"n1\"} 2.5",
            "baton_process_resident_memory_bytes{node=\"n1\"} 8388608",
            "baton_keys{node=\"n1\"} 12",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (series, value) = line.rsplit_once(' ').unwrap();
            assert!(series.starts_with("baton_"), "{line}");
            value.parse::<f64>().unwrap_or_else(|_| panic!("bad value in {line}"));
        }
    }
}
