//! Serves a watch or a scan on one client stream: the driver decides what a watch gets
//! (`baton_host::watch`) and hands the batches over a bounded queue; this writes them
//! out, then the final answer. A scan gets the map as of one applied index (an O(1)
//! clone) from the driver and pages through it here, off the driver's loop.

use crate::frame::{write_frame, Frame, Response, SCAN_PAGE_BYTES};
use crate::handoff::{Input, WatchSink, WATCH_QUEUE_BATCHES};
use tokio::sync::{mpsc, oneshot};

/// Answers a watch until the driver ends it or the caller goes away. Returns whether the
/// stream is still usable (it is not: a watch uses its stream to the end).
pub async fn serve_watch(send: &mut quinn::SendStream, inputs: &mpsc::Sender<Input>, prefix: Vec<u8>, from_index: u64) {
    let (batches, mut queued) = mpsc::channel(WATCH_QUEUE_BATCHES);
    let (end, ended) = oneshot::channel();
    if inputs.send(Input::Watch { prefix, from_index, sink: WatchSink { batches, end } }).await.is_err() {
        return; // Shutting down.
    }
    loop {
        tokio::select! {
            batch = queued.recv() => {
                let Some(response) = batch else { break };
                if write_frame(send, &Frame::Response { response }).await.is_err() {
                    return; // The caller went away: dropping the queue tells the driver.
                }
                if queued.is_empty() {
                    let _ = inputs.try_send(Input::WatchRoom); // Dropped if the driver is busy: it turns anyway.
                }
            }
            // The caller closed its side: nothing more to send.
            _ = send.stopped() => return,
        }
    }
    // The driver dropped the queue: the final answer, if it sent one, follows the batches.
    if let Ok(response) = ended.await {
        let _ = write_frame(send, &Frame::Response { response }).await;
    }
    let _ = send.finish();
}

/// Answers a scan with pages of at most [`SCAN_PAGE_BYTES`] of keys and values.
pub async fn serve_scan(send: &mut quinn::SendStream, inputs: &mpsc::Sender<Input>, prefix: Vec<u8>) -> bool {
    let (reply, view) = oneshot::channel();
    if inputs.send(Input::Scan { reply }).await.is_err() {
        return false;
    }
    let Ok(view) = view.await else { return false };
    let mut pairs = Vec::new();
    let mut bytes = 0;
    for (key, value) in view.map.iter_from(&prefix).take_while(|(key, _)| key.starts_with(&prefix)) {
        bytes += key.len() + value.len();
        pairs.push((key.to_vec(), value.to_vec()));
        if bytes >= SCAN_PAGE_BYTES {
            let page = Response::ScanPage { pairs: std::mem::take(&mut pairs), index: view.applied_index, done: false };
            if write_frame(send, &Frame::Response { response: page }).await.is_err() {
                return false;
            }
            bytes = 0;
        }
    }
    let last = Response::ScanPage { pairs, index: view.applied_index, done: true };
    write_frame(send, &Frame::Response { response: last }).await.is_ok()
}
