//! Every blob and staging command run through `--node` prints what the same command prints on a
//! local data dir holding the same data: the same stdout, the same `--json` fields and the same
//! exit codes, failures included; reads give the blob's bytes; a live upload (its writer
//! killed) is listed, resumed and aborted alike on both sides.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use common::node::*;
use common::*;
use serde_json::Value;

/// A local data dir and a client of a node, fed the same commands.
struct Sides {
    local: PathBuf,
    client: Client,
    node: String,
}

fn show(out: &Output) -> String {
    format!(
        "{:?}; stderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    )
}

impl Sides {
    fn local(&self, args: &[&str]) -> Output {
        run(&self.local, args)
    }

    fn remote(&self, args: &[&str]) -> Output {
        self.client.run(&self.node, args)
    }

    /// Runs `args` on both sides: same exit code, same stdout. Returns the stdout.
    fn same(&self, args: &[&str]) -> Vec<u8> {
        let (l, r) = (self.local(args), self.remote(args));
        assert_eq!(
            l.status.code(),
            r.status.code(),
            "{args:?}: local {} / node {}",
            show(&l),
            show(&r)
        );
        assert!(
            l.stdout == r.stdout,
            "{args:?} printed differently:\nlocal: {}\nnode:  {}",
            String::from_utf8_lossy(&l.stdout),
            String::from_utf8_lossy(&r.stdout)
        );
        l.stdout
    }

    /// Like [`Sides::same`] and asserts exit code `code`.
    fn same_failure(&self, args: &[&str], code: i32) {
        let (l, r) = (self.local(args), self.remote(args));
        assert_eq!(l.status.code(), Some(code), "{args:?} local: {}", show(&l));
        assert_eq!(r.status.code(), Some(code), "{args:?} node: {}", show(&r));
        assert_eq!(l.stdout, r.stdout, "{args:?}");
    }

    /// `same` for a command reading stdin from `input`.
    fn same_with_stdin(&self, args: &[&str], input: &Path) -> Vec<u8> {
        let stdin = || Stdio::from(std::fs::File::open(input).unwrap());
        let l = cmd(&self.local).args(args).stdin(stdin()).output().unwrap();
        let r = self
            .client
            .cmd(&self.node)
            .args(args)
            .stdin(stdin())
            .output()
            .unwrap();
        assert!(l.status.success(), "{args:?} local: {}", show(&l));
        assert!(r.status.success(), "{args:?} node: {}", show(&r));
        assert_eq!(l.stdout, r.stdout, "{args:?}");
        l.stdout
    }

    /// A resumable upload of `file` under `id` whose writer is killed mid-upload on both
    /// sides (locally at its third checkpoint, the node client after its third piece).
    fn kill_uploads(&self, id: &str, file: &Path) {
        let args = [
            "blob",
            "put",
            "--resumable",
            "--staging-id",
            id,
            "--checkpoint-interval",
            "256K",
            file.to_str().unwrap(),
        ];
        let l = cmd(&self.local)
            .args(args)
            .env("NET_MESH_FAILPOINT", "staging.checkpoint.after_commit:3")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(killed(l.status), "local writer: {}", show(&l));
        let r = self
            .client
            .cmd(&self.node)
            .args(args)
            .env("NET_MESH_FAILPOINT", "cli.node_put.after_piece:3")
            .output()
            .unwrap();
        assert!(killed(r.status), "node client: {}", show(&r));
    }
}

fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec())
        .unwrap()
        .trim()
        .to_string()
}

/// `v` without the fields `drop` (in the object or in each object of the array).
fn without(mut v: Value, drop: &[&str]) -> Value {
    let strip = |o: &mut Value| {
        if let Some(o) = o.as_object_mut() {
            for key in drop {
                assert!(o.remove(*key).is_some(), "no field {key} in {o:?}");
            }
        }
    };
    match &mut v {
        Value::Array(rows) => rows.iter_mut().for_each(strip),
        other => strip(other),
    }
    v
}

#[test]
fn node_commands_print_what_local_commands_print() {
    let tmp = tempfile::tempdir().unwrap();
    let node_dir = tmp.path().join("node");
    let client = Client::new(&tmp.path().join("client"), "alice");
    let allow = tmp.path().join("allow");
    write_allow(&allow, &[(&client.id, "write")]);
    let node = ServedNode::start(
        &node_dir,
        Serve {
            allow: Some(&allow),
            ..Serve::default()
        },
    );
    let sides = Sides {
        local: tmp.path().join("local"),
        client,
        node: node.addr.clone(),
    };

    let small_data = random_bytes(100, 1);
    let medium_data = random_bytes(3_000_000, 2);
    let large_data = random_bytes(4_000_000, 3);
    let piped_data = random_bytes(500_000, 4);
    let small = write_file(tmp.path(), "small.bin", &small_data);
    let medium = write_file(tmp.path(), "medium.bin", &medium_data);
    let large = write_file(tmp.path(), "large.bin", &large_data);
    let piped = write_file(tmp.path(), "piped.bin", &piped_data);
    let big = write_file(tmp.path(), "big.bin", &random_bytes(6_000_000, 5));
    let path = |p: &Path| p.to_str().unwrap().to_string();

    // Puts: every kind of ref, dedup, erasure coding, stdin, resumable.
    let small_ref = text(&sides.same(&["blob", "put", &path(&small)]));
    let medium_put = json(&sides.same(&["blob", "put", &path(&medium), "--json"]));
    assert_eq!(medium_put["kind"], "manifest");
    assert!(medium_put["new_chunks"].as_u64().unwrap() > 0);
    let large_put = json(&sides.same(&[
        "blob",
        "put",
        "--chunking",
        "cdc:16K,64K,256K",
        &path(&large),
        "--json",
    ]));
    assert_eq!(large_put["kind"], "tree");
    // A tree shape of its own reaches the node: the same (deeper) ref on both sides.
    let shaped = json(&sides.same(&[
        "blob",
        "put",
        "--chunking",
        "cdc:16K,64K,256K",
        "--leaf-fanout",
        "4",
        "--internal-fanout",
        "2",
        "--manifest-max-refs",
        "2",
        &path(&large),
        "--json",
    ]));
    assert_ne!(shaped["blob_ref"], large_put["blob_ref"]);
    assert!(
        shaped["depth"].as_u64() > large_put["depth"].as_u64(),
        "{shaped}"
    );
    sides.same(&["blob", "rm", shaped["blob_ref"].as_str().unwrap()]);
    let again = json(&sides.same(&["blob", "put", &path(&medium), "--json"]));
    assert_eq!(
        (again["new_chunks"].as_u64(), again["new_bytes"].as_u64()),
        (Some(0), Some(0))
    );
    let rs_put = json(&sides.same(&[
        "blob",
        "put",
        "--rs",
        "4,6",
        "--name",
        "rs.bin",
        &path(&medium),
        "--json",
    ]));
    assert_eq!(rs_put["encoding"], "rs:4,6");
    let piped_ref = text(&sides.same_with_stdin(&["blob", "put", "-", "--name", "piped"], &piped));
    // A FIFO is read once, like stdin (a node put never seeks it): fed once per side.
    let fifo = tmp.path().join("fifo");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let fed = |run: &dyn Fn() -> Output| {
        let (fifo, bytes) = (fifo.clone(), piped_data.clone());
        let writer = std::thread::spawn(move || {
            let mut writer = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
            std::io::Write::write_all(&mut writer, &bytes).unwrap();
        });
        let out = run();
        assert!(out.status.success(), "{}", show(&out));
        writer.join().unwrap();
        out
    };
    let put_fifo = ["blob", "put", &path(&fifo)];
    let (l, r) = (
        fed(&|| sides.local(&put_fifo)),
        fed(&|| sides.remote(&put_fifo)),
    );
    assert_eq!(l.stdout, r.stdout);
    assert_eq!(text(&l.stdout), piped_ref);
    let resumable = json(&sides.same(&[
        "blob",
        "put",
        "--resumable",
        "--staging-id",
        "res1",
        "--checkpoint-interval",
        "1M",
        &path(&big),
        "--json",
    ]));

    let blobs = [
        (small_ref.clone(), &small_data),
        (
            medium_put["blob_ref"].as_str().unwrap().to_string(),
            &medium_data,
        ),
        (
            large_put["blob_ref"].as_str().unwrap().to_string(),
            &large_data,
        ),
        (
            rs_put["blob_ref"].as_str().unwrap().to_string(),
            &medium_data,
        ),
        (piped_ref, &piped_data),
    ];
    for (i, (blob_ref, data)) in blobs.iter().enumerate() {
        let blob_ref = blob_ref.as_str();
        sides.same(&["blob", "stat", blob_ref]);
        let stat = json(&sides.same(&["blob", "stat", blob_ref, "--json"]));
        let prefix = &stat["blob_id"].as_str().unwrap()[..12];
        sides.same(&["blob", "stat", prefix]);
        sides.same(&["blob", "chunks", blob_ref]);
        sides.same(&["blob", "chunks", prefix, "--json"]);
        assert!(sides.same(&["blob", "get", blob_ref]) == **data);
        assert!(sides.same(&["blob", "get", prefix]) == **data);
        let end = data.len().min(70_123);
        assert!(
            sides.same(&["blob", "cat", blob_ref, "--range", &format!("7..{end}")]) == data[7..end]
        );
        sides.same(&["blob", "cat", prefix, "--range", "0..0"]);
        let (l_out, r_out) = (
            tmp.path().join(format!("l{i}.out")),
            tmp.path().join(format!("r{i}.out")),
        );
        let l = sides.local(&["blob", "get", prefix, "-o", &path(&l_out)]);
        let r = sides.remote(&["blob", "get", prefix, "-o", &path(&r_out)]);
        assert!(
            l.status.success() && r.status.success(),
            "{} / {}",
            show(&l),
            show(&r)
        );
        assert!(l.stdout.is_empty() && r.stdout.is_empty());
        assert!(std::fs::read(&r_out).unwrap() == **data);
        assert!(std::fs::read(&l_out).unwrap() == **data);
        sides.same_failure(&["blob", "cat", blob_ref, "--range", "5..1"], 2);
        sides.same_failure(&["blob", "cat", blob_ref, "--range", "0..999999999"], 2);
    }
    assert_eq!(
        resumable["blob_ref"],
        json(&sides.same(&[
            "blob",
            "stat",
            resumable["blob_ref"].as_str().unwrap(),
            "--json"
        ]))["blob_ref"]
    );

    sides.same(&["blob", "ls"]);
    let (l, r) = (
        json(&sides.local(&["blob", "ls", "--json"]).stdout),
        json(&sides.remote(&["blob", "ls", "--json"]).stdout),
    );
    assert_eq!(l.as_array().unwrap().len(), 6);
    assert_eq!(
        without(l, &["created_unix_ms"]),
        without(r, &["created_unix_ms"])
    );
    // A directory is refused before an upload begins: nothing retried, nothing left staged.
    let dir = path(tmp.path());
    sides.same_failure(&["blob", "put", &dir], 1);
    sides.same_failure(&["blob", "put", "--resumable", &dir], 1);
    let refused = sides.remote(&["blob", "put", &dir]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("is a directory") && !stderr.contains("retry"),
        "{stderr}"
    );
    assert_eq!(text(&sides.same(&["staging", "list", "--json"])), "[]");
    sides.same(&["staging", "list"]);

    // Failures exit alike.
    sides.same_failure(&["blob", "get", "00000000"], 1);
    // Not an id prefix (too short, not hex): a usage error, not "no match".
    sides.same_failure(&["blob", "get", "abc"], 2);
    sides.same_failure(&["blob", "stat", "zzzz"], 2);
    sides.same_failure(&["blob", "stat", "nm1notaref"], 2);
    sides.same_failure(&["blob", "rm", "00000000"], 1);
    sides.same_failure(&["blob", "put", &path(&tmp.path().join("missing.bin"))], 1);
    sides.same_failure(
        &[
            "blob",
            "put",
            "--staging-id",
            "x",
            "--resumable",
            "--rs",
            "4,6",
            &path(&small),
        ],
        2,
    );
    sides.same_failure(&["staging", "abort", "nope"], 1);
    sides.same_failure(&["staging", "resume", "nope", &path(&medium)], 1);
    sides.same_failure(&["staging", "resume", "res1", &path(&big), "--json"], 0);

    // A live upload: listed alike, resumed to the same blob, or aborted.
    sides.kill_uploads("live1", &big);
    let (l, r) = (
        json(&sides.local(&["staging", "list", "--json"]).stdout),
        json(&sides.remote(&["staging", "list", "--json"]).stdout),
    );
    for rows in [&l, &r] {
        let row = &rows.as_array().unwrap()[0];
        assert_eq!(
            (row["staging_id"].as_str(), row["name"].as_str()),
            (Some("live1"), Some("big.bin"))
        );
    }
    let keys = |v: &Value| {
        v[0].as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(keys(&l), keys(&r));
    assert_eq!(l[0]["chunking"], r[0]["chunking"]);
    let resume = ["staging", "resume", "live1", &path(&big), "--json"];
    let (l, r) = (
        json(&sides.local(&resume).stdout),
        json(&sides.remote(&resume).stdout),
    );
    assert!(
        l["resumed_from"].is_u64() && r["resumed_from"].is_u64(),
        "{l} / {r}"
    );
    let volatile = ["resumed_from", "replayed_bytes", "new_chunks", "new_bytes"];
    assert_eq!(without(l.clone(), &volatile), without(r, &volatile));
    assert_eq!(l["blob_ref"], resumable["blob_ref"]);
    sides.same(&["staging", "resume", "live1", &path(&big)]);

    sides.kill_uploads("live2", &big);
    sides.same(&["staging", "abort", "live2"]);
    sides.same_failure(&["staging", "abort", "live2"], 1);
    assert_eq!(text(&sides.same(&["staging", "list", "--json"])), "[]");

    // Unpinning.
    assert!(sides.same(&["blob", "rm", &small_ref]).is_empty());
    sides.same_failure(&["blob", "rm", &small_ref], 1);
    let prefix = &medium_put["blob_id"].as_str().unwrap()[..10];
    assert!(sides.same(&["blob", "rm", prefix]).is_empty());
    sides.same(&["blob", "ls"]);

    assert!(node.stop().success());
    ok(&node_dir, &["fsck"]);
}
