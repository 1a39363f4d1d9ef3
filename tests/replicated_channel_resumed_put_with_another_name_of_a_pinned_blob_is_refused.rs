//! On a replicated channel (real `net-mesh serve` processes, two members) a pin is not renamed,
//! and an upload finished by a later call is no exception. The blob is pinned as `holiday`;
//! then `blob put --resumable --staging-id up-1 --name other` of it:
//! - its client SIGKILLed mid-upload (failpoint `cli.node_put.after_piece`), then `staging
//!   resume ID FILE --node`, whose `Resume` message carries no name (the node takes the name
//!   and whether it was given from the upload's checkpoint), is refused (exit 4) naming the
//!   name the pin keeps, as the uninterrupted put is;
//! - uninterrupted, refused after its upload finished on the node (its finished record
//!   written): a later `staging resume` (the client's way to learn what became of an upload
//!   whose answer it lost) answers from that record as the put was answered, refused again
//!   (the record keeps that the name was given, docs/FORMAT.md §4.5), not a success that
//!   reports `holiday`.
//!
//! Every member still lists the blob under `holiday` only, and fsck is clean.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::path::PathBuf;
use std::process::Output;

use common::node::*;
use common::replicated::Cluster;
use common::*;

const CHANNEL: &str = "photos";

/// Two members of `CHANNEL`, which pins a file of `size` random bytes as `holiday`.
fn pinned_as_holiday(root: &std::path::Path, size: usize, seed: u64) -> (Cluster, PathBuf) {
    let cluster = Cluster::start(root, 2, &[], false);
    cluster.replicate(CHANNEL, &[0, 1]);
    let file = write_file(root, "photo.bin", &random_bytes(size, seed));
    let first = cluster.client.json(
        &cluster.addrs[0],
        &[
            "blob",
            "--channel",
            CHANNEL,
            "put",
            file.to_str().unwrap(),
            "--name",
            "holiday",
            "--json",
        ],
    );
    assert_eq!(first["name"], "holiday", "{first}");
    (cluster, file)
}

fn assert_refused(out: &Output, what: &str) {
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{what}: {said}");
    assert!(said.contains("is replicated"), "{what}: {said}");
    assert!(said.contains("\"holiday\""), "{what}: {said}");
    assert!(out.stdout.is_empty(), "{what}: {out:?}");
}

/// `staging resume up-1 FILE --json` through the second member.
fn resume(client: &Client, addrs: &[String], file: &str) -> Output {
    client.run(
        &addrs[1],
        &[
            "staging",
            "--channel",
            CHANNEL,
            "resume",
            "up-1",
            file,
            "--json",
        ],
    )
}

/// Every member lists the blob under `holiday` only; then the nodes stop and fsck is clean.
fn still_holiday_everywhere(mut cluster: Cluster) {
    for node in &cluster.addrs {
        let rows = cluster
            .client
            .json(node, &["blob", "--channel", CHANNEL, "ls", "--json"]);
        let names: Vec<&str> = rows
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, vec!["holiday"], "{node}: {rows}");
    }
    cluster.stop_and_fsck();
}

#[test]
fn replicated_channel_resumed_put_with_another_name_of_a_pinned_blob_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (cluster, file) = pinned_as_holiday(tmp.path(), 16_000_000, 5);
    let (client, addrs, f) = (
        cluster.client.clone(),
        cluster.addrs.clone(),
        file.to_str().unwrap(),
    );
    let out = client
        .cmd(&addrs[1])
        .args([
            "blob",
            "--channel",
            CHANNEL,
            "put",
            "--resumable",
            "--staging-id",
            "up-1",
            "--name",
            "other",
            "--checkpoint-interval",
            "256K",
            f,
        ])
        .env("NET_MESH_FAILPOINT", "cli.node_put.after_piece:12")
        .output()
        .unwrap();
    assert!(killed(out.status), "{:?}", out.status);
    let rows = client.json(
        &addrs[1],
        &["staging", "--channel", CHANNEL, "list", "--json"],
    );
    assert_eq!(rows[0]["staging_id"], "up-1", "{rows}");
    assert_eq!(rows[0]["name"], "other", "{rows}");
    assert_refused(&resume(&client, &addrs, f), "the resume");
    still_holiday_everywhere(cluster);
}

#[test]
fn replicated_channel_resume_of_a_put_refused_for_its_name_is_refused_again() {
    let tmp = tempfile::tempdir().unwrap();
    let (cluster, file) = pinned_as_holiday(tmp.path(), 600_000, 8);
    let (client, addrs, f) = (
        cluster.client.clone(),
        cluster.addrs.clone(),
        file.to_str().unwrap(),
    );
    let put = client.run(
        &addrs[1],
        &[
            "blob",
            "--channel",
            CHANNEL,
            "put",
            "--resumable",
            "--staging-id",
            "up-1",
            "--name",
            "other",
            "--json",
            f,
        ],
    );
    assert_refused(&put, "the put");
    // Its upload finished (nothing is left to resume): the resume answers from the record.
    let staged = client.json(
        &addrs[1],
        &["staging", "--channel", CHANNEL, "list", "--json"],
    );
    assert_eq!(staged.as_array().unwrap().len(), 0, "{staged}");
    for _ in 0..2 {
        assert_refused(&resume(&client, &addrs, f), "the resume");
    }
    still_holiday_everywhere(cluster);
}
