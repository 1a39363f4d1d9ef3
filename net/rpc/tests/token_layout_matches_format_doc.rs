//! docs/FORMAT.md section 5.5 and the code agree: the token layout table and the offset
//! constants (and where the encoder really puts each field), the scope bits, the limits, the
//! signature domain and channel-hash context, and every golden vector quoted in the text.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod token_fixtures;

use net_mesh_rpc::token::{self, ChannelHash, PermissionToken, Scope, TokenChannel, TokenClaims};
use token_fixtures::*;

fn doc() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/FORMAT.md");
    std::fs::read_to_string(path).unwrap()
}

fn section() -> String {
    let doc = doc();
    let start = doc
        .find("### 5.5 Permission tokens")
        .expect("section 5.5 missing");
    let rest = &doc[start..];
    let end = ["\n## ", "\n### "]
        .iter()
        .filter_map(|m| rest[4..].find(m).map(|i| i + 4))
        .min()
        .unwrap_or(rest.len());
    rest[..end].to_string()
}

/// The section with every run of whitespace collapsed to one space (for prose checks).
fn prose() -> String {
    section().split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Rows (cells trimmed) of the first table after the line containing `marker`.
fn table_after(doc: &str, marker: &str) -> Vec<Vec<String>> {
    let at = doc
        .find(marker)
        .unwrap_or_else(|| panic!("marker {marker:?} not in section 5.5"));
    doc[at..]
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2)
        .map(|l| {
            l.trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_string())
                .collect()
        })
        .collect()
}

fn parse_num(cell: &str) -> u64 {
    match cell.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).unwrap(),
        None => cell
            .parse()
            .unwrap_or_else(|_| panic!("not a number: {cell:?}")),
    }
}

#[test]
fn layout_table_matches_offsets_and_the_encoder() {
    let rows = table_after(&section(), "Token layout");
    let expected = [
        (token::OFF_ISSUER, 32, "issuer"),
        (token::OFF_SUBJECT, 32, "subject"),
        (token::OFF_SCOPE, 4, "scope"),
        (token::OFF_CHANNEL_HASH, 8, "channel hash"),
        (token::OFF_ISSUER_GENERATION, 4, "issuer generation"),
        (token::OFF_NOT_BEFORE, 8, "not_before"),
        (token::OFF_NOT_AFTER, 8, "not_after"),
        (token::OFF_DELEGATION_DEPTH, 1, "delegation depth"),
        (token::OFF_NONCE, 8, "nonce"),
        (token::OFF_SIGNATURE, 64, "ed25519 signature"),
    ];
    assert_eq!(rows.len(), expected.len());
    let mut next = 0;
    for (row, (offset, size, name)) in rows.iter().zip(expected) {
        assert_eq!(parse_num(&row[0]) as usize, offset, "{row:?}");
        assert_eq!(parse_num(&row[1]) as usize, size, "{row:?}");
        assert!(row[2].starts_with(name), "{row:?}");
        assert_eq!(offset, next, "gap or overlap at {row:?}");
        next = offset + size;
    }
    assert_eq!(next, token::TOKEN_LEN, "documented layout does not add up");
    assert_eq!(token::SIGNED_LEN, token::OFF_SIGNATURE);

    // Distinct values in every field land where the table says.
    let claims = TokenClaims {
        subject: [0x5b; 32],
        scope: Scope::WRITE | Scope::DELEGATE,
        channel: TokenChannel::Named(ChannelHash(0x1122_3344_5566_7788)),
        issuer_generation: 0x99aa_bbcc,
        not_before: 0x0102_0304_0506_0708,
        not_after: 0x1112_1314_1516_1718,
        delegation_depth: 4,
        nonce: 0x2122_2324_2526_2728,
    };
    let token = PermissionToken::mint(&root(), claims).unwrap();
    let bytes = token.encode();
    let field = |name: &str| {
        let row = rows.iter().find(|r| r[2].starts_with(name)).unwrap();
        let (at, len) = (parse_num(&row[0]) as usize, parse_num(&row[1]) as usize);
        bytes[at..at + len].to_vec()
    };
    assert_eq!(field("issuer"), key(&root()).to_vec());
    assert_eq!(field("subject"), vec![0x5b; 32]);
    assert_eq!(field("scope"), 0x0au32.to_le_bytes().to_vec());
    assert_eq!(
        field("channel hash"),
        0x1122_3344_5566_7788u64.to_le_bytes().to_vec()
    );
    assert_eq!(
        field("issuer generation"),
        0x99aa_bbccu32.to_le_bytes().to_vec()
    );
    assert_eq!(
        field("not_before"),
        0x0102_0304_0506_0708u64.to_le_bytes().to_vec()
    );
    assert_eq!(
        field("not_after"),
        0x1112_1314_1516_1718u64.to_le_bytes().to_vec()
    );
    assert_eq!(field("delegation depth"), vec![4]);
    assert_eq!(
        field("nonce"),
        0x2122_2324_2526_2728u64.to_le_bytes().to_vec()
    );
    assert_eq!(field("ed25519 signature").as_slice(), token.signature());
}

#[test]
fn scope_bits_table_matches_constants() {
    let rows = table_after(&section(), "Scope bits");
    let code = [
        ("read", token::SCOPE_BIT_READ),
        ("write", token::SCOPE_BIT_WRITE),
        ("admin", token::SCOPE_BIT_ADMIN),
        ("delegate", token::SCOPE_BIT_DELEGATE),
        ("any channel", token::SCOPE_BIT_ANY_CHANNEL),
    ];
    assert_eq!(rows.len(), code.len());
    let mut all = 0;
    for (row, (name, value)) in rows.iter().zip(code) {
        assert!(row[2].starts_with(name), "{row:?}");
        assert_eq!(parse_num(&row[1]), u64::from(value), "{row:?}");
        assert_eq!(1u64 << parse_num(&row[0]), u64::from(value), "{row:?}");
        all |= value;
    }
    assert_eq!(all, token::SCOPE_KNOWN_BITS);
    assert_eq!(Scope::ALL.bits() | token::SCOPE_BIT_ANY_CHANNEL, all);
    // The names in the table are the names the scope parser takes.
    for name in ["read", "write", "admin", "delegate"] {
        assert!(name.parse::<Scope>().is_ok());
    }
}

#[test]
fn limits_table_matches_constants() {
    let rows = table_after(&section(), "Limits and sizes");
    let code = [
        ("TOKEN_LEN", token::TOKEN_LEN as u64),
        ("LEGACY_TOKEN_LEN", token::LEGACY_TOKEN_LEN as u64),
        ("SIGNED_LEN", token::SIGNED_LEN as u64),
        ("MAX_CHAIN_LEN", token::MAX_CHAIN_LEN as u64),
        (
            "MAX_DELEGATION_DEPTH",
            u64::from(token::MAX_DELEGATION_DEPTH),
        ),
        ("TOKEN_TEXT_LEN", token::TOKEN_TEXT_LEN as u64),
        ("DEFAULT_SKEW_S", token::DEFAULT_SKEW_S),
    ];
    assert_eq!(rows.len(), code.len());
    for (name, value) in code {
        let row = rows
            .iter()
            .find(|r| r[0] == name)
            .unwrap_or_else(|| panic!("{name} undocumented"));
        assert_eq!(parse_num(&row[1]), value, "{name}");
    }
}

#[test]
fn signature_domain_channel_context_and_text_form_are_quoted() {
    let prose = prose();
    let domain = std::str::from_utf8(token::SIGNATURE_DOMAIN).unwrap();
    let shown = format!(
        "\"{}\\0\" || token[0..{}]",
        domain.trim_end_matches('\0'),
        token::SIGNED_LEN
    );
    assert!(domain.ends_with('\0') && domain.matches('\0').count() == 1);
    assert!(
        prose.contains(&shown),
        "signature domain not quoted as {shown}"
    );
    assert!(prose.contains(&format!(
        "the {} ASCII bytes",
        token::SIGNATURE_DOMAIN.len()
    )));
    assert!(prose.contains(&format!(
        "BLAKE3::derive_key(\"{}\",",
        token::CHANNEL_HASH_CONTEXT
    )));
    assert!(prose.contains(&format!("is `{}` followed by", token::TEXT_PREFIX)));
    assert!(prose.contains(&format!("joined with `{}`", token::CHAIN_SEPARATOR)));
}

/// Every token golden file is quoted in section 5.5: hex vectors right after their name (same
/// line, or the next line when the name ends a line with ':'), the channel hashes with their
/// u64 values, the text form in the code block, and the corrupt files by name.
#[test]
fn golden_vectors_are_quoted_in_the_section() {
    let section = section();
    let long_hex = |text: &str| {
        text.split(|c: char| !c.is_ascii_hexdigit())
            .find(|run| run.len() >= 16)
            .map(str::to_string)
    };
    for name in [
        "token_root",
        "token_delegated",
        "token_wildcard",
        "channel_hash_default",
        "channel_hash_photos",
    ] {
        let file = to_hex(&golden_bytes(name));
        let at = section
            .find(&format!("`{name}.hex`"))
            .unwrap_or_else(|| panic!("{name}.hex not quoted"));
        let mut lines = section[at + name.len() + 6..].lines();
        let rest = lines.next().unwrap();
        let quoted = if rest.trim_end() == ":" {
            lines.next().and_then(long_hex)
        } else {
            long_hex(rest)
        };
        assert_eq!(quoted.as_deref(), Some(file.as_str()), "{name}");
    }
    for (name, channel) in [
        ("channel_hash_default", "default"),
        ("channel_hash_photos", "photos"),
    ] {
        let row = table_after(&section, "**Channel hash.**")
            .into_iter()
            .find(|r| r[1] == format!("`{name}.hex`"))
            .unwrap();
        assert_eq!(row[0], format!("`{channel}`"));
        assert_eq!(parse_num(&row[3]), token::channel_hash(channel).0);
    }
    let text = std::fs::read_to_string(golden_dir().join("token_root.txt")).unwrap();
    assert!(
        section.contains(&format!("```\n{}\n```", text.trim())),
        "token_root.txt not quoted"
    );
    for name in [
        "token_root.txt",
        "token_chain.txt",
        "corrupt_token_legacy_161.hex",
        "corrupt_token_170.hex",
        "corrupt_token_unknown_scope.hex",
        "corrupt_token_bad_signature.hex",
    ] {
        assert!(section.contains(&format!("`{name}`")), "{name} not named");
    }
}

#[test]
fn version_history_has_a_token_row() {
    let doc = doc();
    let history = &doc[doc.find("## Version history").unwrap()..doc.find("## 1.").unwrap()];
    let row = history
        .lines()
        .find(|l| l.contains("permission token (§5.5)"))
        .expect("no version history row for the token");
    assert!(
        row.contains("169-byte") && row.contains("LegacyLength"),
        "{row}"
    );
}
