//! docs/FORMAT.md §5.6 and the code agree: the layout table (version byte and its value, the
//! chain after it), the longest token metadata, the golden vector (file, quoted hex, and what
//! `encode_metadata` makes of the §5.5 golden tokens), and every refusal reason named.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use net_mesh_node::call_token::{
    MAX_TOKEN_METADATA_LEN, METADATA_VERSION, decode_metadata, encode_metadata,
};
use net_mesh_rpc::token::{MAX_CHAIN_LEN, PermissionToken, TOKEN_LEN};

fn read(path: &str) -> String {
    std::fs::read_to_string(format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn unhex(text: &str) -> Vec<u8> {
    let text = text.trim();
    assert!(text.len().is_multiple_of(2), "odd hex");
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

fn section() -> String {
    let doc = read("../../docs/FORMAT.md");
    let start = doc
        .find("### 5.6 Permission tokens in call metadata")
        .expect("section 5.6 missing");
    let rest = &doc[start..];
    let end = ["\n## ", "\n### "]
        .iter()
        .filter_map(|m| rest[4..].find(m).map(|i| i + 4))
        .min()
        .unwrap_or(rest.len());
    rest[..end].to_string()
}

#[test]
fn token_metadata_matches_format_doc() {
    let section = section();
    let prose = section.split_whitespace().collect::<Vec<_>>().join(" ");

    // Layout table.
    let rows: Vec<Vec<String>> = section
        .lines()
        .skip_while(|l| !l.starts_with("| offset"))
        .take_while(|l| l.starts_with('|'))
        .skip(2)
        .map(|l| {
            l.trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_string())
                .collect()
        })
        .collect();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!((rows[0][0].as_str(), rows[0][1].as_str()), ("0", "1"));
    assert!(rows[0][2].contains(&format!("`0x{METADATA_VERSION:02x}`")));
    assert_eq!(rows[1][0], "1");
    assert_eq!(rows[1][1], format!("n × {TOKEN_LEN}"));
    assert!(rows[1][2].contains(&format!("1 ≤ n ≤ {MAX_CHAIN_LEN}")));
    assert_eq!(MAX_TOKEN_METADATA_LEN, 1 + MAX_CHAIN_LEN * TOKEN_LEN);
    assert!(prose.contains(&format!(
        "1 + {MAX_CHAIN_LEN} × {TOKEN_LEN} = {MAX_TOKEN_METADATA_LEN} bytes"
    )));

    // Golden vector: the §5.5 tokens, behind the version byte.
    let root = unhex(&read("../rpc/tests/golden/token_root.hex"));
    let delegated = unhex(&read("../rpc/tests/golden/token_delegated.hex"));
    let chain = vec![
        PermissionToken::decode(&root).unwrap(),
        PermissionToken::decode(&delegated).unwrap(),
    ];
    let file = read("tests/golden/call_metadata_chain.hex");
    let golden = unhex(&file);
    assert_eq!(encode_metadata(&chain), golden);
    assert_eq!(decode_metadata(&golden).unwrap(), Some(chain));
    assert!(prose.contains(&format!("Golden vector ({} bytes)", golden.len())));
    assert!(
        section.contains(&format!("`{}`", file.trim())),
        "the quoted hex is not the file's"
    );

    // Every refusal reason is named.
    let mut reasons = vec!["metadata_version"];
    reasons.extend([
        "empty_chain",
        "length",
        "legacy_length",
        "chain_too_long",
        "malformed",
        "untrusted_issuer",
        "broken_chain_link",
        "delegation_not_permitted",
        "over_deep_delegation",
        "widening_delegation",
        "revoked_generation",
        "wrong_subject",
        "wrong_channel",
        "missing_scope",
        "not_yet_valid",
        "expired",
        "bad_signature",
    ]);
    for reason in reasons {
        assert!(prose.contains(&format!("`{reason}`")), "{reason} not named");
    }
    let mut other_version = golden.clone();
    other_version[0] = 0x02;
    assert_eq!(
        decode_metadata(&other_version).unwrap_err().reason(),
        "metadata_version"
    );
}
