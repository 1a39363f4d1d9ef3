//! docs/FORMAT.md §5.6 and the code agree: the layout table (version byte and its value, the
//! channel name's length and bytes, the chain after them), the longest call metadata, the
//! golden vector (file, quoted hex, and what `encode_metadata` makes of the §5.5 golden tokens
//! on `default`), every refusal reason named, and the methods a token for one channel does
//! not grant (those that act on the whole node) listed.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use net_mesh_engine::index::MAX_CHANNEL_NAME;
use net_mesh_node::call_token::{
    DEFAULT_CHANNEL, MAX_CALL_METADATA_LEN, METADATA_VERSION, decode_metadata, encode_metadata,
};
use net_mesh_node::proto::Method;
use net_mesh_rpc::frame::MAX_METADATA_LEN;
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
        .find("### 5.6 Call metadata: channel and permission tokens")
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
    assert_eq!(rows.len(), 4, "{rows:?}");
    assert_eq!((rows[0][0].as_str(), rows[0][1].as_str()), ("0", "1"));
    assert!(rows[0][2].contains(&format!("`0x{METADATA_VERSION:02x}`")));
    assert_eq!((rows[1][0].as_str(), rows[1][1].as_str()), ("1", "1"));
    assert_eq!((rows[2][0].as_str(), rows[2][1].as_str()), ("2", "L"));
    assert!(rows[2][2].contains(&format!("1..={MAX_CHANNEL_NAME} bytes")));
    assert_eq!(rows[3][0], "2 + L");
    assert_eq!(rows[3][1], format!("n × {TOKEN_LEN}"));
    assert!(rows[3][2].contains(&format!("0 ≤ n ≤ {MAX_CHAIN_LEN}")));
    assert_eq!(
        MAX_CALL_METADATA_LEN,
        2 + MAX_CHANNEL_NAME + MAX_CHAIN_LEN * TOKEN_LEN
    );
    assert!(prose.contains(&format!(
        "2 + {MAX_CHANNEL_NAME} + {MAX_CHAIN_LEN} × {TOKEN_LEN} = {MAX_CALL_METADATA_LEN} bytes"
    )));
    assert!(prose.contains(&format!("within `MAX_METADATA_LEN` ({MAX_METADATA_LEN})")));

    // Golden vector: the §5.5 tokens, behind the version byte.
    let root = unhex(&read("../rpc/tests/golden/token_root.hex"));
    let delegated = unhex(&read("../rpc/tests/golden/token_delegated.hex"));
    let chain = vec![
        PermissionToken::decode(&root).unwrap(),
        PermissionToken::decode(&delegated).unwrap(),
    ];
    let file = read("tests/golden/call_metadata_chain.hex");
    let golden = unhex(&file);
    assert_eq!(encode_metadata(DEFAULT_CHANNEL, &chain), golden);
    let decoded = decode_metadata(&golden).unwrap();
    assert_eq!(
        (decoded.channel.as_str(), decoded.chain),
        (DEFAULT_CHANNEL, chain)
    );
    assert!(prose.contains(&format!("Golden vector ({} bytes)", golden.len())));
    assert!(
        section.contains(&format!("`{}`", file.trim())),
        "the quoted hex is not the file's"
    );

    // Every refusal reason is named.
    let mut reasons = vec!["metadata_version", "channel"];
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
    // The node-wide methods, exactly: each named, and no other method in that sentence.
    let node_wide = prose
        .split("The methods that act on the whole node")
        .nth(1)
        .and_then(|rest| rest.split(" are let through").next())
        .expect("the node-wide methods are listed");
    for method in Method::ALL {
        let short = method.name().trim_start_matches("node/v1/");
        assert_eq!(
            node_wide.contains(&format!("`{short}`")),
            method.acts_on_node(),
            "{short} in {node_wide:?}"
        );
    }
    let mut other_version = golden.clone();
    other_version[0] = 0x01;
    assert_eq!(
        decode_metadata(&other_version).unwrap_err().reason(),
        "metadata_version"
    );
}
