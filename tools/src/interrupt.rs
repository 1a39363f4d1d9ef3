//! A file this process writes that must not outlive it: `blob get -o`'s temp file. While it is
//! being written, SIGINT, SIGTERM and SIGHUP (Ctrl-C, `kill`, a closed terminal) still end the
//! process, with exit code 128 + the signal's number (what a shell shows for a process a signal
//! ended), but remove the file first. A signal the process was started ignoring (a background
//! job's SIGINT, `nohup`'s SIGHUP) stays ignored. Only SIGKILL, which nothing catches, leaves
//! the file behind.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use net_mesh_engine::ErrorClass;
use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::output::{CliResult, ErrorContext};

/// Removes its file and exits when the process is told to stop while the guard lives; dropping
/// the guard forgets the file (renamed into place, or removed by its owner).
#[derive(Debug)]
pub struct RemovedOnSignal {
    path: Arc<Mutex<Option<PathBuf>>>,
}

/// SIGHUP, SIGINT, SIGTERM: their numbers and kinds.
const STOPPING: [(i32, fn() -> SignalKind); 3] = [
    (1, SignalKind::hangup),
    (2, SignalKind::interrupt),
    (15, SignalKind::terminate),
];

impl RemovedOnSignal {
    /// Catches the signals from here on (for the rest of the process: one that comes after the
    /// guard is dropped only ends it, as before) and removes `path` when one comes.
    pub fn arm(path: &Path) -> CliResult<RemovedOnSignal> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .with_class(ErrorClass::Io, || "starting the signal handler")?;
        let ignored = ignored_signals();
        let mut caught: Vec<(i32, Signal)> = Vec::new();
        {
            let _entered = runtime.enter();
            for (number, kind) in STOPPING {
                if ignored & (1u64 << (number - 1)) != 0 {
                    continue;
                }
                let s = signal(kind()).with_class(ErrorClass::Io, || "catching signals")?;
                caught.push((number, s));
            }
        }
        let shared = Arc::new(Mutex::new(Some(path.to_path_buf())));
        if caught.is_empty() {
            return Ok(RemovedOnSignal { path: shared });
        }
        let armed = Arc::clone(&shared);
        std::thread::spawn(move || {
            let number = runtime.block_on(async move {
                let (came, mut first) = tokio::sync::mpsc::unbounded_channel();
                for (number, mut s) in caught {
                    let came = came.clone();
                    tokio::spawn(async move {
                        if s.recv().await.is_some() {
                            let _ = came.send(number);
                        }
                    });
                }
                first.recv().await
            });
            let Some(number) = number else { return };
            let path = armed.lock().unwrap_or_else(PoisonError::into_inner).take();
            if let Some(path) = path {
                let _ = std::fs::remove_file(path);
            }
            std::process::exit(128 + number);
        });
        Ok(RemovedOnSignal { path: shared })
    }
}

impl Drop for RemovedOnSignal {
    fn drop(&mut self) {
        self.path
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
    }
}

/// The signals this process ignores (bit N-1 for signal N), from `/proc/self/status`; none when
/// it cannot be read.
fn ignored_signals() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("SigIgn:"))
                .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        })
        .unwrap_or(0)
}
