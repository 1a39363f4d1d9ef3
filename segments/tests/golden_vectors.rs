//! Golden vectors under tests/golden/: encoding produces exactly the checked-in bytes, decoding
//! them gives the values back, and the corrupt fixtures fail with the documented errors.
//! Regenerate (only after a deliberate format change + version bump): NET_MESH_BLESS=1.
// Helpers here are test code too (clippy only exempts #[test] fns themselves).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use net_mesh_segments::codec::{FileHeader, FrameError, RECORD_HEADER_LEN};
use net_mesh_segments::{
    RecordHeader, RecordKind, RecordLoc, SegmentConfig, SegmentError, Segments,
    decode_record_header, encode_record_header, segment_file_name,
};

const PAYLOAD: &[u8] = b"hello, net-mesh";
const SEGMENT: u64 = 7;

fn golden(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name)
}

/// Hex with whitespace and `#` comments ignored.
fn read_hex(name: &str) -> Vec<u8> {
    let text = std::fs::read_to_string(golden(name)).unwrap();
    let digits: String = text
        .lines()
        .map(|l| l.split('#').next().unwrap())
        .flat_map(|l| l.chars().filter(|c| !c.is_whitespace()))
        .collect();
    assert!(
        digits.len().is_multiple_of(2),
        "{name}: odd number of hex digits"
    );
    (0..digits.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&digits[i..i + 2], 16).unwrap())
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn bless(name: &str, comment: &str, fields: &[(&str, &[u8])]) {
    let mut text = format!("# {comment}\n");
    for (field, bytes) in fields {
        for chunk in bytes.chunks(16) {
            text.push_str(&format!("{:<48} # {field}\n", hex(chunk)));
        }
    }
    std::fs::write(golden(name), text).unwrap();
}

fn record_header() -> RecordHeader {
    RecordHeader {
        kind: RecordKind::Chunk,
        payload_len: PAYLOAD.len() as u32,
        id: *blake3::hash(PAYLOAD).as_bytes(),
    }
}

#[test]
fn bless_if_asked() {
    if std::env::var_os("NET_MESH_BLESS").is_none() {
        return;
    }
    let fh = FileHeader { segment: SEGMENT }.encode();
    bless(
        "file_header_seg7.hex",
        "segment file header, segment id 7",
        &[
            ("magic", &fh[0..8]),
            ("version", &fh[8..9]),
            ("reserved", &fh[9..16]),
            ("segment_id", &fh[16..24]),
            ("checksum", &fh[24..32]),
        ],
    );
    let rh = encode_record_header(&record_header());
    let split = |h: &[u8; RECORD_HEADER_LEN]| -> Vec<(&'static str, Vec<u8>)> {
        vec![
            ("magic", h[0..4].to_vec()),
            ("version", h[4..5].to_vec()),
            ("kind", h[5..6].to_vec()),
            ("flags", h[6..8].to_vec()),
            ("payload_len", h[8..12].to_vec()),
            ("id", h[12..44].to_vec()),
            ("checksum", h[44..52].to_vec()),
        ]
    };
    let write_record = |name: &str, comment: &str, h: &[u8; RECORD_HEADER_LEN]| {
        let parts = split(h);
        let mut fields: Vec<(&str, &[u8])> =
            parts.iter().map(|(n, b)| (*n, b.as_slice())).collect();
        fields.push(("payload", PAYLOAD));
        bless(name, comment, &fields);
    };
    write_record(
        "record_chunk_hello.hex",
        "Chunk record, id = BLAKE3(\"hello, net-mesh\"), payload \"hello, net-mesh\"",
        &rh,
    );
    let mut bad_sum = rh;
    bad_sum[12] ^= 0x01;
    write_record(
        "record_bad_checksum.hex",
        "corrupt: first id byte flipped (checksum mismatch)",
        &bad_sum,
    );
    let mut bad_version = rh;
    bad_version[4] = 2;
    write_record(
        "record_bad_version.hex",
        "corrupt: version byte 2 (unsupported version)",
        &bad_version,
    );
}

#[test]
fn file_header_golden_matches_encoder_and_decoder() {
    let bytes = read_hex("file_header_seg7.hex");
    assert_eq!(bytes, FileHeader { segment: SEGMENT }.encode());
    assert_eq!(
        FileHeader::decode(&bytes),
        Ok(FileHeader { segment: SEGMENT })
    );
    assert_eq!(&bytes[..8], b"NMESHSEG");
    assert_eq!(&bytes[16..24], &7u64.to_le_bytes());
}

#[test]
fn record_golden_matches_encoder_and_decoder() {
    let bytes = read_hex("record_chunk_hello.hex");
    assert_eq!(bytes.len(), RECORD_HEADER_LEN + PAYLOAD.len());
    assert_eq!(
        &bytes[..RECORD_HEADER_LEN],
        &encode_record_header(&record_header())
    );
    assert_eq!(&bytes[RECORD_HEADER_LEN..], PAYLOAD);
    assert_eq!(decode_record_header(&bytes).unwrap(), record_header());
    // Spot-check the documented layout independently of the encoder.
    assert_eq!(&bytes[..4], b"NMRC");
    assert_eq!(bytes[4], 1);
    assert_eq!(bytes[5], 1);
    assert_eq!(&bytes[8..12], &(PAYLOAD.len() as u32).to_le_bytes());
    assert_eq!(&bytes[12..44], blake3::hash(PAYLOAD).as_bytes());
    assert_eq!(&bytes[44..52], &blake3::hash(&bytes[..44]).as_bytes()[..8]);
}

#[test]
fn corrupt_record_goldens_fail_with_documented_errors() {
    let err = decode_record_header(&read_hex("record_bad_checksum.hex")).unwrap_err();
    assert!(
        matches!(
            err,
            SegmentError::Frame(FrameError::ChecksumMismatch { .. })
        ),
        "{err}"
    );
    let err = decode_record_header(&read_hex("record_bad_version.hex")).unwrap_err();
    assert!(
        matches!(
            err,
            SegmentError::Frame(FrameError::UnsupportedVersion { found: 2 })
        ),
        "{err}"
    );
}

#[test]
fn golden_segment_file_opens_reads_and_scans() {
    let dir = tempfile::tempdir().unwrap();
    let mut file = read_hex("file_header_seg7.hex");
    file.extend(read_hex("record_chunk_hello.hex"));
    std::fs::write(dir.path().join(segment_file_name(SEGMENT)), &file).unwrap();
    let committed: BTreeMap<_, _> = [(SEGMENT, file.len() as u64)].into();
    let segs = Segments::open(dir.path(), SegmentConfig::default(), &committed).unwrap();
    let loc = RecordLoc {
        segment: SEGMENT,
        offset: 32,
        payload_len: PAYLOAD.len() as u32,
    };
    assert_eq!(
        segs.read(loc, RecordKind::Chunk, blake3::hash(PAYLOAD).as_bytes())
            .unwrap(),
        PAYLOAD
    );
    let items: Vec<_> = segs
        .scan(SEGMENT, file.len() as u64)
        .unwrap()
        .into_iter()
        .map(|i| i.unwrap())
        .collect();
    assert_eq!(
        items,
        vec![(loc, RecordKind::Chunk, *blake3::hash(PAYLOAD).as_bytes())]
    );
}
