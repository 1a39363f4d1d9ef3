//! docs/FORMAT.md §3.8 (fsck data cursor) agrees with the code's layout and golden bytes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use net_mesh_engine::fsck::{DataCursor, FSCK_CURSOR_LEN};

const FORMAT_MD: &str = include_str!("../../docs/FORMAT.md");

#[test]
fn documented_cursor_table_adds_up_to_the_encoded_length() {
    let section = FORMAT_MD
        .split("### 3.8 fsck data cursor")
        .nth(1)
        .unwrap()
        .split("###")
        .next()
        .unwrap();
    assert!(section.contains(&format!("({FSCK_CURSOR_LEN} bytes)")));
    let mut next = 0usize;
    for line in section
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| offset"))
    {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let offset: usize = cells[1].parse().unwrap();
        let size: usize = cells[2].parse().unwrap();
        assert_eq!(offset, next, "rows are contiguous: {line}");
        next = offset + size;
    }
    assert_eq!(next, FSCK_CURSOR_LEN);
}

#[test]
fn documented_lost_refs_table_adds_up_to_the_encoded_length() {
    let section = FORMAT_MD
        .split("### 3.10 Lost references")
        .nth(1)
        .unwrap()
        .split("##")
        .next()
        .unwrap();
    let len = net_mesh_engine::index::LOST_REFS_LEN;
    assert!(section.contains(&format!("({len} bytes)")));
    let mut next = 0usize;
    for line in section
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| offset"))
    {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let offset: usize = cells[1].parse().unwrap();
        assert_eq!(offset, next);
        next = offset + cells[2].parse::<usize>().unwrap();
    }
    assert_eq!(next, len);
}

#[test]
fn cursor_golden_bytes_round_trip() {
    let c = DataCursor {
        segment: 1,
        offset: 2,
        passes_completed: 3,
        updated_unix_ms: 4,
    };
    let bytes = c.encode();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        hex,
        "01\
         0100000000000000\
         0200000000000000\
         0300000000000000\
         0400000000000000"
    );
    assert_eq!(DataCursor::decode(&bytes), Some(c));
    assert_eq!(DataCursor::decode(&bytes[..32]), None);
    let mut bad = bytes.clone();
    bad[0] = 2;
    assert_eq!(DataCursor::decode(&bad), None);
}
