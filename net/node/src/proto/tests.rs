use super::*;

/// A piece encodes exactly as a `ByteBuf` does, and the object stream's decoder
/// ([`Tagged`] with [`PIECE_TAG`]) accepts exactly what decoding an `ObjectPart` accepts,
/// with the same result ([`tagged_decoder_probes`], and the other parts).
#[test]
fn object_parts_decode_as_objectpart_decodes() {
    let wire = |part: &ObjectPart| postcard::to_stdvec(part).unwrap_or_default();
    for n in [0usize, 1, 200, 70_000] {
        let data = vec![7u8; n];
        let piece = wire(&ObjectPart::Piece(PieceBytes::from(data.clone())));
        let buf = postcard::to_stdvec(&ByteBuf::from(data)).unwrap_or_default();
        assert_eq!(piece.get(1..), Some(&buf[..]));
    }
    let others = vec![
        wire(&ObjectPart::Object {
            hash: [3; 32],
            kind: 1,
            len: 9,
        }),
        wire(&ObjectPart::Missing {
            hash: [4; 32],
            kind: 2,
            reason: "gone".into(),
            pinned_in: None,
        }),
        wire(&ObjectPart::Missing {
            hash: [4; 32],
            kind: 2,
            reason: "gone".into(),
            pinned_in: Some("photos".into()),
        }),
    ];
    let piece = |data: Vec<u8>| wire(&ObjectPart::Piece(PieceBytes::from(data)));
    let mut pieces = 0;
    for bytes in tagged_decoder_probes(PIECE_TAG, piece, others) {
        pieces += usize::from(matches!(
            postcard::from_bytes::<ObjectPart>(&bytes),
            Ok(ObjectPart::Piece(_))
        ));
        fuzz_decode_object_part(&bytes);
    }
    assert!(pieces > 12, "{pieces} pieces among the messages");
}

#[test]
fn the_messages_harness_takes_garbage_and_whole_or_older_messages() {
    let status = ReplicaStatus {
        channel: "c".into(),
        members: vec![],
        leader: None,
        is_leader: true,
        term: 1,
        committed: Some(2),
        applied: None,
        last_log_index: None,
        pending_apply: 0,
        learners: vec!["l".into()],
        bound_move: Some(BoundMove {
            id: 3,
            from: "a".into(),
            to: "b".into(),
            coordinator: "k".into(),
            phase: "bound".into(),
        }),
        excluded: Some("e".into()),
    };
    let whole = postcard::to_allocvec(&status).unwrap();
    // Every prefix, the older peers' ones among them (they decode and re-encode longer).
    let mut decoded = 0;
    for cut in 0..=whole.len() {
        let mut data = vec![24];
        data.extend_from_slice(&whole[..cut]);
        fuzz_decode_messages(&data);
        decoded += usize::from(decode::<ReplicaStatus>(&whole[..cut]).is_ok());
    }
    assert_eq!(
        decoded, 4,
        "whole, without excluded, without bound_move too, without learners too"
    );
    // Garbage for every type (splitmix64 bytes).
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = || {
        x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    for kind in 0..28u8 {
        for len in 0..40usize {
            let mut data = vec![kind];
            data.extend((0..len).map(|_| (next() & 0x0f) as u8));
            fuzz_decode_messages(&data);
        }
    }
}

#[test]
fn method_names_are_unique_and_versioned() {
    for m in Method::ALL {
        assert!(m.name().starts_with("node/v1/"));
        assert_eq!(Method::from_name(m.name()), Some(m));
    }
    let mut names: Vec<_> = Method::ALL.iter().map(|m| m.name()).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), Method::ALL.len());
}

/// As the node decodes a message it receives (nRPC: whole, as postcard writes it).
fn decode<T: serde::de::DeserializeOwned + Serialize>(
    bytes: &[u8],
) -> Result<T, net_mesh_rpc::RpcError> {
    net_mesh_rpc::rpc::Encoded::from(bytes.to_vec()).decode()
}

#[test]
fn a_message_ending_before_its_trailing_fields_is_an_older_peers() {
    let req = ReadRequest {
        blob_ref: ByteBuf::from(vec![1, 2]),
        start: 0,
        end: 5,
        class: BandwidthClass::Background,
    };
    let bytes = postcard::to_allocvec(&req).unwrap();
    assert_eq!(bytes.last(), Some(&1));
    let older: ReadRequest = decode(&bytes[..bytes.len() - 1]).unwrap();
    assert_eq!(older.class, BandwidthClass::Foreground);
    // The fields before are still read strictly: `end` (5) written in two bytes.
    assert_eq!(bytes, [2, 1, 2, 0, 5, 1]);
    assert!(decode::<ReadRequest>(&[2, 1, 2, 0, 0x85, 0, 1]).is_err());
    assert!(decode::<ReadRequest>(&[2, 1, 2, 0, 0x85, 0]).is_err());
    let mut unknown = bytes.clone();
    *unknown.last_mut().unwrap() = 9;
    assert!(decode::<ReadRequest>(&unknown).is_err());
    let status = Status {
        node_id: "n".into(),
        version: "v".into(),
        uptime_secs: 1,
        store_bytes: 2,
        blob_count: 3,
        live_uploads: 0,
        open_sessions: 0,
        bytes_in: 0,
        bytes_out: 0,
        capabilities: vec![],
        streams: vec![StreamRow {
            id: "read-1".into(),
            kind: "read".into(),
            class: BandwidthClass::Realtime,
            bytes_in_class: 7,
            paused_for_higher_class_ms: 0,
        }],
    };
    let bytes = postcard::to_allocvec(&status).unwrap();
    assert_eq!(decode::<Status>(&bytes).unwrap(), status);
    let rows = postcard::to_allocvec(&status.streams).unwrap();
    let cut = bytes.len() - rows.len();
    let older: Status = decode(&bytes[..cut]).unwrap();
    assert!(older.streams.is_empty());
    for inside in cut + 1..bytes.len() {
        assert!(decode::<Status>(&bytes[..inside]).is_err());
    }
    // A trailing option: its tag is 0 or 1, nothing else.
    let replica = ReplicaStatus {
        channel: "c".into(),
        members: vec![],
        leader: None,
        is_leader: false,
        term: 1,
        committed: None,
        applied: None,
        last_log_index: None,
        pending_apply: 0,
        learners: vec![],
        bound_move: None,
        excluded: None,
    };
    let mut bytes = postcard::to_allocvec(&replica).unwrap();
    assert_eq!(bytes.last(), Some(&0));
    assert_eq!(decode::<ReplicaStatus>(&bytes).unwrap(), replica);
    *bytes.last_mut().unwrap() = 2;
    assert!(decode::<ReplicaStatus>(&bytes).is_err());
    *bytes.last_mut().unwrap() = 1;
    assert!(decode::<ReplicaStatus>(&bytes).is_err());
}

#[test]
fn roles_order_admin_over_write_over_read() {
    assert!(Role::Admin > Role::Write && Role::Write > Role::Read);
}
