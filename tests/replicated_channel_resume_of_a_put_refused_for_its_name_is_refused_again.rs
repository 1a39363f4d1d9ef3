//! On a replicated channel (real `net-mesh serve` processes, two members), `blob put
//! --resumable --staging-id ID --name other` of a blob the channel pins as `holiday` is refused
//! (exit 4) after its upload finished on the node (its finished record written). A later
//! `staging resume ID FILE --node` — the client's way to learn what became of an upload whose
//! answer it lost — answers from that record as the put was answered: refused again, naming
//! the name the pin keeps (the record keeps that the name was given, docs/FORMAT.md §4.5), not
//! a success that reports `holiday`; every member still lists the blob under `holiday` only.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::process::Output;

use common::replicated::Cluster;
use common::*;

const CHANNEL: &str = "photos";

fn assert_refused(out: &Output, what: &str) {
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{what}: {said}");
    assert!(said.contains("is replicated"), "{what}: {said}");
    assert!(said.contains("\"holiday\""), "{what}: {said}");
    assert!(out.stdout.is_empty(), "{what}: {out:?}");
}

#[test]
fn replicated_channel_resume_of_a_put_refused_for_its_name_is_refused_again() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(tmp.path(), 2, &[], false);
    let addrs = cluster.addrs.clone();
    let client = cluster.client.clone();
    cluster.replicate(CHANNEL, &[0, 1]);
    let file = write_file(tmp.path(), "photo.bin", &random_bytes(600_000, 8));
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

    let resume = [
        "staging",
        "--channel",
        CHANNEL,
        "resume",
        "up-1",
        f,
        "--json",
    ];
    for _ in 0..2 {
        assert_refused(&client.run(&addrs[1], &resume), "the resume");
    }

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
