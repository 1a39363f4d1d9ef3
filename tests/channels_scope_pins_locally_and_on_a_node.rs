//! Channels through the CLI, the same on a local data dir and through `--node`: `blob --channel`
//! into a channel that does not exist is refused and stores nothing; `channel create` makes it
//! (again: "exists", exit 0) and `channel ls` lists it with its pin count; the same blob pinned
//! in `default` and in `photos` is listed in each, `rm` in one leaves the other (GC with no grace
//! keeps it readable), and a bad channel name is a usage error. On the node, creating a channel
//! needs admin (exit 4 for a writer), and a token minted for `photos` lets its holder put and
//! list there but is refused on `default` (exit 4, `wrong_channel`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::path::Path;
use std::process::Output;

use common::node::*;
use common::*;
use serde_json::Value;

fn code(out: &Output) -> Option<i32> {
    out.status.code()
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .trim()
        .to_string()
}

fn json(out: &Output) -> Value {
    serde_json::from_str(&stdout(out)).unwrap()
}

/// The same channel story on one side: `run` runs a command there, `admin` one as an admin.
fn channel_story(run: &dyn Fn(&[&str]) -> Output, admin: &dyn Fn(&[&str]) -> Output, file: &Path) {
    let file = file.to_str().unwrap();
    let missing = run(&["blob", "--channel", "photos", "put", file]);
    assert_eq!(code(&missing), Some(1), "{missing:?}");
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(stderr.contains("photos"), "{stderr}");
    assert_eq!(json(&run(&["blob", "ls", "--json"])), Value::Array(vec![]));

    assert_eq!(
        stdout(&admin(&["channel", "create", "photos"])),
        "created channel photos"
    );
    assert_eq!(
        stdout(&admin(&["channel", "create", "photos"])),
        "channel photos exists"
    );
    let bad = run(&["blob", "--channel", "Photos!", "ls"]);
    assert_eq!(code(&bad), Some(2), "{bad:?}");

    let in_default = stdout(&run(&["blob", "put", file]));
    let in_photos = stdout(&run(&["blob", "put", "--channel", "photos", file]));
    assert_eq!(in_default, in_photos, "the same bytes, the same ref");
    let listed = json(&run(&["blob", "ls", "--channel", "photos", "--json"]));
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    let id = listed[0]["blob_id"].as_str().unwrap().to_string();
    let channels = json(&run(&["channel", "ls", "--json"]));
    let pins_of = |name: &str| {
        channels
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .map(|c| c["pins"].as_u64().unwrap())
    };
    assert_eq!(
        (pins_of("default"), pins_of("photos")),
        (Some(1), Some(1)),
        "{channels}"
    );

    // Removed from photos only: an id prefix in photos names it, default keeps it.
    assert_eq!(
        stdout(&run(&["blob", "rm", "--channel", "photos", &id[..12]])),
        ""
    );
    assert_eq!(
        json(&run(&["blob", "ls", "--channel", "photos", "--json"])),
        Value::Array(vec![])
    );
    let still = json(&run(&["blob", "ls", "--json"]));
    assert_eq!(still[0]["blob_id"], id.as_str(), "{still}");
    let gone = run(&["blob", "stat", "--channel", "photos", &id[..12]]);
    assert_eq!(code(&gone), Some(1), "{gone:?}");
    stdout(&admin(&["gc", "--grace", "0s"]));
    let got = run(&["blob", "get", &in_default]);
    assert!(got.status.success(), "{got:?}");
    assert!(got.stdout == std::fs::read(file).unwrap(), "wrong bytes");
}

#[test]
fn channels_scope_pins_locally_and_on_a_node() {
    let tmp = tempfile::tempdir().unwrap();
    let data = random_bytes(180_000, 31);
    let file = write_file(tmp.path(), "in.bin", &data);

    // Local.
    let local = tmp.path().join("local");
    let run_local = |args: &[&str]| run(&local, args);
    channel_story(&run_local, &run_local, &file);

    // Through a node: a writer peer, the node's own identity as admin.
    let node_dir = tmp.path().join("node");
    let writer = Client::new(&tmp.path().join("writer"), "w");
    let holder = Client::new(&tmp.path().join("holder"), "h");
    let allow = tmp.path().join("allow");
    write_allow(&allow, &[(&writer.id, "write")]);
    let node = ServedNode::start(
        &node_dir,
        Serve {
            allow: Some(&allow),
            ..Serve::default()
        },
    );
    let admin = Client::node_admin(&node_dir);
    let refused = writer.run(&node.addr, &["channel", "create", "other"]);
    assert_eq!(code(&refused), Some(4), "{refused:?}");
    let run_remote = |args: &[&str]| writer.run(&node.addr, args);
    let run_admin = |args: &[&str]| admin.run(&node.addr, args);
    channel_story(&run_remote, &run_admin, &file);

    // A token for photos: put and list there, refused on default.
    let holder_key = holder.public_key();
    let token = ok_text(
        &node_dir,
        &[
            "token",
            "mint",
            "--subject",
            &holder_key,
            "--scope",
            "read,write",
            "--channel",
            "photos",
            "--ttl",
            "1h",
        ],
    );
    let other = write_file(tmp.path(), "other.bin", &random_bytes(50_000, 32));
    let other = other.to_str().unwrap();
    let put = holder.run(
        &node.addr,
        &[
            "--token",
            &token,
            "blob",
            "--channel",
            "photos",
            "put",
            other,
        ],
    );
    let other_ref = stdout(&put);
    let listed = holder.json(
        &node.addr,
        &[
            "--token",
            &token,
            "blob",
            "ls",
            "--channel",
            "photos",
            "--json",
        ],
    );
    assert!(listed.to_string().contains(&other_ref), "{listed}");
    let refused = holder.run(&node.addr, &["--token", &token, "blob", "ls"]);
    assert_eq!(code(&refused), Some(4), "{refused:?}");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("wrong_channel"),
        "{refused:?}"
    );
    assert!(node.stop().success());
}
