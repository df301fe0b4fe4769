//! How the coordinator answers GET: the one [`ReadMode`] of the server's
//! `--read-mode` flag, the Paxos core, the `Status` reply and the harness's
//! workload files (`read_mode: quorum`).

use serde::{Deserialize, Serialize};

/// How the coordinator answers GET.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReadMode {
    /// Read-index: the read waits until a majority has confirmed, after the
    /// read arrived, that this coordinator's ballot is still the highest, and
    /// until the log is applied up to the last slot the coordinator proposed.
    /// Linearizable.
    #[default]
    Quorum,
    /// Answer at once from local state if this replica believes it is the
    /// coordinator (the original C++ project's behaviour). A deposed
    /// coordinator that does not know it yet serves stale data: knowingly
    /// unsafe.
    Local,
}

impl ReadMode {
    /// Every mode, in the order flags and help list them.
    pub const ALL: [ReadMode; 2] = [ReadMode::Quorum, ReadMode::Local];

    /// The name used in flags, files and the `Status` reply: `quorum`, `local`.
    pub fn as_str(self) -> &'static str {
        match self {
            ReadMode::Quorum => "quorum",
            ReadMode::Local => "local",
        }
    }
}

impl std::fmt::Display for ReadMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A read mode name that is neither `quorum` nor `local`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown read mode {0:?} (quorum or local)")]
pub struct UnknownReadMode(pub String);

impl std::str::FromStr for ReadMode {
    type Err = UnknownReadMode;

    fn from_str(s: &str) -> Result<ReadMode, UnknownReadMode> {
        ReadMode::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| UnknownReadMode(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back_and_others_are_refused() {
        for m in ReadMode::ALL {
            assert_eq!(m.as_str().parse::<ReadMode>(), Ok(m));
            assert_eq!(m.to_string(), m.as_str());
        }
        assert_eq!(
            "fast".parse::<ReadMode>().unwrap_err().to_string(),
            "unknown read mode \"fast\" (quorum or local)"
        );
        assert_eq!(ReadMode::default(), ReadMode::Quorum);
    }
}
