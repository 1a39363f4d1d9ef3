//! The erasure-coding side of the write path: each stored data chunk is handed to a worker
//! thread that adds it into its stripe's parity at once ([`StripeCodec::accumulate`]) and
//! gives its buffer back, so the writer thread goes on chunking, hashing and appending
//! meanwhile (both cores busy, like the rest of the pipeline) and no stripe's data is ever
//! held: a put holds its stripes' parity (n − k shards each), not k data chunks per stripe.
//!
//! Bounds: at most [`CHUNKS_QUEUED`] chunks wait for the worker (a writer ahead of it waits),
//! and at most `MAX_IN_FLIGHT + 2` stripes' parity exists at once (the one being added to,
//! the finished ones not taken back yet, and the one the writer is storing; spare buffers
//! become the next stripe's), so memory stays within [`erasure_put_bytes`]. The resulting layout and `BlobRef` are exactly those of encoding
//! each stripe whole ([`StripeCodec::encode`]): the worker only moves *when* parity is
//! computed.

use std::collections::VecDeque;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use crate::codec::{ChunkRef, chunk_id};
use crate::erasure::{EncodedStripe, ErasureError, RsParams, StripeCodec};

/// Stripes finished and not yet taken back by the writer.
pub(crate) const MAX_IN_FLIGHT: usize = 1;
/// Data chunks handed to the worker and not yet added into their parity.
const CHUNKS_QUEUED: usize = 2;

/// The most bytes an erasure-coded put with `params` holds for its parity beyond what a plain
/// put holds, when no chunk is longer than `max_chunk`: `MAX_IN_FLIGHT + 2` stripes' parity
/// (p shards each, as long as the stripe's longest chunk) and the chunk copies: queued to the
/// parity worker, in its hand, kept for reuse, and the one the writer fills. A node bounds
/// erasure-coded uploads by it.
pub fn erasure_put_bytes(params: RsParams, max_chunk: u32) -> u64 {
    let stripes = MAX_IN_FLIGHT.saturating_add(2);
    let chunks = CHUNKS_QUEUED.saturating_mul(2).saturating_add(2);
    let shards = params
        .parity_shards()
        .saturating_mul(stripes)
        .saturating_add(chunks);
    u64::try_from(shards)
        .unwrap_or(u64::MAX)
        .saturating_mul(u64::from(max_chunk))
}

/// What the writer hands the worker.
enum Job {
    /// The next data chunk of the current stripe, at its column.
    Chunk { column: usize, bytes: Vec<u8> },
    /// The current stripe has all its data chunks (full, or the short last one).
    Finish {
        stripe_index: u32,
        data: Vec<ChunkRef>,
    },
}

/// Collects stripes and gets their parity computed off-thread.
pub(crate) struct StripeWriter {
    params: RsParams,
    /// The current stripe's data refs.
    refs: Vec<ChunkRef>,
    next_stripe: u32,
    jobs: Option<SyncSender<Job>>,
    done: Receiver<Result<EncodedStripe, ErasureError>>,
    /// Chunk buffers the worker is done with, for the next chunks.
    free_chunks: Receiver<Vec<u8>>,
    /// Parity buffers of stored stripes, for the worker's next stripes.
    free_parity: SyncSender<Vec<u8>>,
    /// Stripe indexes finished and not yet received, oldest first.
    in_flight: VecDeque<u32>,
    worker: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for StripeWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StripeWriter")
            .field("params", &self.params)
            .field("pending", &self.refs.len())
            .field("in_flight", &self.in_flight)
            .finish()
    }
}

fn stopped() -> ErasureError {
    ErasureError::Codec("the parity worker thread stopped".into())
}

impl StripeWriter {
    pub(crate) fn new(params: RsParams) -> Result<StripeWriter, ErasureError> {
        let codec = StripeCodec::new(params)?;
        let p = params.parity_shards();
        let (jobs, job_rx) = sync_channel::<Job>(CHUNKS_QUEUED);
        let (done_tx, done) = sync_channel(MAX_IN_FLIGHT.saturating_add(1));
        let (free_chunk_tx, free_chunks) = sync_channel(CHUNKS_QUEUED);
        let (free_parity, free_parity_rx) = sync_channel::<Vec<u8>>(p);
        let worker = std::thread::Builder::new()
            .name("net-mesh-parity".into())
            .spawn(move || {
                let mut parity: Vec<Vec<u8>> = Vec::new();
                for job in job_rx {
                    let result = match job {
                        Job::Chunk { column, bytes } => {
                            if parity.is_empty() {
                                parity = (0..p)
                                    .map(|_| {
                                        let mut buf = free_parity_rx.try_recv().unwrap_or_default();
                                        buf.clear();
                                        buf
                                    })
                                    .collect();
                            }
                            let added = codec.accumulate(&mut parity, column, &bytes);
                            // Dropped when the writer holds enough spares already.
                            let _ = free_chunk_tx.try_send(bytes);
                            match added {
                                Ok(()) => continue,
                                Err(e) => Err(e),
                            }
                        }
                        Job::Finish { stripe_index, data } => {
                            let mut parity = std::mem::take(&mut parity);
                            codec.finish_parity(&mut parity, data.len());
                            let parity_ids = parity.iter().map(|p| chunk_id(p)).collect();
                            Ok(EncodedStripe {
                                stripe_index,
                                data,
                                parity,
                                parity_ids,
                            })
                        }
                    };
                    let failed = result.is_err();
                    if done_tx.send(result).is_err() || failed {
                        break;
                    }
                }
            })
            .map_err(|e| ErasureError::Codec(format!("cannot start the parity worker: {e}")))?;
        Ok(StripeWriter {
            params,
            refs: Vec::with_capacity(params.data_shards()),
            next_stripe: 0,
            jobs: Some(jobs),
            done,
            free_chunks,
            free_parity,
            in_flight: VecDeque::new(),
            worker: Some(worker),
        })
    }

    /// Hands the next (stored) data chunk to the worker, waiting while it is
    /// [`CHUNKS_QUEUED`] chunks behind; returns true when its stripe is full.
    pub(crate) fn push(&mut self, chunk: ChunkRef, bytes: &[u8]) -> Result<bool, ErasureError> {
        let mut buf = self.free_chunks.try_recv().unwrap_or_default();
        buf.clear();
        buf.extend_from_slice(bytes);
        let column = self.refs.len();
        let jobs = self.jobs.as_ref().ok_or_else(stopped)?;
        jobs.send(Job::Chunk { column, bytes: buf })
            .map_err(|_| self.worker_error())?;
        self.refs.push(chunk);
        Ok(self.refs.len() >= self.params.data_shards())
    }

    /// Gives a stored stripe's parity buffers back for the next stripes.
    pub(crate) fn recycle(&mut self, buffers: Vec<Vec<u8>>) {
        for buf in buffers {
            // Dropped when the worker holds enough spares already.
            let _ = self.free_parity.try_send(buf);
        }
    }

    /// Finishes the current stripe (if it has any chunk): the worker completes its parity.
    pub(crate) fn submit(&mut self) -> Result<(), ErasureError> {
        if self.refs.is_empty() {
            return Ok(());
        }
        let stripe_index = self.next_stripe;
        self.next_stripe = self
            .next_stripe
            .checked_add(1)
            .ok_or_else(|| ErasureError::Codec("more than 2^32 stripes".into()))?;
        let data = std::mem::replace(
            &mut self.refs,
            Vec::with_capacity(self.params.data_shards()),
        );
        let jobs = self.jobs.as_ref().ok_or_else(stopped)?;
        jobs.send(Job::Finish { stripe_index, data })
            .map_err(|_| self.worker_error())?;
        self.in_flight.push_back(stripe_index);
        Ok(())
    }

    /// Takes back the oldest finished stripe while more than `keep` are in flight.
    pub(crate) fn next_done(&mut self, keep: usize) -> Result<Option<EncodedStripe>, ErasureError> {
        if self.in_flight.len() <= keep {
            return Ok(None);
        }
        let encoded = self.done.recv().map_err(|_| stopped())??;
        if self.in_flight.pop_front() != Some(encoded.stripe_index) {
            return Err(ErasureError::Codec(
                "parity worker answered out of order".into(),
            ));
        }
        Ok(Some(encoded))
    }

    /// Why the worker stopped taking jobs: the error it reported, if any.
    fn worker_error(&self) -> ErasureError {
        loop {
            match self.done.try_recv() {
                Ok(Err(e)) => return e,
                Ok(Ok(_)) => continue,
                Err(_) => return stopped(),
            }
        }
    }
}

impl Drop for StripeWriter {
    fn drop(&mut self) {
        // Closing the job channel ends the worker's loop; it holds no store state.
        self.jobs = None;
        // It finishes the jobs queued (their results are dropped here) and ends, which
        // disconnects the result channel.
        while self.done.recv().is_ok() {}
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}
