//! The leader is asked to pin blobs whose objects it lacks (stored on the followers only, a
//! small one and a large one): each is refused up front with `MissingObjects` naming the
//! blob's missing roots, nothing enters the log, no member's pins change, and the group goes
//! on committing (the same pin commits once the leader holds the blob).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod support;

use net_mesh_engine::index::pin_roots;
use net_mesh_replication::{ProposeError, stored_applied};
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pin_whose_objects_the_leader_lacks_is_refused_before_it_is_proposed() {
    let root = tempfile::tempdir().unwrap();
    let members = three_members(root.path()).await;
    let channels = create_all(&members).await;
    let leader = wait_for_leader(&channels.iter().collect::<Vec<_>>()).await;
    let followers: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    let small = b"only the followers have this".to_vec();
    let large: Vec<u8> = (0..3u32 << 20)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let mut refs = Vec::new();
    for bytes in [&small, &large] {
        let mut r = None;
        for &f in &followers {
            r = Some(members[f].store.store(bytes).unwrap().blob_ref);
        }
        refs.push(r.unwrap());
    }
    let before: Vec<_> = members
        .iter()
        .map(|m| stored_applied(&m.store, CHANNEL).unwrap())
        .collect();
    let last_log = channels[leader].status().last_log_index;

    for r in &refs {
        match channels[leader].propose_pin(r, "absent").await {
            Err(ProposeError::MissingObjects { missing, .. }) => {
                assert_eq!(missing, pin_roots(r));
            }
            other => panic!("pin of objects the leader lacks: {other:?}"),
        }
    }
    // A follower answers NotLeader (the caller forwards), not MissingObjects.
    assert!(matches!(
        channels[followers[0]].propose_pin(&refs[0], "absent").await,
        Err(ProposeError::NotLeader { .. })
    ));
    assert_eq!(
        channels[leader].status().last_log_index,
        last_log,
        "nothing proposed"
    );
    for (m, b) in members.iter().zip(&before) {
        assert_eq!(&stored_applied(&m.store, CHANNEL).unwrap(), b);
        assert!(pinned(&m.store).is_empty());
    }

    // Once the leader holds the large blob, the same pin commits on all three.
    members[leader].store.store(&large).unwrap();
    let index = channels[leader]
        .propose_pin(&refs[1], "present")
        .await
        .unwrap();
    for m in &members {
        let store = m.store.clone();
        wait_until("the pin applied everywhere", || {
            (stored_applied(&store, CHANNEL).unwrap()?.1 >= index).then_some(())
        })
        .await;
        assert_eq!(pinned(&m.store).len(), 1);
    }
    for c in channels {
        c.shutdown().await.unwrap();
    }
}
