//! Fuzz harnesses of the protocol's decoders (the `fuzz/` targets call them), and the probe
//! messages the tests of [`Tagged`](super::Tagged) decoders share.

use net_mesh_rpc::rpc::Encoded;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{
    BlobSpec, ChannelRow, ChunkRow, GcDone, GcRequest, MoveBind, MoveDone, MoveRun, ObjectPart,
    PIECE_TAG, PinRow, PullDone, PullRequest, PutDone, PutPart, ReadRequest, ReplicaStatus,
    ReplicateRequest, Resolved, RevokeRequest, StagingRow, StagingState, Stat, Status, Tagged,
    Unpinned,
};

/// Fuzz harness of the object stream's decoder as a client takes it ([`Tagged`] with
/// [`PIECE_TAG`]): any bytes give what decoding an [`ObjectPart`] gives (the same piece bytes,
/// the same other part, or a refusal for both), never a panic.
pub fn fuzz_decode_object_part(data: &[u8]) {
    // As nRPC decodes a message typed `ObjectPart` (whole, nothing after it).
    let expected = Encoded::from(data.to_vec()).decode::<ObjectPart>().ok();
    let got = Tagged::<ObjectPart>::decode(Encoded::from(data.to_vec()), PIECE_TAG).ok();
    let agree = match (got, expected) {
        (None, None) => true,
        (Some(Tagged::Bytes(got)), Some(ObjectPart::Piece(want))) => *got == *want,
        (Some(Tagged::Other(got)), Some(want)) => got == want,
        _ => false,
    };
    assert!(agree, "Tagged and ObjectPart decode {data:?} differently");
}

/// Fuzz harness of every message of the storage node protocol (FORMAT.md §6.2): the first byte
/// picks the type, the rest is decoded as nRPC decodes it (whole, strict). A decoded value
/// must encode as the input, or as the input followed by trailing fields an older peer's
/// message ends before, and that encoding must decode to the same value; never a panic.
pub fn fuzz_decode_messages(data: &[u8]) {
    fn go<T: DeserializeOwned + Serialize + PartialEq + std::fmt::Debug>(bytes: &[u8]) {
        let Ok(value) = Encoded::from(bytes.to_vec()).decode::<T>() else {
            return;
        };
        let again = postcard::to_allocvec(&value).unwrap_or_default();
        assert!(
            again.starts_with(bytes),
            "{value:?} decoded from {bytes:?} encodes as {again:?}"
        );
        let back = Encoded::from(again).decode::<T>().ok();
        assert_eq!(back.as_ref(), Some(&value), "{bytes:?}");
    }
    let Some((kind, bytes)) = data.split_first() else {
        return;
    };
    match kind % 28 {
        0 => go::<PutPart>(bytes),
        1 => go::<PutDone>(bytes),
        2 => go::<ObjectPart>(bytes),
        3 => go::<ReadRequest>(bytes),
        4 => go::<PinRow>(bytes),
        5 => go::<StagingState>(bytes),
        6 => go::<StagingRow>(bytes),
        7 => go::<Status>(bytes),
        8 => go::<BlobSpec>(bytes),
        9 => go::<Resolved>(bytes),
        10 => go::<Stat>(bytes),
        11 => go::<ChunkRow>(bytes),
        12 => go::<Unpinned>(bytes),
        13 => go::<String>(bytes),
        14 => go::<Vec<[u8; 32]>>(bytes),
        15 => go::<Vec<bool>>(bytes),
        16 => go::<Vec<StagingRow>>(bytes),
        17 => go::<PullRequest>(bytes),
        18 => go::<PullDone>(bytes),
        19 => go::<GcRequest>(bytes),
        20 => go::<GcDone>(bytes),
        21 => go::<RevokeRequest>(bytes),
        22 => go::<ChannelRow>(bytes),
        23 => go::<ReplicateRequest>(bytes),
        24 => go::<ReplicaStatus>(bytes),
        25 => go::<MoveBind>(bytes),
        26 => go::<MoveRun>(bytes),
        _ => go::<MoveDone>(bytes),
    }
}

/// Messages that probe the decoder of a message type one of whose variants (tag `tag`) is a
/// byte string that ends the message (see [`Tagged`]): that variant (`piece(data)` encodes it)
/// of several sizes, each whole, with bytes after it and cut short; then `others`, 64 short
/// random byte strings and a few edge cases.
#[cfg(test)]
pub(crate) fn tagged_decoder_probes(
    tag: u8,
    piece: impl Fn(Vec<u8>) -> Vec<u8>,
    others: Vec<Vec<u8>>,
) -> Vec<Vec<u8>> {
    let mut messages = Vec::new();
    for n in [0usize, 1, 127, 128, 200, 70_000] {
        let bytes = piece((0..n).map(|i| i as u8).collect());
        assert_eq!(bytes.first(), Some(&tag));
        let mut longer = bytes.clone();
        longer.extend_from_slice(&[7, 8]);
        messages.push(longer);
        messages.push(
            bytes
                .get(..bytes.len().saturating_sub(1))
                .unwrap_or_default()
                .to_vec(),
        );
        messages.push(bytes);
    }
    messages.extend(others);
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for len in 0..64 {
        let random: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8 % 4
            })
            .collect();
        messages.push(random);
    }
    messages.extend([vec![], vec![tag], vec![0x81, 0x00, 0x00], vec![2, 0]]);
    messages
}
