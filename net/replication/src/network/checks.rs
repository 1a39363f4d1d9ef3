//! The shape checks a raft message passes before openraft sees it: what a leader of this
//! build sends, within the bounds the node sets.

use super::*;

/// Whether an append is shaped as a leader sends it: its entries follow `prev_log_id` one
/// index after another, neither they nor `prev_log_id` carry a term above the sender's vote,
/// and each entry is one a leader of this build logs (a valid op, a well-formed membership).
/// openraft assumes this of every request it is given (only a debug assertion checks it, or
/// none), so a member that sends anything else is refused before openraft sees it.
pub(crate) fn well_formed(req: &AppendEntriesRequest<TypeConfig>) -> Result<(), String> {
    let term = req.vote.leader_id().get_term();
    if let Some(prev) = &req.prev_log_id
        && prev.leader_id.term > term
    {
        return Err(format!(
            "prev_log_id of term {} above the vote's term {term}",
            prev.leader_id.term
        ));
    }
    let mut next = req.prev_log_id.map_or(0, |p| p.index.saturating_add(1));
    for entry in &req.entries {
        if entry.log_id.index != next {
            return Err(format!(
                "entry at index {} where index {next} follows",
                entry.log_id.index
            ));
        }
        if entry.log_id.leader_id.term > term {
            return Err(format!(
                "entry {} of term {} above the vote's term {term}",
                entry.log_id.index, entry.log_id.leader_id.term
            ));
        }
        match &entry.payload {
            EntryPayload::Normal(op) => op
                .check()
                .map_err(|why| format!("entry {}: {why}", entry.log_id.index))?,
            EntryPayload::Membership(m) => well_formed_membership(m)
                .map_err(|why| format!("entry {}: {why}", entry.log_id.index))?,
            EntryPayload::Blank => {}
        }
        next = next.saturating_add(1);
    }
    Ok(())
}

/// Whether a snapshot's meta is shaped as a leader sends it: its last log id of a term no
/// later than the sender's vote, its membership's log id no later than that last log id, and
/// its membership well formed ([`well_formed_membership`]). openraft assumes all three of
/// every snapshot it installs (only a debug assertion checks the first two).
pub(crate) fn well_formed_snapshot(req: &InstallSnapshotRequest<TypeConfig>) -> Result<(), String> {
    let term = req.vote.leader_id().get_term();
    let last = req.meta.last_log_id;
    if let Some(last) = &last
        && last.leader_id.term > term
    {
        return Err(format!(
            "last log id of term {} above the vote's term {term}",
            last.leader_id.term
        ));
    }
    if req.meta.snapshot_id.len() > MAX_SNAPSHOT_ID_LEN {
        return Err(format!(
            "a snapshot id of {} bytes (most {MAX_SNAPSHOT_ID_LEN})",
            req.meta.snapshot_id.len()
        ));
    }
    if req.meta.last_membership.log_id().as_ref() > last.as_ref() {
        return Err("its membership is of a log id after its last log id".to_string());
    }
    well_formed_membership(req.meta.last_membership.membership())
        .map_err(|why| format!("its membership: {why}"))
}

/// Whether a membership is one a leader logs: one configuration, or two while joint, none of
/// them empty, and every voter among its nodes. openraft takes any membership a leader sends
/// (only its own changes are checked), makes it the effective one, and later unwraps each
/// voter's node to reach it: a voter without one stops the group on that member, and an
/// empty configuration leaves it no quorum to count.
fn well_formed_membership(m: &Membership<u64, Member>) -> Result<(), String> {
    let configs = m.get_joint_config();
    if configs.is_empty() || configs.len() > 2 {
        return Err(format!("a membership of {} configurations", configs.len()));
    }
    if configs.iter().any(|c| c.is_empty()) {
        return Err("a membership with an empty configuration".to_string());
    }
    if let Some(voter) = m.voter_ids().find(|id| m.get_node(id).is_none()) {
        return Err(format!("voter {voter} is not among the membership's nodes"));
    }
    Ok(())
}

/// Whether a snapshot chunk ends within [`MAX_SNAPSHOT_LEN`].
pub(crate) fn within_snapshot_len(
    req: &InstallSnapshotRequest<TypeConfig>,
) -> Result<(), RpcError> {
    let end = req.offset.saturating_add(req.data.len() as u64);
    if end > MAX_SNAPSHOT_LEN {
        return Err(RpcError::new(
            ErrorKind::ResourceExhausted,
            format!("snapshot past {MAX_SNAPSHOT_LEN} bytes (chunk ends at {end})"),
        ));
    }
    Ok(())
}

/// The blob ref a `raft/v1/prefetch` or `raft/v1/propose` request names: at most
/// [`MAX_OP_LEN`] bytes that decode as a `BlobRef`.
pub(crate) fn request_blob_ref(bytes: &[u8]) -> Result<BlobRef, RpcError> {
    if bytes.len() > MAX_OP_LEN {
        return Err(RpcError::new(
            ErrorKind::InvalidArgument,
            format!("a blob ref of {} bytes (most {MAX_OP_LEN})", bytes.len()),
        ));
    }
    BlobRef::decode(bytes)
        .map_err(|e| RpcError::new(ErrorKind::InvalidArgument, format!("blob ref: {e}")))
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;

    fn member(b: u8) -> Member {
        Member {
            node_id: [b; 32],
            host_port: format!("127.0.0.1:{b}"),
        }
    }

    /// `Membership::new` gives every voter a node; the wire need not: a membership decoded
    /// from bytes whose voter has none is refused, as is an empty or a triple one.
    #[test]
    fn a_membership_is_well_formed_only_as_a_leader_logs_it() -> Result<(), postcard::Error> {
        let nodes = BTreeMap::from([(1u64, member(1)), (2, member(2))]);
        let good = Membership::new(vec![BTreeSet::from([1u64, 2])], nodes.clone());
        assert_eq!(well_formed_membership(&good), Ok(()));
        let joint = Membership::new(
            vec![BTreeSet::from([1u64]), BTreeSet::from([1u64, 2])],
            nodes.clone(),
        );
        assert_eq!(well_formed_membership(&joint), Ok(()));
        // Postcard encodes the struct as its two fields in order.
        let bytes = postcard::to_allocvec(&(vec![BTreeSet::from([1u64, 3])], nodes))?;
        let voter_without_node: Membership<u64, Member> = postcard::from_bytes(&bytes)?;
        assert_eq!(
            well_formed_membership(&voter_without_node),
            Err("voter 3 is not among the membership's nodes".to_string())
        );
        assert!(well_formed_membership(&Membership::new(vec![BTreeSet::new()], None)).is_err());
        assert!(well_formed_membership(&Membership::new(vec![], None)).is_err());
        Ok(())
    }
}
