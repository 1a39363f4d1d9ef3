//! `blob get REF -o FILE` creates FILE, and replaces an existing one, with the mode any new
//! file gets (0666 less the umask), not the 0600 of the temp file it is written through;
//! locally and through `--node` alike.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use common::node::*;
use common::*;

/// `command` run by `sh` under `umask mask`.
fn under_umask(command: &Command, mask: &str) -> Command {
    let mut c = Command::new("sh");
    c.arg("-c")
        .arg(format!("umask {mask} && exec \"$@\""))
        .arg("sh")
        .arg(command.get_program())
        .args(command.get_args())
        .env_remove("NET_MESH_DATA_DIR")
        .env_remove("NET_MESH_FAILPOINT");
    c
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn blob_get_output_file_gets_the_mode_the_umask_gives() {
    let tmp = tempfile::tempdir().unwrap();
    let local = tmp.path().join("local");
    let node_dir = tmp.path().join("node");
    let data = random_bytes(200_000, 51);
    let file = write_file(tmp.path(), "in.bin", &data);
    let blob = ok_text(&local, &["blob", "put", file.to_str().unwrap()]);
    ok(&node_dir, &["blob", "put", file.to_str().unwrap()]);
    let node = ServedNode::start(&node_dir, Serve::default());
    let client = Client::node_admin(&node_dir);

    for (mask, expected) in [("022", 0o644), ("027", 0o640), ("077", 0o600)] {
        for side in ["local", "node"] {
            let out = tmp.path().join(format!("out-{side}-{mask}"));
            let mut get = match side {
                "local" => cmd(&local),
                _ => client.cmd(&node.addr),
            };
            get.args(["blob", "get", &blob, "-o", out.to_str().unwrap()]);
            // Created, then replaced (an existing file of another mode).
            for round in ["created", "replaced"] {
                let status = under_umask(&get, mask).status().unwrap();
                assert!(status.success(), "{side} umask {mask} {round}: {status:?}");
                assert_eq!(std::fs::read(&out).unwrap(), data);
                assert_eq!(
                    mode(&out),
                    expected,
                    "{side} umask {mask} {round}: mode {:o}",
                    mode(&out)
                );
                std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o400)).unwrap();
            }
        }
    }
}
