//! A session's sealer and writer tasks (the reader is `dispatch::read_loop`), how they are
//! started and counted, and the liveness timers the reader runs.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::buffers::POOL_MIN_CAPACITY;
use super::{SessionError, SessionShared};
use crate::rpc::outbox::{OutItem, SendCharge};
use crate::rpc::{Config, Metrics};
use crate::transport::{FrameReceiver, FrameSender, SealedBatch, TransportError};

/// Starts the three tasks of an established session.
pub(crate) fn spawn_tasks(
    shared: &Arc<SessionShared>,
    sender: FrameSender<OwnedWriteHalf>,
    receiver: FrameReceiver<OwnedReadHalf>,
) {
    let (sealer, write) = sender.into_parts();
    // Two sealed batches in flight: one being written, one ready.
    let (batch_tx, batch_rx) = mpsc::channel(2);
    Metrics::gauge_up(&shared.metrics.open_sessions);
    shared.tasks.store(3, Ordering::Release);
    for _ in 0..3 {
        Metrics::gauge_up(&shared.metrics.session_tasks);
    }
    tokio::spawn(seal_loop(shared.clone(), sealer, batch_tx));
    tokio::spawn(write_loop(shared.clone(), write, batch_rx));
    tokio::spawn(crate::rpc::dispatch::read_loop(shared.clone(), receiver));
}

/// Counts a session task down when it ends, however it ends.
pub(crate) struct TaskGuard<'a>(pub(crate) &'a SessionShared);

impl Drop for TaskGuard<'_> {
    fn drop(&mut self) {
        Metrics::gauge_down(&self.0.metrics.session_tasks);
        if self.0.tasks.fetch_sub(1, Ordering::AcqRel) <= 1 {
            self.0.tasks_done.cancel();
        }
    }
}

/// A sealed batch and the send budget its data frames hold.
struct Batch {
    sealed: SealedBatch,
    charges: Vec<SendCharge>,
}

/// Seals queued frames in batches and hands them to the writer task, so encryption of one
/// batch overlaps the socket write of the previous one.
async fn seal_loop(
    shared: Arc<SessionShared>,
    mut sealer: FrameSender<()>,
    batches: mpsc::Sender<Batch>,
) {
    let _task = TaskGuard(&shared);
    loop {
        let frames = loop {
            if shared.is_closed() {
                return;
            }
            if let Some(frames) = shared.outbox.take_batch() {
                break frames;
            }
            tokio::select! {
                biased;
                _ = shared.closed.cancelled() => return,
                _ = shared.outbox.ready() => {}
            }
        };
        let mut charges = Vec::new();
        let mut result = Ok(());
        for item in frames {
            match item {
                OutItem::Stream {
                    stream,
                    charges: mut item_charges,
                    ..
                } => {
                    charges.append(&mut item_charges);
                    if result.is_ok() {
                        result = sealer.queue_stream_buf(stream);
                    }
                    shared.outbox.return_charge_list(item_charges);
                }
                OutItem::Owned { frame, charge } => {
                    if let Some(charge) = charge {
                        charges.push(charge);
                    }
                    if result.is_ok() {
                        result = sealer.queue_owned_frame(frame);
                    }
                }
            }
        }
        for buf in sealer.take_spent() {
            shared.recycle(buf);
        }
        let sealed = result.and_then(|()| sealer.take_sealed());
        if let Some(unused) = sealer.reuse_wire(shared.take_buffer(POOL_MIN_CAPACITY)) {
            shared.recycle(unused);
        }
        let sealed = match sealed {
            Ok(sealed) => sealed,
            Err(e) => {
                for charge in charges {
                    shared.release_send(charge);
                }
                shared.close(e.into());
                return;
            }
        };
        let batch = Batch { sealed, charges };
        let permit = tokio::select! {
            biased;
            _ = shared.closed.cancelled() => None,
            permit = batches.reserve() => permit.ok(),
        };
        match permit {
            Some(permit) => permit.send(batch),
            None => {
                for charge in batch.charges {
                    shared.release_send(charge);
                }
                return;
            }
        }
    }
}

/// Writes sealed batches in order, each write bounded by the stall timeout; returns send
/// budget as bytes go out. Ends as soon as the session closes, unwritten bytes and all.
async fn write_loop(
    shared: Arc<SessionShared>,
    mut writer: OwnedWriteHalf,
    mut batches: mpsc::Receiver<Batch>,
) {
    let _task = TaskGuard(&shared);
    let stall = shared.config.stall_timeout;
    let mut clean = true;
    loop {
        let batch = tokio::select! {
            biased;
            _ = shared.closed.cancelled() => None,
            batch = batches.recv() => batch,
        };
        let Some(Batch { sealed, charges }) = batch else {
            break;
        };
        let written = tokio::select! {
            biased;
            _ = shared.closed.cancelled() => None,
            written = sealed.write_to_within(&mut writer, Some(stall)) => Some(written),
        };
        for charge in charges {
            shared.release_send(charge);
        }
        match written {
            Some(Ok(spent)) => {
                for buf in spent.frames {
                    shared.recycle(buf);
                }
                for buf in spent.wire {
                    shared.outbox.return_stream_buffer(buf);
                }
            }
            Some(Err(e)) => {
                clean = false;
                if let TransportError::WriteStalled(after) = e {
                    Metrics::bump(&shared.metrics.stalled_closes);
                    shared.close(SessionError::Stalled(after));
                } else {
                    Metrics::bump(&shared.metrics.transport_errors);
                    shared.close(e.into());
                }
                break;
            }
            None => {
                clean = false;
                break;
            }
        }
    }
    // Batches still queued are dropped with their budget returned.
    batches.close();
    while let Ok(batch) = batches.try_recv() {
        clean = false;
        for charge in batch.charges {
            shared.release_send(charge);
        }
    }
    if !clean {
        // Unwritten bytes: reset instead of leaving them in the kernel for a peer that does
        // not read.
        let _ = socket2::SockRef::from(writer.as_ref()).set_linger(Some(Duration::ZERO));
    } else {
        let _ = tokio::time::timeout(stall, tokio::io::AsyncWriteExt::shutdown(&mut writer)).await;
    }
}

/// Liveness bookkeeping for the reader: when bytes last arrived, and when the session last
/// had anything going on.
pub(crate) struct Liveness {
    last_bytes: u64,
    last_bytes_at: Instant,
    last_busy_at: Instant,
    slab_released: bool,
}

impl Liveness {
    pub(crate) fn new() -> Self {
        let now = Instant::now();
        Liveness {
            last_bytes: 0,
            last_bytes_at: now,
            last_busy_at: now,
            slab_released: false,
        }
    }

    /// The tick interval for a config: a fraction of the shortest timeout, within 10 ms..1 s.
    pub(crate) fn tick(config: &Config) -> Duration {
        let shortest = config
            .idle_timeout
            .map_or(config.stall_timeout, |idle| idle.min(config.stall_timeout));
        (shortest / 4).clamp(Duration::from_millis(10), Duration::from_secs(1))
    }

    /// Runs on every tick: ends a stalled or idle session, and releases idle buffers.
    pub(crate) fn check(
        &mut self,
        shared: &SessionShared,
        receiver: &mut FrameReceiver<OwnedReadHalf>,
    ) {
        let now = Instant::now();
        let bytes = receiver.bytes_read();
        if bytes != self.last_bytes {
            self.last_bytes = bytes;
            self.last_bytes_at = now;
            self.slab_released = false;
        }
        if !shared.is_quiet() {
            self.last_busy_at = now;
        }
        let silent = now.saturating_duration_since(self.last_bytes_at);
        let stall = shared.config.stall_timeout;
        if receiver.is_mid_frame() && silent >= stall {
            Metrics::bump(&shared.metrics.stalled_closes);
            shared.close(SessionError::Stalled(stall));
            return;
        }
        if let Some(idle) = shared.config.idle_timeout {
            let quiet = now.saturating_duration_since(self.last_busy_at).min(silent);
            if quiet >= idle {
                Metrics::bump(&shared.metrics.idle_closes);
                shared.close(SessionError::Idle(idle));
                return;
            }
        }
        // Nothing arrived for a whole tick: an idle session holds no receive buffers.
        if !self.slab_released && silent >= Self::tick(&shared.config) && !receiver.is_mid_frame() {
            self.slab_released = receiver.release_idle_slab();
            shared.drain_pool();
        }
    }
}
