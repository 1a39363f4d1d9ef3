//! On a replicated channel (three real `net-mesh serve` processes) the member a `blob put
//! --channel C --node M` talks to (`--resumable`, only to set a small checkpoint interval: a
//! plain put is the same staging upload) is SIGKILLed in the middle of the upload (at its sixth
//! checkpoint commit, by an armed failpoint) and restarted on the same data dir and port; the
//! client's own retry (`--retries`) reconnects, resumes from the node's checkpoint (`PutStart::
//! Resume`, stderr `resuming upload ID at offset O`) and ends as the uninterrupted put would:
//! - through a follower, then through the leader: exit 0 with the ref a local put of the same
//!   file prints; once acknowledged the blob reads back, verified, from every member, every
//!   member lists the same pins, and after a clean stop every store passes fsck;
//! - with `--name other` of a blob the channel pins as `holiday`: refused (exit 4) with the
//!   message the uninterrupted put gets, naming `holiday`, the name given taken from the
//!   upload's checkpoint (a `Resume` carries no name); every member still lists the blob under
//!   `holiday` only.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use common::node::*;
use common::replicated::{Cluster, listen_of};
use common::*;

const CHANNEL: &str = "photos";
/// Small chunks, so checkpoints come often (the same layout for every put: the same refs).
const CHUNKING: &str = "cdc:16K,64K,256K";
/// A member armed with it dies (SIGKILL) at its sixth checkpoint commit: in the middle of the
/// first upload it takes of a file of [`SIZE`] bytes at a 256 KiB checkpoint interval.
const DIES_MID_UPLOAD: &str = "staging.checkpoint.after_commit:6";
const SIZE: usize = 6_000_000;
/// Upper bound on every wait (a bound on the test, not a timed assertion).
const WAIT: Duration = Duration::from_secs(120);

/// Three members of `CHANNEL`, each armed to die mid-upload.
fn armed_members(root: &Path) -> Cluster {
    let mut cluster = Cluster::start(root, 3, &[], false);
    for i in 0..3 {
        cluster.restart_with(i, &[("NET_MESH_FAILPOINT", DIES_MID_UPLOAD)]);
    }
    cluster.replicate(CHANNEL, &[0, 1, 2]);
    cluster
}

/// The index of the member that leads `CHANNEL` now, as the first member that knows one says.
fn leader_now(cluster: &Cluster) -> usize {
    let deadline = Instant::now() + WAIT;
    loop {
        for node in &cluster.addrs {
            let out = cluster
                .client
                .run(node, &["channel", "status", CHANNEL, "--json"]);
            if !out.status.success() {
                continue;
            }
            let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            if let Some(leader) = status["leader"].as_str() {
                return cluster.addrs.iter().position(|a| a == leader).unwrap();
            }
        }
        assert!(Instant::now() < deadline, "no member knows a leader");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The `blob put` arguments of a put of `file` in `CHANNEL`, with `extra`.
fn put_args<'a>(file: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "blob",
        "--channel",
        CHANNEL,
        "put",
        "--chunking",
        CHUNKING,
        "--json",
        file.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    args
}

/// A resumable `blob put` of `file` (with `extra`) through member `m`, which dies mid-upload
/// and is restarted, unarmed, on its data dir and port while the client waits to retry. Returns
/// the put's output once it ended, after checking that its retry resumed from the node's
/// checkpoint (not from the start, not past the end).
fn put_across_a_restart(cluster: &mut Cluster, m: usize, file: &Path, extra: &[&str]) -> Output {
    let mut args = put_args(file, extra);
    args.extend_from_slice(&[
        "--resumable",
        "--checkpoint-interval",
        "256K",
        "--retries",
        "30",
    ]);
    let mut put = cluster
        .client
        .cmd(&cluster.addrs[m])
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut node = cluster.nodes[m].take().unwrap();
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = node.child.try_wait().unwrap() {
            break status;
        }
        if let Some(ended) = put.try_wait().unwrap() {
            panic!(
                "the put ended ({ended:?}) before n{m} died: {:?}",
                put.wait_with_output().unwrap()
            );
        }
        assert!(Instant::now() < deadline, "n{m} never died mid-upload");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(killed(status), "n{m}: {status:?}; {}", node.log_text());
    drop(node);
    cluster.nodes[m] = Some(cluster.serve(m, Some(listen_of(&cluster.addrs[m]))));
    let out = put.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    println!("the put's stderr:\n{said}");
    let resumed_at: u64 = said
        .lines()
        .find_map(|l| l.split(" at offset ").nth(1))
        .unwrap_or_else(|| panic!("the client never resumed: {said}"))
        .trim()
        .parse()
        .unwrap();
    assert!(
        resumed_at > 0 && resumed_at < SIZE as u64,
        "resumed at {resumed_at}: {said}"
    );
    out
}

/// `blob ls --channel CHANNEL --json` on `node`: each pin's id, name and ref (the time a pin
/// was applied is each member's own).
fn listing(cluster: &Cluster, node: &str) -> BTreeSet<(String, String, String)> {
    let rows = cluster
        .client
        .json(node, &["blob", "--channel", CHANNEL, "ls", "--json"]);
    rows.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let field = |k: &str| r[k].as_str().unwrap().to_string();
            (field("blob_id"), field("name"), field("blob_ref"))
        })
        .collect()
}

/// Waits until every member pins exactly the blobs of `want` (id → bytes), reads each back,
/// verified, from every member, and checks that the members' listings agree.
fn on_every_member(cluster: &Cluster, want: &BTreeMap<String, Vec<u8>>, out: &Path) {
    let members: Vec<&str> = cluster.addrs.iter().map(String::as_str).collect();
    let ids: BTreeSet<String> = want.keys().cloned().collect();
    cluster.wait_for_members(CHANNEL, &members, &ids);
    for member in &members {
        for (id, data) in want {
            let got = out.join("got");
            cluster.client.ok(
                member,
                &[
                    "blob",
                    "--channel",
                    CHANNEL,
                    "get",
                    id,
                    "-o",
                    got.to_str().unwrap(),
                ],
            );
            assert!(
                std::fs::read(&got).unwrap() == *data,
                "blob {id} read back from {member} differs"
            );
            std::fs::remove_file(&got).unwrap();
        }
        assert_eq!(listing(cluster, member), listing(cluster, members[0]));
    }
}

#[test]
fn a_put_whose_member_is_killed_mid_upload_is_finished_by_its_own_retry() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cluster = armed_members(tmp.path());
    let mut want = BTreeMap::new();
    for (seed, through_leader) in [(1, false), (2, true)] {
        let leader = leader_now(&cluster);
        let m = match through_leader {
            true => leader,
            false => (leader + 1) % 3,
        };
        println!("a put through n{m} (the leader: {through_leader}), killed mid-upload");
        let data = random_bytes(SIZE, seed);
        let file = write_file(tmp.path(), &format!("f{seed}"), &data);
        let local = ok(
            &tmp.path().join("local"),
            &[
                "blob",
                "put",
                "--chunking",
                CHUNKING,
                "--json",
                file.to_str().unwrap(),
            ],
        );
        let local: serde_json::Value = serde_json::from_slice(&local).unwrap();
        let out = put_across_a_restart(&mut cluster, m, &file, &[]);
        assert!(
            out.status.success(),
            "{:?}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let put: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(put["blob_ref"], local["blob_ref"], "{put}");
        want.insert(put["blob_id"].as_str().unwrap().to_string(), data);
        on_every_member(&cluster, &want, tmp.path());
    }
    cluster.stop_and_fsck();
}

#[test]
fn a_retried_put_with_another_name_of_a_pinned_blob_is_refused_as_the_uninterrupted_put() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cluster = armed_members(tmp.path());
    let leader = leader_now(&cluster);
    let data = random_bytes(SIZE, 3);
    let file = write_file(tmp.path(), "photo.bin", &data);
    let first = cluster.client.json(
        &cluster.addrs[leader],
        &put_args(&file, &["--name", "holiday"]),
    );
    assert_eq!(first["name"], "holiday", "{first}");
    let id = first["blob_id"].as_str().unwrap().to_string();
    on_every_member(&cluster, &BTreeMap::from([(id, data)]), tmp.path());
    let before = listing(&cluster, &cluster.addrs[0]);

    let m = (leader + 1) % 3;
    let retried = put_across_a_restart(&mut cluster, m, &file, &["--name", "other"]);
    let uninterrupted = cluster
        .client
        .run(&cluster.addrs[m], &put_args(&file, &["--name", "other"]));
    let last_line = |out: &Output| {
        String::from_utf8_lossy(&out.stderr)
            .lines()
            .last()
            .unwrap_or_default()
            .to_string()
    };
    for (out, what) in [(&retried, "the retried put"), (&uninterrupted, "the put")] {
        let said = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(4), "{what}: {said}");
        assert!(said.contains("is replicated"), "{what}: {said}");
        assert!(said.contains("\"holiday\""), "{what}: {said}");
        assert!(out.stdout.is_empty(), "{what}: {out:?}");
    }
    assert_eq!(last_line(&retried), last_line(&uninterrupted));
    for node in &cluster.addrs {
        assert_eq!(listing(&cluster, node), before, "{node}");
    }
    cluster.stop_and_fsck();
}
