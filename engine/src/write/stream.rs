//! `Store::store_stream`'s pipeline: one thread reads and cuts blocks of input, the caller's
//! thread hashes, deduplicates, appends and builds the tree.

use std::io::Read;

use super::{BlobWriter, PutOutcome};
use crate::chunking::{BlockCutter, ChunkingStrategy};
use crate::error::StoreError;
use crate::index::PinName;

/// Feeds everything `input` yields to `writer` and finishes it, pinned in `channel`. Two threads share the work: one
/// reads and cuts blocks of input, the caller's thread hashes, deduplicates, appends and builds
/// the tree, reading each chunk straight out of its block. [`PIPELINE_BLOCKS`] block buffers
/// circulate between them, so memory stays bounded and no chunk is copied on the way.
pub(super) fn stream_into(
    mut writer: BlobWriter<'_>,
    chunking: ChunkingStrategy,
    input: impl Read + Send,
    channel: &str,
    name: &PinName,
) -> Result<PutOutcome, StoreError> {
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<CutBlock>(PIPELINE_BLOCKS);
        // Emptied blocks go back to the cutter, which allocates at most PIPELINE_BLOCKS.
        let (recycle_tx, recycle_rx) = std::sync::mpsc::channel::<Vec<u8>>();
        let cutter = scope.spawn(move || cut_stream(input, chunking, &tx, &recycle_rx));
        for cut in &rx {
            let mut start = 0;
            for &end in &cut.ends {
                writer.write_chunk(cut.block.get(start..end).unwrap_or_default())?;
                start = end;
            }
            let _ = recycle_tx.send(cut.block);
        }
        match cutter.join() {
            Ok(result) => result?,
            Err(panic) => std::panic::resume_unwind(panic),
        }
        writer.finish_named_in(channel, name)
    })
}

/// Block buffers of `store_stream`: one being read and cut, the others waiting to be stored.
pub const PIPELINE_BLOCKS: usize = 2;

/// A block of input and the ends of the chunks cut from it (the first starts at 0).
struct CutBlock {
    block: Vec<u8>,
    ends: Vec<usize>,
}

/// Reads `input` to its end and sends its blocks, cut, in order. Stops quietly when the
/// receiver is gone (the storing side failed and reports its own error).
fn cut_stream(
    mut input: impl Read,
    chunking: ChunkingStrategy,
    tx: &std::sync::mpsc::SyncSender<CutBlock>,
    recycled: &std::sync::mpsc::Receiver<Vec<u8>>,
) -> Result<(), StoreError> {
    let cutter = BlockCutter::new(chunking)?;
    // A block holds the bytes carried over from the previous one (less than a chunk can grow
    // to) plus fresh input; it is cut on two threads.
    let block_len = CUT_BLOCK.max(cutter.max_chunk().saturating_mul(4));
    let mut allocated = 1;
    let mut block = vec![0u8; block_len];
    let mut filled = 0;
    loop {
        let eof = fill(&mut input, &mut block, &mut filled)?;
        let ends = cutter.cut_block(block.get(..filled).unwrap_or_default(), eof);
        if eof {
            if !ends.is_empty() {
                let _ = tx.send(CutBlock { block, ends });
            }
            return Ok(());
        }
        // Not the end, so the block is full; holding at least four maximum chunks, it always
        // has a chunk whose end is certain. The bytes after the last one start the next block.
        let mut next = if allocated < PIPELINE_BLOCKS {
            allocated += 1;
            vec![0u8; block_len]
        } else {
            match recycled.recv() {
                Ok(next) => next,
                // The storing side is gone; it reports its own error.
                Err(_) => return Ok(()),
            }
        };
        let carry = block
            .get(ends.last().copied().unwrap_or(0)..filled)
            .unwrap_or_default();
        if let Some(head) = next.get_mut(..carry.len()) {
            head.copy_from_slice(carry);
        }
        filled = carry.len();
        if tx.send(CutBlock { block, ends }).is_err() {
            return Ok(());
        }
        block = next;
    }
}

/// Bytes of input cut per block by `store_stream`'s cutter (two threads per block).
const CUT_BLOCK: usize = 16 * 1024 * 1024;

/// Reads into `block[*filled..]` until it is full or the input ends. Returns whether it ended.
fn fill(input: &mut impl Read, block: &mut [u8], filled: &mut usize) -> Result<bool, StoreError> {
    loop {
        let Some(space) = block.get_mut(*filled..).filter(|s| !s.is_empty()) else {
            return Ok(false);
        };
        match input.read(space) {
            Ok(0) => return Ok(true),
            Ok(n) => *filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(StoreError::Input(e)),
        }
    }
}
