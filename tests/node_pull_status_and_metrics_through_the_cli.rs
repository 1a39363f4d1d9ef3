//! Node to node through the CLI: `blob pull` moves a blob from A to B, verified, and a second
//! pull moves nothing; a pull from a node whose copy is corrupt exits 3 and pins nothing on B.
//! `status --json` and the Prometheus endpoint report the same node; SIGTERM exits 0.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::node::*;
use common::*;

#[test]
fn node_pull_status_and_metrics_through_the_cli() {
    let tmp = tempfile::tempdir().unwrap();
    let (a_dir, b_dir) = (tmp.path().join("a"), tmp.path().join("b"));
    let client = Client::new(&tmp.path().join("client"), "c");
    let b_id = node_identity(&b_dir);
    let (allow_a, allow_b) = (tmp.path().join("allow-a"), tmp.path().join("allow-b"));
    write_allow(&allow_a, &[(&client.id, "write"), (&b_id, "read")]);
    write_allow(&allow_b, &[(&client.id, "write")]);
    let data = random_bytes(3_000_000, 17);
    let bad = random_bytes(2_000_000, 18);
    let file = write_file(tmp.path(), "in.bin", &data);
    let bad_file = write_file(tmp.path(), "bad.bin", &bad);
    let serve = |allow| Serve {
        allow: Some(allow),
        metrics: true,
        ..Serve::default()
    };
    let a = ServedNode::start(&a_dir, serve(&allow_a));
    let b = ServedNode::start(&b_dir, serve(&allow_b));
    assert_eq!(b.id(), b_id);

    let blob_ref = client.ok_text(&a.addr, &["blob", "put", file.to_str().unwrap()]);
    let pulled = client.json(
        &b.addr,
        &["blob", "pull", &blob_ref, "--from", &a.addr, "--json"],
    );
    assert_eq!(pulled["blob_ref"], blob_ref.as_str(), "{pulled}");
    assert!(pulled["objects_fetched"].as_u64().unwrap() > 1, "{pulled}");
    assert!(
        pulled["bytes_fetched"].as_u64().unwrap() >= data.len() as u64,
        "{pulled}"
    );
    assert!(client.ok(&b.addr, &["blob", "get", &blob_ref]) == data);
    let again = client.json(
        &b.addr,
        &["blob", "pull", &blob_ref, "--from", &a.addr, "--json"],
    );
    assert_eq!(again["objects_fetched"], 0, "{again}");
    assert_eq!(again["bytes_fetched"], 0, "{again}");

    // Status and metrics tell the same story.
    let status = client.json(&b.addr, &["status", "--json"]);
    assert_eq!(status["node_id"], b_id.as_str(), "{status}");
    assert_eq!(status["blob_count"], 1, "{status}");
    assert!(
        status["capabilities"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t == "dataforts.blob_tree_v3"),
        "{status}"
    );
    let metrics = scrape(&b);
    assert!(
        metrics.contains("net_mesh_node_pinned_blobs 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("net_mesh_node_requests_total{method=\"node/v1/pull\"} 2"),
        "{metrics}"
    );

    // A's copy of another blob goes bad while A is stopped; the pull of it fails verified.
    let bad_ref = client.ok_text(&a.addr, &["blob", "put", bad_file.to_str().unwrap()]);
    assert!(a.stop().success());
    corrupt_stored_bytes(&a_dir, &bad[1_000_000..1_000_064]);
    let a = ServedNode::start(&a_dir, serve(&allow_a));
    let out = client.run(&b.addr, &["blob", "pull", &bad_ref, "--from", &a.addr]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let listed = client.json(&b.addr, &["blob", "ls", "--json"]);
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed[0]["blob_ref"], blob_ref.as_str(), "{listed}");

    assert!(a.stop().success());
    assert!(b.stop().success());
    ok(&b_dir, &["fsck", "--read-data"]);
}
