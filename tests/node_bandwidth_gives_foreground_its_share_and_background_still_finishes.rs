//! Bandwidth classes on a real node: `serve --bandwidth 8M`, a foreground and a background
//! upload of the same size at once. While both run, the node's own per-stream counters
//! (`status --json`, sampled) show the foreground stream moved at least 80 % of the bytes, and
//! the background one counted time paused for it; both uploads finish and read back.
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

/// `bytes_in_class` and `paused_for_higher_class_ms` of live stream `id`, if it is live.
fn stream(status: &serde_json::Value, id: &str) -> Option<(u64, u64, String)> {
    status["streams"].as_array()?.iter().find_map(|s| {
        (s["id"] == id).then(|| {
            (
                s["bytes_in_class"].as_u64().unwrap(),
                s["paused_for_higher_class_ms"].as_u64().unwrap(),
                s["current_bandwidth_class"].as_str().unwrap().to_string(),
            )
        })
    })
}

#[test]
fn node_bandwidth_gives_foreground_its_share_and_background_still_finishes() {
    let tmp = tempfile::tempdir().unwrap();
    let client = Client::new(&tmp.path().join("client"), "c");
    let allow = tmp.path().join("allow");
    write_allow(&allow, &[(&client.id, "write")]);
    let node = ServedNode::start(
        &tmp.path().join("node"),
        Serve {
            allow: Some(&allow),
            args: vec!["--bandwidth", "8M"],
            ..Serve::default()
        },
    );
    let size = 24_000_000;
    let fg_data = random_bytes(size, 1);
    let bg_data = random_bytes(size, 2);
    let fg_file = write_file(tmp.path(), "fg.bin", &fg_data);
    let bg_file = write_file(tmp.path(), "bg.bin", &bg_data);
    let put = |file: &std::path::Path, id: &str, class: &str| {
        client
            .cmd(&node.addr)
            .args(["blob", "put", file.to_str().unwrap(), "--resumable"])
            .args(["--staging-id", id, "--class", class])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let bg = put(&bg_file, "bg-1", "background");
    let mut fg = put(&fg_file, "fg-1", "foreground");

    // Samples of (foreground bytes, background bytes, background paused ms) while both live.
    let mut both = Vec::new();
    loop {
        let status = client.json(&node.addr, &["status", "--json"]);
        match (stream(&status, "put:fg-1"), stream(&status, "put:bg-1")) {
            (Some((f, _, fc)), Some((b, paused, bc))) => {
                assert_eq!((fc.as_str(), bc.as_str()), ("foreground", "background"));
                both.push((f, b, paused));
            }
            (None, _) if !both.is_empty() => break,
            // Not both started yet (or the foreground one ended unseen: fails below).
            _ if fg.try_wait().unwrap().is_some() => break,
            _ => {}
        }
    }
    let fg = fg.wait_with_output().unwrap();
    let bg = bg.wait_with_output().unwrap();
    assert!(
        fg.status.success(),
        "{}",
        String::from_utf8_lossy(&fg.stderr)
    );
    assert!(
        bg.status.success(),
        "{}",
        String::from_utf8_lossy(&bg.stderr)
    );

    assert!(
        both.len() >= 2,
        "both streams were seen live {} times",
        both.len()
    );
    let (f0, b0, _) = both[0];
    let (f1, b1, paused) = *both.last().unwrap();
    let (df, db) = (f1 - f0, b1 - b0);
    assert!(
        df + db >= 4_000_000,
        "moved {df} + {db} bytes between samples"
    );
    let share = df as f64 / (df + db) as f64;
    eprintln!(
        "contention at 8M: foreground {df} bytes, background {db} bytes over {} samples: \
         foreground share {:.1} %, background paused {paused} ms",
        both.len(),
        share * 100.0
    );
    assert!(
        share >= 0.8,
        "foreground got {:.1} % of the bytes",
        share * 100.0
    );
    assert!(paused > 0, "background never paused for foreground");

    // Both blobs are whole on the node.
    let fg_ref = String::from_utf8(fg.stdout).unwrap().trim().to_string();
    let bg_ref = String::from_utf8(bg.stdout).unwrap().trim().to_string();
    assert!(client.ok(&node.addr, &["blob", "get", &fg_ref]) == fg_data);
    assert!(client.ok(&node.addr, &["blob", "get", &bg_ref]) == bg_data);
    // A finished upload is no live stream any more.
    let status = client.json(&node.addr, &["status", "--json"]);
    assert_eq!(status["streams"], serde_json::json!([]), "{status}");
    assert!(node.stop().success());
}
