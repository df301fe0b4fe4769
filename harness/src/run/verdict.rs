//! The verdict of a run: facts in, verdict and reasons out (a pure function),
//! and the exit statuses of every `harness` command.

use serde::{Deserialize, Serialize};

use super::check::{LinResult, LinVerdict};

/// Exit status: everything checked out.
pub const EXIT_VALID: i32 = 0;
/// Exit status: an anomaly was found.
pub const EXIT_ANOMALY: i32 = 1;
/// Exit status: the test could not run or the check could not decide.
pub const EXIT_ERROR: i32 = 2;

/// The overall verdict of a run, ordered so that the worst wins
/// (`max` of two verdicts): an anomaly found is an anomaly even if another
/// check could not decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunVerdict {
    Valid,
    /// Could not run, or could not decide.
    Unknown,
    Anomaly,
}

impl RunVerdict {
    pub fn exit_code(self) -> i32 {
        match self {
            RunVerdict::Valid => EXIT_VALID,
            RunVerdict::Anomaly => EXIT_ANOMALY,
            RunVerdict::Unknown => EXIT_ERROR,
        }
    }
}

/// The outcome of the convergence check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConvergenceStatus {
    /// Every replica at the same applied index with the same digest.
    Converged,
    /// Same applied index, different digests: an anomaly.
    Diverged,
    /// Not every replica caught up in time.
    Undecided,
}

impl std::fmt::Display for ConvergenceStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ConvergenceStatus::Converged => "converged",
            ConvergenceStatus::Diverged => "diverged",
            ConvergenceStatus::Undecided => "undecided",
        })
    }
}

/// What the phases of a run established.
#[derive(Debug, Clone, Default)]
pub struct Facts<'a> {
    /// Why the cluster did not start (None: it started).
    pub start_error: Option<String>,
    pub interrupted: bool,
    /// Why the cluster did not recover after healing (None: it did, or the
    /// run did not get that far).
    pub recovery_error: Option<String>,
    pub linearizability: Option<&'a LinResult>,
    pub convergence: Option<ConvergenceStatus>,
    /// Replicas that exited without being told to, one line each.
    pub unexpected_exits: &'a [String],
    /// `corrupt` faults a node started on without noticing the damage.
    pub undetected_corruptions: usize,
}

/// The verdict and its reasons, one line each.
pub fn verdict(f: &Facts<'_>) -> (RunVerdict, Vec<String>) {
    let mut v = RunVerdict::Valid;
    let mut reasons = Vec::new();
    let mut worsen = |to: RunVerdict, why: String, reasons: &mut Vec<String>| {
        v = v.max(to);
        reasons.push(why);
    };
    if let Some(e) = &f.start_error {
        worsen(
            RunVerdict::Unknown,
            format!("the cluster did not start: {e}"),
            &mut reasons,
        );
    }
    if let Some(e) = &f.recovery_error {
        worsen(
            RunVerdict::Unknown,
            format!("the cluster did not recover after healing: {e}"),
            &mut reasons,
        );
    }
    if f.interrupted {
        worsen(RunVerdict::Unknown, "interrupted".into(), &mut reasons);
    }
    if let Some(l) = f.linearizability {
        match l.verdict {
            LinVerdict::Linearizable => {}
            LinVerdict::NotLinearizable => {
                let keys: Vec<&str> = l.invalid.iter().map(|k| k.key.as_str()).collect();
                worsen(
                    RunVerdict::Anomaly,
                    format!("not linearizable: keys {}", keys.join(", ")),
                    &mut reasons,
                );
            }
            LinVerdict::Unknown => {
                let why = match &l.error {
                    Some(e) => format!("linearizability not decided: {e}"),
                    None => format!(
                        "linearizability not decided for keys {} (search budget exhausted)",
                        l.unknown_keys.join(", ")
                    ),
                };
                worsen(RunVerdict::Unknown, why, &mut reasons);
            }
        }
    }
    match f.convergence {
        None | Some(ConvergenceStatus::Converged) => {}
        Some(ConvergenceStatus::Diverged) => worsen(
            RunVerdict::Anomaly,
            "replicas diverged: same applied index, different digests".into(),
            &mut reasons,
        ),
        Some(ConvergenceStatus::Undecided) => worsen(
            RunVerdict::Unknown,
            "replicas did not converge in time (applied indexes differ)".into(),
            &mut reasons,
        ),
    }
    for e in f.unexpected_exits {
        worsen(RunVerdict::Unknown, e.clone(), &mut reasons);
    }
    if f.undetected_corruptions > 0 {
        worsen(
            RunVerdict::Anomaly,
            format!(
                "{} damaged data dir(s) went undetected: a node started on them (see the corrupt ops)",
                f.undetected_corruptions
            ),
            &mut reasons,
        );
    }
    if v == RunVerdict::Valid {
        reasons.push("valid: every check passed".into());
    }
    (v, reasons)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::check::InvalidKey;

    fn lin(verdict: LinVerdict) -> LinResult {
        LinResult {
            verdict,
            keys_checked: 2,
            invalid: match verdict {
                LinVerdict::NotLinearizable => vec![InvalidKey {
                    key: "k3".into(),
                    anomaly: "other".into(),
                    why: String::new(),
                    explanation: String::new(),
                    timeline: None,
                }],
                _ => vec![],
            },
            unknown_keys: match verdict {
                LinVerdict::Unknown => vec!["k1".into()],
                _ => vec![],
            },
            elapsed_ms: 1,
            error: None,
            report: None,
        }
    }

    #[test]
    fn the_worst_verdict_wins() {
        use RunVerdict::*;
        assert!(Valid < Unknown && Unknown < Anomaly);
        assert_eq!(Valid.max(Anomaly).max(Unknown), Anomaly);
        assert_eq!(
            [Valid, Anomaly, Unknown].map(RunVerdict::exit_code),
            [EXIT_VALID, EXIT_ANOMALY, EXIT_ERROR]
        );
    }

    #[test]
    fn verdicts_from_facts() {
        let ok = lin(LinVerdict::Linearizable);
        let facts = Facts {
            linearizability: Some(&ok),
            convergence: Some(ConvergenceStatus::Converged),
            ..Facts::default()
        };
        assert_eq!(
            verdict(&facts),
            (RunVerdict::Valid, vec!["valid: every check passed".into()])
        );

        let bad = lin(LinVerdict::NotLinearizable);
        let (v, why) = verdict(&Facts {
            linearizability: Some(&bad),
            convergence: Some(ConvergenceStatus::Undecided),
            ..Facts::default()
        });
        assert_eq!(v, RunVerdict::Anomaly);
        assert_eq!(why[0], "not linearizable: keys k3");
        assert!(why[1].contains("did not converge"), "{why:?}");

        let (v, why) = verdict(&Facts {
            convergence: Some(ConvergenceStatus::Diverged),
            ..Facts::default()
        });
        assert_eq!(v, RunVerdict::Anomaly);
        assert!(why[0].contains("diverged"));

        let unknown = lin(LinVerdict::Unknown);
        let (v, why) = verdict(&Facts {
            linearizability: Some(&unknown),
            ..Facts::default()
        });
        assert_eq!(v, RunVerdict::Unknown);
        assert!(
            why[0].contains("keys k1 (search budget exhausted)"),
            "{why:?}"
        );

        let exits = ["n1 exited on its own (signal 9); see n1.log".to_string()];
        let (v, why) = verdict(&Facts {
            start_error: None,
            interrupted: true,
            unexpected_exits: &exits,
            linearizability: Some(&ok),
            ..Facts::default()
        });
        assert_eq!(v, RunVerdict::Unknown);
        assert_eq!(why, vec!["interrupted".to_string(), exits[0].clone()]);

        let (v, why) = verdict(&Facts {
            start_error: Some("no coordinator after 5s".into()),
            ..Facts::default()
        });
        assert_eq!(v, RunVerdict::Unknown);
        assert_eq!(
            why,
            vec!["the cluster did not start: no coordinator after 5s"]
        );

        let (v, why) = verdict(&Facts {
            linearizability: Some(&ok),
            undetected_corruptions: 1,
            ..Facts::default()
        });
        assert_eq!(v, RunVerdict::Anomaly);
        assert!(
            why[0].contains("1 damaged data dir(s) went undetected"),
            "{why:?}"
        );
    }
}
