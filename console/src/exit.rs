//! The exit codes of `baton`, for scripts, and which failure gets which. Documented in
//! the README ("Exit codes") and in `baton --help`.

use baton_node::client::ClientError;
use baton_node::frame::ErrorCode;
use std::process::ExitCode;

// 0: done (`ExitCode::SUCCESS`).
/// The answer was no: a key is absent, a compare-and-set found another value, the
/// cluster refused the request (too large, forbidden, a switchover's reasons). Nothing
/// was applied.
pub const REFUSED: u8 = 1;
/// The command cannot run as given: bad arguments (clap's own code), missing or
/// unreadable certificates, no `--cluster`. Nothing was sent.
pub const USAGE: u8 = 2;
/// `status`: the cluster is degraded (each problem on stderr).
pub const DEGRADED: u8 = 3;
/// Outcome unknown: a write may have reached the cluster and may still take effect.
/// Read the key (or retry the same write in a session) to find out.
pub const OUTCOME_UNKNOWN: u8 = 4;
/// Not done: no node answered in time, or the nodes could not do it. Nothing was
/// applied.
pub const NOT_DONE: u8 = 5;

/// The text `baton --help` ends with.
pub const HELP: &str = "Exit codes: 0 done; 1 the answer was no (absent key, compare-and-set mismatch, \
a refusal; nothing applied); 2 usage (bad arguments, certificates, no --cluster; nothing sent); \
3 status: the cluster is degraded; 4 outcome unknown (a write may still take effect); \
5 not done (no node answered in time; nothing applied).";

/// The exit code for a client failure.
pub fn code_of(error: &ClientError) -> u8 {
    match error {
        ClientError::Setup(_) => USAGE,
        ClientError::Refused { code: ErrorCode::OutcomeUnknown, .. } => OUTCOME_UNKNOWN,
        ClientError::Refused { code: ErrorCode::Internal | ErrorCode::Timeout, .. } => NOT_DONE,
        ClientError::Refused { .. } => REFUSED,
        ClientError::Unreachable { .. }
        | ClientError::NoAnswer { .. }
        | ClientError::Deadline(..)
        | ClientError::Unexpected(_) => NOT_DONE,
    }
}

/// Prints `message` and returns `code`.
pub fn fail_with(code: u8, message: &str) -> ExitCode {
    eprintln!("baton: {message}");
    ExitCode::from(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Goal: a write whose outcome is unknown is told apart from one that was never
    /// sent and from a refusal.
    #[test]
    fn each_failure_has_its_code() {
        let refused = |code| ClientError::Refused { code, message: String::new() };
        let addr = "127.0.0.1:1".parse().unwrap();
        assert_eq!(code_of(&refused(ErrorCode::OutcomeUnknown)), OUTCOME_UNKNOWN);
        assert_eq!(code_of(&refused(ErrorCode::TooLarge)), REFUSED);
        assert_eq!(code_of(&refused(ErrorCode::Forbidden)), REFUSED);
        assert_eq!(code_of(&ClientError::Unreachable { addr, reason: String::new() }), NOT_DONE);
        assert_eq!(code_of(&ClientError::Deadline(std::time::Duration::ZERO, String::new())), NOT_DONE);
        assert_eq!(code_of(&ClientError::Setup(String::new())), USAGE);
    }
}
