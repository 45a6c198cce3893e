//! What Kubernetes will show for a record: the `lastState.terminated` kubelet reports (`kubectl
//! describe pod`), from what the kernel saw of the main process's exit, so an SRE can hold the
//! two side by side.
//!
//! kubelet copies the runtime's ContainerStatus: containerd's exit code is the wait status of
//! the main process, 128 + the signal for a fatal signal (its shim's `exitStatus`), and its
//! reason is `Completed` for 0, `OOMKilled` when it saw the container's cgroup report an OOM
//! kill, else `Error` (internal/cri/server/container_status.go, events.go); CRI-O does the same.
//! kubelet writes 137 with `ContainerStatusUnknown` itself when it lost the container's status
//! (a runtime restart, kubernetes#104107): that is not the kernel's exit, and the note says so.

use serde::Serialize;

use crate::{
    correlate::{Exit, Outcome},
    signals,
};

/// `lastState.terminated` as kubelet will report it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KubeStatus {
    /// `Completed`, `Error` or `OOMKilled`; null when the exit was not seen.
    pub reason: Option<&'static str>,
    /// The exit code kubelet shows: the process's code, or 128 + its fatal signal.
    pub exit_code: Option<u32>,
    /// What the code means here, and where `kubectl describe` may say otherwise.
    pub note: String,
}

/// The code kubelet shows for an exit (None: the exit was not seen).
pub fn exit_code(exit: &Exit) -> Option<u32> {
    match (exit.code, exit.signal) {
        (_, Some(sig)) => Some(128 + sig),
        (Some(code), None) => Some(code),
        (None, None) => None,
    }
}

/// See the module docs.
pub fn for_exit(outcome: Outcome, exit: &Exit) -> KubeStatus {
    if outcome == Outcome::Stuck {
        return KubeStatus {
            reason: None,
            exit_code: None,
            note: "not gone: kubelet shows it running, the pod Terminating, until it is reaped"
                .into(),
        };
    }
    if outcome == Outcome::ExitNotObserved {
        return KubeStatus {
            reason: None,
            exit_code: None,
            note:
                "exit not seen: kubelet shows the runtime's status, or 137 ContainerStatusUnknown"
                    .into(),
        };
    }
    let code = exit_code(exit);
    let reason = match (outcome, code) {
        (Outcome::OomKilled, _) => "OOMKilled",
        (_, Some(0)) => "Completed",
        _ => "Error",
    };
    // Short: every record carries one (the report explains them at length).
    let note = match (exit.signal, exit.code, outcome) {
        (Some(sig), _, Outcome::OomKilled) => format!(
            "{} = 128 + {sig} ({}): the OOM killer chose the main process",
            128 + sig,
            signals::name(sig)
        ),
        (Some(9), _, _) => "137 = 128 + 9 (SIGKILL), not an OOM kill: containerd's OOMKilled \
                            counts any process's, and can race the exit"
            .into(),
        (Some(sig), _, _) => format!(
            "{} = 128 + {sig} ({}): its default action (no handler, not a pid namespace init)",
            128 + sig,
            signals::name(sig)
        ),
        (None, Some(0), _) => {
            "exit 0: a 137 with ContainerStatusUnknown in kubectl is kubelet losing the status"
                .into()
        }
        (None, Some(c), _) if c > 128 && c - 128 < 65 => format!(
            "exit {c}, a code, not a signal (a shell exits so when its child died of {})",
            signals::name(c - 128)
        ),
        (None, Some(c), _) => format!("exit {c}: the main process's own code"),
        (None, None, _) => "no exit code".into(),
    };
    KubeStatus { reason: Some(reason), exit_code: code, note }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exit(code: Option<u32>, signal: Option<u32>) -> Exit {
        Exit { at_ns: 1, code, signal }
    }

    #[test]
    fn sigkill_is_137_error_and_not_an_oom_kill() {
        let s = for_exit(Outcome::Killed, &exit(None, Some(9)));
        assert_eq!((s.reason, s.exit_code), (Some("Error"), Some(137)));
        assert!(s.note.contains("not an OOM kill"), "{}", s.note);
        let s = for_exit(Outcome::OomKilled, &exit(None, Some(9)));
        assert_eq!((s.reason, s.exit_code), (Some("OOMKilled"), Some(137)));
    }

    #[test]
    fn sigterm_default_action_is_143() {
        let s = for_exit(Outcome::Graceful, &exit(None, Some(15)));
        assert_eq!((s.reason, s.exit_code), (Some("Error"), Some(143)));
        assert!(s.note.starts_with("143 = 128 + 15 (SIGTERM)"), "{}", s.note);
    }

    #[test]
    fn codes_are_completed_or_error() {
        let s = for_exit(Outcome::Graceful, &exit(Some(0), None));
        assert_eq!((s.reason, s.exit_code), (Some("Completed"), Some(0)));
        assert!(s.note.contains("ContainerStatusUnknown"));
        let s = for_exit(Outcome::Graceful, &exit(Some(143), None));
        assert_eq!((s.reason, s.exit_code), (Some("Error"), Some(143)));
        assert!(s.note.contains("a code, not a signal"), "{}", s.note);
        let s = for_exit(Outcome::Graceful, &exit(Some(3), None));
        assert_eq!((s.reason, s.exit_code), (Some("Error"), Some(3)));
    }

    #[test]
    fn no_exit_no_status() {
        let s = for_exit(Outcome::ExitNotObserved, &exit(None, None));
        assert_eq!((s.reason, s.exit_code), (None, None));
    }
}
