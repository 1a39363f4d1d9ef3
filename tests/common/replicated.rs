//! Nodes for the replicated-channel suites: `count` real `net-mesh serve` processes whose
//! allow files give every other node `read` (members fetch objects from each other) and the
//! operator (plus any extra identities) `admin`, and the operator's client.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::node::*;

pub struct Cluster {
    pub client: Client,
    pub dirs: Vec<PathBuf>,
    allows: Vec<PathBuf>,
    metrics: bool,
    /// `None` while a node is stopped.
    pub nodes: Vec<Option<ServedNode>>,
    /// Every node's `NODE_ADDR`, as first started (a restart keeps it: same identity, port).
    pub addrs: Vec<String>,
}

/// What [`Cluster::cut_move`] left.
pub struct CutMove {
    /// The move's id, as the failed `channel move` named it to resume.
    pub id: String,
    /// The index of the coordinator (killed).
    pub coordinator: usize,
    /// The coordinator's `NODE_ADDR` (the leader when the move began).
    pub leader: String,
    pub source: String,
    pub target: String,
    /// The blob ids acknowledged before the move.
    pub acked: BTreeSet<String>,
}

impl Cluster {
    /// Starts `count` nodes under `root`; `admins` are more identities (node ids) with admin.
    pub fn start(root: &Path, count: usize, admins: &[&str], metrics: bool) -> Cluster {
        let client = Client::new(&root.join("client"), "operator");
        let dirs: Vec<PathBuf> = (0..count).map(|i| root.join(format!("n{i}"))).collect();
        let ids: Vec<String> = dirs.iter().map(|d| node_identity(d)).collect();
        let allows = (0..count)
            .map(|i| {
                let path = root.join(format!("allow{i}"));
                let mut peers: Vec<(&str, &str)> = ids
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| *j != i)
                    .map(|(_, id)| (id.as_str(), "read"))
                    .collect();
                peers.push((&client.id, "admin"));
                peers.extend(admins.iter().map(|a| (*a, "admin")));
                write_allow(&path, &peers);
                path
            })
            .collect();
        let mut cluster = Cluster {
            client,
            dirs,
            allows,
            metrics,
            nodes: Vec::new(),
            addrs: Vec::new(),
        };
        cluster.nodes = (0..count).map(|i| Some(cluster.serve(i, None))).collect();
        cluster.addrs = cluster
            .nodes
            .iter()
            .map(|n| n.as_ref().unwrap().addr.clone())
            .collect();
        cluster
    }

    /// Starts node `i` (on `listen`, default any free port).
    pub fn serve(&self, i: usize, listen: Option<String>) -> ServedNode {
        self.serve_with(i, listen, &[])
    }

    /// [`Cluster::serve`] with extra environment for the node, e.g. a failpoint.
    pub fn serve_with(&self, i: usize, listen: Option<String>, env: &[(&str, &str)]) -> ServedNode {
        ServedNode::start(
            &self.dirs[i],
            Serve {
                allow: Some(&self.allows[i]),
                listen,
                metrics: self.metrics,
                env: env.to_vec(),
                ..Serve::default()
            },
        )
    }

    /// `channel create CHANNEL --replicas …` on nodes `members` (the first one is `--node`);
    /// returns the leader's `NODE_ADDR`.
    pub fn replicate(&self, channel: &str, members: &[usize]) -> String {
        let others: Vec<&str> = members[1..]
            .iter()
            .map(|i| self.addrs[*i].as_str())
            .collect();
        let created = self.client.json(
            &self.addrs[members[0]],
            &[
                "channel",
                "create",
                channel,
                "--replicas",
                &others.join(","),
                "--json",
            ],
        );
        assert_eq!(created["replicated"], true, "{created}");
        created["leader"].as_str().unwrap().to_string()
    }

    /// `channel move CHANNEL --from FROM --to TO --json` through `via`; asserts it reported
    /// every phase, in order. Returns the move's id.
    pub fn move_replica(&self, channel: &str, via: &str, from: &str, to: &str) -> u64 {
        let moved = self.client.json(
            via,
            &[
                "channel", "move", channel, "--from", from, "--to", to, "--json",
            ],
        );
        let phases = phases_of(&moved);
        assert_eq!(
            phases,
            [
                "learner_added",
                "caught_up",
                "cut_over",
                "left",
                "cleaned_up"
            ],
            "{moved}"
        );
        moved["id"].as_u64().unwrap()
    }

    /// `blob --channel CHANNEL put --json FILE` through `node`; returns the blob id.
    pub fn put(&self, node: &str, channel: &str, file: &Path) -> String {
        let v = self.client.json(
            node,
            &[
                "blob",
                "--channel",
                channel,
                "put",
                "--json",
                file.to_str().unwrap(),
            ],
        );
        v["blob_id"].as_str().unwrap().to_string()
    }

    /// The blob ids pinned in `channel` on `node`.
    pub fn pinned(&self, node: &str, channel: &str) -> BTreeSet<String> {
        let rows = self
            .client
            .json(node, &["blob", "--channel", channel, "ls", "--json"]);
        rows.as_array()
            .unwrap()
            .iter()
            .map(|r| r["blob_id"].as_str().unwrap().to_string())
            .collect()
    }

    /// Stops node `i` (SIGTERM, exit 0) and starts it again on its port with `env`.
    pub fn restart_with(&mut self, i: usize, env: &[(&str, &str)]) {
        let stopped = self.nodes[i].take().unwrap();
        let port = stopped.host_port().to_string();
        assert!(stopped.stop().success());
        self.nodes[i] = Some(self.serve_with(i, Some(port), env));
    }

    /// `channel`'s leader as `node` sees it, once it is not `old` (waits up to 90 s).
    pub fn leader_other_than(&self, channel: &str, node: &str, old: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let out = self
                .client
                .run(node, &["channel", "status", channel, "--json"]);
            if out.status.success() {
                let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
                if let Some(leader) = v["leader"].as_str()
                    && leader != old
                {
                    return leader.to_string();
                }
            }
            assert!(Instant::now() < deadline, "no new leader: {out:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `channel move CHANNEL --from FROM --to TO --id ID --abandon --json` through `via`;
    /// asserts its one phase, `abandoned`, and returns that phase's detail.
    pub fn abandon(&self, channel: &str, via: &str, from: &str, to: &str, id: &str) -> String {
        let out = self.client.json(
            via,
            &[
                "channel",
                "move",
                channel,
                "--from",
                from,
                "--to",
                to,
                "--id",
                id,
                "--abandon",
                "--json",
            ],
        );
        let phases = out["phases"].as_array().unwrap();
        assert_eq!(phases.len(), 1, "{out}");
        assert_eq!(phases[0]["phase"], "abandoned", "{out}");
        phases[0]["detail"].as_str().unwrap().to_string()
    }

    /// A move of `channel` cut off before its cutover: nodes 0..3 run the channel with three
    /// acknowledged pins (files under `root`, from `seed`), node 3 (restarted with
    /// `target_env` first) is the target, and whichever member leads coordinates the move and
    /// is killed right after `learner_added` (failpoint `move.coordinator.after_phase:1`). The
    /// other members still run with that failpoint armed; node `coordinator` is stopped.
    pub fn cut_move(
        &mut self,
        root: &Path,
        channel: &str,
        target_env: &[(&str, &str)],
        seed: u64,
    ) -> CutMove {
        for i in 0..3 {
            self.restart_with(
                i,
                &[("NET_MESH_FAILPOINT", "move.coordinator.after_phase:1")],
            );
        }
        if !target_env.is_empty() {
            self.restart_with(3, target_env);
        }
        let leader = self.replicate(channel, &[0, 1, 2]);
        let coordinator = (0..3).find(|i| self.addrs[*i] == leader).unwrap();
        let a = (0..3).find(|i| *i != coordinator).unwrap();
        let (source, target) = (self.addrs[a].clone(), self.addrs[3].clone());
        let mut acked = BTreeSet::new();
        for i in 0..3u64 {
            let file = super::write_file(
                root,
                &format!("f{i}"),
                &super::random_bytes(40_000, seed + i),
            );
            acked.insert(self.put(&leader, channel, &file));
        }
        let cut = self.client.run(
            &leader,
            &[
                "channel", "move", channel, "--from", &source, "--to", &target, "--json",
            ],
        );
        assert!(!cut.status.success(), "the move must not finish: {cut:?}");
        let status = self.nodes[coordinator].take().unwrap().wait();
        assert!(killed(status), "the coordinator was not killed: {status:?}");
        CutMove {
            id: resume_id(&String::from_utf8_lossy(&cut.stderr)),
            coordinator,
            leader,
            source,
            target,
            acked,
        }
    }

    /// Waits (up to 90 s) until each of `members` (`NODE_ADDR`s) lists exactly `members` in
    /// `channel status` and holds exactly the pins `acked` (blob ids).
    pub fn wait_for_members(&self, channel: &str, members: &[&str], acked: &BTreeSet<String>) {
        let want: BTreeSet<String> = members.iter().map(|m| m.to_string()).collect();
        for member in members {
            let deadline = Instant::now() + Duration::from_secs(90);
            loop {
                let status = self
                    .client
                    .json(member, &["channel", "status", channel, "--json"]);
                let seen: BTreeSet<String> = status["members"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|m| m["addr"].as_str().unwrap().to_string())
                    .collect();
                if seen == want && self.pinned(member, channel) == *acked {
                    break;
                }
                assert!(Instant::now() < deadline, "{member}: members {seen:?}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// Stops every running node with SIGTERM (each must exit 0), then checks every store
    /// with `fsck`.
    pub fn stop_and_fsck(&mut self) {
        for node in self.nodes.iter_mut() {
            if let Some(node) = node.take() {
                assert!(node.stop().success());
            }
        }
        for dir in &self.dirs {
            super::ok(dir, &["fsck"]);
        }
    }
}

/// The `HOST:PORT` of a `NODE_ADDR`.
pub fn listen_of(node_addr: &str) -> String {
    node_addr.split_once('@').unwrap().1.to_string()
}

/// The move id a failed `channel move` names to resume (`--id N` in what it printed).
pub fn resume_id(said: &str) -> String {
    said.split_once("--id ")
        .map(|(_, rest)| {
            rest.chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
        })
        .filter(|id| !id.is_empty())
        .unwrap_or_else(|| panic!("no move id to resume in: {said}"))
}

/// The phases a `channel move --json` output reports, in order.
pub fn phases_of(moved: &serde_json::Value) -> Vec<String> {
    moved["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["phase"].as_str().unwrap().to_string())
        .collect()
}
