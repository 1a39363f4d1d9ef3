//! A resumable put into a replicated channel of three real `net-mesh serve` processes, sent to
//! a follower that is killed (failpoint `node.put.before_replicated_pin`) right after the
//! upload's finish committed — blob held, finished record written — and before its pin was
//! proposed to the group. Restarted, the follower is asked `staging resume` of the upload on a
//! call that names no channel: refused (exit 4, the upload's channel named), nothing pinned.
//! Asked again with `--channel` naming the upload's channel, the resume answers the ref, and
//! the blob ends up pinned in the upload's channel under the upload's name on every member
//! (not left to its hold's expiry), reads back verified from each, and every store is clean
//! under fsck.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::time::{Duration, Instant};

use common::node::*;
use common::replicated::Cluster;
use common::*;

const CHANNEL: &str = "photos";
const WAIT: Duration = Duration::from_secs(90);

#[test]
fn replicated_channel_a_put_killed_before_its_pin_is_pinned_by_its_resume_under_its_name() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(tmp.path(), 3, &[], false);
    let client = cluster.client.clone();
    let addrs = cluster.addrs.clone();
    let leader = cluster.replicate(CHANNEL, &[0, 1, 2]);
    let victim_at = (0..3).find(|i| addrs[*i] != leader).unwrap();
    let victim_addr = addrs[victim_at].clone();

    // The follower, restarted with the failpoint armed.
    let victim = cluster.nodes[victim_at].take().unwrap();
    let port = victim.host_port().to_string();
    assert!(victim.stop().success());
    let armed = cluster.serve_with(
        victim_at,
        Some(port.clone()),
        &[("NET_MESH_FAILPOINT", "node.put.before_replicated_pin")],
    );
    assert_eq!(armed.addr, victim_addr);

    let data = random_bytes(2_000_000, 7);
    let file = write_file(tmp.path(), "held.bin", &data);
    let out = client.run(
        &victim_addr,
        &[
            "blob",
            "--channel",
            CHANNEL,
            "put",
            "--resumable",
            "--staging-id",
            "up-held",
            "--name",
            "n1",
            "--checkpoint-interval",
            "256K",
            "--retries",
            "0",
            file.to_str().unwrap(),
        ],
    );
    assert!(
        !out.status.success(),
        "the put must not be answered: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let status = armed.wait();
    assert!(killed(status), "the node was not killed: {status:?}");

    cluster.nodes[victim_at] = Some(cluster.serve(victim_at, Some(port)));
    // The upload is no longer live on the node: it finished (its finish committed).
    let listed = client.json(
        &victim_addr,
        &["staging", "--channel", CHANNEL, "list", "--json"],
    );
    assert_eq!(listed.as_array().unwrap().len(), 0, "{listed}");

    // A resume on a call that names no channel (`default`) is refused and pins nothing (a
    // pin it proposed would be applied here before it answered).
    let resume = [
        "staging",
        "resume",
        "up-held",
        file.to_str().unwrap(),
        "--json",
    ];
    let refused = client.run(&victim_addr, &resume);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(4), "{stderr}");
    assert!(
        stderr.contains("belongs to channel photos, not default")
            && stderr.contains("--channel photos"),
        "{stderr}"
    );
    let rows = client.json(
        &victim_addr,
        &["blob", "--channel", CHANNEL, "ls", "--json"],
    );
    assert_eq!(rows.as_array().unwrap().len(), 0, "{rows}");

    // Resumed on a call that names the upload's channel.
    let done = client.json(
        &victim_addr,
        &[&resume[..], &["--channel", CHANNEL]].concat(),
    );
    let blob_id = done["blob_id"].as_str().unwrap().to_string();
    let blob_ref = done["blob_ref"].as_str().unwrap().to_string();

    for member in &addrs {
        let deadline = Instant::now() + WAIT;
        loop {
            let rows = client.json(member, &["blob", "--channel", CHANNEL, "ls", "--json"]);
            let rows = rows.as_array().unwrap();
            if !rows.is_empty() {
                assert_eq!(rows.len(), 1, "{member}: {rows:?}");
                assert_eq!(rows[0]["blob_id"], blob_id.as_str(), "{member}");
                assert_eq!(rows[0]["blob_ref"], blob_ref.as_str(), "{member}");
                assert_eq!(rows[0]["name"], "n1", "{member}");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{member} never pinned {blob_id} in {CHANNEL}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        // Nothing was pinned in the call's channel.
        let default_rows = client.json(member, &["blob", "ls", "--json"]);
        assert_eq!(default_rows.as_array().unwrap().len(), 0, "{member}");
        let got = tmp.path().join("got");
        client.ok(
            member,
            &[
                "blob",
                "--channel",
                CHANNEL,
                "get",
                &blob_id,
                "-o",
                got.to_str().unwrap(),
            ],
        );
        assert!(
            std::fs::read(&got).unwrap() == data,
            "{blob_id} on {member}"
        );
    }
    cluster.stop_and_fsck();
}
