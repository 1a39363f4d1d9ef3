//! Golden vectors of the storage node's protocol (docs/FORMAT.md §6): fixed example messages
//! encode with postcard to exactly the bytes quoted in the document and decode back; every
//! strict prefix of them, the corrupt vectors of the document and pseudo-random garbage are
//! decode errors, never panics; the method table (names, roles, call kinds), the limits and the
//! error-class mapping are the ones §6 states. Changing the protocol breaks this file.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;
use std::fmt::Debug;

use net_mesh_engine::codec::Hash;
use net_mesh_engine::index::blob_id;
use net_mesh_engine::{BlobRef, ErrorClass};
use net_mesh_node::NodeError;
use net_mesh_node::config::MAX_OBJECTS_PER_CALL;
use net_mesh_node::proto::{
    self, BandwidthClass, BlobSpec, BoundMove, CallKind, ChannelRow, ChunkRow, GcDone, GcRequest,
    MAX_PIECE, Method, MoveBind, MoveDone, MoveRun, MoveStep, ObjectPart, PieceBytes, PinRow,
    PullDone, PullRequest, PutDone, PutPart, PutStart, ReadRequest, ReplicaMember, ReplicaStatus,
    ReplicateRequest, Resolved, RevokeRequest, Role, StagingRow, StagingState, Stat, Status,
    StreamRow, TAG_BLOB_TREE, TreeShape, Unpinned,
};
use net_mesh_node::{NodeConfig, client::PUT_PIECE};
use net_mesh_rpc::NodeId;
use net_mesh_rpc::rpc::ErrorKind;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_bytes::ByteBuf;

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn from_hex(text: &str) -> Vec<u8> {
    assert!(text.len().is_multiple_of(2), "odd hex {text:?}");
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

/// BLAKE3("hello"), the chunk of the §2.10 worked example.
fn hello_hash() -> Hash {
    from_hex("ea8f163db38682925e4491c5e58d4bb3506ef8c14eb78a86e908c5624a67200f")
        .try_into()
        .unwrap()
}

/// The §2.10 worked example ref, `Small { BLAKE3("hello"), 5 }`, as wire bytes.
fn hello_ref() -> ByteBuf {
    let blob_ref = BlobRef::Small {
        hash: hello_hash(),
        size: 5,
    };
    let bytes = blob_ref.encode();
    assert_eq!(
        to_hex(&bytes),
        "4e4d42520100ea8f163db38682925e4491c5e58d4bb3506ef8c14eb78a86e908c5624a67200f0500000000000000"
    );
    ByteBuf::from(bytes)
}

/// The node id of the §5.1 golden identity (seed 32 × 0x42).
const GOLDEN_NODE_ID: &str = "1ac4d99f748c28272dbe0dd9fdc1ed66198fa9f961d14c09b4bed95a73896ca0";
/// A second member's node id in the `replica_status` vector (any 64 hex digits on the wire).
const LEARNER_NODE_ID: &str = "2222222222222222222222222222222222222222222222222222222222222222";

/// Checks one vector: `value` encodes to `hex`, `hex` decodes to `value`, and every strict
/// prefix of it is a decode error.
fn golden<T>(name: &'static str, value: T, hex: &'static str) -> (&'static str, String)
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let bytes = postcard::to_allocvec(&value).unwrap();
    assert_eq!(to_hex(&bytes), hex, "{name}: encoding of {value:?}");
    let back: T = postcard::from_bytes(&from_hex(hex)).unwrap();
    assert_eq!(back, value, "{name}: decoding");
    for cut in 0..bytes.len() {
        assert!(
            postcard::from_bytes::<T>(&bytes[..cut]).is_err(),
            "{name}: the first {cut} bytes decode"
        );
    }
    (name, hex.to_string())
}

/// [`golden`] for a message that ends with a trailing field (§6.2): the prefix without its
/// last `tail` bytes is an older peer's message and decodes; every other strict prefix fails.
fn golden_tail<T>(
    name: &'static str,
    value: T,
    hex: &'static str,
    tail: usize,
) -> (&'static str, String)
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    golden_tails(name, value, hex, &[tail])
}

/// [`golden_tail`] for a message that ends with several trailing fields, `tails` their
/// lengths from the last field back: each prefix without the last k of them (k ≥ 1) is an
/// older peer's message and decodes; every other strict prefix fails.
fn golden_tails<T>(
    name: &'static str,
    value: T,
    hex: &'static str,
    tails: &[usize],
) -> (&'static str, String)
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let bytes = postcard::to_allocvec(&value).unwrap();
    assert_eq!(to_hex(&bytes), hex, "{name}: encoding of {value:?}");
    let back: T = postcard::from_bytes(&from_hex(hex)).unwrap();
    assert_eq!(back, value, "{name}: decoding");
    let older: Vec<usize> = tails
        .iter()
        .scan(bytes.len(), |len, tail| {
            *len -= tail;
            Some(*len)
        })
        .collect();
    for cut in 0..bytes.len() {
        assert_eq!(
            postcard::from_bytes::<T>(&bytes[..cut]).is_ok(),
            older.contains(&cut),
            "{name}: the first {cut} bytes"
        );
    }
    (name, hex.to_string())
}

/// Every golden vector of §6, checked, by name.
fn vectors() -> BTreeMap<&'static str, String> {
    let hello = hello_ref();
    let id = blob_id(&BlobRef::decode(&hello).unwrap());
    let v = [
        golden_tails(
            "put_start_begin",
            PutPart::Start(PutStart::Begin {
                staging_id: Some("up-1".into()),
                name: "hello.txt".into(),
                chunking: Some("fixed:4096".into()),
                tree: Some(TreeShape {
                    leaf_fanout: 8192,
                    internal_fanout: 4096,
                    manifest_max_refs: 30,
                }),
                checkpoint_interval: Some(64 * 1024 * 1024),
                class: BandwidthClass::Foreground,
                name_given: false,
            }),
            "0000010475702d310968656c6c6f2e747874010a66697865643a3430393601804080201e01808080200000",
            &[1, 1],
        ),
        golden_tails(
            "put_start_begin_defaults",
            PutPart::Start(PutStart::Begin {
                staging_id: None,
                name: "-".into(),
                chunking: None,
                tree: None,
                checkpoint_interval: None,
                class: BandwidthClass::Background,
                name_given: true,
            }),
            "000000012d0000000101",
            &[1, 1],
        ),
        golden_tail(
            "put_start_resume",
            PutPart::Start(PutStart::Resume {
                staging_id: "up-1".into(),
                offset: 1_048_576,
                checkpoint_interval: None,
                class: BandwidthClass::Foreground,
            }),
            "00010475702d318080400000",
            1,
        ),
        golden_tails(
            "put_start_erasure_coded",
            PutPart::Start(PutStart::ErasureCoded {
                name: "x".into(),
                chunking: None,
                tree: None,
                k: 10,
                n: 14,
                class: BandwidthClass::Realtime,
                name_given: false,
            }),
            "0002017800000a0e0200",
            &[1, 1],
        ),
        golden(
            "put_data",
            PutPart::Data(ByteBuf::from(b"hello".to_vec())),
            "010568656c6c6f",
        ),
        golden_tail(
            "put_done",
            PutDone {
                blob_ref: hello.clone(),
                chunks: 1,
                new_chunks: 1,
                new_bytes: 5,
                staging_id: Some("up-1".into()),
                resumed_from: Some(0),
                pin_name: Some("hello.txt".into()),
            },
            "2e4e4d42520100ea8f163db38682925e4491c5e58d4bb3506ef8c14eb78a86e908c5624a67200f0500000000000000010105010475702d310100010968656c6c6f2e747874",
            11,
        ),
        golden(
            "object_object",
            ObjectPart::Object {
                hash: hello_hash(),
                kind: 1,
                len: 5,
            },
            "00ea8f163db38682925e4491c5e58d4bb3506ef8c14eb78a86e908c5624a67200f0105",
        ),
        golden(
            "object_piece",
            ObjectPart::Piece(PieceBytes::from(b"hello".to_vec())),
            "010568656c6c6f",
        ),
        golden(
            "object_missing",
            ObjectPart::Missing {
                hash: hello_hash(),
                kind: 1,
                reason: "not stored here".into(),
                pinned_in: None,
            },
            "02ea8f163db38682925e4491c5e58d4bb3506ef8c14eb78a86e908c5624a67200f010f6e6f742073746f7265642068657265",
        ),
        golden_tail(
            "object_missing_pinned",
            ObjectPart::Missing {
                hash: hello_hash(),
                kind: 1,
                reason: "lost".into(),
                pinned_in: Some("photos".into()),
            },
            "02ea8f163db38682925e4491c5e58d4bb3506ef8c14eb78a86e908c5624a67200f01046c6f7374010670686f746f73",
            8,
        ),
        golden_tail(
            "read_request",
            ReadRequest {
                blob_ref: hello.clone(),
                start: 0,
                end: 5,
                class: BandwidthClass::Background,
            },
            "2e4e4d42520100ea8f163db38682925e4491c5e58d4bb3506ef8c14eb78a86e908c5624a67200f0500000000000000000501",
            1,
        ),
        golden(
            "pin_row_pin",
            PinRow::Pin {
                blob_id: id,
                name: "hello.txt".into(),
                blob_ref: hello.clone(),
                created_unix_ms: 1_800_000_000_000,
            },
            "0051c422497c3851935094d307b9cd47a7aa75d9739546e0f1ce431a55e45db4c90968656c6c6f2e7478742e4e4d42520100ea8f163db38682925e4491c5e58d4bb3506ef8c14eb78a86e908c5624a67200f050000000000000080a0f1c2b134",
        ),
        golden(
            "pin_row_undecodable",
            PinRow::Undecodable {
                blob_id: [0x11; 32],
                error: "bad".into(),
            },
            "01111111111111111111111111111111111111111111111111111111111111111103626164",
        ),
        golden(
            "staging_state_live",
            StagingState::Live {
                resume_offset: 1_048_576,
            },
            "00808040",
        ),
        golden("staging_state_not_found", StagingState::NotFound, "02"),
        golden_tail(
            "status",
            Status {
                node_id: GOLDEN_NODE_ID.into(),
                version: "0.1.0".into(),
                uptime_secs: 3600,
                store_bytes: 1_048_576,
                blob_count: 2,
                live_uploads: 1,
                open_sessions: 3,
                bytes_in: 5,
                bytes_out: 300,
                capabilities: vec![TAG_BLOB_TREE.into()],
                streams: vec![StreamRow {
                    id: "put:up-1".into(),
                    kind: "put".into(),
                    class: BandwidthClass::Background,
                    bytes_in_class: 1_048_576,
                    paused_for_higher_class_ms: 250,
                }],
            },
            "403161633464393966373438633238323732646265306464396664633165643636313938666139663936316431346330396234626564393561373338393663613005302e312e30901c80804002010305ac02011664617461666f7274732e626c6f625f747265655f763301087075743a75702d310370757401808040fa01",
            20,
        ),
        golden(
            "blob_spec_ref",
            BlobSpec::Ref(hello.clone()),
            "002e4e4d42520100ea8f163db38682925e4491c5e58d4bb3506ef8c14eb78a86e908c5624a67200f0500000000000000",
        ),
        golden(
            "blob_spec_id_prefix",
            BlobSpec::IdPrefix("1ac4".into()),
            "010431616334",
        ),
        golden(
            "resolved",
            Resolved {
                blob_ref: hello.clone(),
                name: Some("hello.txt".into()),
            },
            "2e4e4d42520100ea8f163db38682925e4491c5e58d4bb3506ef8c14eb78a86e908c5624a67200f0500000000000000010968656c6c6f2e747874",
        ),
        golden(
            "stat",
            Stat {
                blob_ref: hello.clone(),
                kind: "small".into(),
                size: 5,
                depth: 0,
                chunks: 1,
                encoding: None,
            },
            "2e4e4d42520100ea8f163db38682925e4491c5e58d4bb3506ef8c14eb78a86e908c5624a67200f050000000000000005736d616c6c05000100",
        ),
        golden(
            "chunk_row",
            ChunkRow {
                hash: hello_hash(),
                size: 5,
                role: "parity".into(),
                stripe: Some(2),
            },
            "ea8f163db38682925e4491c5e58d4bb3506ef8c14eb78a86e908c5624a67200f05067061726974790102",
        ),
        golden("unpinned_removed", Unpinned::Removed, "01"),
        golden("staging_id", String::from("up-1"), "0475702d31"),
        golden(
            "staging_row",
            StagingRow {
                staging_id: "up-1".into(),
                bytes_committed: 1_048_576,
                resume_offset: 1_048_000,
                seq: 2,
                chunks: 16,
                created_unix_ms: 1_800_000_000_000,
                last_checkpoint_unix_ms: 1_800_000_001_000,
                chunking: "fixed:4096".into(),
                name: "hello.txt".into(),
            },
            "0475702d31808040c0fb3f021080a0f1c2b134e8a7f1c2b1340a66697865643a343039360968656c6c6f2e747874",
        ),
        golden(
            "has_request",
            vec![hello_hash()],
            "01ea8f163db38682925e4491c5e58d4bb3506ef8c14eb78a86e908c5624a67200f",
        ),
        golden("has_answer", vec![true, false], "020100"),
        golden_tails(
            "pull_request",
            PullRequest {
                blob_ref: hello.clone(),
                from: format!("{GOLDEN_NODE_ID}@127.0.0.1:7000"),
                name: "hello.txt".into(),
                class: BandwidthClass::Foreground,
                name_given: true,
            },
            "2e4e4d42520100ea8f163db38682925e4491c5e58d4bb3506ef8c14eb78a86e908c5624a67200f05000000000000004f31616334643939663734386332383237326462653064643966646331656436363139386661396639363164313463303962346265643935613733383936636130403132372e302e302e313a373030300968656c6c6f2e7478740001",
            &[1, 1],
        ),
        golden_tail(
            "pull_done",
            PullDone {
                objects_fetched: 1,
                bytes_fetched: 5,
                pin_name: Some("hello.txt".into()),
            },
            "0105010968656c6c6f2e747874",
            11,
        ),
        golden(
            "gc_request",
            GcRequest {
                grace_secs: 86_400,
                dry_run: true,
            },
            "80a30501",
        ),
        golden(
            "gc_done",
            GcDone {
                report_json: "{}".into(),
            },
            "027b7d",
        ),
        golden(
            "revoke_request",
            RevokeRequest {
                issuer: *NodeId::from_hex(GOLDEN_NODE_ID).unwrap().as_bytes(),
                below_generation: 300,
            },
            "1ac4d99f748c28272dbe0dd9fdc1ed66198fa9f961d14c09b4bed95a73896ca0ac02",
        ),
        golden("revoke_floor", 300u32, "ac02"),
        golden(
            "channel_row",
            ChannelRow {
                name: "photos".into(),
                created_unix_ms: 1_800_000_000_000,
                pins: 2,
            },
            "0670686f746f7380a0f1c2b13402",
        ),
        golden(
            "replicate_request",
            ReplicateRequest {
                channel: "photos".into(),
                members: vec![format!("{GOLDEN_NODE_ID}@127.0.0.1:7000")],
            },
            "0670686f746f73014f31616334643939663734386332383237326462653064643966646331656436363139386661396639363164313463303962346265643935613733383936636130403132372e302e302e313a37303030",
        ),
        golden_tail(
            "move_bind",
            MoveBind {
                channel: "photos".into(),
                id: 300,
                from: format!("{GOLDEN_NODE_ID}@127.0.0.1:7000"),
                to: format!("{GOLDEN_NODE_ID}@127.0.0.1:7000"),
                coordinator: format!("{GOLDEN_NODE_ID}@127.0.0.1:7000"),
                members: vec![format!("{GOLDEN_NODE_ID}@127.0.0.1:7000")],
                rebind: false,
            },
            "0670686f746f73ac024f31616334643939663734386332383237326462653064643966646331656436363139386661396639363164313463303962346265643935613733383936636130403132372e302e302e313a373030304f31616334643939663734386332383237326462653064643966646331656436363139386661396639363164313463303962346265643935613733383936636130403132372e302e302e313a373030304f31616334643939663734386332383237326462653064643966646331656436363139386661396639363164313463303962346265643935613733383936636130403132372e302e302e313a37303030014f31616334643939663734386332383237326462653064643966646331656436363139386661396639363164313463303962346265643935613733383936636130403132372e302e302e313a3730303000",
            1,
        ),
        golden_tail(
            "move_rebind",
            MoveBind {
                channel: "photos".into(),
                id: 300,
                from: format!("{GOLDEN_NODE_ID}@127.0.0.1:7000"),
                to: format!("{GOLDEN_NODE_ID}@127.0.0.1:7000"),
                coordinator: format!("{GOLDEN_NODE_ID}@127.0.0.1:7000"),
                members: vec![],
                rebind: true,
            },
            "0670686f746f73ac024f31616334643939663734386332383237326462653064643966646331656436363139386661396639363164313463303962346265643935613733383936636130403132372e302e302e313a373030304f31616334643939663734386332383237326462653064643966646331656436363139386661396639363164313463303962346265643935613733383936636130403132372e302e302e313a373030304f31616334643939663734386332383237326462653064643966646331656436363139386661396639363164313463303962346265643935613733383936636130403132372e302e302e313a373030300001",
            1,
        ),
        golden_tail(
            "move_run",
            MoveRun {
                channel: "photos".into(),
                id: 300,
                from: format!("{GOLDEN_NODE_ID}@127.0.0.1:7000"),
                to: format!("{GOLDEN_NODE_ID}@127.0.0.1:7000"),
                forget_source: false,
            },
            "0670686f746f73ac024f31616334643939663734386332383237326462653064643966646331656436363139386661396639363164313463303962346265643935613733383936636130403132372e302e302e313a373030304f31616334643939663734386332383237326462653064643966646331656436363139386661396639363164313463303962346265643935613733383936636130403132372e302e302e313a3730303000",
            1,
        ),
        golden_tail(
            "move_run_forget_source",
            MoveRun {
                channel: "photos".into(),
                id: 300,
                from: format!("{GOLDEN_NODE_ID}@127.0.0.1:7000"),
                to: format!("{GOLDEN_NODE_ID}@127.0.0.1:7000"),
                forget_source: true,
            },
            "0670686f746f73ac024f31616334643939663734386332383237326462653064643966646331656436363139386661396639363164313463303962346265643935613733383936636130403132372e302e302e313a373030304f31616334643939663734386332383237326462653064643966646331656436363139386661396639363164313463303962346265643935613733383936636130403132372e302e302e313a3730303001",
            1,
        ),
        golden(
            "move_done",
            MoveDone {
                phases: vec![MoveStep {
                    phase: "cut_over".into(),
                    detail: "voters are now 3 (index 7)".into(),
                }],
            },
            "01086375745f6f7665721a766f7465727320617265206e6f7720332028696e646578203729",
        ),
        golden_tails(
            "replica_status",
            ReplicaStatus {
                channel: "photos".into(),
                members: vec![
                    ReplicaMember {
                        addr: format!("{GOLDEN_NODE_ID}@127.0.0.1:7000"),
                        matched: Some(5),
                        lag: Some(0),
                    },
                    ReplicaMember {
                        addr: format!("{LEARNER_NODE_ID}@127.0.0.1:7001"),
                        matched: Some(4),
                        lag: Some(1),
                    },
                ],
                leader: Some(format!("{GOLDEN_NODE_ID}@127.0.0.1:7000")),
                is_leader: true,
                term: 2,
                committed: Some(5),
                applied: Some(5),
                last_log_index: Some(5),
                pending_apply: 0,
                learners: vec![format!("{LEARNER_NODE_ID}@127.0.0.1:7001")],
                bound_move: None,
                excluded: None,
            },
            "0670686f746f73024f31616334643939663734386332383237326462653064643966646331656436363139386661396639363164313463303962346265643935613733383936636130403132372e302e302e313a37303030010501004f32323232323232323232323232323232323232323232323232323232323232323232323232323232323232323232323232323232323232323232323232323232403132372e302e302e313a3730303101040101014f31616334643939663734386332383237326462653064643966646331656436363139386661396639363164313463303962346265643935613733383936636130403132372e302e302e313a37303030010201050105010500014f32323232323232323232323232323232323232323232323232323232323232323232323232323232323232323232323232323232323232323232323232323232403132372e302e302e313a373030310000",
            &[1, 1, 81],
        ),
        golden_tails(
            "replica_status_move",
            ReplicaStatus {
                channel: "photos".into(),
                members: vec![ReplicaMember {
                    addr: format!("{GOLDEN_NODE_ID}@127.0.0.1:7000"),
                    matched: None,
                    lag: None,
                }],
                leader: None,
                is_leader: false,
                term: 2,
                committed: Some(5),
                applied: Some(5),
                last_log_index: Some(5),
                pending_apply: 0,
                learners: Vec::new(),
                bound_move: Some(BoundMove {
                    id: 7,
                    from: format!("{GOLDEN_NODE_ID}@127.0.0.1:7000"),
                    to: format!("{LEARNER_NODE_ID}@127.0.0.1:7001"),
                    coordinator: GOLDEN_NODE_ID.to_string(),
                    phase: "bound".into(),
                }),
                excluded: Some("the group's membership at log index 9 leaves this node out".into()),
            },
            "0670686f746f73014f31616334643939663734386332383237326462653064643966646331656436363139386661396639363164313463303962346265643935613733383936636130403132372e302e302e313a373030300000000002010501050105000001074f31616334643939663734386332383237326462653064643966646331656436363139386661396639363164313463303962346265643935613733383936636130403132372e302e302e313a373030304f32323232323232323232323232323232323232323232323232323232323232323232323232323232323232323232323232323232323232323232323232323232403132372e302e302e313a37303031403161633464393966373438633238323732646265306464396664633165643636313938666139663936316431346330396234626564393561373338393663613005626f756e64013a7468652067726f75702773206d656d62657273686970206174206c6f6720696e6465782039206c65617665732074686973206e6f6465206f7574",
            &[60, 233, 1],
        ),
    ];
    let mut map = BTreeMap::new();
    for (name, hex) in v {
        assert!(map.insert(name, hex).is_none(), "vector {name} twice");
    }
    map
}

fn section6() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/FORMAT.md");
    let doc = std::fs::read_to_string(path).unwrap();
    let start = doc
        .find("## 6. Storage node protocol")
        .expect("section 6 missing");
    let rest = &doc[start..];
    let end = rest[3..].find("\n## ").map_or(rest.len(), |i| i + 3);
    rest[..end].to_string()
}

/// Rows (cells trimmed, backticks dropped) of the first table after the line containing
/// `marker`.
fn table_after(doc: &str, marker: &str) -> Vec<Vec<String>> {
    let at = doc
        .find(marker)
        .unwrap_or_else(|| panic!("marker {marker:?} not in FORMAT.md §6"));
    doc[at..]
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2)
        .map(|l| {
            l.trim_matches('|')
                .split(" | ")
                .map(|c| c.trim().trim_matches('`').to_string())
                .collect()
        })
        .collect()
}

/// Decodes `bytes` as the message type named as §6 names it; `Ok(())` or the error's name.
fn decode_as(type_name: &str, bytes: &[u8]) -> Result<(), String> {
    fn go<T: DeserializeOwned>(bytes: &[u8]) -> Result<(), String> {
        postcard::from_bytes::<T>(bytes)
            .map(drop)
            .map_err(|e| format!("{e:?}"))
    }
    match type_name {
        "PutPart" => go::<PutPart>(bytes),
        "PutDone" => go::<PutDone>(bytes),
        "ObjectPart" => go::<ObjectPart>(bytes),
        "ReadRequest" => go::<ReadRequest>(bytes),
        "PinRow" => go::<PinRow>(bytes),
        "StagingState" => go::<StagingState>(bytes),
        "StagingRow" => go::<StagingRow>(bytes),
        "Status" => go::<Status>(bytes),
        "BlobSpec" => go::<BlobSpec>(bytes),
        "Resolved" => go::<Resolved>(bytes),
        "Stat" => go::<Stat>(bytes),
        "ChunkRow" => go::<ChunkRow>(bytes),
        "Unpinned" => go::<Unpinned>(bytes),
        "String" => go::<String>(bytes),
        "Vec<[u8; 32]>" => go::<Vec<Hash>>(bytes),
        "Vec<bool>" => go::<Vec<bool>>(bytes),
        "Vec<StagingRow>" => go::<Vec<StagingRow>>(bytes),
        "PullRequest" => go::<PullRequest>(bytes),
        "PullDone" => go::<PullDone>(bytes),
        "GcRequest" => go::<GcRequest>(bytes),
        "GcDone" => go::<GcDone>(bytes),
        "RevokeRequest" => go::<RevokeRequest>(bytes),
        "ChannelRow" => go::<ChannelRow>(bytes),
        "ReplicateRequest" => go::<ReplicateRequest>(bytes),
        "ReplicaStatus" => go::<ReplicaStatus>(bytes),
        "MoveBind" => go::<MoveBind>(bytes),
        "MoveRun" => go::<MoveRun>(bytes),
        "MoveDone" => go::<MoveDone>(bytes),
        other => panic!("no message type {other:?}"),
    }
}

const MESSAGE_TYPES: [&str; 28] = [
    "PutPart",
    "PutDone",
    "ObjectPart",
    "ReadRequest",
    "PinRow",
    "StagingState",
    "StagingRow",
    "Status",
    "BlobSpec",
    "Resolved",
    "Stat",
    "ChunkRow",
    "Unpinned",
    "String",
    "Vec<[u8; 32]>",
    "Vec<bool>",
    "Vec<StagingRow>",
    "PullRequest",
    "PullDone",
    "GcRequest",
    "GcDone",
    "RevokeRequest",
    "ChannelRow",
    "ReplicateRequest",
    "ReplicaStatus",
    "MoveBind",
    "MoveRun",
    "MoveDone",
];

#[test]
fn every_message_encodes_to_its_golden_bytes_and_back() {
    let v = vectors();
    assert_eq!(v.len(), 41);
    // A unit request (status, list, staging_list) is an empty payload.
    assert!(postcard::to_allocvec(&()).unwrap().is_empty());
}

#[test]
fn format_doc_quotes_every_golden_vector() {
    let doc = section6();
    let rows = table_after(&doc, "Golden vectors *(checked)*");
    let quoted: BTreeMap<&str, String> = rows
        .iter()
        .map(|r| {
            assert_eq!(r.len(), 3, "row {r:?}");
            (r[0].as_str(), r[2].clone())
        })
        .collect();
    assert_eq!(quoted.len(), rows.len(), "a vector quoted twice");
    let v = vectors();
    for (name, hex) in &v {
        assert_eq!(
            quoted.get(name),
            Some(hex),
            "vector {name} quoted differently in FORMAT.md §6"
        );
    }
    assert_eq!(
        quoted.len(),
        v.len(),
        "FORMAT.md §6 quotes vectors the test lacks"
    );
}

/// A `Missing` part's `pinned_in: None` has one encoding, without the field: an explicit
/// `None` tag after the reason decodes, but is not the message's own encoding (nRPC refuses
/// it, §6.2).
#[test]
fn a_missing_part_without_a_pinning_channel_has_one_encoding() {
    let explicit_none = from_hex(
        "02ea8f163db38682925e4491c5e58d4bb3506ef8c14eb78a86e908c5624a67200f01046c6f737400",
    );
    let part: ObjectPart = postcard::from_bytes(&explicit_none).unwrap();
    assert!(matches!(
        &part,
        ObjectPart::Missing {
            pinned_in: None,
            ..
        }
    ));
    assert!(!net_mesh_rpc::rpc::written_as_decoded(
        &part,
        &explicit_none
    ));
    let without = &explicit_none[..explicit_none.len() - 1];
    assert!(net_mesh_rpc::rpc::written_as_decoded(&part, without));
}

#[test]
fn corrupt_vectors_are_the_errors_the_doc_names() {
    let doc = section6();
    let rows = table_after(&doc, "Corrupt vectors *(checked)*");
    assert!(rows.len() >= 10, "{rows:?}");
    for r in &rows {
        assert_eq!(r.len(), 4, "row {r:?}");
        let (name, type_name, hex, error) = (&r[0], &r[1], &r[2], &r[3]);
        assert_eq!(
            decode_as(type_name, &from_hex(hex)),
            Err(error.clone()),
            "{name}"
        );
    }
}

/// xorshift64*: a fixed, seedable stream of garbage.
struct Garbage(u64);

impl Garbage {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

#[test]
fn garbage_and_flipped_bits_decode_to_errors_or_values_never_panics() {
    // Every bit of every golden vector flipped, decoded as every type.
    for hex in vectors().values() {
        let bytes = from_hex(hex);
        for bit in 0..bytes.len() * 8 {
            let mut flipped = bytes.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            for t in MESSAGE_TYPES {
                let _ = decode_as(t, &flipped);
            }
        }
    }
    // Random bytes of every length up to 300, and lengths that claim gigabytes.
    let mut g = Garbage(0x6e65_742d_6d65_7368);
    for round in 0..3000 {
        let bytes = g.bytes(round % 301);
        for t in MESSAGE_TYPES {
            let _ = decode_as(t, &bytes);
        }
    }
    for t in MESSAGE_TYPES {
        for prefix in [&[][..], &[0][..], &[1][..], &[2][..]] {
            let mut bytes = prefix.to_vec();
            bytes.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
            let _ = decode_as(t, &bytes);
        }
    }
}

/// The protocol's methods as version 1 defines them: name, role, call kind.
const METHODS: [(&str, &str, &str); 23] = [
    ("node/v1/status", "read", "unary"),
    ("node/v1/list", "read", "server-streaming"),
    ("node/v1/resolve", "read", "unary"),
    ("node/v1/stat", "read", "unary"),
    ("node/v1/read", "read", "server-streaming"),
    ("node/v1/chunks", "read", "server-streaming"),
    ("node/v1/remove", "write", "unary"),
    ("node/v1/put", "write", "client-streaming"),
    ("node/v1/staging_list", "read", "unary"),
    ("node/v1/staging_state", "read", "unary"),
    ("node/v1/staging_abort", "write", "unary"),
    ("node/v1/has", "read", "unary"),
    ("node/v1/objects", "read", "server-streaming"),
    ("node/v1/pull", "write", "unary"),
    ("node/v1/gc", "admin", "unary"),
    ("node/v1/token_revoke", "admin", "unary"),
    ("node/v1/channel_create", "admin", "unary"),
    ("node/v1/channel_list", "read", "unary"),
    ("node/v1/channel_replicate", "admin", "unary"),
    ("node/v1/channel_status", "read", "unary"),
    ("node/v1/channel_move_bind", "admin", "unary"),
    ("node/v1/channel_move", "admin", "unary"),
    ("node/v1/channel_move_abandon", "admin", "unary"),
];

#[test]
fn method_names_roles_and_call_kinds_are_version_1s_and_the_docs() {
    assert_eq!(proto::VERSION, 1);
    let code: Vec<(&str, &str, &str)> = Method::ALL
        .iter()
        .map(|m| (m.name(), m.role().name(), m.kind().name()))
        .collect();
    assert_eq!(code, METHODS);
    for (name, role, kind) in METHODS {
        let m = Method::from_name(name).unwrap();
        let role_of = match role {
            "read" => Role::Read,
            "write" => Role::Write,
            _ => Role::Admin,
        };
        assert_eq!(m.role(), role_of);
        assert!(matches!(
            (m.kind(), kind),
            (CallKind::Unary, "unary")
                | (CallKind::ServerStreaming, "server-streaming")
                | (CallKind::ClientStreaming, "client-streaming")
        ));
    }
    let doc = section6();
    let rows = table_after(&doc, "Methods *(checked)*");
    let documented: Vec<(&str, &str, &str)> = rows
        .iter()
        .map(|r| {
            assert_eq!(r.len(), 5, "row {r:?}");
            (r[0].as_str(), r[1].as_str(), r[2].as_str())
        })
        .collect();
    assert_eq!(documented, METHODS);
}

#[test]
fn limits_and_node_defaults_are_the_docs() {
    let doc = section6();
    let limits: BTreeMap<String, String> = table_after(&doc, "Protocol limits *(checked)*")
        .into_iter()
        .map(|r| (r[0].clone(), r[1].clone()))
        .collect();
    let c = NodeConfig::default();
    // The queues are private; a node's worker bytes are built from them.
    let put_queue = NodeConfig {
        max_streams: 0,
        max_uploads: 1,
        ..c.clone()
    }
    .worker_bytes()
        / MAX_PIECE;
    let max_object = net_mesh_engine::codec::MAX_CHUNK_SIZE as usize;
    let read_queue = (NodeConfig {
        max_streams: 1,
        max_uploads: 0,
        ..c.clone()
    }
    .worker_bytes()
        - max_object)
        / MAX_PIECE;
    let expected: BTreeMap<String, String> = [
        ("VERSION", proto::VERSION.to_string()),
        ("TAG_BLOB_TREE", TAG_BLOB_TREE.to_string()),
        ("MAX_PIECE", MAX_PIECE.to_string()),
        ("MAX_OBJECTS_PER_CALL", MAX_OBJECTS_PER_CALL.to_string()),
        ("PUT_QUEUE", put_queue.to_string()),
        ("READ_QUEUE", read_queue.to_string()),
        ("PUT_PIECE", PUT_PIECE.to_string()),
        ("MAX_CHUNK_SIZE", max_object.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(limits, expected);

    let defaults: BTreeMap<String, String> = table_after(&doc, "Node limits *(checked)*")
        .into_iter()
        .map(|r| (r[0].clone(), r[1].clone()))
        .collect();
    let secs = |d: std::time::Duration| format!("{} s", d.as_secs());
    let r = &c.rpc;
    let expected: BTreeMap<String, String> = [
        ("max_uploads", c.max_uploads.to_string()),
        ("max_streams", c.max_streams.to_string()),
        ("max_pulls", c.max_pulls.to_string()),
        ("max_uploads_per_peer", c.max_uploads_per_peer.to_string()),
        ("max_streams_per_peer", c.max_streams_per_peer.to_string()),
        ("max_pulls_per_peer", c.max_pulls_per_peer.to_string()),
        ("max_erasure_bytes", c.max_erasure_bytes.to_string()),
        (
            "max_erasure_bytes_per_peer",
            c.max_erasure_bytes_per_peer.to_string(),
        ),
        ("max_lookups", c.max_lookups.to_string()),
        ("max_lookups_per_peer", c.max_lookups_per_peer.to_string()),
        ("upload_idle_timeout", secs(c.upload_idle_timeout)),
        ("send_timeout", secs(c.send_timeout)),
        ("shutdown_grace", secs(c.shutdown_grace)),
        ("rpc.call_window", r.call_window.to_string()),
        ("rpc.min_call_window", r.min_call_window.to_string()),
        ("rpc.call_send_budget", r.call_send_budget.to_string()),
        ("rpc.session_recv_budget", r.session_recv_budget.to_string()),
        ("rpc.session_send_budget", r.session_send_budget.to_string()),
        ("rpc.node_recv_budget", r.node_recv_budget.to_string()),
        ("rpc.peer_recv_budget", r.peer_recv_budget.to_string()),
        ("rpc.node_send_budget", r.node_send_budget.to_string()),
        ("rpc.peer_send_budget", r.peer_send_budget.to_string()),
        (
            "rpc.max_sessions_per_addr",
            r.max_sessions_per_addr.to_string(),
        ),
        (
            "rpc.max_sessions_per_identity",
            r.max_sessions_per_identity.to_string(),
        ),
        (
            "rpc.max_concurrent_calls",
            r.max_concurrent_calls.to_string(),
        ),
        ("rpc.max_handshakes", r.max_handshakes.to_string()),
        ("rpc.handshake_timeout", secs(r.handshake_timeout)),
        ("rpc.stall_timeout", secs(r.stall_timeout)),
        ("rpc.idle_timeout", secs(r.idle_timeout.unwrap())),
        ("worker_bytes()", c.worker_bytes().to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(defaults, expected);
    assert!(r.capabilities.contains(TAG_BLOB_TREE));
}

fn class_named(name: &str) -> ErrorClass {
    match name {
        "integrity" => ErrorClass::Integrity,
        "refused" => ErrorClass::Refused,
        "not_found" => ErrorClass::NotFound,
        "busy" => ErrorClass::Busy,
        "io" => ErrorClass::Io,
        "usage" => ErrorClass::Usage,
        other => panic!("no error class {other:?}"),
    }
}

/// `Name (code)` as the doc writes an nRPC error kind.
fn kind_cell(kind: ErrorKind) -> String {
    format!("{kind:?} ({})", kind.code())
}

#[test]
fn error_classes_travel_as_the_kinds_the_doc_names() {
    let doc = section6();
    let sent = table_after(&doc, "Error classes *(checked)*");
    assert_eq!(sent.len(), 6, "{sent:?}");
    for r in &sent {
        let class = class_named(&r[0]);
        assert_eq!(kind_cell(NodeError::new(class, "x").to_rpc().kind), r[1]);
    }
    let received = table_after(&doc, "Kinds a client receives *(checked)*");
    let mut codes = Vec::new();
    for r in &received {
        let code: u16 = r[0]
            .rsplit_once('(')
            .and_then(|(_, c)| c.strip_suffix(')'))
            .unwrap()
            .parse()
            .unwrap();
        let kind = ErrorKind::from_code(code);
        assert_eq!(kind_cell(kind), r[0]);
        let got = NodeError::from_rpc(&net_mesh_rpc::RpcError::new(kind, "x")).class;
        assert_eq!(got, class_named(&r[1]), "{}", r[0]);
        codes.push(code);
    }
    let named: Vec<u16> = (1..=8).chain(16..=23).collect();
    assert_eq!(codes, named, "every named kind, in code order");
    let other = NodeError::from_rpc(&net_mesh_rpc::RpcError::new(ErrorKind::from_code(99), "x"));
    assert_eq!(other.class, ErrorClass::Io);
}
