//! `net-mesh serve --allow FILE` (a real process) refuses an allow file that lists a node id
//! twice (naming both lines), one with an id that is not hex ("not hex", not a length error),
//! and one that is not UTF-8 (its line), each a usage error (exit 2) like any bad line, and
//! serves nobody; the data dir stays empty (the file is read before the identity and the store
//! are created). A UTF-8 byte order mark at the start of the file is skipped: the peer on the
//! first line is served.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::ffi::OsStr;

use common::node::{Client, Serve, ServedNode, serve_refused};
use common::*;

#[test]
fn serve_refuses_a_bad_allow_file_with_its_line_and_skips_a_bom() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    let client = Client::new(&tmp.path().join("client"), "operator");
    let id = client.id.clone();

    let cases: Vec<(&str, Vec<u8>, &[&str])> = vec![
        (
            "twice",
            format!("# peers\n{id} read\n\n{id} admin\n").into_bytes(),
            &["line 4", "listed twice", "lines 2 and 4"],
        ),
        (
            "not-hex",
            format!("{id} read\nnonsense write\n").into_bytes(),
            &["line 2", "\"nonsense\" is not hex"],
        ),
        (
            "not-utf8",
            [
                format!("{id} read\n# fine\n").as_bytes(),
                b"\xff\xfe admin\n",
            ]
            .concat(),
            &["line 3", "not UTF-8"],
        ),
    ];
    for (name, text, said) in cases {
        let allow = write_file(tmp.path(), name, &text);
        let (code, stderr) = serve_refused(
            &dir,
            &[
                OsStr::new("--listen"),
                OsStr::new("127.0.0.1:0"),
                OsStr::new("--allow"),
                allow.as_os_str(),
            ],
        );
        assert_eq!(code, Some(2), "{name}: {stderr}");
        for s in said {
            assert!(stderr.contains(s), "{name}: no {s:?} in {stderr}");
        }
        // Refused before anything was created: no identity, no store.
        let created: Vec<_> = std::fs::read_dir(&dir)
            .map(|entries| entries.map(|e| e.unwrap().file_name()).collect())
            .unwrap_or_default();
        assert!(created.is_empty(), "{name}: the data dir got {created:?}");
    }

    let bom = write_file(
        tmp.path(),
        "bom",
        &[
            b"\xef\xbb\xbf".as_slice(),
            format!("{id} write\n").as_bytes(),
        ]
        .concat(),
    );
    let node = ServedNode::start(
        &dir,
        Serve {
            allow: Some(&bom),
            ..Serve::default()
        },
    );
    client.ok(&node.addr, &["status"]);
    assert!(node.stop().success());
}
