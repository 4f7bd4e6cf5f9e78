//! The wire response for each answer the host gives a client's write
//! (`baton_host::apply::Answer`): what it is told, in words it can act on.

use crate::frame::{ErrorCode, Response};
use baton_host::apply::{Answer, NotApplied};

/// The wire response for what `baton_host::apply` decided a client is told.
pub fn response_to(answer: Answer) -> Response {
    let refused = |code, message: &str| Response::Error { code, message: message.into(), leader_hint: None };
    match answer {
        Answer::Written { term, index } => Response::Written { term, index },
        Answer::CasMismatch { current, term, index } => Response::CasMismatch { current, term, index },
        Answer::OutcomeUnknown => refused(
            ErrorCode::OutcomeUnknown,
            "leadership changed before the write was acknowledged; it may still apply",
        ),
        Answer::NotApplied(NotApplied::SessionExpired) => refused(
            ErrorCode::SessionExpired,
            "the client's session expired (unused for too long); this request was not applied",
        ),
        Answer::NotApplied(NotApplied::SessionsFull) => refused(
            ErrorCode::SessionsFull,
            "the cluster holds as many client sessions as it may, all in recent use; \
             this request was not applied: retry later",
        ),
        Answer::NotApplied(NotApplied::RevokedFull) => {
            refused(ErrorCode::TooLarge, "the cluster's revocation list is full; the certificate was not revoked")
        }
        Answer::NotApplied(NotApplied::Stale) => {
            refused(ErrorCode::Internal, "a later write of this session was applied first; this one was not applied")
        }
        Answer::NotApplied(NotApplied::CasMismatchEarlier { term, index }) => refused(
            ErrorCode::CasNotApplied,
            &format!(
                "this compare-and-set did not match at index {index} (term {term}) and was not applied; \
                 the key holds the expected value now: read it and retry"
            ),
        ),
    }
}
