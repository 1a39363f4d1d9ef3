//! Both followers of a three-member channel are down. The leader is asked to pin a blob only
//! it holds: no other voter can prefetch it, so `propose_pin` fails with the typed
//! `NotDurable { holders: 1, needed: 2 }` and nothing is proposed (the leader's last log
//! index is unchanged, nothing pinned).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod support;

use net_mesh_engine::{Classify, ErrorClass};
use net_mesh_replication::{ProposeError, ReplicatedChannel};
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pin_too_few_voters_can_prefetch_is_refused_and_never_proposed() {
    let root = tempfile::tempdir().unwrap();
    let members = three_members(root.path()).await;
    let mut channels: Vec<Option<ReplicatedChannel>> =
        create_all(&members).await.into_iter().map(Some).collect();
    let leader = wait_for_leader(&channels.iter().flatten().collect::<Vec<_>>()).await;
    // One pin commits while everyone is up (the group works).
    let both = store_blobs(&members.iter().collect::<Vec<_>>(), "everywhere", 1);
    channels[leader]
        .as_ref()
        .unwrap()
        .propose_pin(&both[0], "everywhere")
        .await
        .unwrap();

    let mut members: Vec<Option<Member>> = members.into_iter().map(Some).collect();
    for f in (0..3).filter(|&i| i != leader) {
        channels[f].take().unwrap().shutdown().await.unwrap();
        members[f].take().unwrap().stop().await;
    }
    let leader_member = members[leader].as_ref().unwrap();
    let r = leader_member
        .store
        .store(b"only the leader holds this, and nobody can take it")
        .unwrap()
        .blob_ref;
    let channel = channels[leader].as_ref().unwrap();
    let before = channel.status();
    assert!(before.is_leader, "{before:?}");

    let err = channel.propose_pin(&r, "lonely").await.unwrap_err();
    assert!(
        matches!(
            err,
            ProposeError::NotDurable {
                holders: 1,
                needed: 2,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.class(), ErrorClass::Busy);
    let after = channel.status();
    assert_eq!(
        after.last_log_index, before.last_log_index,
        "nothing was proposed"
    );
    assert_eq!(
        pinned(&leader_member.store),
        vec![ReplicatedChannel::blob_id(&both[0])],
        "only the first pin"
    );
    for c in channels.into_iter().flatten() {
        c.shutdown().await.unwrap();
    }
}
