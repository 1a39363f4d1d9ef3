//! A member is taken for excluded (its copy stale, its reads refused) only when its voters
//! refuse it as a non-member, never when they merely do not run the group (a whole group
//! restarting, a member opening its group again): both answers are `PermissionDenied` at
//! admission, but only the first says who the members are. Here the leader's and the other
//! follower's groups stop while their nodes keep serving: the last member campaigns, term
//! after term, and is refused "not replicated on this node" by both; it stays a member with
//! readable pins (`excluded()` none, `refused_by` empty). The other half, a member the voters
//! do refuse, is `a_move_whose_source_is_gone_for_good_forgets_it_and_cleans_it_up_once_back`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod support;

use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_whose_peers_do_not_run_the_group_is_not_taken_for_excluded() {
    let root = tempfile::tempdir().unwrap();
    let members = three_members(root.path()).await;
    let channels = create_all(&members).await;
    let all: Vec<_> = channels.iter().collect();
    let leader = wait_for_leader(&all).await;
    let last = (leader + 1) % 3;
    let refusals_before: u64 = members
        .iter()
        .map(|m| m.replication.peer_auth_rejections())
        .sum();
    for (i, ch) in channels.iter().enumerate() {
        if i != last {
            ch.shutdown().await.unwrap();
        }
    }
    let term = channels[last].status().term;
    wait_until("the last member campaigned twice", || {
        (channels[last].status().term >= term + 2).then_some(())
    })
    .await;
    let refusals: u64 = members
        .iter()
        .map(|m| m.replication.peer_auth_rejections())
        .sum();
    assert!(
        refusals > refusals_before,
        "its votes were never refused at admission"
    );
    let status = channels[last].status();
    assert_eq!(status.leader, None);
    assert!(status.refused_by.is_empty(), "{:?}", status.refused_by);
    assert_eq!(channels[last].excluded(), None);
    channels[last].shutdown().await.unwrap();
    for m in members {
        m.stop().await;
    }
}
