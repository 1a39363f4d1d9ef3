#![allow(clippy::unwrap_used)]
use super::*;

#[test]
fn an_empty_state_row_encodes_as_docs_replication_md_says() {
    let bytes = encode_row(&StateRow::default()).unwrap();
    assert_eq!(bytes, [2, 0, 0, 0, 0]);
    assert_eq!(
        decode_row::<StateRow>(STATE_TABLE, &bytes).unwrap(),
        StateRow::default()
    );
}

#[test]
fn a_log_id_is_term_then_index() {
    // openraft's `single-term-leader`: a committed leader is named by its term alone.
    let row = StateRow {
        last_applied: Some(openraft::LogId::new(
            openraft::CommittedLeaderId::new(3, 0),
            5,
        )),
        ..StateRow::default()
    };
    let bytes = encode_row(&row).unwrap();
    assert_eq!(bytes, [2, 1, 3, 5, 0, 0, 0]);
    assert_eq!(decode_row::<StateRow>(STATE_TABLE, &bytes).unwrap(), row);
}

#[test]
fn rows_with_another_version_trailing_bytes_or_over_long_varints_are_corrupted() {
    assert!(matches!(
        decode_row::<StateRow>(STATE_TABLE, &[3, 0, 0, 0, 0]),
        Err(ExtensionError::Corrupted { .. })
    ));
    // Version 1: a pre-release's rows (leader ids with a node id), named in the error.
    match decode_row::<StateRow>(STATE_TABLE, &[1, 0, 0, 0, 0]) {
        Err(ExtensionError::Corrupted { reason, .. }) => {
            assert!(reason.contains("version 1"), "{reason}");
        }
        other => panic!("a version 1 row decoded: {other:?}"),
    }
    assert!(matches!(
        decode_row::<StateRow>(STATE_TABLE, &[2, 0, 0, 0, 0, 0]),
        Err(ExtensionError::Corrupted { .. })
    ));
    assert!(matches!(
        decode_row::<StateRow>(STATE_TABLE, &[]),
        Err(ExtensionError::Corrupted { .. })
    ));
    // [2, 1, 3, 5, 0, 0, 0] with the index 5 written in two bytes.
    match decode_row::<StateRow>(STATE_TABLE, &[2, 1, 3, 0x85, 0, 0, 0, 0]) {
        Err(ExtensionError::Corrupted { reason, .. }) => {
            assert!(reason.contains("own encoding"), "{reason}");
        }
        other => panic!("an over-long varint decoded: {other:?}"),
    }
}

#[test]
fn a_prefetch_row_is_roots_then_expiry() {
    let row = PrefetchRow {
        roots: vec![[7; 32]],
        expires_unix_ms: 300,
    };
    let mut want = vec![2, 1];
    want.extend([7; 32]);
    want.extend([0xac, 0x02]);
    assert_eq!(encode_row(&row).unwrap(), want);
    assert_eq!(
        decode_row::<PrefetchRow>(PREFETCH_TABLE, &want).unwrap(),
        row
    );
}

#[test]
fn a_kept_handoff_is_applied_voters_learners() {
    let kept = HandoffState {
        applied: Some(9),
        voters: vec![[2; 32]],
        learners: Vec::new(),
    };
    let mut want = vec![2, 1, 9, 1];
    want.extend([2; 32]);
    want.push(0);
    assert_eq!(encode_row(&kept).unwrap(), want);
    assert_eq!(
        decode_row::<HandoffState>(PREVIOUS_HANDOFF_TABLE, &want).unwrap(),
        kept
    );
    let too_many = HandoffState {
        voters: vec![[2; 32]; MAX_HANDOFF_NODES + 1],
        ..kept
    };
    assert!(check_handoff(&too_many).is_err());
}

#[test]
fn a_move_row_is_id_nodes_coordinator_phase_start_cutover() {
    let row = MoveRow {
        id: 300,
        from: MoveNode {
            node_id: [1; 32],
            host_port: "a:1".into(),
        },
        to: MoveNode {
            node_id: [2; 32],
            host_port: "b:2".into(),
        },
        coordinator: [3; 32],
        phase: MovePhase::CutOver,
        started_unix_ms: 5,
        cutover: Some(7),
    };
    let mut want = vec![2, 0xac, 0x02];
    want.extend([1; 32]);
    want.extend([3, b'a', b':', b'1']);
    want.extend([2; 32]);
    want.extend([3, b'b', b':', b'2']);
    want.extend([3; 32]);
    want.extend([3, 5, 1, 7]);
    assert_eq!(encode_row(&row).unwrap(), want);
    assert_eq!(decode_row::<MoveRow>(MOVES_TABLE, &want).unwrap(), row);
    // The phase is the fourth byte from the end: `SourceForgotten` is 7 (added after
    // `Abandoned`, 6), and no index past it decodes.
    let forgotten = MoveRow {
        phase: MovePhase::SourceForgotten,
        ..row.clone()
    };
    let mut want_forgotten = want.clone();
    let phase_at = want.len() - 4;
    want_forgotten[phase_at] = 7;
    assert_eq!(encode_row(&forgotten).unwrap(), want_forgotten);
    assert_eq!(
        decode_row::<MoveRow>(MOVES_TABLE, &want_forgotten).unwrap(),
        forgotten
    );
    want_forgotten[phase_at] = 8;
    assert!(decode_row::<MoveRow>(MOVES_TABLE, &want_forgotten).is_err());
    assert!(MovePhase::Left < MovePhase::SourceForgotten);
    assert!(MovePhase::SourceForgotten < MovePhase::CleanedUp);
    let mut too_long = row.clone();
    too_long.to.host_port = "x".repeat(MAX_HOST_PORT_LEN + 1);
    assert!(too_long.check().is_err());
}

#[test]
fn a_pending_snapshot_row_is_last_log_id_membership_id_body() {
    let row = PendingSnapshotRow {
        last_log_id: Some(openraft::LogId::new(
            openraft::CommittedLeaderId::new(3, 0),
            5,
        )),
        membership: StoredMembership::default(),
        snapshot_id: "3-5".into(),
        body: vec![2, 0],
    };
    let want = [2, 1, 3, 5, 0, 0, 0, 3, b'3', b'-', b'5', 2, 2, 0];
    assert_eq!(encode_row(&row).unwrap(), want);
    assert_eq!(
        decode_row::<PendingSnapshotRow>(PENDING_SNAPSHOT_TABLE, &want).unwrap(),
        row
    );
    let mut long_id = row.clone();
    long_id.snapshot_id = "x".repeat(MAX_SNAPSHOT_ID_LEN + 1);
    assert!(long_id.check().is_err());
    assert!(row.check().is_ok());
}

#[test]
fn a_vote_row_is_term_voted_for_committed() {
    let row = VoteRow {
        vote: openraft::Vote::new_committed(3, 258),
    };
    assert_eq!(encode_row(&row).unwrap(), [2, 3, 1, 0x82, 0x02, 1]);
    let bytes = encode_row(&row).unwrap();
    assert_eq!(decode_row::<VoteRow>(VOTE_TABLE, &bytes).unwrap(), row);
}
