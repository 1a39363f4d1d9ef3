//! The text form round-trips (one token, and chains joined with '.'), and every other text is
//! refused with a typed error that names the item and the character: a missing prefix or an
//! empty item, uppercase, padding, whitespace, a length no byte string gives, nonzero unused
//! bits in the last character.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod token_fixtures;

use net_mesh_rpc::token::{
    self, ParseTokenError, PermissionToken, Scope, TEXT_PREFIX, TOKEN_TEXT_LEN,
};
use token_fixtures::*;

fn bad(text: &str) -> ParseTokenError {
    token::chain_from_text(text).unwrap_err()
}

#[test]
fn token_text_parses_strictly() {
    let token = direct(&alice(), Scope::READ, "default");
    let text = token.to_text();
    assert_eq!(text.len(), TOKEN_TEXT_LEN);
    assert!(text.starts_with(TEXT_PREFIX));
    assert_eq!(text.parse::<PermissionToken>().unwrap(), token);
    let chain = valid_chain(3, "default");
    let chain_text = token::chain_to_text(&chain);
    assert_eq!(chain_text.len(), 3 * TOKEN_TEXT_LEN + 2);
    assert_eq!(chain_text.matches('.').count(), 2);
    assert_eq!(token::chain_from_text(&chain_text).unwrap(), chain);
    assert_eq!(
        chain_text.parse::<PermissionToken>(),
        Err(ParseTokenError::TooLong { links: 3 })
    );

    assert_eq!(bad(""), ParseTokenError::Empty);
    for (text, link, position) in [
        (format!(" {text}"), 0, 0),
        (format!("nm1{}", &text[4..]), 0, 0),
        (text.to_uppercase(), 0, 0),
        (format!("{text}."), 1, TOKEN_TEXT_LEN + 1),
        (format!(".{text}"), 0, 0),
        (format!("{text}..{text}"), 1, TOKEN_TEXT_LEN + 1),
    ] {
        assert_eq!(
            bad(&text),
            ParseTokenError::MissingPrefix { link, position },
            "{text:?}"
        );
    }

    let first_letter = text[4..].find(|c: char| c.is_ascii_lowercase()).unwrap() + 4;
    let mut upper = text.clone();
    upper.replace_range(
        first_letter..first_letter + 1,
        &text[first_letter..first_letter + 1].to_uppercase(),
    );
    // In the second item of a chain, positions count from the start of the whole text.
    for (text, link, position, reason) in [
        (upper.clone(), 0, first_letter, "uppercase is not allowed"),
        (
            format!("{text}.{upper}"),
            1,
            TOKEN_TEXT_LEN + 1 + first_letter,
            "uppercase is not allowed",
        ),
        (
            format!("{text}="),
            0,
            TOKEN_TEXT_LEN,
            "padding is not allowed",
        ),
        (
            format!("{text}\n"),
            0,
            TOKEN_TEXT_LEN,
            "character outside the base32 alphabet",
        ),
        (
            format!("{text}, {text}"),
            0,
            TOKEN_TEXT_LEN,
            "character outside the base32 alphabet",
        ),
        (
            format!("{}1{}", &text[..10], &text[11..]),
            0,
            10,
            "character outside the base32 alphabet",
        ),
        (
            text[..TOKEN_TEXT_LEN - 1].to_string(),
            0,
            TOKEN_TEXT_LEN - 1,
            "length is not a whole number of bytes",
        ),
    ] {
        assert_eq!(
            bad(&text),
            ParseTokenError::BadText {
                link,
                reason,
                position
            },
            "{text:?}"
        );
    }

    // 169 bytes leave 3 unused bits in the last character; setting one is not canonical.
    let last = text.as_bytes()[TOKEN_TEXT_LEN - 1];
    let alphabet = b"abcdefghijklmnopqrstuvwxyz234567";
    let value = alphabet.iter().position(|&c| c == last).unwrap();
    assert_eq!(value & 0b111, 0);
    let mut odd = text.clone();
    odd.pop();
    odd.push(alphabet[value | 1] as char);
    assert_eq!(bad(&odd), ParseTokenError::NonCanonical { link: 0 });
    assert_eq!(
        bad(&format!("{text}.{odd}")),
        ParseTokenError::NonCanonical { link: 1 }
    );
}
