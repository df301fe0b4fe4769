//! Whether a failed command may have taken effect, as the server says it and
//! the client reads it.
//!
//! A replica that answers UNAVAILABLE attaches the [`OUTCOME_TRAILER`]
//! (`paxoskv-outcome`): [`Outcome::NotApplied`] (`not-applied`) when no
//! attempt could have taken effect, [`Outcome::Unknown`] (`unknown`)
//! otherwise. A caller that could not even connect knows by itself that
//! nothing was sent: [`refused_before_sending`].

use std::fmt;

use tonic::metadata::MetadataValue;
use tonic::Status;

/// Name of the trailer in which a replica says whether a failed command was
/// surely not applied (`not-applied`) or may have been (`unknown`).
pub const OUTCOME_TRAILER: &str = "paxoskv-outcome";

/// Whether a failed command may have taken effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The command surely had no effect (Jepsen `:fail`).
    NotApplied,
    /// The command may or may not have taken effect, now or later
    /// (Jepsen `:info`).
    Unknown,
}

impl Outcome {
    /// The value of [`OUTCOME_TRAILER`] for this outcome.
    pub fn trailer_value(self) -> &'static str {
        match self {
            Outcome::NotApplied => "not-applied",
            Outcome::Unknown => "unknown",
        }
    }

    /// The outcome a status's trailer claims, if it has a known one. The
    /// trailer is the server's word: callers decide whether to believe it
    /// (a status made up by the local transport carries no server word).
    pub fn from_trailer(status: &Status) -> Option<Outcome> {
        let value = status.metadata().get(OUTCOME_TRAILER)?.to_str().ok()?;
        [Outcome::NotApplied, Outcome::Unknown]
            .into_iter()
            .find(|o| o.trailer_value() == value)
    }

    /// Attaches this outcome to `status` as its trailer.
    pub fn attach_to(self, status: &mut Status) {
        status.metadata_mut().insert(
            OUTCOME_TRAILER,
            MetadataValue::from_static(self.trailer_value()),
        );
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Outcome::NotApplied => "not applied",
            Outcome::Unknown => "outcome unknown",
        })
    }
}

/// Whether an error chain (e.g. the `source` of a tonic status made up by the
/// local transport) says the connection could not be established, so that no
/// byte of the request left this machine.
pub fn refused_before_sending(err: &(dyn std::error::Error + 'static)) -> bool {
    use std::io::ErrorKind as Io;
    let mut cur = Some(err);
    while let Some(e) = cur {
        // tonic wraps every failure to establish a connection in ConnectError.
        if e.downcast_ref::<tonic::ConnectError>().is_some() {
            return true;
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if matches!(
                io.kind(),
                Io::ConnectionRefused
                    | Io::AddrNotAvailable
                    | Io::HostUnreachable
                    | Io::NetworkUnreachable
            ) {
                return true;
            }
        }
        cur = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_trailer_round_trips() {
        for o in [Outcome::NotApplied, Outcome::Unknown] {
            let mut st = Status::unavailable("x");
            o.attach_to(&mut st);
            assert_eq!(Outcome::from_trailer(&st), Some(o));
        }
        assert_eq!(Outcome::from_trailer(&Status::unavailable("x")), None);
        let mut st = Status::unavailable("x");
        st.metadata_mut()
            .insert(OUTCOME_TRAILER, MetadataValue::from_static("maybe"));
        assert_eq!(Outcome::from_trailer(&st), None);
    }

    #[test]
    fn refused_and_connect_errors_sent_nothing_a_reset_may_have() {
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert!(refused_before_sending(&refused));
        let timeout = std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out");
        assert!(refused_before_sending(&tonic::ConnectError(Box::new(
            timeout
        ))));
        let reset = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        assert!(!refused_before_sending(&reset));
    }
}
