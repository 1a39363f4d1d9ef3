//! Every kind of write on a replicated channel of three real `net-mesh serve` processes,
//! each sent to a follower: a resumable put, one whose client was killed and that `staging
//! resume` finishes on a call naming its channel, an erasure-coded put, and a node-to-node pull
//! from a fourth node outside the group. Each returns once committed, is pinned on all three
//! members, and reads back verified from each. Then an attacker plays a member: an identity
//! that the node's allow file makes admin, but that is no member of the group, calls
//! `raft/v1/propose` and `raft/v1/append` directly over its own session: both are refused and
//! the channel's log and pins do not change.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::node::*;
use common::replicated::Cluster;
use common::*;
use net_mesh_replication::node_replicas::Proposed;
use net_mesh_replication::{METHOD_APPEND, METHOD_PROPOSE, PinOp};
use net_mesh_rpc::rpc::client::CallOptions;
use net_mesh_rpc::rpc::{ErrorKind, Router};
use net_mesh_rpc::{Endpoint, Identity, NodeAddr};

const CHANNEL: &str = "photos";
const WAIT: Duration = Duration::from_secs(90);

fn status(client: &Client, node: &str) -> serde_json::Value {
    client.json(node, &["channel", "status", CHANNEL, "--json"])
}

#[test]
fn replicated_channel_takes_every_write_kind_through_any_member_and_refuses_non_members() {
    let tmp = tempfile::tempdir().unwrap();
    let attacker_seed = [0xa7; 32];
    let attacker = Identity::from_seed(attacker_seed);
    let attacker_id = attacker.node_id().to_string();
    let mut cluster = Cluster::start(tmp.path(), 4, &[&attacker_id], true);
    let client = cluster.client.clone();
    let addrs = cluster.addrs.clone();
    let members = &addrs[..3];
    let outside = &addrs[3];

    // A channel that already holds pins on a member cannot become replicated (those pins are
    // in no log).
    client.ok(&members[0], &["channel", "create", "local"]);
    let early = write_file(tmp.path(), "early.bin", b"pinned before replication");
    client.ok(
        &members[0],
        &["blob", "--channel", "local", "put", early.to_str().unwrap()],
    );
    let refused = client.run(
        &members[0],
        &[
            "channel",
            "create",
            "local",
            "--replicas",
            &format!("{},{}", members[1], members[2]),
        ],
    );
    assert_eq!(refused.status.code(), Some(4), "{refused:?}");
    assert!(
        !client
            .run(&members[0], &["channel", "status", "local"])
            .status
            .success()
    );

    let leader = cluster.replicate(CHANNEL, &[0, 1, 2]);
    let followers: Vec<&String> = members.iter().filter(|a| **a != leader).collect();

    let mut wanted: Vec<(String, Vec<u8>)> = Vec::new();
    // A resumable put through the first follower.
    let data = random_bytes(900_000, 1);
    let file = write_file(tmp.path(), "resumable.bin", &data);
    let done = client.json(
        followers[0],
        &[
            "blob",
            "--channel",
            CHANNEL,
            "put",
            "--resumable",
            "--checkpoint-interval",
            "256K",
            "--json",
            file.to_str().unwrap(),
        ],
    );
    wanted.push((done["blob_id"].as_str().unwrap().to_string(), data));
    // A resumable put whose client is killed mid-way, finished with `staging resume` on a
    // call that names its channel: its blob goes through the group (never a local pin on the
    // follower).
    let data = random_bytes(16_000_000, 4);
    let file = write_file(tmp.path(), "killed.bin", &data);
    let out = client
        .cmd(followers[0])
        .args([
            "blob",
            "--channel",
            CHANNEL,
            "put",
            "--resumable",
            "--staging-id",
            "up-killed",
            "--checkpoint-interval",
            "256K",
            file.to_str().unwrap(),
        ])
        .env("NET_MESH_FAILPOINT", "cli.node_put.after_piece:12")
        .output()
        .unwrap();
    assert!(killed(out.status), "{:?}", out.status);
    let done = client.json(
        followers[0],
        &[
            "staging",
            "--channel",
            CHANNEL,
            "resume",
            "up-killed",
            file.to_str().unwrap(),
            "--json",
        ],
    );
    assert!(done["resumed_from"].as_u64().unwrap() > 0, "{done}");
    let resumed_ref = done["blob_ref"].as_str().unwrap().to_string();
    let resumed = client.json(
        followers[0],
        &["blob", "--channel", CHANNEL, "stat", &resumed_ref, "--json"],
    );
    wanted.push((resumed["blob_id"].as_str().unwrap().to_string(), data));
    // An erasure-coded put through the second follower.
    let data = random_bytes(700_000, 2);
    let file = write_file(tmp.path(), "coded.bin", &data);
    let done = client.json(
        followers[1],
        &[
            "blob",
            "--channel",
            CHANNEL,
            "put",
            "--rs",
            "4,6",
            "--chunking",
            "fixed:64K",
            "--json",
            file.to_str().unwrap(),
        ],
    );
    assert_eq!(done["encoding"], "rs:4,6", "{done}");
    wanted.push((done["blob_id"].as_str().unwrap().to_string(), data));
    // A pull from the outside node into the channel, asked of the first follower.
    let data = random_bytes(1_200_000, 3);
    let file = write_file(tmp.path(), "pulled.bin", &data);
    let blob_ref = client.ok_text(outside, &["blob", "put", file.to_str().unwrap()]);
    let pulled = client.json(
        followers[0],
        &[
            "blob",
            "--channel",
            CHANNEL,
            "pull",
            &blob_ref,
            "--from",
            outside,
            "--json",
        ],
    );
    assert!(pulled["bytes_fetched"].as_u64().unwrap() > 0, "{pulled}");
    let outside_rows = client.json(outside, &["blob", "ls", "--json"]);
    wanted.push((
        outside_rows[0]["blob_id"].as_str().unwrap().to_string(),
        data,
    ));

    let ids: BTreeSet<String> = wanted.iter().map(|(id, _)| id.clone()).collect();
    for member in members {
        let deadline = Instant::now() + WAIT;
        while cluster.pinned(member, CHANNEL) != ids {
            assert!(Instant::now() < deadline, "{member} never pinned {ids:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
        for (id, data) in &wanted {
            let out = tmp.path().join("got");
            client.ok(
                member,
                &[
                    "blob",
                    "--channel",
                    CHANNEL,
                    "get",
                    id,
                    "-o",
                    out.to_str().unwrap(),
                ],
            );
            assert!(std::fs::read(&out).unwrap() == *data, "{id} on {member}");
        }
    }

    // The attacker: admin by the allow file, no member of the group.
    let before = status(&client, &leader);
    let rejections = |node: &ServedNode| -> u64 {
        let text = scrape(node);
        let line = text
            .lines()
            .find(|l| {
                l.starts_with(
                    "net_mesh_node_replication_events_total{event=\"peer_auth_rejections\"}",
                )
            })
            .unwrap_or_else(|| panic!("no rejection counter: {text}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    let rejected_before: Vec<u64> = cluster.nodes[..3]
        .iter()
        .flatten()
        .map(rejections)
        .collect();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let refusals = runtime.block_on(async {
        let endpoint = Endpoint::new(attacker, Router::new(), net_mesh_node::node_config());
        let mut refusals = Vec::new();
        for target in members {
            let addr: NodeAddr = target.parse().unwrap();
            let session = endpoint.connect_node(&addr).await.unwrap();
            let opts = || {
                CallOptions::with_timeout(Duration::from_secs(10))
                    .metadata(net_mesh_node::call_token::encode_metadata(CHANNEL, &[]))
            };
            let op = PinOp::Pin {
                blob_ref: net_mesh_engine::BlobRef::Small {
                    hash: [7; 32],
                    size: 10,
                }
                .encode(),
                name: "forged".into(),
            };
            let proposed = session
                .call_unary::<PinOp, Proposed>(METHOD_PROPOSE, &op, opts())
                .await;
            refusals.push(proposed.unwrap_err().kind);
            let appended = session
                .call_unary::<Vec<u8>, Vec<u8>>(METHOD_APPEND, &vec![0u8; 64], opts())
                .await;
            refusals.push(appended.unwrap_err().kind);
        }
        refusals
    });
    assert!(
        refusals.iter().all(|k| *k == ErrorKind::PermissionDenied),
        "{refusals:?}"
    );
    let rejected_after: Vec<u64> = cluster.nodes[..3]
        .iter()
        .flatten()
        .map(rejections)
        .collect();
    for (b, a) in rejected_before.iter().zip(&rejected_after) {
        assert!(
            *a >= b + 2,
            "rejections {rejected_before:?} -> {rejected_after:?}"
        );
    }
    let leader_node = cluster
        .nodes
        .iter()
        .flatten()
        .find(|n| n.addr == leader)
        .unwrap();
    assert!(
        scrape(leader_node).contains("net_mesh_node_replication_is_leader{channel=\"photos\"} 1"),
        "the leader's metrics do not say so"
    );
    let after = status(&client, &leader);
    assert_eq!(before["last_log_index"], after["last_log_index"]);
    for member in members {
        assert_eq!(cluster.pinned(member, CHANNEL), ids, "{member} changed");
    }
    cluster.stop_and_fsck();
}
