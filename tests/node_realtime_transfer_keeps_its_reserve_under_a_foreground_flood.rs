//! Realtime reserve on a real node: `serve --bandwidth 8M --realtime-reserve 4M`, three
//! foreground uploads and one realtime upload at once. While all run, the node's per-stream
//! counters (`status --json`, sampled) show the realtime stream moved at least about its
//! reserve's share of the bytes (half; without the reserve it would get a quarter), and
//! `blob get --class` with an unknown class is a usage error.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::process::Stdio;

use common::node::*;
use common::*;

fn bytes_of(status: &serde_json::Value, id: &str) -> Option<u64> {
    status["streams"]
        .as_array()?
        .iter()
        .find(|s| s["id"] == id)
        .map(|s| s["bytes_in_class"].as_u64().unwrap())
}

#[test]
fn node_realtime_transfer_keeps_its_reserve_under_a_foreground_flood() {
    let tmp = tempfile::tempdir().unwrap();
    let client = Client::new(&tmp.path().join("client"), "c");
    let allow = tmp.path().join("allow");
    write_allow(&allow, &[(&client.id, "write")]);
    let node = ServedNode::start(
        &tmp.path().join("node"),
        Serve {
            allow: Some(&allow),
            args: vec!["--bandwidth", "8M", "--realtime-reserve", "4M"],
            ..Serve::default()
        },
    );
    let size = 12_000_000;
    let ids = ["rt-1", "fg-1", "fg-2", "fg-3"];
    let mut puts = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let file = write_file(tmp.path(), id, &random_bytes(size, i as u64));
        let class = if i == 0 { "realtime" } else { "foreground" };
        puts.push(
            client
                .cmd(&node.addr)
                .args(["blob", "put", file.to_str().unwrap(), "--resumable"])
                .args(["--staging-id", id, "--class", class])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        );
    }

    // Samples of every stream's bytes while all four are live.
    let mut all = Vec::new();
    loop {
        let status = client.json(&node.addr, &["status", "--json"]);
        let sample: Option<Vec<u64>> = ids
            .iter()
            .map(|id| bytes_of(&status, &format!("put:{id}")))
            .collect();
        match sample {
            Some(bytes) => all.push(bytes),
            None if !all.is_empty() => break,
            // Not all started yet (or the realtime one ended before any sample: fails below).
            None if puts[0].try_wait().unwrap().is_some() => break,
            None => {}
        }
    }
    for put in puts {
        let out = put.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(
        all.len() >= 2,
        "all four streams were seen live {} times",
        all.len()
    );
    let first = &all[0];
    let last = all.last().unwrap();
    let moved: Vec<u64> = last.iter().zip(first).map(|(b, a)| b - a).collect();
    let total: u64 = moved.iter().sum();
    assert!(total >= 4_000_000, "moved {moved:?} between samples");
    let share = moved[0] as f64 / total as f64;
    eprintln!(
        "realtime 4M reserve of 8M beside 3 foreground: bytes {moved:?} over {} samples: \
         realtime share {:.1} %",
        all.len(),
        share * 100.0
    );
    assert!(
        share >= 0.45,
        "realtime got {:.1} % of the bytes",
        share * 100.0
    );

    let bad = client.run(&node.addr, &["blob", "get", "00", "--class", "urgent"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(node.stop().success());
}
