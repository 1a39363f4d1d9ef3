//! docs/FORMAT.md section 1 and the codec constants describe the same bytes.
// Helpers here are test code too (clippy only exempts #[test] fns themselves).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
use net_mesh_segments::codec::*;

const FORMAT_MD: &str = include_str!("../../docs/FORMAT.md");

/// Rows (offset, size, field) of the first table after the `### {heading}` line in section 1.
fn table(heading: &str) -> Vec<(usize, usize, String)> {
    let section = FORMAT_MD
        .split("\n## 1. Segment files")
        .nth(1)
        .and_then(|s| s.split("\n## 2.").next())
        .expect("section 1 present");
    let after = section
        .split(&format!("### {heading}"))
        .nth(1)
        .unwrap_or_else(|| panic!("heading {heading} missing"));
    let mut rows = Vec::new();
    let mut in_table = false;
    for line in after.lines() {
        let line = line.trim();
        if !line.starts_with('|') {
            if in_table {
                break;
            }
            continue;
        }
        in_table = true;
        let cells: Vec<_> = line.trim_matches('|').split('|').map(str::trim).collect();
        if let (Ok(offset), Ok(size)) = (cells[0].parse(), cells[1].parse()) {
            rows.push((offset, size, cells[2].to_owned()));
        }
    }
    rows
}

fn check(heading: &str, consts: &[(&str, usize, usize)], total: usize) {
    let rows = table(heading);
    let want: Vec<_> = consts
        .iter()
        .map(|(f, o, s)| (*o, *s, f.to_string()))
        .collect();
    assert_eq!(
        rows, want,
        "{heading}: FORMAT.md table and constants differ"
    );
    let mut next = 0;
    for (offset, size, field) in &rows {
        assert_eq!(*offset, next, "{heading}: {field} not contiguous");
        next += size;
    }
    assert_eq!(
        next, total,
        "{heading}: sizes do not add up to the header length"
    );
    assert!(FORMAT_MD.contains(&format!("### {heading}")));
}

#[test]
fn file_header_table_matches_constants() {
    check(
        "File header (32 bytes)",
        &[
            ("magic", FILE_MAGIC_OFFSET, FILE_MAGIC_LEN),
            ("version", FILE_VERSION_OFFSET, FILE_VERSION_LEN),
            ("reserved", FILE_RESERVED_OFFSET, FILE_RESERVED_LEN),
            ("segment_id", FILE_SEGMENT_ID_OFFSET, FILE_SEGMENT_ID_LEN),
            ("checksum", FILE_CHECKSUM_OFFSET, FILE_CHECKSUM_LEN),
        ],
        FILE_HEADER_LEN,
    );
    assert_eq!(FILE_HEADER_LEN, 32);
    assert!(FORMAT_MD.contains(&format!(
        "ASCII `{}`",
        std::str::from_utf8(&FILE_MAGIC).unwrap()
    )));
}

#[test]
fn record_header_table_matches_constants() {
    check(
        "Record header (52 bytes), then the payload",
        &[
            ("magic", RECORD_MAGIC_OFFSET, RECORD_MAGIC_LEN),
            ("version", RECORD_VERSION_OFFSET, RECORD_VERSION_LEN),
            ("kind", RECORD_KIND_OFFSET, RECORD_KIND_LEN),
            ("flags", RECORD_FLAGS_OFFSET, RECORD_FLAGS_LEN),
            (
                "payload_len",
                RECORD_PAYLOAD_LEN_OFFSET,
                RECORD_PAYLOAD_LEN_LEN,
            ),
            ("id", RECORD_ID_OFFSET, RECORD_ID_LEN),
            ("checksum", RECORD_CHECKSUM_OFFSET, RECORD_CHECKSUM_LEN),
        ],
        RECORD_HEADER_LEN,
    );
    assert_eq!(RECORD_HEADER_LEN, 52);
    assert!(FORMAT_MD.contains(&format!(
        "ASCII `{}`",
        std::str::from_utf8(&RECORD_MAGIC).unwrap()
    )));
    assert!(FORMAT_MD.contains(&format!("= {MAX_PAYLOAD_LEN} (64 MiB)")));
    assert!(FORMAT_MD.contains(&format!("Version byte: `{FORMAT_VERSION}`")));
}
