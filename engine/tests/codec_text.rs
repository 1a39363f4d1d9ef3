//! The text form: `nm1` + strict canonical lowercase unpadded RFC 4648 base32.

// Test helpers outside #[test] fns: a failed expectation must panic, that is the point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use net_mesh_engine::codec::text::{base32_decode, base32_encode};
use net_mesh_engine::codec::{BlobRef, DecodeError, chunk_id};

fn small() -> BlobRef {
    BlobRef::Small {
        hash: chunk_id(b"hello"),
        size: 5,
    }
}

#[test]
fn base32_matches_rfc4648_test_vectors_lowercased_without_padding() {
    // RFC 4648 section 10.
    let vectors = [
        ("", ""),
        ("f", "my"),
        ("fo", "mzxq"),
        ("foo", "mzxw6"),
        ("foob", "mzxw6yq"),
        ("fooba", "mzxw6ytb"),
        ("foobar", "mzxw6ytboi"),
    ];
    for (plain, encoded) in vectors {
        assert_eq!(base32_encode(plain.as_bytes()), encoded);
        assert_eq!(base32_decode(encoded), Ok(plain.as_bytes().to_vec()));
    }
}

#[test]
fn text_form_has_prefix_and_round_trips() {
    let text = small().to_text();
    assert!(text.starts_with("nm1"));
    assert_eq!(BlobRef::from_text(&text), Ok(small()));
}

#[test]
fn missing_prefix_is_rejected() {
    let text = small().to_text();
    assert_eq!(
        BlobRef::from_text(&text[3..]),
        Err(DecodeError::BadText {
            reason: "missing nm1 prefix",
            position: 0,
        })
    );
    assert!(BlobRef::from_text(&text.replacen("nm1", "NM1", 1)).is_err());
}

#[test]
fn uppercase_is_rejected() {
    let text = small().to_text();
    let upper = format!("nm1{}", text[3..].to_uppercase());
    assert_eq!(
        BlobRef::from_text(&upper),
        Err(DecodeError::BadText {
            reason: "uppercase is not allowed",
            position: 0,
        })
    );
}

#[test]
fn padding_is_rejected() {
    assert_eq!(
        base32_decode("my======"),
        Err(DecodeError::BadText {
            reason: "padding is not allowed",
            position: 2,
        })
    );
    let padded = format!("{}==", small().to_text());
    assert!(matches!(
        BlobRef::from_text(&padded),
        Err(DecodeError::BadText { .. })
    ));
}

#[test]
fn characters_outside_the_alphabet_are_rejected() {
    for bad in ["m0", "m1", "m8", "m ", "m\n", "my\u{e9}"] {
        assert!(
            matches!(base32_decode(bad), Err(DecodeError::BadText { .. })),
            "{bad:?}"
        );
    }
    let text = format!(" {}", small().to_text());
    assert!(BlobRef::from_text(&text).is_err());
}

#[test]
fn lengths_no_byte_string_encodes_to_are_rejected() {
    for bad in ["m", "mzx", "mzxw6y", "mzxw6ytbo"] {
        assert_eq!(
            base32_decode(bad),
            Err(DecodeError::BadText {
                reason: "length is not a whole number of bytes",
                position: bad.len(),
            }),
            "{bad:?}"
        );
    }
}

#[test]
fn nonzero_unused_trailing_bits_are_rejected_as_non_canonical() {
    // "my" is "f"; "mz" carries the same byte plus a set unused bit.
    assert_eq!(base32_decode("my"), Ok(b"f".to_vec()));
    assert_eq!(
        base32_decode("mz"),
        Err(DecodeError::NonCanonical {
            what: "base32 text has nonzero unused trailing bits",
        })
    );
    let text = small().to_text();
    // 46 bytes -> 74 chars; the last char carries 2 unused bits ('a' = 0).
    assert!(text.ends_with('a'));
    let mut tampered = text.clone();
    tampered.pop();
    tampered.push('b');
    assert!(matches!(
        BlobRef::from_text(&tampered),
        Err(DecodeError::NonCanonical { .. })
    ));
}

#[test]
fn text_of_corrupt_wire_bytes_reports_the_wire_error() {
    let mut bytes = small().encode();
    bytes.push(0);
    let text = format!("nm1{}", base32_encode(&bytes));
    assert_eq!(
        BlobRef::from_text(&text),
        Err(DecodeError::TrailingBytes {
            offset: 46,
            count: 1,
        })
    );
}
