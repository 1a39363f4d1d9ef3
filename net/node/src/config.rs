//! What a node may spend: its nRPC budgets, how many store workers of each kind run at once,
//! and the timers that end a call whose peer stopped taking part. Together they bound the
//! memory and the threads a node gives its peers (docs/NODE.md, *Budgets*).

use std::time::Duration;

use net_mesh_rpc::rpc::Config;

use crate::proto::{MAX_PIECE, Method};

/// Messages of object data in flight between a read worker and its call's sink.
pub(crate) const READ_QUEUE: usize = 2;
/// Input pieces in flight between a put call and its worker.
pub(crate) const PUT_QUEUE: usize = 2;
/// Most object ids one `objects` or `has` call may name.
pub const MAX_OBJECTS_PER_CALL: usize = 1024;

/// A node's limits. `NodeConfig::default()` suits a node serving many clients on one host.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// The endpoint's settings: capability tags and nRPC byte budgets.
    pub rpc: Config,
    /// Puts running at once (each owns one blocking worker and at most [`PUT_QUEUE`] pieces
    /// of [`MAX_PIECE`] bytes); one more is refused as busy.
    pub max_uploads: usize,
    /// Reads and object streams running at once (each owns one blocking worker and at most
    /// [`READ_QUEUE`] pieces plus the object being read); one more is refused as busy.
    pub max_streams: usize,
    /// Pulls running at once; one more is refused as busy.
    pub max_pulls: usize,
    /// Of `max_uploads`, the most one peer (one authenticated identity, over all its
    /// sessions) runs at once; one more from it is refused as busy, so no single identity
    /// can leave every other one busy. Likewise `max_streams_per_peer`, `max_pulls_per_peer`.
    pub max_uploads_per_peer: usize,
    pub max_streams_per_peer: usize,
    pub max_pulls_per_peer: usize,
    /// Bytes all erasure-coded uploads together may hold for their parity beyond what a plain
    /// upload holds (each takes `net_mesh_engine::write::erasure_put_bytes` of its `--rs`
    /// and chunking when it begins: one more is refused as busy; one needing more than all
    /// of it, as usage).
    pub max_erasure_bytes: usize,
    /// Of `max_erasure_bytes`, the most one peer's erasure-coded uploads hold at once (over
    /// all its sessions): one more from it is refused as busy, one needing more than this
    /// share as usage, so no single identity can leave every other one's busy.
    pub max_erasure_bytes_per_peer: usize,
    /// Store lookups of unary calls (stat, resolve, has, rm, staging and channel calls, gc,
    /// status) running at once, each on a blocking worker; of them, the most one peer runs.
    /// More wait their turn (a peer's beyond its share behind its own).
    pub max_lookups: usize,
    pub max_lookups_per_peer: usize,
    /// A put that receives nothing for this long checkpoints and ends (busy: resume it).
    pub upload_idle_timeout: Duration,
    /// A response message the peer makes no room for during this long ends its call.
    pub send_timeout: Duration,
    /// How long a stopping node waits for live uploads to checkpoint.
    pub shutdown_grace: Duration,
    /// Bytes per second all streams' payload shares (`None`: unlimited), by bandwidth class
    /// ([`crate::bandwidth`]).
    pub bandwidth: Option<u64>,
    /// Bytes per second of [`NodeConfig::bandwidth`] realtime streams take without waiting.
    pub realtime_reserve: u64,
}

impl Default for NodeConfig {
    fn default() -> Self {
        // A window always holds a whole piece message (a window is never granted smaller than
        // `min_call_window`); two pieces keep a put streaming while the worker takes one.
        // Every upload's full window fits the receive budget, so uploads are limited by
        // `max_uploads`, never by a window the budget cannot give.
        let piece_window = (MAX_PIECE + 64 * 1024) as u32;
        let window = 2 * MAX_PIECE as u32 + 64 * 1024;
        // The largest answer the node sends is a pin row (or stat) carrying the largest ref: a
        // Manifest of MAX_LEAF_FANOUT chunk refs, ~2.7 MB.
        let send_budget = 3 * 1024 * 1024;
        NodeConfig {
            rpc: Config {
                capabilities: crate::client::client_capabilities(),
                max_sessions_per_addr: 256,
                max_sessions_per_identity: 256,
                call_window: window,
                min_call_window: piece_window,
                call_send_budget: send_budget,
                session_recv_budget: 16 * 1024 * 1024,
                session_send_budget: 16 * 1024 * 1024,
                node_recv_budget: 128 * 1024 * 1024,
                peer_recv_budget: 64 * 1024 * 1024,
                node_send_budget: 64 * 1024 * 1024,
                peer_send_budget: 32 * 1024 * 1024,
                ..Config::default()
            },
            max_uploads: 32,
            max_streams: 32,
            max_pulls: 4,
            max_uploads_per_peer: 16,
            max_streams_per_peer: 16,
            max_pulls_per_peer: 2,
            max_erasure_bytes: 256 * 1024 * 1024,
            max_erasure_bytes_per_peer: 128 * 1024 * 1024,
            max_lookups: 16,
            max_lookups_per_peer: 4,
            upload_idle_timeout: Duration::from_secs(60),
            send_timeout: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(30),
            bandwidth: None,
            realtime_reserve: 0,
        }
    }
}

impl NodeConfig {
    /// Bytes the node's workers may hold for their calls beyond the nRPC budgets and the
    /// engine's own write buffers: queued put pieces, and queued read pieces with the object
    /// each read holds (at most the largest object a record may hold).
    pub fn worker_bytes(&self) -> usize {
        let max_object = net_mesh_engine::codec::MAX_CHUNK_SIZE as usize;
        self.max_uploads
            .saturating_mul(PUT_QUEUE.saturating_mul(MAX_PIECE))
            .saturating_add(
                self.max_streams.saturating_mul(
                    READ_QUEUE
                        .saturating_mul(MAX_PIECE)
                        .saturating_add(max_object),
                ),
            )
    }

    /// The most bytes `method`'s unary answer may take, reserved from the send budgets before
    /// its handler runs (`RpcUnaryHandler::max_answer_bytes`), so a peer that opens many such
    /// calls and reads no answer makes the node hold at most its send budgets: a blob ref
    /// (the largest Manifest ref, ~2.7 MB) within a call's send budget, a listing within a
    /// session's. 0 for the answers that are small (or streamed, or from a bounded pool).
    pub fn max_answer(&self, method: Method) -> usize {
        let frame = net_mesh_rpc::frame::charge(net_mesh_rpc::frame::HEADER_LEN);
        match method {
            Method::Resolve | Method::Stat | Method::StagingState => {
                self.rpc.call_send_budget.saturating_sub(frame)
            }
            Method::StagingList | Method::ChannelList => {
                self.rpc.session_send_budget.saturating_sub(frame)
            }
            Method::Status
            | Method::List
            | Method::Read
            | Method::Chunks
            | Method::Remove
            | Method::Put
            | Method::StagingAbort
            | Method::Has
            | Method::Objects
            | Method::Pull
            | Method::Gc
            | Method::TokenRevoke
            | Method::ChannelCreate
            | Method::ChannelReplicate
            | Method::ChannelStatus
            | Method::ChannelMoveBind
            | Method::ChannelMove
            | Method::ChannelMoveAbandon => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_window_holds_a_piece_and_every_upload_gets_a_full_window() {
        let c = NodeConfig::default();
        // The largest put message: a `Data` of MAX_PIECE bytes (tag, varint length) in a
        // chunk frame, charged with the frame overhead.
        let piece = crate::proto::PutPart::Data(serde_bytes::ByteBuf::from(vec![0u8; MAX_PIECE]));
        let message = postcard::to_allocvec(&piece)
            .map(|m| m.len())
            .unwrap_or(usize::MAX);
        let charge = message + 64 + 64;
        assert!(charge <= c.rpc.min_call_window as usize);
        assert!(c.rpc.min_call_window <= c.rpc.call_window);
        assert!(c.max_uploads * c.rpc.call_window as usize <= c.rpc.node_recv_budget);
        assert!(c.max_uploads_per_peer * c.rpc.call_window as usize <= c.rpc.peer_recv_budget);
        assert!(c.rpc.call_window as usize <= c.rpc.session_recv_budget);
    }

    #[test]
    fn the_largest_answer_fits_a_calls_send_budget() {
        use net_mesh_engine::codec::{BlobRef, ChunkRef, ChunkRole, Encoding, MAX_LEAF_FANOUT};
        let chunks = vec![
            ChunkRef {
                hash: [0xff; 32],
                size: u32::MAX,
                role: ChunkRole::Parity {
                    stripe_index: u32::MAX,
                },
            };
            MAX_LEAF_FANOUT
        ];
        let largest = BlobRef::Manifest {
            encoding: Encoding::ReedSolomon {
                data_shards: 254,
                total_shards: 255,
            },
            chunks,
            size: u64::MAX,
        };
        let row = crate::proto::PinRow::Pin {
            blob_id: [0xff; 32],
            name: "n".repeat(net_mesh_engine::index::MAX_PIN_NAME),
            blob_ref: serde_bytes::ByteBuf::from(largest.encode()),
            created_unix_ms: u64::MAX,
        };
        let message = postcard::to_allocvec(&row)
            .map(|m| m.len())
            .unwrap_or(usize::MAX);
        // The message and its frame overhead, charged as a put piece is above.
        let c = NodeConfig::default();
        assert!(message > 2_600_000, "{message}");
        assert!(message + 64 + 64 <= c.rpc.call_send_budget, "{message}");
        assert!(c.rpc.call_send_budget <= c.rpc.session_send_budget);

        // The unary answers that carry a ref fit what their methods reserve.
        let blob_ref = serde_bytes::ByteBuf::from(largest.encode());
        let stat = crate::proto::Stat {
            blob_ref: blob_ref.clone(),
            kind: "manifest".repeat(4),
            size: u64::MAX,
            depth: u8::MAX,
            chunks: u64::MAX,
            encoding: Some((254, 255)),
        };
        let resolved = crate::proto::Resolved {
            blob_ref: blob_ref.clone(),
            name: Some("n".repeat(net_mesh_engine::index::MAX_PIN_NAME)),
        };
        let state = crate::proto::StagingState::Finished(crate::proto::PutDone {
            blob_ref,
            chunks: u64::MAX,
            new_chunks: u64::MAX,
            new_bytes: u64::MAX,
            staging_id: Some("s".repeat(4096)),
            resumed_from: Some(u64::MAX),
            pin_name: Some("n".repeat(net_mesh_engine::index::MAX_PIN_NAME)),
        });
        let len = |m: &dyn erased::Encode| m.len();
        for (method, answer) in [
            (Method::Stat, len(&stat)),
            (Method::Resolve, len(&resolved)),
            (Method::StagingState, len(&state)),
        ] {
            assert!(answer > 2_600_000, "{method:?}: {answer}");
            assert!(answer <= c.max_answer(method), "{method:?}: {answer}");
        }
        // What a method reserves is within the session's send budget (else it never runs).
        for method in Method::ALL {
            let reserve =
                net_mesh_rpc::frame::charge(c.max_answer(method) + net_mesh_rpc::frame::HEADER_LEN);
            assert!(reserve <= c.rpc.session_send_budget, "{method:?}");
        }
    }

    /// Encoded lengths of answers of different types, side by side.
    mod erased {
        pub(super) trait Encode {
            fn len(&self) -> usize;
        }
        impl<T: serde::Serialize> Encode for T {
            fn len(&self) -> usize {
                postcard::to_allocvec(self).map_or(usize::MAX, |m| m.len())
            }
        }
    }
}
