//! Real `net-mesh serve` processes on 127.0.0.1 and the clients that talk to them through
//! `--node`, for the storage-node suites.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Output, Stdio};

use super::*;

/// A `net-mesh serve` process.
pub struct ServedNode {
    pub child: Child,
    /// Its `NODE_ADDR` line: `NODEID@127.0.0.1:PORT`.
    pub addr: String,
    pub dir: PathBuf,
    /// Where its stderr goes.
    pub log: PathBuf,
    /// Kept open so the node never writes to a closed pipe.
    _stdout: BufReader<ChildStdout>,
}

/// Options of a served node.
#[derive(Default, Clone)]
pub struct Serve<'a> {
    /// `HOST:PORT` to listen on (`127.0.0.1:0` when `None`).
    pub listen: Option<String>,
    pub allow: Option<&'a Path>,
    pub metrics: bool,
    /// Extra environment, e.g. a failpoint.
    pub env: Vec<(&'a str, &'a str)>,
    /// Extra `serve` arguments, e.g. `--bandwidth 8M`.
    pub args: Vec<&'a str>,
}

impl ServedNode {
    /// Starts a node on `dir` (its identity `default`, created on first use) and waits for its
    /// NODE_ADDR line.
    pub fn start(dir: &Path, opts: Serve<'_>) -> ServedNode {
        let log = dir.with_extension(format!(
            "log{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        let mut c = cmd(dir);
        c.arg("serve")
            .arg("--listen")
            .arg(opts.listen.as_deref().unwrap_or("127.0.0.1:0"));
        if let Some(allow) = opts.allow {
            c.arg("--allow").arg(allow);
        }
        if opts.metrics {
            c.arg("--metrics").arg("127.0.0.1:0");
        }
        c.args(&opts.args);
        for (k, v) in &opts.env {
            c.env(k, v);
        }
        let mut child = c
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn net-mesh serve");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let addr = line.trim().to_string();
        assert!(
            addr.contains('@'),
            "serve printed {line:?}; its log: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        ServedNode {
            child,
            addr,
            dir: dir.to_path_buf(),
            log,
            _stdout: stdout,
        }
    }

    /// The node id part of its address.
    pub fn id(&self) -> &str {
        self.addr.split('@').next().unwrap()
    }

    /// `127.0.0.1:PORT`.
    pub fn host_port(&self) -> &str {
        self.addr.split('@').nth(1).unwrap()
    }

    /// Its stderr so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then waits; returns the exit status.
    pub fn stop(mut self) -> ExitStatus {
        signal(&self.child, "TERM");
        self.child.wait().unwrap()
    }

    /// Waits for the node to end by itself (an armed failpoint).
    pub fn wait(mut self) -> ExitStatus {
        self.child.wait().unwrap()
    }
}

impl Drop for ServedNode {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs `net-mesh serve ARGS` on the data dir `dir`, which must exit without serving (the test
/// fails if it prints a `NODE_ADDR`); returns its exit code and stderr.
pub fn serve_refused<S: AsRef<std::ffi::OsStr>>(dir: &Path, args: &[S]) -> (Option<i32>, String) {
    let mut child = cmd(dir)
        .arg("serve")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    if !line.is_empty() {
        let _ = child.kill();
        let _ = child.wait();
        panic!("serve served as {line:?}");
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Sends signal `sig` (`TERM`, `INT`, …) to a child process.
pub fn signal(child: &Child, sig: &str) {
    let status = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success(), "kill -{sig} {}", child.id());
}

/// True when `status` is a death by SIGKILL.
pub fn killed(status: ExitStatus) -> bool {
    status.signal() == Some(libc::SIGKILL)
}

/// A client: a data dir holding identity `name`.
#[derive(Clone)]
pub struct Client {
    pub dir: PathBuf,
    pub name: String,
    /// Its node id (what allow files name).
    pub id: String,
}

impl Client {
    /// Generates identity `name` in `dir`.
    pub fn new(dir: &Path, name: &str) -> Client {
        let id = ok_text(dir, &["identity", "generate", name]);
        Client {
            dir: dir.to_path_buf(),
            name: name.to_string(),
            id,
        }
    }

    /// The identity `default` of the node whose data dir is `node_dir` (a node's own identity
    /// is admin on it), as a client.
    pub fn node_admin(node_dir: &Path) -> Client {
        Client {
            id: node_identity(node_dir),
            dir: node_dir.to_path_buf(),
            name: "default".into(),
        }
    }

    /// Its public key, as `identity show NAME --json` prints it.
    pub fn public_key(&self) -> String {
        let out = ok(
            &self.dir,
            &[
                "--identity",
                &self.name,
                "identity",
                "show",
                &self.name,
                "--json",
            ],
        );
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        v["public_key"].as_str().unwrap().to_string()
    }

    /// `net-mesh --data-dir DIR --identity NAME --node NODE`.
    pub fn cmd(&self, node: &str) -> Command {
        let mut c = cmd(&self.dir);
        c.arg("--identity")
            .arg(&self.name)
            .arg("--node")
            .arg(node)
            .stdin(Stdio::null());
        c
    }

    pub fn run(&self, node: &str, args: &[&str]) -> Output {
        self.cmd(node).args(args).output().unwrap()
    }

    /// Runs and asserts success; returns stdout.
    pub fn ok(&self, node: &str, args: &[&str]) -> Vec<u8> {
        let out = self.run(node, args);
        assert!(
            out.status.success(),
            "net-mesh --node {node} {args:?} failed ({:?}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    pub fn ok_text(&self, node: &str, args: &[&str]) -> String {
        String::from_utf8(self.ok(node, args))
            .unwrap()
            .trim()
            .to_string()
    }

    pub fn json(&self, node: &str, args: &[&str]) -> serde_json::Value {
        serde_json::from_slice(&self.ok(node, args)).unwrap()
    }
}

/// Writes an allow file of `(node id, role)` lines.
pub fn write_allow(path: &Path, peers: &[(&str, &str)]) {
    let mut text = String::from("# written by the test\n");
    for (id, role) in peers {
        text.push_str(&format!("{id} {role}\n"));
    }
    std::fs::write(path, text).unwrap();
}

/// The node identity's id of data dir `dir` (generated now if it does not exist yet).
pub fn node_identity(dir: &Path) -> String {
    let out = run(dir, &["identity", "show", "default", "--json"]);
    if out.status.success() {
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        return v["node_id"].as_str().unwrap().to_string();
    }
    ok_text(dir, &["identity", "generate", "default"])
}

/// The segment files under a store's data dir.
pub fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                todo.push(path);
            } else if path.extension().is_some_and(|e| e == "nms") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// Flips one byte of the stored copy of `needle` (bytes of a chunk's payload) in a segment
/// file of the (stopped) store in `dir`. Panics if the bytes are not found.
pub fn corrupt_stored_bytes(dir: &Path, needle: &[u8]) {
    for path in segment_files(dir) {
        let mut bytes = std::fs::read(&path).unwrap();
        if let Some(at) = bytes.windows(needle.len()).position(|w| w == needle) {
            bytes[at + needle.len() / 2] ^= 0x40;
            std::fs::write(&path, bytes).unwrap();
            return;
        }
    }
    panic!("the bytes are in no segment file of {}", dir.display());
}

/// `GET /metrics` from the node's metrics endpoint (named in its log).
pub fn scrape(node: &ServedNode) -> String {
    let log = node.log_text();
    let at = log
        .split("metrics on http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_else(|| panic!("no metrics address in the log: {log}"));
    let mut s = std::net::TcpStream::connect(at).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    answer
}
