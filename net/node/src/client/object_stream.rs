//! The objects a node streams to a client (reads and pulls), checked as they arrive.

use std::cell::RefCell;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use net_mesh_engine::codec::Hash;
use net_mesh_engine::{BlobError, ChunkParts, ErrorClass, ObjectKind, ObjectSource, joined};
use net_mesh_rpc::rpc::{Encoded, ResponseStream};
use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

use crate::error::{NodeError, NodeResult};
use crate::proto::{MAX_PIECE, ObjectPart, PIECE_TAG, Tagged};

/// One object of a stream: its id, its kind byte, and its bytes (`Err` with the node's reason
/// for an object it could not give).
pub type StreamedObject = (Hash, u8, Result<Bytes, String>);

/// A [`StreamedObject`] with its bytes in the pieces they arrived in.
type StreamedParts = (Hash, u8, Result<ChunkParts, String>);

/// Objects as a node streams them ([`ObjectPart`]s), handed out one by one; as an
/// [`ObjectSource`] the next object must be the one the read asks for (else an integrity
/// error), and the reader verifies its bytes. Waits for the stream on the given runtime, so it
/// is used on a blocking thread; a stream that brings nothing for the client's silence timeout
/// fails. Memory: one object being received (grown as its pieces arrive, never from the
/// length the node announces): full pieces and an object's last as views of the frames they
/// arrived in, the bytes of shorter ones copied together, so at most about twice the object's
/// size whatever its pieces.
#[derive(Debug)]
pub struct ObjectStream<'r> {
    runtime: &'r Handle,
    stream: RefCell<ResponseStream<Encoded>>,
    silence: Duration,
    stop: Option<CancellationToken>,
    /// The first failure of the stream itself, with its class (what a read reports).
    failure: RefCell<Option<NodeError>>,
    /// The channel a `Missing` part said pins the read's blob on the node, if one did.
    pinned_in: RefCell<Option<String>>,
}

fn lie(reason: impl std::fmt::Display) -> NodeError {
    NodeError::new(
        ErrorClass::Integrity,
        format!("the node's object stream: {reason}"),
    )
}

impl<'r> ObjectStream<'r> {
    pub(super) fn new(
        runtime: &'r Handle,
        stream: ResponseStream<Encoded>,
        silence: Duration,
    ) -> ObjectStream<'r> {
        ObjectStream {
            runtime,
            stream: RefCell::new(stream),
            silence,
            stop: None,
            failure: RefCell::new(None),
            pinned_in: RefCell::new(None),
        }
    }

    /// Makes waiting for the stream fail (busy) once `stop` fires.
    pub fn stop_on(mut self, stop: CancellationToken) -> ObjectStream<'r> {
        self.stop = Some(stop);
        self
    }

    /// The channel that pins the read's blob on the node, as a `Missing` part said, if one
    /// did.
    pub fn pinned_in(&self) -> Option<String> {
        self.pinned_in.try_borrow().ok().and_then(|p| p.clone())
    }

    /// The first failure the stream itself had, if any.
    pub fn failure(&self) -> Option<NodeError> {
        self.failure.try_borrow().ok().and_then(|f| f.clone())
    }

    fn failed<T>(&self, e: NodeError) -> NodeResult<T> {
        if let Ok(mut first) = self.failure.try_borrow_mut()
            && first.is_none()
        {
            *first = Some(e.clone());
        }
        Err(e)
    }

    /// The next part; a piece's bytes as a view of the frame they arrived in (no copy).
    fn next_part(&self) -> NodeResult<Option<Tagged<ObjectPart>>> {
        let Ok(mut stream) = self.stream.try_borrow_mut() else {
            return self.failed(NodeError::new(ErrorClass::Io, "object stream busy"));
        };
        let silence = self.silence;
        let stop = self.stop.clone().unwrap_or_default();
        let next = self.runtime.block_on(async {
            tokio::select! {
                biased;
                _ = stop.cancelled() => Err(NodeError::new(ErrorClass::Busy, "stopped")),
                next = tokio::time::timeout(silence, stream.next()) => match next {
                    Err(_) => Err(NodeError::new(
                        ErrorClass::Io,
                        format!("the node sent nothing for {silence:?}"),
                    )),
                    Ok(None) => Ok(None),
                    Ok(Some(Ok(message))) => Tagged::decode(message, PIECE_TAG)
                        .map(Some)
                        .map_err(|e| NodeError::from_rpc(&e)),
                    Ok(Some(Err(e))) => Err(NodeError::from_rpc(&e)),
                },
            }
        });
        match next {
            Ok(part) => Ok(part),
            Err(e) => self.failed(e),
        }
    }

    /// The next object of the stream: its id, kind and bytes (`Err` for one the node could not
    /// give), or `None` at the end.
    pub fn next_object(&self) -> NodeResult<Option<StreamedObject>> {
        let next = self.next_object_parts()?;
        Ok(next.map(|(hash, kind, answer)| (hash, kind, answer.map(joined))))
    }

    /// [`ObjectStream::next_object`] with the bytes as the pieces they arrived in, each a view
    /// of the frame that carried it (no copy).
    fn next_object_parts(&self) -> NodeResult<Option<StreamedParts>> {
        match self.next_part()? {
            None => Ok(None),
            Some(Tagged::Other(ObjectPart::Missing {
                hash,
                kind,
                reason,
                pinned_in,
            })) => {
                if let Some(channel) = pinned_in
                    && let Ok(mut noted) = self.pinned_in.try_borrow_mut()
                {
                    *noted = Some(channel);
                }
                Ok(Some((hash, kind, Err(reason))))
            }
            Some(Tagged::Bytes(_) | Tagged::Other(ObjectPart::Piece(_))) => {
                self.failed(lie("a piece before its object"))
            }
            Some(Tagged::Other(ObjectPart::Object { hash, kind, len })) => {
                let len = usize::try_from(len).unwrap_or(usize::MAX);
                if len > net_mesh_engine::codec::MAX_CHUNK_SIZE as usize {
                    return self.failed(lie(format!("an object of {len} bytes")));
                }
                let mut parts = Vec::new();
                // Bytes of short pieces that do not end the object, copied (see below).
                let mut short = Vec::new();
                let mut got = 0usize;
                while got < len {
                    let piece = match self.next_part()? {
                        Some(Tagged::Bytes(piece)) => Bytes::from_owner(piece),
                        Some(Tagged::Other(ObjectPart::Piece(piece))) => Bytes::from(piece),
                        _ => return self.failed(lie("an object's pieces do not add up")),
                    };
                    if piece.len() > MAX_PIECE
                        || piece.is_empty()
                        || got.saturating_add(piece.len()) > len
                    {
                        return self.failed(lie("an object's pieces do not add up"));
                    }
                    got = got.saturating_add(piece.len());
                    if piece.len() < MAX_PIECE && got < len {
                        // A node cuts every piece but an object's last at `MAX_PIECE`. Kept as
                        // views, pieces a byte long would each hold a frame and a view many
                        // times their size: their bytes are copied instead, so an object holds
                        // its own bytes whatever its pieces.
                        short.extend_from_slice(&piece);
                        continue;
                    }
                    if !short.is_empty() {
                        parts.push(Bytes::from(std::mem::take(&mut short)));
                    }
                    parts.push(piece);
                }
                Ok(Some((hash, kind, Ok(parts))))
            }
        }
    }

    /// Checks the stream ends here, and ends well: nothing follows the last object asked for.
    pub fn finish(&self) -> NodeResult<()> {
        match self.next_part()? {
            None => Ok(()),
            Some(_) => self.failed(lie("objects nobody asked for")),
        }
    }
}

impl ObjectStream<'_> {
    /// The next object, which must be object `hash` of `kind` (`what` names it in errors), in
    /// the pieces it arrived in.
    fn expected_parts(
        &self,
        hash: &Hash,
        kind: ObjectKind,
        what: &'static str,
    ) -> Result<ChunkParts, BlobError> {
        let next = self
            .next_object_parts()
            .map_err(|e| BlobError::Sink(std::io::Error::other(e.message)))?;
        let Some((got, got_kind, answer)) = next else {
            // A node without the object says so (`Missing`); one that just stops lies.
            return Err(BlobError::Corrupted {
                hash: *hash,
                reason: format!("the node's stream ended before this {what}"),
            });
        };
        if got != *hash {
            return Err(BlobError::Corrupted {
                hash: *hash,
                reason: "the node sent another object than the read asked for".into(),
            });
        }
        let bytes = answer.map_err(|_| BlobError::Missing { hash: *hash, what })?;
        if got_kind != kind as u8 {
            return Err(BlobError::Corrupted {
                hash: *hash,
                reason: format!("the node sent it as kind {got_kind}"),
            });
        }
        Ok(bytes)
    }
}

impl ObjectSource for ObjectStream<'_> {
    fn object(
        &self,
        hash: &Hash,
        kind: ObjectKind,
        what: &'static str,
    ) -> Result<Bytes, BlobError> {
        self.expected_parts(hash, kind, what).map(joined)
    }

    /// A chunk in the pieces it arrived in: the reader hashes and writes them where they lie.
    fn chunk_to_use(&self, hash: &Hash) -> Result<ChunkParts, BlobError> {
        self.expected_parts(hash, ObjectKind::Chunk, "chunk")
    }
}
