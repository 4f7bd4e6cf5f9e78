//! Carries a request a follower forwards to the leader (see `baton_host::route`) on the
//! follower's replication connection to it, in a stream of its own, and the answer back.
//! The outcome keeps its meaning: an answer is relayed as it is; a write whose answer
//! never came back is "outcome unknown" (in a session the client resends it, and it
//! still takes effect once); a request that provably never left is "not leader", which a
//! client retries.

use crate::frame::{read_frame, write_frame, ErrorCode, Frame, Request, Response};
use std::time::Duration;
use tokio::sync::oneshot;

/// A forwarded request's answer must come within this: under the client's own call
/// timeout, so the follower's verdict reaches it before it gives up on the call.
pub const FORWARD_TIMEOUT: Duration = Duration::from_millis(300);

/// Forwards `request` on `connection` (to the leader, named `leader` for messages) and
/// sends its answer to `reply`.
pub async fn forward(
    connection: quinn::Connection,
    leader: String,
    request: Request,
    reply: oneshot::Sender<Response>,
) {
    let is_write =
        matches!(request, Request::Session { .. } | Request::Put { .. } | Request::Delete { .. } | Request::Cas { .. });
    let mut sent = false;
    let attempt = async {
        let (mut send, mut receive) = connection.open_bi().await.map_err(|e| e.to_string())?;
        sent = true;
        write_frame(&mut send, &Frame::Request { request }).await.map_err(|e| e.to_string())?;
        let answer = read_frame(&mut receive).await.map_err(|e| e.to_string())?;
        let _ = send.finish();
        match answer {
            Some(Frame::Response { response }) => Ok(response),
            other => Err(format!("unexpected answer: {other:?}")),
        }
    };
    let result = tokio::time::timeout(FORWARD_TIMEOUT, attempt).await.map_err(|_| "timed out".to_string());
    let response = match result.and_then(|answer| answer) {
        Ok(response) => response,
        Err(problem) if sent && is_write => Response::Error {
            code: ErrorCode::OutcomeUnknown,
            message: format!("forwarded to the leader {leader}, no answer: {problem}; the write may or may not apply"),
            leader_hint: None,
        },
        Err(problem) => Response::Error {
            code: ErrorCode::NotLeader,
            message: format!("forwarding to the leader {leader} failed: {problem}"),
            leader_hint: None,
        },
    };
    let _ = reply.send(response);
}
