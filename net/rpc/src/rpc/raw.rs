//! [`RawBytes`]: a byte-string message that nRPC hands over without deserializing.
//!
//! On the wire a `RawBytes` is exactly what serde's byte-string encoding gives under postcard
//! (varint length + the bytes), the same as `serde_bytes::ByteBuf` or a
//! `#[serde(with = "serde_bytes")] Vec<u8>` newtype, so either side may use either type. The
//! difference is local: when a stream's message type is `RawBytes`, the received frame buffer
//! itself becomes the message (no copy into a fresh `Vec`), and the buffer goes back to the
//! session's pool when the message is dropped. Small messages that arrived together in one
//! chunk frame are views of that frame, which goes back to the pool when the last of them is
//! dropped (a view keeps its whole frame, up to 32 KiB, alive: a handler that keeps a few
//! small messages for long should keep [`RawBytes::into_vec`] copies). Decoding stays strict:
//! the length must match the payload exactly.
//!
//! [`Encoded`] goes one step further for a message type whose last field is a byte string
//! (e.g. an enum with a data variant): the message is handed over still encoded, in its frame
//! buffer, and the handler decodes it itself — its small variants with [`Encoded::decode`], a
//! byte string that ends the message as a [`RawBytes`] view of the same buffer
//! ([`Encoded::byte_string_at`]), with the same strict length check.

use std::any::{Any, TypeId};
use std::sync::{Arc, Weak};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::session::{MessageList, NextMessage, Payload, SessionShared};
use super::{RpcError, decode_message};
use crate::frame::ErrorKind;

/// An owned byte string; see the module docs. Derefs to `[u8]`.
pub struct RawBytes {
    backing: Backing,
    /// The bytes are `start..end` of the backing buffer.
    start: usize,
    end: usize,
}

/// Where a [`RawBytes`] keeps its bytes.
enum Backing {
    /// A buffer of its own, handed back to `pool` when dropped (none: `Weak::new()`).
    Own {
        buf: Vec<u8>,
        pool: Weak<SessionShared>,
    },
    /// A received frame that carried several messages, shared by them.
    Frame(Arc<SharedFrame>),
}

/// A received frame buffer shared by the messages it carried; back to the session's pool when
/// the last of them is dropped.
pub(crate) struct SharedFrame {
    buf: Vec<u8>,
    pool: Weak<SessionShared>,
}

impl std::fmt::Debug for SharedFrame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedFrame")
            .field("len", &self.buf.len())
            .finish_non_exhaustive()
    }
}

impl SharedFrame {
    pub(crate) fn new(buf: Vec<u8>, shared: &Arc<SessionShared>) -> Arc<Self> {
        Arc::new(SharedFrame {
            buf,
            pool: Arc::downgrade(shared),
        })
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for SharedFrame {
    fn drop(&mut self) {
        if let Some(shared) = self.pool.upgrade() {
            shared.recycle(std::mem::take(&mut self.buf));
        }
    }
}

impl std::fmt::Debug for RawBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawBytes")
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

impl RawBytes {
    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        let buf = match &self.backing {
            Backing::Own { buf, .. } => buf.as_slice(),
            Backing::Frame(frame) => frame.bytes(),
        };
        buf.get(self.start..self.end).unwrap_or_default()
    }

    /// Into a plain vector (moves the bytes to the front of the buffer when they are not
    /// there already; copies them out of a frame shared with other messages).
    pub fn into_vec(mut self) -> Vec<u8> {
        match &mut self.backing {
            Backing::Own { buf, .. } => {
                let mut buf = std::mem::take(buf);
                buf.truncate(self.end);
                buf.drain(..self.start.min(buf.len()));
                buf
            }
            Backing::Frame(_) => self.as_slice().to_vec(),
        }
    }

    /// Bytes `start..end` of a buffer of its own.
    fn own(buf: Vec<u8>, start: usize, pool: Weak<SessionShared>) -> Self {
        let end = buf.len();
        RawBytes {
            backing: Backing::Own { buf, pool },
            start: start.min(end),
            end,
        }
    }

    /// Bytes `start..end` of a frame shared with other messages.
    pub(crate) fn in_frame(frame: Arc<SharedFrame>, start: usize, end: usize) -> Self {
        let end = end.min(frame.bytes().len());
        RawBytes {
            backing: Backing::Frame(frame),
            start: start.min(end),
            end,
        }
    }
}

impl From<Vec<u8>> for RawBytes {
    fn from(buf: Vec<u8>) -> Self {
        RawBytes::own(buf, 0, Weak::new())
    }
}

impl From<&[u8]> for RawBytes {
    fn from(bytes: &[u8]) -> Self {
        RawBytes::from(bytes.to_vec())
    }
}

impl Clone for RawBytes {
    fn clone(&self) -> Self {
        RawBytes::from(self.as_slice())
    }
}

impl PartialEq for RawBytes {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for RawBytes {}

impl std::ops::Deref for RawBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl AsRef<[u8]> for RawBytes {
    fn as_ref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl Drop for RawBytes {
    fn drop(&mut self) {
        if let Backing::Own { buf, pool } = &mut self.backing
            && let Some(shared) = pool.upgrade()
        {
            shared.recycle(std::mem::take(buf));
        }
    }
}

impl serde::Serialize for RawBytes {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(self.as_slice())
    }
}

impl<'de> serde::Deserialize<'de> for RawBytes {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = RawBytes;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a byte string")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<RawBytes, E> {
                Ok(RawBytes::from(v))
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<RawBytes, E> {
                Ok(RawBytes::from(v))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<RawBytes, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
                while let Some(b) = seq.next_element::<u8>()? {
                    out.push(b);
                }
                Ok(RawBytes::from(out))
            }
        }
        deserializer.deserialize_byte_buf(Visitor)
    }
}

/// A streamed message left in its encoding (see the module docs): received as the message type
/// of a stream, the frame buffer itself, without a copy. Only a whole streamed message is
/// received this way (nested in another type, or as a unary message, it does not decode).
pub struct Encoded(RawBytes);

impl std::fmt::Debug for Encoded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoded")
            .field("len", &self.0.len())
            .finish_non_exhaustive()
    }
}

impl Encoded {
    /// The message's encoding.
    pub fn bytes(&self) -> &[u8] {
        self.0.as_slice()
    }

    /// Decodes the whole message as `T`, exactly as a stream typed `T` decodes it.
    pub fn decode<T: DeserializeOwned + Serialize>(&self) -> Result<T, RpcError> {
        decode_message(self.bytes())
    }

    /// The byte string (varint length + bytes) that starts at offset `at` and ends the
    /// message, as a view of the frame buffer (no copy); the message back when there is none
    /// there or its length does not match the rest of the message exactly.
    pub fn byte_string_at(self, at: usize) -> Result<RawBytes, Encoded> {
        // An empty rest has no length, so `at` lies inside the message when this is `Some`.
        let body = self.bytes().get(at..).unwrap_or_default();
        let exact = take_varint_len(body)
            .filter(|&(len, prefix)| body.len().checked_sub(prefix) == Some(len))
            .and_then(|(_, prefix)| at.checked_add(prefix));
        match exact {
            Some(skip) => {
                let mut raw = self.0;
                raw.start = raw.start.saturating_add(skip);
                Ok(raw)
            }
            None => Err(self),
        }
    }
}

impl From<Vec<u8>> for Encoded {
    /// A message's encoding held in a plain vector (e.g. to test a handler's decoding).
    fn from(bytes: Vec<u8>) -> Self {
        Encoded(RawBytes::from(bytes))
    }
}

impl Serialize for Encoded {
    /// The message's bytes as they are (a tuple of bytes: postcard writes no length).
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeTuple;
        let mut bytes = serializer.serialize_tuple(self.bytes().len())?;
        for b in self.bytes() {
            bytes.serialize_element(b)?;
        }
        bytes.end()
    }
}

impl<'de> serde::Deserialize<'de> for Encoded {
    fn deserialize<D: serde::Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        Err(serde::de::Error::custom(
            "an Encoded message is only received whole, as a stream's message type",
        ))
    }
}

/// Splits a postcard varint (u64, LEB128, canonical) length off the front of `bytes`:
/// `(length, bytes used)`.
fn take_varint_len(bytes: &[u8]) -> Option<(usize, usize)> {
    let mut value: u64 = 0;
    for (i, &b) in bytes.iter().enumerate().take(10) {
        let bits = u64::from(b & 0x7f);
        if i == 9 && b > 1 {
            return None; // more than 64 bits
        }
        value |= bits << (7 * i);
        if b & 0x80 == 0 {
            if i > 0 && b == 0 {
                return None; // over-long encoding, which postcard rejects too
            }
            return Some((usize::try_from(value).ok()?, i + 1));
        }
    }
    None
}

/// Decodes a streamed message, consuming its frame buffer: a [`RawBytes`] or an [`Encoded`]
/// takes the buffer over (no copy); any other type is deserialized and the buffer is recycled.
pub(crate) fn decode_payload<T: DeserializeOwned + Serialize + 'static>(
    payload: Payload,
    shared: &Arc<SessionShared>,
) -> Result<T, RpcError> {
    if !taken_raw::<T>() {
        let item = decode_message(payload.bytes());
        payload.recycle(shared);
        return item;
    }
    let (frame, start) = payload.into_parts();
    decode_raw(RawBytes::own(frame, start, Arc::downgrade(shared)))
}

/// True for the message types received without deserializing: [`RawBytes`] and [`Encoded`].
fn taken_raw<T: 'static>() -> bool {
    TypeId::of::<T>() == TypeId::of::<RawBytes>() || TypeId::of::<T>() == TypeId::of::<Encoded>()
}

/// A [`RawBytes`] or [`Encoded`] message (`T`) from its encoding in `whole`.
pub(crate) fn decode_raw<T: 'static>(whole: RawBytes) -> Result<T, RpcError> {
    let raw = TypeId::of::<T>() == TypeId::of::<RawBytes>();
    let item = if raw {
        match Encoded(whole).byte_string_at(0) {
            Ok(bytes) => cast::<T, _>(bytes),
            // Dropping the message gives its buffer back to the pool.
            Err(_) => {
                return Err(RpcError::new(
                    ErrorKind::Decode,
                    "decode: byte-string length does not match the payload",
                ));
            }
        }
    } else {
        cast::<T, _>(Encoded(whole))
    };
    item.ok_or_else(|| RpcError::new(ErrorKind::Internal, "raw decode"))
}

/// Takes and decodes the next message of a received chunk frame (`pending`, emptied after its
/// last message). A [`RawBytes`] or [`Encoded`] message of a frame that carried several is a
/// view of the frame, shared by them (no copy); of a frame that carried one, it takes the frame
/// over. Other types are decoded from the frame, which is recycled after the last. Also
/// returns the frame's charge once the last message is taken, for the window.
pub(crate) fn decode_next<T: DeserializeOwned + Serialize + 'static>(
    pending: &mut Option<MessageList>,
    shared: &Arc<SessionShared>,
) -> Option<(Result<T, RpcError>, Option<usize>)> {
    let list = pending.as_mut()?;
    let (item, charge) = match list.next(taken_raw::<T>().then_some(shared)) {
        NextMessage::Inner(bytes) => return Some((decode_message(bytes), None)),
        NextMessage::Shared(raw) => return Some((decode_raw(raw), None)),
        NextMessage::Last(payload, charge) => (decode_payload(payload, shared), charge),
        NextMessage::LastShared(raw, charge) => (decode_raw(raw), charge),
        NextMessage::Malformed(charge) => (
            Err(RpcError::new(
                ErrorKind::Decode,
                "decode: chunk frame without another message",
            )),
            charge,
        ),
    };
    *pending = None;
    Some((item, Some(charge)))
}

/// `item` as `T` when it is one (moved, not copied; no allocation).
fn cast<T: 'static, U: 'static>(item: U) -> Option<T> {
    let mut slot = Some(item);
    (&mut slot as &mut dyn Any)
        .downcast_mut::<Option<T>>()
        .and_then(Option::take)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_lengths_match_postcard() {
        for n in [0usize, 1, 127, 128, 300, 1 << 20, 16 << 20] {
            let bytes = postcard::to_stdvec(&RawBytes::from(vec![1u8; n])).unwrap();
            assert_eq!(take_varint_len(&bytes), Some((n, bytes.len() - n)));
            let back: RawBytes = postcard::from_bytes(&bytes).unwrap();
            assert_eq!(back.len(), n);
        }
        assert_eq!(take_varint_len(&[0x80, 0x00]), None);
        assert_eq!(take_varint_len(&[0x80]), None);
        assert_eq!(take_varint_len(&[0xff; 11]), None);
    }

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    enum Part {
        Start(u32),
        Data(#[serde(with = "serde_bytes")] Vec<u8>),
    }

    fn encoded(bytes: Vec<u8>) -> Encoded {
        Encoded::from(bytes)
    }

    /// A data variant's bytes come out as a view of the message, exactly; a small variant
    /// decodes; a length that does not match the rest of the message, or no byte string at
    /// the offset, gives the message back.
    #[test]
    fn an_encoded_message_gives_its_closing_byte_string_or_itself() {
        for n in [0usize, 1, 127, 128, 70_000] {
            let data: Vec<u8> = (0..n).map(|i| i as u8).collect();
            let wire = postcard::to_stdvec(&Part::Data(data.clone())).unwrap();
            assert_eq!(
                encoded(wire.clone()).decode::<Part>().unwrap(),
                Part::Data(data.clone())
            );
            let tail = encoded(wire.clone()).byte_string_at(1).unwrap();
            assert_eq!(tail.as_slice(), &data[..]);
            let mut longer = wire.clone();
            longer.push(0);
            assert!(encoded(longer).byte_string_at(1).is_err());
            if n > 0 {
                assert!(
                    encoded(wire[..wire.len() - 1].to_vec())
                        .byte_string_at(1)
                        .is_err()
                );
            }
            assert!(encoded(wire.clone()).byte_string_at(wire.len()).is_err());
        }
        let start = postcard::to_stdvec(&Part::Start(7)).unwrap();
        assert_eq!(encoded(start).decode::<Part>().unwrap(), Part::Start(7));
        assert!(postcard::from_bytes::<Encoded>(&[1, 2, 3]).is_err());
    }
}
