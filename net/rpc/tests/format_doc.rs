//! docs/FORMAT.md section 5 and the code agree: the frame header layout, the call header
//! layout, the handshake payload layout, every dispatch value, every named limit, and every
//! golden vector quoted in the text.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use net_mesh_rpc::frame::{self, CallHeader, CallKind, Frame, TraceContext, dispatch};

fn section5() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/FORMAT.md");
    let doc = std::fs::read_to_string(path).unwrap();
    let start = doc.find("## 5. Network").expect("section 5 missing");
    let rest = &doc[start..];
    let end = rest[3..].find("\n## ").map(|i| i + 3).unwrap_or(rest.len());
    rest[..end].to_string()
}

/// Rows (cells trimmed) of the first table after the line containing `marker`.
fn table_after(doc: &str, marker: &str) -> Vec<Vec<String>> {
    let at = doc
        .find(marker)
        .unwrap_or_else(|| panic!("marker {marker:?} not in FORMAT.md"));
    doc[at..]
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2) // header + separator
        .map(|l| {
            l.trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_string())
                .collect()
        })
        .collect()
}

fn parse_num(cell: &str) -> usize {
    match cell.strip_prefix("0x") {
        Some(hex) => usize::from_str_radix(hex, 16).unwrap(),
        None => cell
            .parse()
            .unwrap_or_else(|_| panic!("not a number: {cell:?}")),
    }
}

#[test]
fn frame_header_table_matches_offsets() {
    let rows = table_after(&section5(), "Every frame begins with this header");
    let expected = [
        (frame::OFF_VERSION, 1, "version"),
        (frame::OFF_DISPATCH, 1, "dispatch"),
        (frame::OFF_CALL_ID, frame::CALL_ID_LEN, "call_id"),
    ];
    assert_eq!(rows.len(), expected.len());
    let mut next = 0;
    for (row, (offset, size, name)) in rows.iter().zip(expected) {
        assert_eq!(parse_num(&row[0]), offset, "{row:?}");
        assert_eq!(parse_num(&row[1]), size, "{row:?}");
        assert!(row[2].contains(name), "{row:?}");
        assert_eq!(offset, next, "gap or overlap at {row:?}");
        next = offset + size;
    }
    assert_eq!(
        next,
        frame::HEADER_LEN,
        "documented header does not add up to HEADER_LEN"
    );
    // And the encoder really puts them there.
    let bytes = Frame::RequestEnd {
        call_id: 0x0102_0304_0506_0708,
    }
    .to_vec()
    .unwrap();
    assert_eq!(bytes[frame::OFF_VERSION], frame::FRAME_VERSION);
    assert_eq!(bytes[frame::OFF_DISPATCH], dispatch::REQUEST_END);
    assert_eq!(
        bytes[frame::OFF_CALL_ID..frame::OFF_CALL_ID + 8],
        0x0102_0304_0506_0708u64.to_le_bytes()
    );
}

#[test]
fn call_header_table_matches_the_encoder() {
    let rows = table_after(&section5(), "Call header (REQUEST and REQUEST_INIT)");
    // Fixed-size rows first (numeric offset and size), then the method and the metadata.
    let fixed: Vec<_> = rows
        .iter()
        .take_while(|r| r[1].parse::<usize>().is_ok())
        .collect();
    let mut next = 0;
    for row in &fixed {
        assert_eq!(parse_num(&row[0]), next, "gap or overlap at {row:?}");
        next += parse_num(&row[1]);
    }
    assert_eq!(next, frame::CALL_HEADER_FIXED_LEN);
    let variable = &rows[fixed.len()..];
    assert_eq!(variable.len(), 2, "method and metadata rows");
    assert_eq!(parse_num(&variable[0][0]), frame::CALL_HEADER_FIXED_LEN);
    assert!(variable[0][2].contains("method name"));
    assert_eq!(
        variable[1][0],
        format!("{} + method_len", frame::CALL_HEADER_FIXED_LEN)
    );
    assert!(variable[1][2].contains("metadata"));
    let header = CallHeader {
        kind: CallKind::Duplex,
        timeout_us: 0x1122,
        trace: TraceContext {
            trace_id: [0xaa; 16],
            span_id: [0xbb; 8],
        },
        response_window: 0x33,
        method: "mm",
        metadata: b"xyz",
    };
    let bytes = Frame::RequestInit { call_id: 1, header }.to_vec().unwrap();
    let body = &bytes[frame::HEADER_LEN..];
    let field = |name: &str| {
        let row = fixed.iter().find(|r| r[2].contains(name)).unwrap();
        let (at, len) = (parse_num(&row[0]), parse_num(&row[1]));
        body[at..at + len].to_vec()
    };
    assert_eq!(field("call kind"), vec![4]);
    assert_eq!(field("timeout_us"), 0x1122u64.to_le_bytes().to_vec());
    assert_eq!(field("trace_id"), vec![0xaa; 16]);
    assert_eq!(field("span_id"), vec![0xbb; 8]);
    assert_eq!(field("response_window"), 0x33u32.to_le_bytes().to_vec());
    assert_eq!(field("method_len"), vec![2]);
    assert_eq!(field("metadata_len"), 3u16.to_le_bytes().to_vec());
    assert_eq!(&body[frame::CALL_HEADER_FIXED_LEN..], b"mmxyz");
}

#[test]
fn handshake_payload_table_matches_the_encoder() {
    use net_mesh_rpc::handshake::{self, HandshakePayload};
    let rows = table_after(&section5(), "Handshake payload, version 2");
    let caps = net_mesh_rpc::Capabilities::new(["ab"]).unwrap();
    let payload = HandshakePayload {
        public_key: [0x11; 32],
        signature: [0x22; 64],
        capabilities: caps,
    };
    let bytes = payload.encode();
    let mut next = 0;
    for row in &rows[..rows.len() - 1] {
        assert_eq!(parse_num(&row[0]), next, "gap or overlap at {row:?}");
        next += parse_num(&row[1]);
    }
    assert_eq!(next, handshake::HANDSHAKE_PAYLOAD_MIN_LEN);
    let at = |name: &str| {
        let row = rows.iter().find(|r| r[2].contains(name)).unwrap();
        parse_num(&row[0])
    };
    assert_eq!(
        bytes[at("payload version")],
        handshake::HANDSHAKE_PAYLOAD_VERSION
    );
    assert_eq!(bytes[at("public key")], 0x11);
    assert_eq!(bytes[at("signature")], 0x22);
    assert_eq!(bytes[at("caps_len")..at("caps_len") + 2], [3, 0]);
    assert_eq!(&bytes[at("capability tags")..], &[2, b'a', b'b']);
}

/// Every `name.hex` quoted in section 5 next to a hex string equals the checked-in file.
#[test]
fn golden_vectors_quoted_in_the_text_match_the_files() {
    let doc = section5();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        let file = std::fs::read_to_string(&path).unwrap().trim().to_string();
        let Some(at) = doc.find(&format!("`{name}`")) else {
            continue;
        };
        // Quoted later on the same line (a table row, or "`name`: `hex`"), or on the next
        // line after a line that ends with ':'; other mentions quote nothing.
        let mut lines = doc[at + name.len() + 2..].lines();
        let rest = lines.next().unwrap();
        let long_hex = |text: &str| {
            text.split(|c: char| !c.is_ascii_hexdigit())
                .find(|run| run.len() >= 16)
                .map(str::to_string)
        };
        let quoted = if rest.trim_end() == ":" {
            lines.next().and_then(long_hex)
        } else {
            long_hex(rest)
        };
        let Some(quoted) = quoted else { continue };
        let quoted = Some(quoted.as_str());
        assert_eq!(
            quoted,
            Some(file.as_str()),
            "{name} quoted differently in FORMAT.md"
        );
        checked += 1;
    }
    assert!(
        checked >= 22,
        "only {checked} golden vectors found in the text"
    );
}

#[test]
fn dispatch_table_matches_constants() {
    let rows = table_after(&section5(), "Dispatch values");
    let code = [
        ("REQUEST", dispatch::REQUEST),
        ("RESPONSE", dispatch::RESPONSE),
        ("RESPONSE_CHUNK", dispatch::RESPONSE_CHUNK),
        ("RESPONSE_END", dispatch::RESPONSE_END),
        ("RESPONSE_ERROR", dispatch::RESPONSE_ERROR),
        ("RESPONSE_WINDOW_GRANT", dispatch::RESPONSE_WINDOW_GRANT),
        ("REQUEST_INIT", dispatch::REQUEST_INIT),
        ("REQUEST_CHUNK", dispatch::REQUEST_CHUNK),
        ("REQUEST_END", dispatch::REQUEST_END),
        ("REQUEST_CANCEL", dispatch::REQUEST_CANCEL),
        ("REQUEST_WINDOW_GRANT", dispatch::REQUEST_WINDOW_GRANT),
    ];
    assert_eq!(rows.len(), code.len());
    for (name, value) in code {
        let row = rows
            .iter()
            .find(|r| r[0] == name)
            .unwrap_or_else(|| panic!("{name} undocumented"));
        assert_eq!(parse_num(&row[1]), usize::from(value), "{name}");
    }
    // The issue fixes these four exactly.
    assert_eq!(
        [
            dispatch::REQUEST_INIT,
            dispatch::REQUEST_CHUNK,
            dispatch::REQUEST_END,
            dispatch::REQUEST_CANCEL
        ],
        [0x10, 0x11, 0x12, 0x13]
    );
}

#[test]
fn limits_table_matches_constants() {
    let rows = table_after(&section5(), "Limits and sizes");
    let code = [
        ("HEADER_LEN", frame::HEADER_LEN),
        ("CALL_HEADER_FIXED_LEN", frame::CALL_HEADER_FIXED_LEN),
        ("MAX_METHOD_LEN", frame::MAX_METHOD_LEN),
        ("MAX_METADATA_LEN", frame::MAX_METADATA_LEN),
        ("MAX_ERROR_MESSAGE_LEN", frame::MAX_ERROR_MESSAGE_LEN),
        ("MAX_CONTROL_FRAME_LEN", frame::MAX_CONTROL_FRAME_LEN),
        ("MAX_PAYLOAD_LEN", frame::MAX_PAYLOAD_LEN),
        ("MAX_FRAME_LEN", frame::MAX_FRAME_LEN),
        ("FRAME_CHARGE_OVERHEAD", frame::FRAME_CHARGE_OVERHEAD),
        (
            "DEFAULT_CALL_WINDOW",
            net_mesh_rpc::rpc::DEFAULT_CALL_WINDOW as usize,
        ),
        (
            "MAX_NOISE_PLAINTEXT",
            net_mesh_rpc::transport::MAX_NOISE_PLAINTEXT,
        ),
        (
            "HANDSHAKE_PAYLOAD_MIN_LEN",
            net_mesh_rpc::handshake::HANDSHAKE_PAYLOAD_MIN_LEN,
        ),
        (
            "MAX_CAPABILITIES_LEN",
            net_mesh_rpc::handshake::MAX_CAPABILITIES_LEN,
        ),
        (
            "MAX_HANDSHAKE_MESSAGE_LEN",
            net_mesh_rpc::handshake::MAX_HANDSHAKE_MESSAGE_LEN,
        ),
        ("KEY_FILE_LEN", net_mesh_rpc::identity::KEY_FILE_LEN),
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
