//! The printable form of tokens and chains: each token is [`TEXT_PREFIX`] (`nmt1`) followed by
//! its 169 bytes in RFC 4648 base32 with the lowercase alphabet `a-z2-7` and no padding (the
//! style of BlobRef texts, `nm1…`); a chain is its tokens' texts, root first, joined with
//! [`CHAIN_SEPARATOR`] (`.`).
//!
//! Parsing is strict, so each chain has exactly one text: no whitespace, uppercase, padding or
//! other characters, no empty items, a length whole bytes can produce, zero unused bits in the
//! last character, at most [`MAX_CHAIN_LEN`] items (counted before anything is decoded), and
//! each item must decode as a token ([`PermissionToken::decode`]).

use super::{MAX_CHAIN_LEN, PermissionToken, TOKEN_LEN, TokenDecodeError};

/// Prefix of a token's text.
pub const TEXT_PREFIX: &str = "nmt1";
/// Separator between the tokens of a chain's text.
pub const CHAIN_SEPARATOR: char = '.';
/// Characters in one token's text: the prefix and 271 base32 characters.
pub const TOKEN_TEXT_LEN: usize = TEXT_PREFIX.len() + (TOKEN_LEN * 8).div_ceil(5);

const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// A text that is not a token chain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseTokenError {
    /// An empty text.
    #[error("an empty token text")]
    Empty,
    /// More than [`MAX_CHAIN_LEN`] tokens.
    #[error("a token chain of {links} tokens; at most {MAX_CHAIN_LEN}")]
    TooLong {
        /// Items in the text.
        links: usize,
    },
    /// An item does not start with `nmt1` (this includes an empty item).
    #[error("token {link} does not start with {TEXT_PREFIX:?} (at character {position})")]
    MissingPrefix {
        /// Index of the item, root = 0.
        link: usize,
        /// Character offset of the item in the whole text.
        position: usize,
    },
    /// A character or length that strict base32 does not allow.
    #[error("token {link}: {reason} at character {position}")]
    BadText {
        /// Index of the item, root = 0.
        link: usize,
        /// What is wrong.
        reason: &'static str,
        /// Character offset in the whole text.
        position: usize,
    },
    /// Nonzero unused bits in the last character of an item.
    #[error("token {link}: base32 text has nonzero unused trailing bits")]
    NonCanonical {
        /// Index of the item, root = 0.
        link: usize,
    },
    /// An item's bytes are not a token.
    #[error("token {link}: {error}")]
    Token {
        /// Index of the item, root = 0.
        link: usize,
        /// Why the bytes are not a token.
        error: TokenDecodeError,
    },
}

impl PermissionToken {
    /// `nmt1` + base32 of the 169 bytes.
    pub fn to_text(&self) -> String {
        let mut out = String::with_capacity(TOKEN_TEXT_LEN);
        out.push_str(TEXT_PREFIX);
        base32_encode_into(&self.encode(), &mut out);
        out
    }
}

/// Parses the text of one token (a chain of more is refused with
/// [`ParseTokenError::TooLong`]).
impl std::str::FromStr for PermissionToken {
    type Err = ParseTokenError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut chain = chain_from_text(text)?;
        match (chain.pop(), chain.is_empty()) {
            (Some(token), true) => Ok(token),
            _ => Err(ParseTokenError::TooLong {
                links: chain.len().saturating_add(1),
            }),
        }
    }
}

/// The text of a chain: the tokens' texts joined with `.`, root first.
pub fn chain_to_text(chain: &[PermissionToken]) -> String {
    let mut out = String::with_capacity(chain.len().saturating_mul(TOKEN_TEXT_LEN + 1));
    for (i, token) in chain.iter().enumerate() {
        if i > 0 {
            out.push(CHAIN_SEPARATOR);
        }
        out.push_str(&token.to_text());
    }
    out
}

/// Parses a chain's text strictly (module docs).
pub fn chain_from_text(text: &str) -> Result<Vec<PermissionToken>, ParseTokenError> {
    if text.is_empty() {
        return Err(ParseTokenError::Empty);
    }
    let links = text.split(CHAIN_SEPARATOR).count();
    if links > MAX_CHAIN_LEN {
        return Err(ParseTokenError::TooLong { links });
    }
    let mut chain = Vec::with_capacity(links);
    let mut position = 0usize;
    for (link, item) in text.split(CHAIN_SEPARATOR).enumerate() {
        let body = item
            .strip_prefix(TEXT_PREFIX)
            .ok_or(ParseTokenError::MissingPrefix { link, position })?;
        let body_start = position.saturating_add(TEXT_PREFIX.len());
        let bytes = base32_decode(body).map_err(|fault| match fault {
            Base32Fault::Bad { reason, at } => ParseTokenError::BadText {
                link,
                reason,
                position: body_start.saturating_add(at),
            },
            Base32Fault::NonCanonical => ParseTokenError::NonCanonical { link },
        })?;
        let token = PermissionToken::decode(&bytes)
            .map_err(|error| ParseTokenError::Token { link, error })?;
        chain.push(token);
        position = position
            .saturating_add(item.len())
            .saturating_add(CHAIN_SEPARATOR.len_utf8());
    }
    Ok(chain)
}

fn base32_encode_into(bytes: &[u8], out: &mut String) {
    let mut pending: u32 = 0;
    let mut pending_bits: u32 = 0;
    let emit = |index: u32, out: &mut String| {
        let c = usize::try_from(index & 0x1f)
            .ok()
            .and_then(|i| ALPHABET.get(i))
            .copied()
            .unwrap_or(b'a');
        out.push(char::from(c));
    };
    for &byte in bytes {
        pending = (pending << 8) | u32::from(byte);
        pending_bits += 8;
        while pending_bits >= 5 {
            pending_bits -= 5;
            emit(pending >> pending_bits, out);
        }
        pending &= (1 << pending_bits) - 1;
    }
    if pending_bits > 0 {
        emit(pending << (5 - pending_bits), out);
    }
}

enum Base32Fault {
    Bad { reason: &'static str, at: usize },
    NonCanonical,
}

fn base32_decode(text: &str) -> Result<Vec<u8>, Base32Fault> {
    let mut out = Vec::with_capacity(text.len().saturating_mul(5) / 8);
    let mut pending: u32 = 0;
    let mut pending_bits: u32 = 0;
    for (at, c) in text.bytes().enumerate() {
        let value = match c {
            b'a'..=b'z' => c - b'a',
            b'2'..=b'7' => c - b'2' + 26,
            _ => {
                let reason = match c {
                    b'=' => "padding is not allowed",
                    b'A'..=b'Z' => "uppercase is not allowed",
                    _ => "character outside the base32 alphabet",
                };
                return Err(Base32Fault::Bad { reason, at });
            }
        };
        pending = (pending << 5) | u32::from(value);
        pending_bits += 5;
        if pending_bits >= 8 {
            pending_bits -= 8;
            out.push(u8::try_from((pending >> pending_bits) & 0xff).unwrap_or(0));
            pending &= (1 << pending_bits) - 1;
        }
    }
    // Whole bytes leave 0..=4 unused bits; 5..=7 means a character too many or too few.
    if pending_bits >= 5 {
        return Err(Base32Fault::Bad {
            reason: "length is not a whole number of bytes",
            at: text.len(),
        });
    }
    if pending != 0 {
        return Err(Base32Fault::NonCanonical);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn encode(bytes: &[u8]) -> String {
        let mut out = String::new();
        base32_encode_into(bytes, &mut out);
        out
    }

    #[test]
    fn base32_matches_rfc4648_vectors_in_lowercase() {
        // RFC 4648 section 10, lowercased and without padding.
        for (plain, coded) in [
            ("", ""),
            ("f", "my"),
            ("fo", "mzxq"),
            ("foo", "mzxw6"),
            ("foob", "mzxw6yq"),
            ("fooba", "mzxw6ytb"),
            ("foobar", "mzxw6ytboi"),
        ] {
            assert_eq!(encode(plain.as_bytes()), coded);
            assert!(matches!(base32_decode(coded), Ok(b) if b == plain.as_bytes()));
        }
    }

    #[test]
    fn base32_decoding_is_strict() {
        for (text, fault) in [
            ("MY", "uppercase is not allowed"),
            ("my======", "padding is not allowed"),
            ("m y", "character outside the base32 alphabet"),
            ("m1", "character outside the base32 alphabet"),
            ("m", "length is not a whole number of bytes"),
            ("mzx", "length is not a whole number of bytes"),
            ("mzxw6y", "length is not a whole number of bytes"),
        ] {
            assert!(
                matches!(base32_decode(text), Err(Base32Fault::Bad { reason, .. }) if reason == fault),
                "{text}"
            );
        }
        // "mz" encodes 'f' plus 2 unused bits that must be zero.
        assert!(matches!(
            base32_decode("mz"),
            Err(Base32Fault::NonCanonical)
        ));
        let bytes: Vec<u8> = (0..=255).collect();
        assert!(matches!(base32_decode(&encode(&bytes)), Ok(b) if b == bytes));
    }
}
