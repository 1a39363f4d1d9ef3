//! The erasure-coding side of the write path: collects each stripe's data chunks and
//! computes its parity on a worker thread, so the writer thread goes on chunking, hashing and
//! appending the next stripe meanwhile (both cores busy, like the rest of the pipeline).
//!
//! Stripes come back in order; at most [`MAX_IN_FLIGHT`] are queued, so memory stays bounded
//! (≈ (2 + MAX_IN_FLIGHT) × k chunks). The resulting layout and `BlobRef` are exactly those of
//! encoding inline: the worker only moves *when* parity is computed.

use std::collections::VecDeque;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use crate::codec::ChunkRef;
use crate::erasure::{
    EncodedStripe, ErasureError, RawStripe, RsParams, StripeAccumulator, StripeCodec,
};

/// Stripes handed to the worker and not yet taken back by the writer.
pub(crate) const MAX_IN_FLIGHT: usize = 1;

/// Collects stripes and gets their parity computed off-thread.
pub(crate) struct StripeWriter {
    acc: StripeAccumulator,
    jobs: Option<SyncSender<RawStripe>>,
    done: Receiver<Result<EncodedStripe, ErasureError>>,
    /// Stripe indexes submitted and not yet received, oldest first.
    in_flight: VecDeque<u32>,
    worker: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for StripeWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StripeWriter")
            .field("params", &self.acc.params())
            .field("pending", &self.acc.pending())
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
        let (jobs, job_rx) = sync_channel::<RawStripe>(MAX_IN_FLIGHT);
        let (done_tx, done) = sync_channel(MAX_IN_FLIGHT.saturating_add(1));
        let worker = std::thread::Builder::new()
            .name("net-mesh-parity".into())
            .spawn(move || {
                for raw in job_rx {
                    if done_tx.send(codec.encode_stripe(raw)).is_err() {
                        break;
                    }
                }
            })
            .map_err(|e| ErasureError::Codec(format!("cannot start the parity worker: {e}")))?;
        Ok(StripeWriter {
            acc: StripeAccumulator::new(params),
            jobs: Some(jobs),
            done,
            in_flight: VecDeque::new(),
            worker: Some(worker),
        })
    }

    /// Adds the next (stored) data chunk; returns true when its stripe is full.
    pub(crate) fn push(&mut self, chunk: ChunkRef, bytes: &[u8]) -> bool {
        self.acc.push(chunk, bytes)
    }

    /// Gives an emitted stripe's buffers back for the next stripes.
    pub(crate) fn recycle(&mut self, buffers: Vec<Vec<u8>>) {
        self.acc.recycle(buffers);
    }

    /// Hands the collected stripe (if any) to the worker.
    pub(crate) fn submit(&mut self) -> Result<(), ErasureError> {
        let Some(raw) = self.acc.take_raw()? else {
            return Ok(());
        };
        let index = raw.stripe_index;
        let jobs = self.jobs.as_ref().ok_or_else(stopped)?;
        jobs.send(raw).map_err(|_| stopped())?;
        self.in_flight.push_back(index);
        Ok(())
    }

    /// Takes back the oldest encoded stripe while more than `keep` are in flight.
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
}

impl Drop for StripeWriter {
    fn drop(&mut self) {
        // Closing the job channel ends the worker's loop; it holds no store state.
        self.jobs = None;
        // It finishes at most the stripe in hand (the result channel has room for it).
        while self.done.try_recv().is_ok() {}
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}
