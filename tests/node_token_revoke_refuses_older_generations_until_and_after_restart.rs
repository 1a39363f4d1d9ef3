//! Through the CLI: `token revoke --issuer NODEID --below-generation N` on a node (`--node`,
//! admin) makes the node refuse that issuer's older tokens from the next command on (exit 4,
//! `revoked_generation`) while a token minted at the floor works; a token holder cannot revoke
//! (exit 4); floors never go down; and a revocation written to a stopped node's data dir
//! (`token revoke` without `--node`) is enforced by the next `serve`, as is the earlier one.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};

use common::node::*;
use common::*;

/// A `serve --trust ISSUER` on `dir`, killed when dropped; its NODE_ADDR.
struct Served(Child, String);

impl Served {
    fn start(dir: &Path, trust: &str) -> Served {
        let mut child = cmd(dir)
            .args(["serve", "--listen", "127.0.0.1:0", "--trust", trust])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.contains('@'), "{line:?}");
        Served(child, line.trim().to_string())
    }

    fn stop(mut self) {
        signal(&self.0, "TERM");
        assert!(self.0.wait().unwrap().success());
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// A read+write token on `default` from identity `issuer` of `dir` at `generation`.
fn mint(dir: &Path, issuer: &str, subject: &str, generation: u32) -> String {
    ok_text(
        dir,
        &[
            "--identity",
            issuer,
            "token",
            "mint",
            "--subject",
            subject,
            "--scope",
            "read,write",
            "--channel",
            "default",
            "--ttl",
            "1h",
            "--issuer-generation",
            &generation.to_string(),
        ],
    )
}

fn refused_as_revoked(out: &std::process::Output) {
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("revoked_generation"), "{stderr}");
}

#[test]
fn node_token_revoke_refuses_older_generations_until_and_after_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let node_dir = tmp.path().join("node");
    let admin = Client::node_admin(&node_dir);
    let issuer = Client::new(&tmp.path().join("issuer"), "i");
    let peer = Client::new(&tmp.path().join("peer"), "p");
    let peer_key = peer.public_key();
    let gen0 = mint(&issuer.dir, "i", &peer_key, 0);
    let gen1 = mint(&issuer.dir, "i", &peer_key, 1);
    let gen2 = mint(&issuer.dir, "i", &peer_key, 2);
    let revoke = |below: &'static str| {
        let mut args = vec!["token", "revoke", "--issuer", issuer.id.as_str()];
        args.extend(["--below-generation", below, "--json"]);
        args
    };

    let node = Served::start(&node_dir, &issuer.id);
    let addr = node.1.clone();
    assert_eq!(
        peer.ok_text(&addr, &["--token", &gen0, "blob", "ls", "--json"]),
        "[]"
    );

    // A token holder cannot revoke, even with write.
    let mut by_holder = vec!["--token", gen0.as_str()];
    by_holder.extend(revoke("5"));
    let out = peer.run(&addr, &by_holder);
    assert_eq!(out.status.code(), Some(4), "{out:?}");

    let floor = admin.json(&addr, &revoke("1"));
    assert_eq!(floor["below_generation"], 1, "{floor}");
    assert_eq!(floor["issuer"], issuer.id.as_str());
    refused_as_revoked(&peer.run(&addr, &["--token", &gen0, "blob", "ls"]));
    let file = write_file(tmp.path(), "in.bin", &random_bytes(70_000, 5));
    let file = file.to_str().unwrap();
    refused_as_revoked(&peer.run(&addr, &["--token", &gen0, "blob", "put", file]));
    assert_eq!(
        peer.ok_text(&addr, &["--token", &gen1, "blob", "ls", "--json"]),
        "[]"
    );
    // Floors never go down.
    let floor = admin.json(&addr, &revoke("0"));
    assert_eq!(floor["below_generation"], 1, "{floor}");
    node.stop();

    // Written to the stopped node's data dir; the next serve enforces both revocations.
    let floor: serde_json::Value = serde_json::from_slice(&ok(&node_dir, &revoke("2"))).unwrap();
    assert_eq!(floor["below_generation"], 2, "{floor}");
    let node = Served::start(&node_dir, &issuer.id);
    let addr = node.1.clone();
    refused_as_revoked(&peer.run(&addr, &["--token", &gen0, "blob", "ls"]));
    refused_as_revoked(&peer.run(&addr, &["--token", &gen1, "blob", "ls"]));
    assert_eq!(
        peer.ok_text(&addr, &["--token", &gen2, "blob", "ls", "--json"]),
        "[]"
    );
    node.stop();
}
