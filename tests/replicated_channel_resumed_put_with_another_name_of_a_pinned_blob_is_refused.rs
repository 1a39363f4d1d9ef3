//! On a replicated channel (real `net-mesh serve` processes, two members) a pin is not renamed,
//! and an upload finished by a later call is no exception: `blob put --resumable --name other`
//! of a blob the channel pins as `holiday`, its client SIGKILLed mid-upload (failpoint
//! `cli.node_put.after_piece`), then `staging resume ID FILE --node` — whose `Resume` message
//! carries no name; the node takes the name and whether it was given from the upload's
//! checkpoint — is refused (exit 4) naming the name the pin keeps, as the uninterrupted put
//! is, and every member still lists the blob under `holiday` only.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::node::*;
use common::replicated::Cluster;
use common::*;

const CHANNEL: &str = "photos";

#[test]
fn replicated_channel_resumed_put_with_another_name_of_a_pinned_blob_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(tmp.path(), 2, &[], false);
    let addrs = cluster.addrs.clone();
    let client = cluster.client.clone();
    cluster.replicate(CHANNEL, &[0, 1]);
    let file = write_file(tmp.path(), "photo.bin", &random_bytes(16_000_000, 5));
    let f = file.to_str().unwrap();
    let first = client.json(
        &addrs[0],
        &[
            "blob",
            "--channel",
            CHANNEL,
            "put",
            f,
            "--name",
            "holiday",
            "--json",
        ],
    );
    assert_eq!(first["name"], "holiday", "{first}");

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

    let resume = [
        "staging",
        "--channel",
        CHANNEL,
        "resume",
        "up-1",
        f,
        "--json",
    ];
    let refused = client.run(&addrs[1], &resume);
    let said = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(4), "{said}");
    assert!(said.contains("is replicated"), "{said}");
    assert!(said.contains("\"holiday\""), "{said}");
    assert!(refused.stdout.is_empty(), "{refused:?}");

    for node in &addrs {
        let rows = client.json(node, &["blob", "--channel", CHANNEL, "ls", "--json"]);
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
