//! The finished-upload record (docs/FORMAT.md §4.5): its layout constants agree with the
//! document, a golden encoding, and strict decoding of damaged values.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use net_mesh_engine::BlobRef;
use net_mesh_staging::table::{FINISHED_HEADER_LEN, FINISHED_VERSION, FinishedUpload};

const FORMAT_MD: &str = include_str!("../../docs/FORMAT.md");

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn the_finished_record_matches_its_documented_layout() {
    let section = FORMAT_MD
        .split("### 4.5 Finished record")
        .nth(1)
        .expect("FORMAT.md has §4.5");
    assert!(
        section.starts_with(&format!(" ({FINISHED_HEADER_LEN} + BlobRef bytes)")),
        "FORMAT.md §4.5 title must give the fixed length {FINISHED_HEADER_LEN}"
    );
    for row in [
        format!("| 0 | 1 | version = {FINISHED_VERSION} |"),
        "| 1 | 8 | finished, Unix milliseconds |".to_string(),
        "| 9 | 8 | chunk count of the blob |".to_string(),
        format!("| {FINISHED_HEADER_LEN} | rest | the BlobRef wire bytes (§2) |"),
    ] {
        assert!(section.contains(&row), "FORMAT.md §4.5 lacks {row:?}");
    }

    let record = FinishedUpload {
        finished_unix_ms: 0x0102_0304_0506_0708,
        chunks: 3,
        blob_ref: BlobRef::Small {
            hash: [0xAB; 32],
            size: 5,
        },
    };
    let bytes = record.encode();
    let mut want = String::from("01");
    want += "0807060504030201";
    want += "0300000000000000";
    want += &hex(&record.blob_ref.encode());
    assert_eq!(hex(&bytes), want);
    assert_eq!(FinishedUpload::decode(&bytes).unwrap(), record);

    // Damaged values are typed errors, never panics.
    let mut bad_version = bytes.clone();
    bad_version[0] = 2;
    assert!(FinishedUpload::decode(&bad_version).is_err());
    for cut in 0..bytes.len() {
        assert!(
            FinishedUpload::decode(&bytes[..cut]).is_err(),
            "cut at {cut}"
        );
    }
    let mut trailing = bytes.clone();
    trailing.push(0);
    assert!(FinishedUpload::decode(&trailing).is_err());
}
