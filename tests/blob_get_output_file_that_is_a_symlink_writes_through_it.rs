//! `blob get REF -o LINK`, LINK a symlink to a file: the file it names gets the blob and LINK
//! stays the symlink (as `cp` or `curl -o` write through one), locally and through `--node`
//! alike; a failed get leaves both as they were.
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
fn blob_get_output_file_that_is_a_symlink_writes_through_it() {
    let tmp = tempfile::tempdir().unwrap();
    let local = tmp.path().join("local");
    let node_dir = tmp.path().join("node");
    let data = random_bytes(100_000, 97);
    let file = write_file(tmp.path(), "in.bin", &data);
    let blob = ok_text(&local, &["blob", "put", file.to_str().unwrap()]);
    ok(&node_dir, &["blob", "put", file.to_str().unwrap()]);
    let node = ServedNode::start(&node_dir, Serve::default());
    let client = Client::node_admin(&node_dir);
    // A valid ref of a blob neither side holds: the get fails (not found).
    let absent = {
        let other = write_file(tmp.path(), "other.bin", &random_bytes(100_000, 98));
        let scratch = tmp.path().join("scratch");
        ok_text(&scratch, &["blob", "put", other.to_str().unwrap()])
    };

    for side in ["local", "node"] {
        let releases = tmp.path().join(format!("releases-{side}"));
        std::fs::create_dir(&releases).unwrap();
        let target = write_file(&releases, "v3.bin", b"the old bytes");
        let link = tmp.path().join(format!("current-{side}.bin"));
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let get = |r: &str| {
            let args = ["blob", "get", r, "-o", link.to_str().unwrap()];
            match side {
                "local" => run(&local, &args),
                _ => client.run(&node.addr, &args),
            }
        };
        let failed = get(&absent);
        assert_eq!(failed.status.code(), Some(1), "{side}: {failed:?}");
        assert_eq!(std::fs::read(&target).unwrap(), b"the old bytes", "{side}");

        let out = get(&blob);
        assert!(out.status.success(), "{side}: {out:?}");
        let kind = std::fs::symlink_metadata(&link).unwrap().file_type();
        assert!(kind.is_symlink(), "{side}: the link was replaced: {kind:?}");
        assert_eq!(std::fs::read_link(&link).unwrap(), target, "{side}");
        assert!(
            std::fs::read(&target).unwrap() == data,
            "{side}: the file it names"
        );
        assert_eq!(std::fs::read_dir(&releases).unwrap().count(), 1, "{side}");
    }
}
