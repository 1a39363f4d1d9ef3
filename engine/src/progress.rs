//! How far a long store operation (`fsck`, `gc`) has got, for a caller's progress display.
//!
//! The operation names each stage it enters with the bytes the stage will go through (when it
//! knows them) and counts the bytes as it goes; a display polls [`Progress::now`] from another
//! thread. Counting is one relaxed atomic add per record, so a caller that shows nothing pays
//! next to nothing.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// A stage of an operation: its name and the bytes it will go through, if known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    /// What the operation is doing, e.g. `reading data`.
    pub name: &'static str,
    /// Bytes the stage goes through in all (`None`: not known in advance).
    pub total: Option<u64>,
}

#[derive(Debug, Default)]
struct Shared {
    stage: Mutex<Option<Stage>>,
    done: AtomicU64,
}

/// A progress handle: the operation writes it, a display reads it (clones share one state).
#[derive(Debug, Clone, Default)]
pub struct Progress(Arc<Shared>);

impl Progress {
    /// A handle no stage has been entered on yet.
    pub fn new() -> Progress {
        Progress::default()
    }

    /// Enters `name`, going through `total` bytes; the count restarts at 0.
    pub(crate) fn stage(&self, name: &'static str, total: Option<u64>) {
        let mut stage = self.0.stage.lock().unwrap_or_else(|e| e.into_inner());
        self.0.done.store(0, Ordering::Relaxed);
        *stage = Some(Stage { name, total });
    }

    /// Counts `bytes` more of the current stage.
    pub(crate) fn advance(&self, bytes: u64) {
        self.0.done.fetch_add(bytes, Ordering::Relaxed);
    }

    /// The current stage (`None` before the first) and the bytes done in it.
    pub fn now(&self) -> (Option<Stage>, u64) {
        let stage = self.0.stage.lock().unwrap_or_else(|e| e.into_inner());
        (stage.clone(), self.0.done.load(Ordering::Relaxed))
    }
}
