//! docs/FORMAT.md §3.4 (channels and pins) agrees with the code: the documented tables add up to
//! the encoded lengths, the golden vectors are what the encoders write, and the channel-name
//! rule refuses what the section says it refuses.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use net_mesh_engine::BlobRef;
use net_mesh_engine::index::{
    CHANNEL_ENTRY_LEN, ChannelEntry, DEFAULT_CHANNEL, MAX_CHANNEL_NAME, PIN_HEADER_LEN, Pin,
    check_channel_name,
};

const FORMAT_MD: &str = include_str!("../../docs/FORMAT.md");

fn section() -> &'static str {
    FORMAT_MD
        .split("### 3.4 Channels and pins")
        .nth(1)
        .unwrap()
        .split("### 3.5")
        .next()
        .unwrap()
}

/// The rows of the offset table that follows `marker`, as (offset, size) while both are numbers.
fn numeric_rows(after: &str) -> Vec<(usize, usize)> {
    let table = section().split(after).nth(1).unwrap();
    table
        .lines()
        .skip_while(|l| !l.starts_with("| offset"))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            Some((cells[1].parse().ok()?, cells[2].parse().ok()?))
        })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The backquoted hex after the `):` that ends the golden vector's description `label`.
fn golden_after(label: &str) -> String {
    let rest = section().split(label).nth(1).unwrap();
    let quoted = rest.split("):").nth(1).unwrap().split('`').nth(1).unwrap();
    quoted.split_whitespace().collect()
}

#[test]
fn channel_entry_table_and_golden_vector_match_the_encoder() {
    let rows = numeric_rows("**`channels_v1`**");
    let mut next = 0;
    for (offset, size) in &rows {
        assert_eq!(*offset, next);
        next = offset + size;
    }
    assert_eq!(next, CHANNEL_ENTRY_LEN);
    let entry = ChannelEntry {
        created_unix_ms: 1_764_201_600_000,
    };
    let bytes = entry.encode();
    assert_eq!(
        hex(&bytes),
        golden_after("Golden vector (created 1764201600000")
    );
    assert_eq!(ChannelEntry::decode("x", &bytes).unwrap(), entry);
    assert!(ChannelEntry::decode("x", &bytes[..8]).is_err());
    let mut bad = bytes.clone();
    bad[0] = 2;
    assert!(ChannelEntry::decode("x", &bad).is_err());
}

#[test]
fn pin_row_table_and_golden_vector_match_the_encoder() {
    let rows = numeric_rows("**`pins_v2`**");
    let mut next = 0;
    for (offset, size) in &rows {
        assert_eq!(*offset, next);
        next = offset + size;
    }
    assert_eq!(next, PIN_HEADER_LEN);
    let blob_ref = BlobRef::Small {
        hash: [7; 32],
        size: 3,
    };
    let pin = Pin {
        channel: "photos".into(),
        blob_ref: blob_ref.clone(),
        name: "a".into(),
        created_unix_ms: 9,
    };
    let bytes = pin.encode();
    let head = golden_after("Golden vector of the fixed part and name");
    assert_eq!(hex(&bytes[..PIN_HEADER_LEN + 1]), head);
    assert_eq!(&bytes[PIN_HEADER_LEN + 1..], blob_ref.encode().as_slice());
    // The channel is in the key, not in the bytes: decoding takes it from the key.
    assert_eq!(Pin::decode("photos", &[0; 32], &bytes).unwrap(), pin);
}

#[test]
fn channel_names_follow_the_documented_rule() {
    assert!(section().contains(&format!("`MAX_CHANNEL_NAME` = {MAX_CHANNEL_NAME}")));
    for good in [
        DEFAULT_CHANNEL,
        "a",
        "photos.2026",
        "x-y_z",
        "0",
        &"a".repeat(MAX_CHANNEL_NAME),
    ] {
        assert_eq!(check_channel_name(good), Ok(()), "{good:?}");
    }
    for bad in [
        "",
        "*",
        ".hidden",
        "Photos",
        "a b",
        "a/b",
        "é",
        &"a".repeat(MAX_CHANNEL_NAME + 1),
    ] {
        let e = check_channel_name(bad).unwrap_err();
        assert_eq!(e.name, bad);
    }
}
