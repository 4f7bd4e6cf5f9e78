//! `baton watch` and `baton scan`: changes under a prefix as they apply, one line each,
//! and the keys under a prefix as of one index (see `baton_node::watching`).

use crate::exit;
use baton_node::client::Client;
use baton_node::frame::WatchChange;
use baton_node::watching::WatchError;
use std::io::Write;
use std::process::ExitCode;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn print_change(out: &mut impl Write, change: &WatchChange, json: bool) -> std::io::Result<()> {
    if json {
        let line = serde_json::json!({
            "index": change.index,
            "term": change.term,
            "op": if change.value.is_some() { "put" } else { "delete" },
            "key": text(&change.key),
            "value": change.value.as_deref().map(text),
        });
        writeln!(out, "{line}")
    } else {
        match &change.value {
            Some(value) => writeln!(out, "{} put {} {}", change.index, text(&change.key), text(value)),
            None => writeln!(out, "{} delete {}", change.index, text(&change.key)),
        }
    }
}

/// Prints every key under `prefix` as of one index; returns that index.
async fn print_scan(client: &mut Client, prefix: &str, json: bool, out: &mut impl Write) -> Result<u64, String> {
    let scan = client.scan(prefix.as_bytes()).await.map_err(|e| e.to_string())?;
    for (key, value) in &scan.pairs {
        let line = if json {
            serde_json::json!({ "index": scan.index, "op": "snapshot", "key": text(key), "value": text(value) })
                .to_string()
        } else {
            format!("{} snapshot {} {}", scan.index, text(key), text(value))
        };
        writeln!(out, "{line}").map_err(|e| e.to_string())?;
    }
    out.flush().map_err(|e| e.to_string())?;
    Ok(scan.index)
}

/// `baton scan PREFIX`.
pub async fn scan(client: &mut Client, prefix: &str, json: bool) -> ExitCode {
    let mut out = std::io::stdout().lock();
    match print_scan(client, prefix, json, &mut out).await {
        Ok(index) => {
            eprintln!(
                "as of index {index}; watch from {} to follow on: baton watch {prefix:?} --from {}",
                index + 1,
                index + 1
            );
            ExitCode::SUCCESS
        }
        Err(error) => exit::fail_with(exit::NOT_DONE, &error),
    }
}

/// `baton watch PREFIX`: until interrupted, or `count` changes.
pub async fn watch(
    client: &mut Client,
    prefix: &str,
    from: Option<u64>,
    snapshot: bool,
    json: bool,
    count: Option<u64>,
) -> ExitCode {
    let out = std::io::stdout();
    let from = match (snapshot, from) {
        (true, _) => match print_scan(client, prefix, json, &mut out.lock()).await {
            Ok(index) => index + 1,
            Err(error) => return exit::fail_with(exit::NOT_DONE, &error),
        },
        (false, from) => from.unwrap_or(0),
    };
    let mut watch = client.watch(prefix.as_bytes(), from);
    let mut printed = 0;
    loop {
        match watch.next().await {
            Ok(batch) => {
                let mut lock = out.lock();
                for change in &batch.changes {
                    if print_change(&mut lock, change, json).is_err() {
                        return ExitCode::SUCCESS; // Stdout closed (a pipe to `head`).
                    }
                    printed += 1;
                    if count.is_some_and(|count| printed >= count) {
                        let _ = lock.flush();
                        return ExitCode::SUCCESS;
                    }
                }
                if lock.flush().is_err() {
                    return ExitCode::SUCCESS;
                }
            }
            Err(WatchError::Ended(end)) => {
                return exit::fail_with(exit::REFUSED, &format!("watch ended at index {}: {end}", watch.next_index()))
            }
            Err(WatchError::Client(error)) => return exit::fail_with(exit::code_of(&error), &error.to_string()),
            Err(error @ WatchError::NoNode(_)) => return exit::fail_with(exit::NOT_DONE, &error.to_string()),
        }
    }
}
