//! One upload's input on two threads: [`StagingHandle::write_from`] cuts the input into chunks
//! on a scoped thread (after checking a resume's replayed bytes) while the calling thread
//! hashes, deduplicates, appends and checkpoints them — the split `Store::store_stream` makes
//! for plain uploads. The chunks are the ones [`StagingHandle::write`] cuts, so the blob is the
//! same ref for ref, and each is handed over as soon as its end is certain (a paused input
//! still checkpoints what it sent).
//!
//! Copies: each input byte is copied once, into the cutter's buffer; a chunk is handed over as
//! a shared view of that buffer (no copy), and the buffer is replaced, carrying its uncut
//! tail (fewer than one maximum chunk), when the next piece does not fit. Memory: the buffer
//! ([`CUT_BUFFER`], or two maximum chunks if that is more), the previous buffer until the
//! chunks cut from it are stored, and the piece being read.

use std::sync::mpsc::{SyncSender, sync_channel};

use bytes::{Bytes, BytesMut};
use net_mesh_engine::StoreError;
use net_mesh_engine::chunking::{BlockCutter, ChunkingStrategy};

use crate::writer::{ReplayCheck, StagingError, StagingHandle, past_replay};

/// What an input source gives [`StagingHandle::write_from`] next.
#[derive(Debug, PartialEq, Eq)]
pub enum Piece {
    /// The next bytes of the input (any size; `Bytes` so that a caller can hand over a buffer
    /// it received them in without copying them: `Bytes::from(vec)`, `Bytes::from_owner`).
    Data(Bytes),
    /// The input ended here.
    End,
}

/// How [`StagingHandle::write_from`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputEnd {
    /// The source gave [`Piece::End`]: every byte is stored; finish the upload.
    Ended,
    /// The source stopped (gave `None`) before its end: every chunk cut so far is stored, the
    /// bytes after the last one are not; checkpoint, and resume later.
    Stopped,
}

/// Cut chunks waiting between the two threads.
pub const CHUNKS_IN_FLIGHT: usize = 1;

/// Bytes of the cutter's buffer (see the module docs).
pub const CUT_BUFFER: usize = 8 * 1024 * 1024;

/// The cutter stopped because the storing side did.
struct StoreGone;

impl StagingHandle<'_> {
    /// Writes what `next` gives until it gives [`Piece::End`] or `None`, on two threads (see
    /// the module docs); `next` runs on the cutting thread. A handle whose earlier
    /// [`StagingHandle::write`] left bytes uncut writes on this thread alone. A failure of
    /// either side fails the handle, as `write` does; when storing fails, the cutter stops at
    /// the next chunk it cuts. After [`InputEnd::Stopped`] the handle takes no more input and
    /// does not finish (the uncut tail is gone): checkpoint it, and resume the upload.
    pub fn write_from<F>(&mut self, mut next: F) -> Result<InputEnd, StagingError>
    where
        F: FnMut() -> Option<Piece> + Send,
    {
        self.usable()?;
        if self.upload.unchunked_bytes() > 0 {
            return self.write_from_on_this_thread(next);
        }
        let chunking = self.ckpt.chunking;
        let replay = self.replay.take();
        let (cut, stored) = std::thread::scope(|scope| {
            let (tx, rx) = sync_channel::<Bytes>(CHUNKS_IN_FLIGHT);
            let cutter = scope.spawn(move || cut_input(chunking, replay, &mut next, &tx));
            let mut stored = Ok(());
            for chunk in &rx {
                stored = self.upload.write_chunk(&chunk, &mut self.ckpt);
                if stored.is_err() {
                    break;
                }
            }
            // The cutter's next send fails and it returns (a failed store's error is the
            // one reported).
            drop(rx);
            match cutter.join() {
                Ok(cut) => (cut, stored),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        });
        let result = stored.and_then(|()| {
            cut.map(|(end, replay)| {
                self.replay = replay;
                end
            })
        });
        match result {
            Err(_) => self.failed = true,
            Ok(InputEnd::Stopped) => self.stopped = true,
            Ok(InputEnd::Ended) => {}
        }
        result
    }

    /// [`StagingHandle::write_from`] on this thread alone (no chunk copies: for a caller that
    /// has no idle core to give the upload). The same rule after [`InputEnd::Stopped`].
    pub fn write_from_on_this_thread(
        &mut self,
        mut next: impl FnMut() -> Option<Piece>,
    ) -> Result<InputEnd, StagingError> {
        loop {
            match next() {
                Some(Piece::Data(bytes)) => self.write(&bytes)?,
                Some(Piece::End) => return Ok(InputEnd::Ended),
                None => {
                    self.stopped = true;
                    return Ok(InputEnd::Stopped);
                }
            }
        }
    }
}

/// The cutting thread: checks the replayed bytes, cuts the rest and sends each chunk. Returns
/// how the input ended and the replay check when the input ended before it was done (finishing
/// then refuses the upload as too short). A store that stopped taking chunks ends it as
/// `Stopped`.
fn cut_input(
    chunking: ChunkingStrategy,
    mut replay: Option<ReplayCheck>,
    next: &mut impl FnMut() -> Option<Piece>,
    tx: &SyncSender<Bytes>,
) -> Result<(InputEnd, Option<ReplayCheck>), StagingError> {
    let cutter = BlockCutter::new(chunking).map_err(StoreError::from)?;
    let room = CUT_BUFFER.max(cutter.max_chunk().saturating_mul(2));
    let mut buf = BytesMut::new();
    // Hands over every chunk of `buf` whose end is certain (all of them at the end).
    let send = |buf: &mut BytesMut, end: bool| -> Result<(), StoreGone> {
        let mut cut = 0;
        for chunk_end in cutter.cut_block_on_this_thread(buf, end) {
            let chunk = buf.split_to(chunk_end.saturating_sub(cut)).freeze();
            cut = chunk_end;
            tx.send(chunk).map_err(|_| StoreGone)?;
        }
        Ok(())
    };
    loop {
        let sent = match next() {
            None => return Ok((InputEnd::Stopped, replay)),
            Some(Piece::End) if replay.is_some() => return Ok((InputEnd::Ended, replay)),
            Some(Piece::End) => {
                return Ok(match send(&mut buf, true) {
                    Ok(()) => (InputEnd::Ended, None),
                    Err(StoreGone) => (InputEnd::Stopped, None),
                });
            }
            Some(Piece::Data(bytes)) => {
                let fresh = past_replay(&mut replay, &bytes)?;
                if buf.capacity().saturating_sub(buf.len()) < fresh.len() {
                    // A new buffer with the uncut tail; the old one is freed once the chunks
                    // cut from it are stored.
                    let mut next =
                        BytesMut::with_capacity(room.max(buf.len().saturating_add(fresh.len())));
                    next.extend_from_slice(&buf);
                    buf = next;
                }
                buf.extend_from_slice(fresh);
                send(&mut buf, false)
            }
        };
        if let Err(StoreGone) = sent {
            return Ok((InputEnd::Stopped, replay));
        }
    }
}
