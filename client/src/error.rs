//! Client errors and how a failed request is classified.
//!
//! The one question a caller (and above all the Jepsen harness) must be able
//! to answer about a failed command is: *could it have taken effect?* Jepsen
//! records a surely-not-applied command as `:fail` and one whose outcome is
//! unknown as `:info`. Calling an applied command `:fail` would make the
//! checker report anomalies that never happened, so every doubt counts as
//! [`Outcome::Unknown`]; [`Outcome::NotApplied`] is only claimed when the
//! request was never sent, or the server said so explicitly.
//!
//! A command may be attempted several times (on several replicas) with the
//! same `(client_id, seq)`. [`AttemptLog`] folds the errors of those attempts
//! into the one error the caller sees: once any attempt had an unknown
//! outcome, the command's outcome stays unknown (that attempt may still be
//! applied later), unless a later attempt succeeds.

use std::fmt;
use std::time::Duration;

pub use paxoskv::outcome::{Outcome, OUTCOME_TRAILER};

/// What went wrong, independent of whether the command took effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The server rejected the command (empty key, key or value too large).
    InvalidArgument,
    /// The server answered UNAVAILABLE: no coordinator or no majority
    /// reachable within its deadline.
    Unavailable,
    /// No answer within the deadline (per attempt or for the whole request).
    Timeout,
    /// The server answered FAILED_PRECONDITION: the sequence number is older
    /// than one this client already used.
    StaleRequest,
    /// Could not connect to the replica (refused, unreachable, connect
    /// timeout): nothing was sent.
    Connect,
    /// The connection failed while the request was in flight (reset, closed,
    /// protocol error).
    Transport,
    /// An address given to the client is not `host:port` or
    /// `http://host:port`.
    BadAddress,
    /// Any other gRPC status from the server (INTERNAL, UNIMPLEMENTED, ...).
    Server,
}

impl ErrorKind {
    /// Upper-case name used in messages (gRPC style).
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::InvalidArgument => "INVALID_ARGUMENT",
            ErrorKind::Unavailable => "UNAVAILABLE",
            ErrorKind::Timeout => "TIMEOUT",
            ErrorKind::StaleRequest => "STALE_REQUEST",
            ErrorKind::Connect => "CONNECT_FAILED",
            ErrorKind::Transport => "TRANSPORT",
            ErrorKind::BadAddress => "BAD_ADDRESS",
            ErrorKind::Server => "SERVER_ERROR",
        }
    }

    /// Whether trying the same command again (possibly on another replica)
    /// can give a different answer. An invalid argument is invalid everywhere,
    /// a stale sequence number stays stale, a bad address stays bad.
    pub fn is_retryable(self) -> bool {
        !matches!(
            self,
            ErrorKind::InvalidArgument | ErrorKind::StaleRequest | ErrorKind::BadAddress
        )
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A failed command, as returned by [`crate::Client::execute`] and friends.
///
/// Displays as e.g.
/// `UNAVAILABLE from 127.0.0.1:8001: no majority reachable (not applied)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientError {
    /// Whether the command may have taken effect.
    pub outcome: Outcome,
    /// What went wrong.
    pub kind: ErrorKind,
    /// Human-readable detail (the server's message, or the transport error).
    pub message: String,
    /// The replica that answered, or that was last tried; `None` when no
    /// replica was involved (e.g. a bad address list).
    pub replica: Option<String>,
}

impl ClientError {
    /// Builds an error.
    pub fn new(
        outcome: Outcome,
        kind: ErrorKind,
        message: impl Into<String>,
        replica: Option<&str>,
    ) -> ClientError {
        ClientError {
            outcome,
            kind,
            message: message.into(),
            replica: replica.map(str::to_owned),
        }
    }

    /// An unusable address (never sent anywhere).
    pub fn bad_address(message: impl Into<String>) -> ClientError {
        ClientError::new(Outcome::NotApplied, ErrorKind::BadAddress, message, None)
    }

    /// An attempt that got no answer within `waited`: the request was sent,
    /// so its outcome is unknown.
    pub fn timeout(waited: Duration, replica: &str) -> ClientError {
        ClientError::new(
            Outcome::Unknown,
            ErrorKind::Timeout,
            format!("no answer within {}", fmt_duration(waited)),
            Some(replica),
        )
    }

    /// Whether the command surely had no effect.
    pub fn is_not_applied(&self) -> bool {
        self.outcome == Outcome::NotApplied
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.kind)?;
        if let Some(replica) = &self.replica {
            write!(f, " from {replica}")?;
        }
        write!(f, ": {} ({})", self.message, self.outcome)
    }
}

impl std::error::Error for ClientError {}

/// Formats a duration for messages: `250ms`, `1.5s`.
pub(crate) fn fmt_duration(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{}s", d.as_secs_f64())
    }
}

/// Classifies a gRPC status received for a request to `replica`.
///
/// A status that carries a `source` error was made up by the local transport
/// (tonic/hyper), not sent by the server: it is a connect failure when the
/// chain contains a refused/unreachable connection (nothing was sent), any
/// other transport failure otherwise (the request may have been sent).
pub fn classify_status(status: &tonic::Status, replica: &str) -> ClientError {
    use tonic::Code;
    let message = status.message().to_owned();
    let local_source = std::error::Error::source(status);
    if let Some(source) = local_source {
        let detail = error_chain(source);
        let message = if message.is_empty() {
            detail
        } else {
            format!("{message}: {detail}")
        };
        return if paxoskv::refused_before_sending(source) {
            ClientError::new(
                Outcome::NotApplied,
                ErrorKind::Connect,
                message,
                Some(replica),
            )
        } else if matches!(status.code(), Code::Cancelled | Code::DeadlineExceeded) {
            ClientError::new(Outcome::Unknown, ErrorKind::Timeout, message, Some(replica))
        } else {
            ClientError::new(
                Outcome::Unknown,
                ErrorKind::Transport,
                message,
                Some(replica),
            )
        };
    }
    let (outcome, kind) = match status.code() {
        Code::InvalidArgument => (Outcome::NotApplied, ErrorKind::InvalidArgument),
        Code::FailedPrecondition => (Outcome::NotApplied, ErrorKind::StaleRequest),
        Code::Unavailable => {
            if Outcome::from_trailer(status) == Some(Outcome::NotApplied) {
                (Outcome::NotApplied, ErrorKind::Unavailable)
            } else {
                (Outcome::Unknown, ErrorKind::Unavailable)
            }
        }
        Code::DeadlineExceeded | Code::Cancelled => (Outcome::Unknown, ErrorKind::Timeout),
        // The method does not exist on this server: nothing was executed.
        Code::Unimplemented => (Outcome::NotApplied, ErrorKind::Server),
        _ => (Outcome::Unknown, ErrorKind::Server),
    };
    let message = if kind == ErrorKind::Server {
        format!("{:?}: {message}", status.code())
    } else {
        message
    };
    ClientError::new(outcome, kind, message, Some(replica))
}

/// Classifies a failure to establish a connection: nothing was sent, so the
/// command was surely not applied.
pub(crate) fn classify_connect_error(
    err: &(dyn std::error::Error + 'static),
    replica: &str,
) -> ClientError {
    let chain = error_chain(err);
    let message = chain.strip_prefix("transport error: ").unwrap_or(&chain);
    ClientError::new(
        Outcome::NotApplied,
        ErrorKind::Connect,
        message,
        Some(replica),
    )
}

/// Renders an error and its sources as `a: b: c`, skipping repeats.
pub(crate) fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur = Some(err);
    while let Some(e) = cur {
        let text = e.to_string();
        if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cur = e.source();
    }
    parts.join(": ")
}

/// The errors of all attempts of one command, folded into the final error.
#[derive(Debug, Default)]
pub struct AttemptLog {
    /// Whether some attempt's outcome was unknown (it may still be applied).
    any_unknown: bool,
    /// The most recent error: its kind, message and replica are reported.
    last: Option<ClientError>,
    /// How many attempts failed.
    attempts: u32,
}

impl AttemptLog {
    /// Records one failed attempt.
    pub fn record(&mut self, err: ClientError) {
        self.any_unknown |= err.outcome == Outcome::Unknown;
        self.attempts += 1;
        self.last = Some(err);
    }

    /// Number of failed attempts recorded.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The final error of the command: the last attempt's error, whose
    /// outcome is [`Outcome::Unknown`] if any attempt's was. `read_only`
    /// commands (GET) never change the store, so their failure is always
    /// [`Outcome::NotApplied`]. `deadline` is the whole-request timeout, used
    /// when no attempt could be made at all.
    pub fn finish(self, read_only: bool, deadline: Duration) -> ClientError {
        let mut err = self.last.unwrap_or_else(|| {
            ClientError::new(
                Outcome::NotApplied,
                ErrorKind::Timeout,
                format!(
                    "deadline of {} passed before any attempt",
                    fmt_duration(deadline)
                ),
                None,
            )
        });
        if self.any_unknown {
            err.outcome = Outcome::Unknown;
        }
        if read_only {
            err.outcome = Outcome::NotApplied;
        }
        if self.attempts > 1 {
            err.message = format!("{} (after {} attempts)", err.message, self.attempts);
        }
        err
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::metadata::MetadataMap;
    use tonic::{Code, Status};

    fn unavailable(trailer: Option<&str>) -> Status {
        let mut md = MetadataMap::new();
        if let Some(t) = trailer {
            md.insert(OUTCOME_TRAILER, t.parse().expect("ascii"));
        }
        Status::with_metadata(Code::Unavailable, "no majority reachable", md)
    }

    #[test]
    fn invalid_argument_is_not_applied_and_final() {
        let e = classify_status(&Status::invalid_argument("empty key"), "a:1");
        assert_eq!(e.outcome, Outcome::NotApplied);
        assert_eq!(e.kind, ErrorKind::InvalidArgument);
        assert!(!e.kind.is_retryable());
        assert_eq!(e.replica.as_deref(), Some("a:1"));
    }

    #[test]
    fn failed_precondition_is_a_stale_request() {
        let e = classify_status(&Status::failed_precondition("stale seq"), "a:1");
        assert_eq!(
            (e.outcome, e.kind),
            (Outcome::NotApplied, ErrorKind::StaleRequest)
        );
        assert!(!e.kind.is_retryable());
    }

    #[test]
    fn unavailable_depends_on_the_trailer() {
        let e = classify_status(&unavailable(Some("not-applied")), "a:1");
        assert_eq!(
            (e.outcome, e.kind),
            (Outcome::NotApplied, ErrorKind::Unavailable)
        );
        assert!(e.kind.is_retryable());
        let e = classify_status(&unavailable(Some("unknown")), "a:1");
        assert_eq!(e.outcome, Outcome::Unknown);
        let e = classify_status(&unavailable(None), "a:1");
        assert_eq!(e.outcome, Outcome::Unknown);
    }

    #[test]
    fn deadline_and_cancel_are_unknown_timeouts() {
        for s in [Status::deadline_exceeded("late"), Status::cancelled("gone")] {
            let e = classify_status(&s, "a:1");
            assert_eq!((e.outcome, e.kind), (Outcome::Unknown, ErrorKind::Timeout));
        }
    }

    #[test]
    fn other_server_codes_are_unknown_except_unimplemented() {
        let e = classify_status(&Status::internal("boom"), "a:1");
        assert_eq!((e.outcome, e.kind), (Outcome::Unknown, ErrorKind::Server));
        assert!(e.message.contains("Internal"));
        let e = classify_status(&Status::unimplemented("no"), "a:1");
        assert_eq!(e.outcome, Outcome::NotApplied);
    }

    #[test]
    fn local_refused_connection_is_not_applied() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let s = Status::from_error(Box::new(io));
        let e = classify_status(&s, "a:1");
        assert_eq!(
            (e.outcome, e.kind),
            (Outcome::NotApplied, ErrorKind::Connect)
        );
    }

    #[test]
    fn tonic_connect_error_is_not_applied() {
        let io = std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out");
        let s = Status::from_error(Box::new(tonic::ConnectError(Box::new(io))));
        assert_eq!(s.code(), Code::Unavailable);
        let e = classify_status(&s, "a:1");
        assert_eq!(
            (e.outcome, e.kind),
            (Outcome::NotApplied, ErrorKind::Connect)
        );
    }

    #[test]
    fn local_reset_is_unknown_even_if_status_says_unavailable() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset by peer");
        let mut s = Status::from_error(Box::new(io));
        // Even a forged trailer must not make a local failure "not applied".
        Outcome::NotApplied.attach_to(&mut s);
        let e = classify_status(&s, "a:1");
        assert_eq!(
            (e.outcome, e.kind),
            (Outcome::Unknown, ErrorKind::Transport)
        );
        assert!(e.message.contains("reset by peer"), "{}", e.message);
    }

    #[test]
    fn display_names_kind_replica_message_and_outcome() {
        let e = classify_status(&unavailable(Some("not-applied")), "127.0.0.1:8001");
        assert_eq!(
            e.to_string(),
            "UNAVAILABLE from 127.0.0.1:8001: no majority reachable (not applied)"
        );
        let e = ClientError::timeout(Duration::from_millis(250), "h:1");
        assert_eq!(
            e.to_string(),
            "TIMEOUT from h:1: no answer within 250ms (outcome unknown)"
        );
    }

    fn err(outcome: Outcome) -> ClientError {
        ClientError::new(outcome, ErrorKind::Unavailable, "x", Some("r"))
    }

    #[test]
    fn all_not_applied_attempts_give_not_applied() {
        let mut log = AttemptLog::default();
        log.record(err(Outcome::NotApplied));
        log.record(err(Outcome::NotApplied));
        let e = log.finish(false, Duration::from_secs(1));
        assert_eq!(e.outcome, Outcome::NotApplied);
        assert!(e.message.contains("after 2 attempts"));
    }

    #[test]
    fn one_unknown_attempt_makes_the_command_unknown() {
        let mut log = AttemptLog::default();
        log.record(err(Outcome::NotApplied));
        log.record(ClientError::timeout(Duration::from_secs(1), "r2"));
        log.record(err(Outcome::NotApplied));
        let e = log.finish(false, Duration::from_secs(1));
        assert_eq!(e.outcome, Outcome::Unknown);
        // The last attempt's details are reported.
        assert_eq!(e.kind, ErrorKind::Unavailable);
    }

    #[test]
    fn a_failed_read_is_always_not_applied() {
        let mut log = AttemptLog::default();
        log.record(ClientError::timeout(Duration::from_secs(1), "r2"));
        let e = log.finish(true, Duration::from_secs(1));
        assert_eq!(e.outcome, Outcome::NotApplied);
    }

    #[test]
    fn no_attempt_at_all_is_a_not_applied_timeout() {
        let e = AttemptLog::default().finish(false, Duration::from_millis(0));
        assert_eq!(
            (e.outcome, e.kind),
            (Outcome::NotApplied, ErrorKind::Timeout)
        );
    }
}
