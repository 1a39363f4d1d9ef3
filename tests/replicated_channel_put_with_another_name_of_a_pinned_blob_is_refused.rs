//! On a replicated channel (real `net-mesh serve` processes, two members) a pin is not renamed:
//! its pin log entry carries no name change. `blob put FILE --name N` of a blob the channel
//! pins under another name is refused (exit 4) naming the name the pin keeps, and every member
//! still lists it under that name; a put with the pin's own name, or without `--name`,
//! succeeds and shows that name.
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
fn replicated_channel_put_with_another_name_of_a_pinned_blob_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(tmp.path(), 2, &[], false);
    let addrs = cluster.addrs.clone();
    cluster.replicate(CHANNEL, &[0, 1]);
    let file = write_file(tmp.path(), "photo.bin", &random_bytes(60_000, 3));
    let f = file.to_str().unwrap();
    let put = |node: &str, extra: &[&str]| {
        let mut args = vec!["blob", "--channel", CHANNEL, "put", f, "--json"];
        args.extend_from_slice(extra);
        cluster.client.run(node, &args)
    };
    let first = put(&addrs[0], &["--name", "holiday"]);
    assert!(first.status.success(), "{first:?}");
    let first: serde_json::Value = serde_json::from_slice(&first.stdout).unwrap();
    assert_eq!(first["name"], "holiday", "{first}");

    for node in &addrs {
        let refused = put(node, &["--name", "other"]);
        assert_eq!(refused.status.code(), Some(4), "{refused:?}");
        let said = String::from_utf8_lossy(&refused.stderr);
        assert!(said.contains("is replicated"), "{said}");
        assert!(said.contains("\"holiday\""), "{said}");
        assert!(refused.stdout.is_empty(), "{refused:?}");
    }
    for extra in [&["--name", "holiday"][..], &[][..]] {
        let again = put(&addrs[1], extra);
        assert!(again.status.success(), "{again:?}");
        let again: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
        assert_eq!(again["name"], "holiday", "{again}");
    }
    for node in &addrs {
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
}
