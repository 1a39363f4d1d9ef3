//! On a replicated channel (real `net-mesh serve` processes: two members and a node outside the
//! group) a pin is not renamed by a pull either: `blob --channel C pull REF --from OUTSIDE
//! --name N` of a blob the channel pins under another name is refused (exit 4) through either
//! member, naming the name the pin keeps, and nothing changes: every member still lists the
//! one pin under its name. A pull with the pin's own name, or without `--name`, succeeds and
//! answers that name. The refusal comes before the source is dialed: with the source stopped
//! it is still the rename's refusal.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::replicated::Cluster;
use common::*;

const CHANNEL: &str = "photos";

#[test]
fn replicated_channel_pull_with_another_name_of_a_pinned_blob_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(tmp.path(), 3, &[], false);
    let addrs = cluster.addrs.clone();
    cluster.replicate(CHANNEL, &[0, 1]);
    let outside = addrs[2].clone();
    let file = write_file(tmp.path(), "photo.bin", &random_bytes(60_000, 3));
    let f = file.to_str().unwrap();
    let blob_ref = cluster.client.ok_text(&outside, &["blob", "put", f]);
    let put = cluster.client.json(
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
    assert_eq!(put["name"], "holiday", "{put}");

    let pull = |node: &str, extra: &[&str]| {
        let mut args = vec![
            "blob",
            "--channel",
            CHANNEL,
            "pull",
            blob_ref.as_str(),
            "--from",
            outside.as_str(),
            "--json",
        ];
        args.extend_from_slice(extra);
        cluster.client.run(node, &args)
    };
    let listed = |node: &str| {
        cluster
            .client
            .json(node, &["blob", "--channel", CHANNEL, "ls", "--json"])
    };
    let before: Vec<serde_json::Value> = addrs[..2].iter().map(|n| listed(n)).collect();
    for node in &addrs[..2] {
        let refused = pull(node, &["--name", "other"]);
        assert_eq!(refused.status.code(), Some(4), "{refused:?}");
        let said = String::from_utf8_lossy(&refused.stderr);
        assert!(said.contains("is replicated"), "{said}");
        assert!(said.contains("\"holiday\""), "{said}");
        assert!(refused.stdout.is_empty(), "{refused:?}");
    }
    let after: Vec<serde_json::Value> = addrs[..2].iter().map(|n| listed(n)).collect();
    assert_eq!(before, after, "a refused pull changed nothing");
    let names = |rows: &serde_json::Value| -> Vec<String> {
        rows.as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap().to_string())
            .collect()
    };
    for rows in &after {
        assert_eq!(names(rows), vec!["holiday"], "{rows}");
    }

    for extra in [&["--name", "holiday"][..], &[][..]] {
        let again = pull(&addrs[1], extra);
        assert!(again.status.success(), "{again:?}");
        let again: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
        assert_eq!(again["name"], "holiday", "{again}");
    }
    for node in &addrs[..2] {
        let rows = listed(node);
        assert_eq!(names(&rows), vec!["holiday"], "{node}: {rows}");
    }

    // The refusal comes before the pull dials the source or fetches anything: with the source
    // stopped, a pull under another name is still refused as a rename, not failed as a dial.
    cluster.nodes[2] = None;
    let refused = cluster.client.run(
        &addrs[0],
        &[
            "blob",
            "--channel",
            CHANNEL,
            "pull",
            blob_ref.as_str(),
            "--from",
            outside.as_str(),
            "--name",
            "other",
        ],
    );
    assert_eq!(refused.status.code(), Some(4), "{refused:?}");
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("\"holiday\""), "{said}");
}
