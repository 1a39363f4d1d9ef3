//! Fuzz-style: arbitrary bytes into the pure decoders never panic, and whatever decodes
//! re-encodes to the same bytes (the encoding is canonical).
use net_mesh_segments::codec::{FILE_HEADER_LEN, FileHeader, RECORD_HEADER_LEN};
use net_mesh_segments::{RecordHeader, decode_record_header, encode_record_header};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..120)) {
        if let Ok(h) = decode_record_header(&bytes) {
            prop_assert_eq!(&encode_record_header(&h)[..], &bytes[..RECORD_HEADER_LEN]);
        }
        if let Ok(h) = FileHeader::decode(&bytes) {
            prop_assert_eq!(&h.encode()[..], &bytes[..FILE_HEADER_LEN]);
        }
    }

    #[test]
    fn mutated_valid_headers_never_panic(
        kind in 1u8..=3,
        len in any::<u32>(),
        id in any::<[u8; 32]>(),
        pos in 0usize..RECORD_HEADER_LEN,
        val in any::<u8>(),
        cut in 0usize..=RECORD_HEADER_LEN,
    ) {
        let header = RecordHeader { kind: kind.try_into().unwrap(), payload_len: len, id };
        let mut bytes = encode_record_header(&header).to_vec();
        bytes[pos] = val;
        bytes.truncate(cut);
        let _ = decode_record_header(&bytes);
    }
}
