//! Golden vectors for every frame, the handshake payload and the identity key file (hex files
//! under tests/golden/, also quoted in docs/FORMAT.md section 5), corrupt fixtures with their
//! exact errors, and property tests that arbitrary bytes never panic the decoders.
//! Regenerate with `NET_MESH_UPDATE_GOLDEN=1 cargo test -p net-mesh-rpc --test frame_golden`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};

use net_mesh_rpc::Capabilities;
use net_mesh_rpc::Identity;
use net_mesh_rpc::frame::{
    CallHeader, CallKind, ErrorKind, FRAME_VERSION, Frame, FrameError, MAX_METADATA_LEN, Messages,
    TraceContext,
};
use net_mesh_rpc::handshake::{HandshakePayload, PayloadError, ROLE_RESPONDER};
use proptest::prelude::*;

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("golden")
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn from_hex(text: &str) -> Vec<u8> {
    let clean: String = text.chars().filter(|c| c.is_ascii_hexdigit()).collect();
    (0..clean.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&clean[i..i + 2], 16).unwrap())
        .collect()
}

/// Compares `bytes` with the checked-in file (or rewrites it when regenerating).
fn check_golden(name: &str, bytes: &[u8]) {
    let path = golden_dir().join(format!("{name}.hex"));
    if std::env::var_os("NET_MESH_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, format!("{}\n", to_hex(bytes))).unwrap();
    }
    let stored =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(
        to_hex(bytes),
        to_hex(&from_hex(&stored)),
        "golden vector {name} changed"
    );
}

const CALL_ID: u64 = 0x0123_4567_89ab_cdef;
/// Stands in for a 169-byte permission token carried as call metadata.
const TOKEN: [u8; 169] = [0x5a; 169];

fn trace() -> TraceContext {
    TraceContext {
        trace_id: [0x11; 16],
        span_id: [0x22; 8],
    }
}

fn golden_frames() -> Vec<(&'static str, Frame<'static>)> {
    let unary = CallHeader {
        kind: CallKind::Unary,
        timeout_us: 1_500_000,
        trace: trace(),
        response_window: 0,
        method: "blob.stat",
        metadata: b"tok",
    };
    let duplex = CallHeader {
        kind: CallKind::Duplex,
        timeout_us: 0,
        trace: TraceContext::default(),
        response_window: 16 * 1024 * 1024,
        method: "blob.put",
        metadata: b"",
    };
    let with_token = CallHeader {
        kind: CallKind::ClientStreaming,
        timeout_us: 0,
        trace: TraceContext::default(),
        response_window: 0,
        method: "blob.put",
        metadata: &TOKEN,
    };
    vec![
        (
            "frame_request",
            Frame::Request {
                call_id: CALL_ID,
                header: unary,
                payload: b"\x02hi",
            },
        ),
        (
            "frame_request_init",
            Frame::RequestInit {
                call_id: CALL_ID,
                header: duplex,
            },
        ),
        (
            "frame_request_init_token",
            Frame::RequestInit {
                call_id: CALL_ID,
                header: with_token,
            },
        ),
        (
            "frame_request_chunk",
            Frame::RequestChunk {
                call_id: CALL_ID,
                seq: 7,
                messages: Messages::parse(b"\x02\x00\x00\x00\xaa\xbb").unwrap(),
            },
        ),
        (
            "frame_request_chunk_three",
            Frame::RequestChunk {
                call_id: CALL_ID,
                seq: 9,
                messages: Messages::parse(
                    b"\x02\x00\x00\x00\xaa\xbb\x00\x00\x00\x00\x01\x00\x00\x00\xcc",
                )
                .unwrap(),
            },
        ),
        ("frame_request_end", Frame::RequestEnd { call_id: CALL_ID }),
        (
            "frame_request_cancel",
            Frame::RequestCancel {
                call_id: CALL_ID,
                reason: ErrorKind::DeadlineExceeded,
            },
        ),
        (
            "frame_request_window_grant",
            Frame::RequestWindowGrant {
                call_id: CALL_ID,
                credits: 65536,
            },
        ),
        (
            "frame_response",
            Frame::Response {
                call_id: CALL_ID,
                payload: b"\x01",
            },
        ),
        (
            "frame_response_chunk",
            Frame::ResponseChunk {
                call_id: CALL_ID,
                seq: 1,
                messages: Messages::parse(b"\x01\x00\x00\x00\xcc").unwrap(),
            },
        ),
        (
            "frame_response_end",
            Frame::ResponseEnd { call_id: CALL_ID },
        ),
        (
            "frame_response_error",
            Frame::ResponseError {
                call_id: CALL_ID,
                kind: ErrorKind::HandlerPanic,
                message: "boom",
            },
        ),
        (
            "frame_response_window_grant",
            Frame::ResponseWindowGrant {
                call_id: CALL_ID,
                credits: 65536,
            },
        ),
    ]
}

#[test]
fn every_frame_matches_its_golden_vector_and_decodes_back() {
    for (name, frame) in golden_frames() {
        let bytes = frame.to_vec().unwrap();
        check_golden(name, &bytes);
        assert_eq!(Frame::decode(&bytes).unwrap(), frame, "{name}");
    }
}

#[test]
fn corrupt_fixtures_fail_with_their_exact_errors() {
    let end = Frame::RequestEnd { call_id: CALL_ID }.to_vec().unwrap();
    let mut trailing = end.clone();
    trailing.push(0);
    let mut version = end.clone();
    version[0] = 1;
    let mut version_2 = end.clone();
    version_2[0] = 2;
    let chunk = golden_frames()
        .into_iter()
        .find(|(name, _)| *name == "frame_request_chunk")
        .unwrap()
        .1
        .to_vec()
        .unwrap();
    let no_message = chunk[..18].to_vec();
    let mut past_end = chunk.clone();
    past_end[18] = 3; // a 3-byte message of which 2 bytes are there
    let mut unknown = end.clone();
    unknown[1] = 0x7f;
    let grant = Frame::RequestWindowGrant {
        call_id: CALL_ID,
        credits: 1,
    }
    .to_vec()
    .unwrap();
    let mut zero_grant = grant.clone();
    zero_grant[10..14].copy_from_slice(&0u32.to_le_bytes());
    let init = golden_frames()[1].1.to_vec().unwrap();
    let mut bad_kind = init.clone();
    bad_kind[10] = 1; // unary kind inside REQUEST_INIT
    let truncated_init = init[..init.len() - 1].to_vec();
    let mut long_metadata = init.clone();
    // metadata_len (call header offset 38) of MAX_METADATA_LEN + 1.
    long_metadata[10 + 38..10 + 40].copy_from_slice(&(MAX_METADATA_LEN as u16 + 1).to_le_bytes());
    let cases: Vec<(&str, Vec<u8>, FrameError)> = vec![
        (
            "corrupt_trailing_byte",
            trailing,
            FrameError::TrailingBytes {
                dispatch: 0x12,
                extra: 1,
            },
        ),
        (
            "corrupt_version",
            version,
            FrameError::UnsupportedVersion(1),
        ),
        (
            "corrupt_metadata_too_long",
            long_metadata,
            FrameError::MetadataTooLong {
                len: MAX_METADATA_LEN + 1,
            },
        ),
        (
            "corrupt_unknown_dispatch",
            unknown,
            FrameError::UnknownDispatch {
                dispatch: 0x7f,
                call_id: CALL_ID,
            },
        ),
        ("corrupt_zero_grant", zero_grant, FrameError::ZeroCredit),
        (
            "corrupt_init_unary_kind",
            bad_kind,
            FrameError::BadCallKind {
                dispatch: 0x10,
                kind: 1,
            },
        ),
        (
            "corrupt_init_truncated_method",
            truncated_init,
            FrameError::Truncated {
                dispatch: 0x10,
                field: "method",
            },
        ),
        (
            "corrupt_version_2",
            version_2,
            FrameError::UnsupportedVersion(2),
        ),
        (
            "corrupt_chunk_without_message",
            no_message,
            FrameError::EmptyChunk,
        ),
        (
            "corrupt_chunk_message_past_end",
            past_end,
            FrameError::Truncated {
                dispatch: 0x11,
                field: "message",
            },
        ),
        (
            "corrupt_short",
            end[..9].to_vec(),
            FrameError::TooShort { len: 9 },
        ),
    ];
    for (name, bytes, expected) in cases {
        check_golden(name, &bytes);
        assert_eq!(Frame::decode(&bytes), Err(expected), "{name}");
    }
}

#[test]
fn handshake_payload_and_key_file_match_golden_vectors() {
    let identity = Identity::from_seed([0x42; 32]);
    let caps = Capabilities::new(["dataforts.blob_tree_v3"]).unwrap();
    let payload =
        HandshakePayload::sign(&identity, ROLE_RESPONDER, &[0x33; 32], &[0x44; 32], &caps);
    let bytes = payload.encode();
    check_golden("handshake_payload", &bytes);
    assert_eq!(
        payload
            .verify(ROLE_RESPONDER, &[0x33; 32], &[0x44; 32])
            .unwrap(),
        identity.node_id()
    );
    // The signature binds the Noise static key: another one does not verify.
    assert!(
        payload
            .verify(ROLE_RESPONDER, &[0x33; 32], &[0x45; 32])
            .is_err()
    );
    let mut bad = bytes.clone();
    bad[0] = 1;
    check_golden("corrupt_handshake_payload_version", &bad);
    assert_eq!(
        HandshakePayload::decode(&bad),
        Err(PayloadError::UnsupportedVersion(1))
    );
    let mut unsorted = HandshakePayload::sign(
        &identity,
        ROLE_RESPONDER,
        &[0x33; 32],
        &[0x44; 32],
        &Capabilities::default(),
    )
    .encode();
    unsorted[97..99].copy_from_slice(&4u16.to_le_bytes());
    unsorted.extend_from_slice(&[1, b'b', 1, b'a']);
    check_golden("corrupt_handshake_payload_unsorted_caps", &unsorted);
    assert!(matches!(
        HandshakePayload::decode(&unsorted),
        Err(PayloadError::Capabilities(_))
    ));

    let key_file = identity.to_key_file_bytes();
    check_golden("identity_key_file", &key_file);
    let loaded = Identity::from_key_file_bytes(&key_file, Path::new("golden")).unwrap();
    assert_eq!(loaded.node_id(), identity.node_id());
    check_golden("identity_node_id", identity.node_id().as_bytes());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn arbitrary_bytes_never_panic_the_frame_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        net_mesh_rpc::fuzzing::frame_decoder(&bytes);
    }

    #[test]
    fn arbitrary_bytes_after_a_valid_header_never_panic(dispatch in any::<u8>(), body in proptest::collection::vec(any::<u8>(), 0..128)) {
        let mut bytes = vec![FRAME_VERSION, dispatch];
        bytes.extend_from_slice(&CALL_ID.to_le_bytes());
        bytes.extend_from_slice(&body);
        net_mesh_rpc::fuzzing::frame_decoder(&bytes);
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_handshake_payload_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        net_mesh_rpc::fuzzing::handshake_payload_decoder(&bytes);
    }

    #[test]
    fn chunks_round_trip(call_id in any::<u64>(), seq in any::<u64>(), messages in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 1..6)) {
        let slices: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
        let mut list = Vec::new();
        net_mesh_rpc::frame::encode_messages(&slices, &mut list);
        let frame = Frame::RequestChunk { call_id, seq, messages: Messages::parse(&list).unwrap() };
        let bytes = frame.to_vec().unwrap();
        let back = Frame::decode(&bytes).unwrap();
        prop_assert_eq!(back, frame);
        let Frame::RequestChunk { messages: got, .. } = back else { unreachable!() };
        prop_assert_eq!(got.iter().collect::<Vec<_>>(), slices);
    }
}
