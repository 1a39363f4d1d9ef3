//! One upload's input from a source of pieces: [`StagingHandle::write_from`] cuts the input
//! into chunks on a scoped thread (after checking a resume's replayed bytes) while the calling
//! thread hashes, deduplicates, appends and checkpoints them — the split `Store::store_stream`
//! makes for plain uploads; [`StagingHandle::write_from_on_this_thread`] does both in turn.
//! The chunks are the ones [`StagingHandle::write`] cuts, so the blob is the same ref for ref,
//! and each is handed over as soon as its end is certain (a paused input still checkpoints
//! what it sent).
//!
//! Copies: none for pieces of at least [`SMALL_PIECE`] bytes. The pieces are cut where they
//! lie ([`BlockCutter::cut_parts`]) and a chunk is handed over as the views of the pieces it
//! spans, which are hashed and written where they lie; smaller pieces are first gathered into
//! one buffer (so a chunk spans at most two parts per [`SMALL_PIECE`] of its length, plus
//! two). Memory: the uncut pieces (less than one maximum chunk beyond the last piece), the
//! gathered small pieces, and the pieces of the chunks handed over until they are stored.

use std::collections::VecDeque;
use std::sync::mpsc::sync_channel;

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

/// Pieces shorter than this are gathered into one buffer before they are cut (see the module
/// docs).
pub const SMALL_PIECE: usize = 64 * 1024;

/// A cut chunk: the views of the pieces it spans, in order.
type Chunk = Vec<Bytes>;

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
            return self.write_through_chunker(next);
        }
        let chunking = self.ckpt.chunking;
        let replay = self.replay.take();
        let (cut, stored) = std::thread::scope(|scope| {
            let (tx, rx) = sync_channel::<Chunk>(CHUNKS_IN_FLIGHT);
            let cutter = scope.spawn(move || {
                cut_input(chunking, replay, &mut next, |chunk| {
                    tx.send(chunk).map_err(|_| StoreGone)
                })
            });
            let mut stored = Ok(());
            for chunk in &rx {
                stored = self.store_chunk(&chunk);
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
        self.ended(cut, stored)
    }

    /// [`StagingHandle::write_from`] on this thread alone, cutting and storing in turn (for a
    /// caller that has no idle core to give the upload). The same rule after
    /// [`InputEnd::Stopped`].
    pub fn write_from_on_this_thread(
        &mut self,
        mut next: impl FnMut() -> Option<Piece>,
    ) -> Result<InputEnd, StagingError> {
        self.usable()?;
        if self.upload.unchunked_bytes() > 0 {
            return self.write_through_chunker(next);
        }
        let chunking = self.ckpt.chunking;
        let replay = self.replay.take();
        let mut stored = Ok(());
        let cut = cut_input(chunking, replay, &mut next, |chunk| {
            stored = self.store_chunk(&chunk);
            stored.as_ref().map(|_| ()).map_err(|_| StoreGone)
        });
        self.ended(cut, stored)
    }

    /// Writes the input through the handle's own chunker (which holds bytes an earlier
    /// [`StagingHandle::write`] left uncut).
    fn write_through_chunker(
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

    fn store_chunk(&mut self, chunk: &Chunk) -> Result<(), StagingError> {
        let parts: Vec<&[u8]> = chunk.iter().map(|part| part.as_ref()).collect();
        self.upload.write_chunk_parts(&parts, &mut self.ckpt)
    }

    /// How a write from a source ended, given how cutting and storing did; marks the handle
    /// failed or stopped.
    fn ended(
        &mut self,
        cut: Result<(InputEnd, Option<ReplayCheck>), StagingError>,
        stored: Result<(), StagingError>,
    ) -> Result<InputEnd, StagingError> {
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
}

/// The cutting side: checks the replayed bytes, cuts the rest and hands each chunk over. Returns
/// how the input ended and the replay check when the input ended before it was done (finishing
/// then refuses the upload as too short). A store that stopped taking chunks ends it as
/// `Stopped`.
fn cut_input(
    chunking: ChunkingStrategy,
    mut replay: Option<ReplayCheck>,
    next: &mut impl FnMut() -> Option<Piece>,
    mut hand_over: impl FnMut(Chunk) -> Result<(), StoreGone>,
) -> Result<(InputEnd, Option<ReplayCheck>), StagingError> {
    let cutter = BlockCutter::new(chunking).map_err(StoreError::from)?;
    let mut uncut = Uncut::default();
    // Hands over every chunk whose end is certain (all of them at the end).
    let mut send = |uncut: &mut Uncut, end: bool| -> Result<(), StoreGone> {
        if !end && uncut.len < cutter.max_chunk() {
            return Ok(());
        }
        for chunk in uncut.cut(&cutter, end) {
            hand_over(chunk)?;
        }
        Ok(())
    };
    loop {
        let sent = match next() {
            None => return Ok((InputEnd::Stopped, replay)),
            Some(Piece::End) if replay.is_some() => return Ok((InputEnd::Ended, replay)),
            Some(Piece::End) => {
                return Ok(match send(&mut uncut, true) {
                    Ok(()) => (InputEnd::Ended, None),
                    Err(StoreGone) => (InputEnd::Stopped, None),
                });
            }
            Some(Piece::Data(bytes)) => {
                let fresh_len = past_replay(&mut replay, &bytes)?.len();
                uncut.push(bytes.slice(bytes.len().saturating_sub(fresh_len)..));
                send(&mut uncut, false)
            }
        };
        if let Err(StoreGone) = sent {
            return Ok((InputEnd::Stopped, replay));
        }
    }
}

/// The input not cut into chunks yet, in order: pieces where they arrived, then the small
/// pieces gathered since the last large one.
#[derive(Default)]
struct Uncut {
    pieces: VecDeque<Bytes>,
    small: BytesMut,
    /// Bytes in `pieces` and `small`.
    len: usize,
}

impl Uncut {
    fn push(&mut self, piece: Bytes) {
        self.len = self.len.saturating_add(piece.len());
        if piece.len() < SMALL_PIECE {
            self.small.extend_from_slice(&piece);
            return;
        }
        if !self.small.is_empty() {
            self.pieces.push_back(self.small.split().freeze());
        }
        self.pieces.push_back(piece);
    }

    /// Takes every chunk whose end is certain (all of them when `end`), as views.
    fn cut(&mut self, cutter: &BlockCutter, end: bool) -> Vec<Chunk> {
        let views: Vec<&[u8]> = self
            .pieces
            .iter()
            .map(|piece| piece.as_ref())
            .chain(std::iter::once(self.small.as_ref()))
            .collect();
        let ends = cutter.cut_parts(&views, end);
        drop(views);
        let mut chunks = Vec::with_capacity(ends.len());
        let mut cut = 0;
        for chunk_end in ends {
            let mut left = chunk_end.saturating_sub(cut);
            cut = chunk_end;
            self.len = self.len.saturating_sub(left);
            let mut chunk = Chunk::new();
            while left > 0 {
                match self.pieces.front_mut() {
                    Some(front) if front.len() > left => {
                        chunk.push(front.split_to(left));
                        left = 0;
                    }
                    Some(front) => {
                        left -= front.len();
                        chunk.extend(self.pieces.pop_front());
                    }
                    None => {
                        let take = left.min(self.small.len());
                        chunk.push(self.small.split_to(take).freeze());
                        left = 0;
                    }
                }
            }
            chunks.push(chunk);
        }
        chunks
    }
}
