//! Named crash points for process-level crash tests, and named error points.
//!
//! If the environment variable [`FAILPOINT_ENV`] (`NET_MESH_FAILPOINT`) is `name`, the first call
//! of `hit(name)` kills the process with SIGKILL; if it is `name:N`, the Nth call (1-based) does.
//! SIGKILL mimics a crash: no destructors, no buffered-writer flushes. If it is `error:name`
//! (or `error:name:N`), the first (Nth) call of `fails(name)` returns true, and the caller fails
//! that step with an error as if its I/O had failed, the process going on: a failure without
//! a crash. The variable is read once per process. With the variable unset, `hit` and `fails`
//! cost one atomic load.
//!
//! Points in this crate: `segment.after_write` (after each append's write) and
//! `segment.after_sync` (after each segment fdatasync in `sync`). The engine adds its own.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// The environment variable naming the armed failpoint.
pub const FAILPOINT_ENV: &str = "NET_MESH_FAILPOINT";

#[derive(Debug)]
struct Armed {
    name: String,
    nth: u64,
    /// `error:` points: `fails` answers, `hit` ignores them.
    error: bool,
}

static ARMED: OnceLock<Option<Armed>> = OnceLock::new();
static HITS: AtomicU64 = AtomicU64::new(0);

/// Parses `[error:]name` or `[error:]name:N` (N >= 1). A suffix that is not a positive number
/// is part of the name.
fn parse(spec: &str) -> Option<Armed> {
    let spec = spec.trim();
    let (error, spec) = match spec.strip_prefix("error:") {
        Some(rest) => (true, rest),
        None => (false, spec),
    };
    if spec.is_empty() {
        return None;
    }
    if let Some((name, n)) = spec.rsplit_once(':')
        && let Ok(nth) = n.parse::<u64>()
        && nth >= 1
        && !name.is_empty()
    {
        return Some(Armed {
            name: name.to_owned(),
            nth,
            error,
        });
    }
    Some(Armed {
        name: spec.to_owned(),
        nth: 1,
        error,
    })
}

fn armed() -> Option<&'static Armed> {
    ARMED
        .get_or_init(|| std::env::var(FAILPOINT_ENV).ok().and_then(|v| parse(&v)))
        .as_ref()
}

/// Counts a call of point `name` of kind `error` and says whether it is the armed one's Nth.
fn reached(name: &str, error: bool) -> bool {
    let Some(armed) = armed() else {
        return false;
    };
    if armed.error != error || armed.name != name {
        return false;
    }
    let n = HITS.fetch_add(1, Ordering::SeqCst).saturating_add(1);
    if n != armed.nth {
        return false;
    }
    let what = if error {
        "failing this step"
    } else {
        "killing process"
    };
    tracing::warn!(failpoint = name, hit = n, "failpoint reached: {what}");
    true
}

/// Whether the error point `name` fails now: it is the armed `error:` point and this is its
/// Nth call (see module docs).
pub fn fails(name: &str) -> bool {
    reached(name, true)
}

/// Marks the crash point `name`; kills the process if it is the armed one (see module docs).
pub fn hit(name: &str) {
    if reached(name, false) {
        kill_self();
    }
}

#[allow(unsafe_code)]
fn kill_self() {
    // SAFETY: getpid and kill are plain syscalls with no memory arguments; sending SIGKILL to
    // ourselves is the intent (a crash without unwinding or destructors).
    unsafe {
        libc::kill(libc::getpid(), libc::SIGKILL);
    }
    // SIGKILL cannot be caught; if delivery is somehow delayed, do not continue.
    std::process::abort();
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn parses_name_and_nth() {
        let a = parse("segment.after_sync:3").unwrap();
        assert_eq!((a.name.as_str(), a.nth), ("segment.after_sync", 3));
        let b = parse("segment.after_write").unwrap();
        assert_eq!((b.name.as_str(), b.nth), ("segment.after_write", 1));
        let c = parse("weird:name:x").unwrap();
        assert_eq!((c.name.as_str(), c.nth), ("weird:name:x", 1));
        let d = parse("p:0").unwrap();
        assert_eq!((d.name.as_str(), d.nth), ("p:0", 1));
        assert!(parse("").is_none());
        assert!(!a.error && !d.error);
        let e = parse("error:move.remove_copy.commit:2").unwrap();
        assert_eq!(
            (e.name.as_str(), e.nth, e.error),
            ("move.remove_copy.commit", 2, true)
        );
        let f = parse("error:p").unwrap();
        assert_eq!((f.name.as_str(), f.nth, f.error), ("p", 1, true));
        assert!(parse("error:").is_none());
    }
}
