//! Node identities: ed25519 keypairs stored as small versioned key files, and the node id
//! derived from the public key (docs/FORMAT.md section 5.1).
//!
//! Key file `<data_dir>/identities/<NAME>.key`, mode 0600, 69 bytes:
//! magic `NMID` (4) | version 1 (1) | ed25519 secret seed (32) | ed25519 public key (32).
//! The node id is `BLAKE3::derive_key(NODE_ID_CONTEXT, public_key)`, shown as lowercase hex.

use std::fmt;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

/// Magic at the start of an identity key file.
pub const KEY_FILE_MAGIC: [u8; 4] = *b"NMID";
/// Current key file version.
pub const KEY_FILE_VERSION: u8 = 1;
/// Total size of a key file.
pub const KEY_FILE_LEN: usize = 69;
/// BLAKE3 derive-key context for node ids.
pub const NODE_ID_CONTEXT: &str = "net-mesh 2026 node id v1";
/// Longest identity name accepted.
pub const MAX_NAME_LEN: usize = 64;

/// A node id: 32 bytes derived from an ed25519 public key. A `NodeId` is a *name* (it can be
/// parsed from what an operator typed, to pin a dial or fill an allow list); the only proof that
/// a peer holds the key behind it is a [`crate::PeerIdentity`], which only a completed
/// handshake creates.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId([u8; 32]);

impl NodeId {
    /// Derives the node id of a public key.
    pub fn from_public_key(key: &VerifyingKey) -> Self {
        Self::from_public_key_bytes(key.as_bytes())
    }

    /// Derives the node id of 32 public key bytes (a key carried in a signed structure, such
    /// as a permission token's issuer, whose signature is checked separately).
    pub(crate) fn from_public_key_bytes(key: &[u8; 32]) -> Self {
        NodeId(blake3::derive_key(NODE_ID_CONTEXT, key))
    }

    /// The 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lowercase hex form (64 characters).
    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }

    /// Parses the 64-character hex form (either case).
    pub fn from_hex(text: &str) -> Result<Self, ParseNodeIdError> {
        let bytes = text.as_bytes();
        if bytes.len() != 64 {
            return Err(ParseNodeIdError::Length(bytes.len()));
        }
        let mut out = [0u8; 32];
        for (byte, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
            let digit = |c: u8| -> Result<u8, ParseNodeIdError> {
                (c as char)
                    .to_digit(16)
                    .and_then(|d| u8::try_from(d).ok())
                    .ok_or(ParseNodeIdError::NotHex)
            };
            let (hi, lo) = match pair {
                [hi, lo] => (digit(*hi)?, digit(*lo)?),
                _ => return Err(ParseNodeIdError::NotHex),
            };
            *byte = (hi << 4) | lo;
        }
        Ok(NodeId(out))
    }
}

fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().saturating_mul(2));
    for byte in bytes {
        out.push_str(&format!("{byte:02x}"));
    }
    out
}

/// A node id that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseNodeIdError {
    /// Not 64 characters.
    #[error("a node id is 64 hex characters, got {0}")]
    Length(usize),
    /// A character outside `[0-9a-fA-F]`.
    #[error("a node id is hex")]
    NotHex,
}

impl std::str::FromStr for NodeId {
    type Err = ParseNodeIdError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        NodeId::from_hex(text)
    }
}

/// A node's address as `NODEID@HOST:PORT`: where to dial and which node must answer (a dial to
/// a `NodeAddr` is pinned to its node id).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NodeAddr {
    /// The node that must answer.
    pub node_id: NodeId,
    /// `HOST:PORT` (a name, an IPv4 address or a bracketed IPv6 address).
    pub host_port: String,
}

/// A `NODEID@HOST:PORT` that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseNodeAddrError {
    /// No `@` separating the node id from the address.
    #[error("expected NODEID@HOST:PORT")]
    MissingAt,
    /// The node id part is invalid.
    #[error("bad node id: {0}")]
    NodeId(#[from] ParseNodeIdError),
    /// The address part is not `HOST:PORT` with a numeric port.
    #[error("expected HOST:PORT after '@', got {0:?}")]
    HostPort(String),
}

impl std::str::FromStr for NodeAddr {
    type Err = ParseNodeAddrError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (id, host_port) = text.split_once('@').ok_or(ParseNodeAddrError::MissingAt)?;
        let node_id = NodeId::from_hex(id)?;
        let bad = || ParseNodeAddrError::HostPort(host_port.to_string());
        let (host, port) = host_port.rsplit_once(':').ok_or_else(bad)?;
        if host.is_empty() || port.parse::<u16>().is_err() {
            return Err(bad());
        }
        Ok(NodeAddr {
            node_id,
            host_port: host_port.to_string(),
        })
    }
}

impl fmt::Display for NodeAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.node_id, self.host_port)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({})", self.to_hex())
    }
}

/// A node's signing identity.
#[derive(Clone)]
pub struct Identity {
    signing: SigningKey,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Identity({})", self.node_id())
    }
}

/// Errors from generating, loading or decoding identities.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The name is empty, too long or has characters outside `[A-Za-z0-9_-]`.
    #[error("invalid identity name {0:?}: use 1..=64 characters from [A-Za-z0-9_-]")]
    InvalidName(String),
    /// `generate` refused to overwrite an existing key file.
    #[error("identity {0} already exists; refusing to overwrite")]
    AlreadyExists(PathBuf),
    /// No key file for the name.
    #[error("identity file {0} not found")]
    NotFound(PathBuf),
    /// The key file is not a valid version-1 identity.
    #[error("identity file {path} is corrupt: {reason}")]
    Corrupt { path: PathBuf, reason: &'static str },
    /// The OS random number generator failed.
    #[error("OS random number generator failed: {0}")]
    Rng(String),
    /// A file operation failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> IdentityError + '_ {
    move |source| IdentityError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl Identity {
    /// A fresh identity from the OS random number generator.
    pub fn generate_ephemeral() -> Result<Self, IdentityError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| IdentityError::Rng(e.to_string()))?;
        Ok(Self::from_seed(seed))
    }

    /// An identity from a 32-byte ed25519 secret seed.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Identity {
            signing: SigningKey::from_bytes(&seed),
        }
    }

    /// The public key.
    pub fn public_key(&self) -> VerifyingKey {
        self.signing.verifying_key()
    }

    /// The public key as lowercase hex (64 characters).
    pub fn public_key_hex(&self) -> String {
        hex(self.public_key().as_bytes())
    }

    /// The node id derived from the public key.
    pub fn node_id(&self) -> NodeId {
        NodeId::from_public_key(&self.public_key())
    }

    /// Signs `message`.
    pub fn sign(&self, message: &[u8]) -> Signature {
        self.signing.sign(message)
    }

    /// The key file bytes (see module docs).
    pub fn to_key_file_bytes(&self) -> [u8; KEY_FILE_LEN] {
        let mut out = [0u8; KEY_FILE_LEN];
        let public = self.public_key();
        let parts: [&[u8]; 4] = [
            &KEY_FILE_MAGIC,
            &[KEY_FILE_VERSION],
            self.signing.as_bytes(),
            public.as_bytes(),
        ];
        let mut rest: &mut [u8] = &mut out;
        for part in parts {
            let (head, tail) = rest.split_at_mut(part.len());
            head.copy_from_slice(part);
            rest = tail;
        }
        out
    }

    /// Decodes key file bytes, checking magic, version, length and that the stored public key
    /// matches the seed.
    pub fn from_key_file_bytes(bytes: &[u8], path: &Path) -> Result<Self, IdentityError> {
        let corrupt = |reason| IdentityError::Corrupt {
            path: path.to_path_buf(),
            reason,
        };
        let bytes: &[u8; KEY_FILE_LEN] = bytes.try_into().map_err(|_| corrupt("wrong length"))?;
        let (magic, rest) = bytes.split_at(4);
        let (version, rest) = rest.split_at(1);
        let (seed, public) = rest.split_at(32);
        if magic != KEY_FILE_MAGIC {
            return Err(corrupt("bad magic"));
        }
        if version != [KEY_FILE_VERSION] {
            return Err(corrupt("unsupported version"));
        }
        let seed: [u8; 32] = seed.try_into().map_err(|_| corrupt("wrong length"))?;
        let identity = Self::from_seed(seed);
        if identity.public_key().as_bytes().as_slice() != public {
            return Err(corrupt("public key does not match secret key"));
        }
        Ok(identity)
    }

    /// Path of the key file for `name` under `data_dir`.
    pub fn key_path(data_dir: &Path, name: &str) -> Result<PathBuf, IdentityError> {
        validate_name(name)?;
        Ok(data_dir.join("identities").join(format!("{name}.key")))
    }

    /// Generates a new identity and writes it to `<data_dir>/identities/<name>.key` (mode
    /// 0600): write a temp file, fsync it, hard-link it into place (fails if the name exists,
    /// so an existing identity is never overwritten), remove the temp name, fsync the directory.
    pub fn generate(data_dir: &Path, name: &str) -> Result<Self, IdentityError> {
        let path = Self::key_path(data_dir, name)?;
        if path.exists() {
            return Err(IdentityError::AlreadyExists(path));
        }
        let dir = data_dir.join("identities");
        create_private_dir(&dir)?;
        let identity = Self::generate_ephemeral()?;
        let mut nonce = [0u8; 8];
        getrandom::fill(&mut nonce).map_err(|e| IdentityError::Rng(e.to_string()))?;
        let tmp = dir.join(format!(".{name}.key.tmp-{}", u64::from_le_bytes(nonce)));
        let result = write_new_file(&tmp, &identity.to_key_file_bytes()).and_then(|()| {
            fs::hard_link(&tmp, &path).map_err(|source| {
                if source.kind() == std::io::ErrorKind::AlreadyExists {
                    IdentityError::AlreadyExists(path.clone())
                } else {
                    IdentityError::Io {
                        path: path.clone(),
                        source,
                    }
                }
            })
        });
        let removed = fs::remove_file(&tmp).map_err(io_err(&tmp));
        result?;
        removed?;
        fsync_dir(&dir)?;
        Ok(identity)
    }

    /// Loads the identity stored under `name`.
    pub fn load(data_dir: &Path, name: &str) -> Result<Self, IdentityError> {
        let path = Self::key_path(data_dir, name)?;
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(IdentityError::NotFound(path));
            }
            Err(source) => return Err(IdentityError::Io { path, source }),
        };
        Self::from_key_file_bytes(&bytes, &path)
    }
}

/// Verifies an ed25519 signature strictly (rejects small-order keys and malleable forms).
pub fn verify_strict(key: &VerifyingKey, message: &[u8], signature: &Signature) -> bool {
    key.verify_strict(message, signature).is_ok()
}

fn validate_name(name: &str) -> Result<(), IdentityError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(IdentityError::InvalidName(name.to_string()))
    }
}

fn create_private_dir(dir: &Path) -> Result<(), IdentityError> {
    use std::os::unix::fs::DirBuilderExt;
    match fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
    {
        Ok(()) => Ok(()),
        Err(source) => Err(IdentityError::Io {
            path: dir.to_path_buf(),
            source,
        }),
    }
}

fn write_new_file(path: &Path, bytes: &[u8]) -> Result<(), IdentityError> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io_err(path))?;
    file.write_all(bytes).map_err(io_err(path))?;
    file.sync_all().map_err(io_err(path))
}

fn fsync_dir(dir: &Path) -> Result<(), IdentityError> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn node_ids_and_addresses_parse_strictly() {
        let id = Identity::from_seed([9; 32]).node_id();
        let upper = id.to_hex().to_uppercase();
        assert_eq!(upper.parse::<NodeId>(), Ok(id));
        assert_eq!(
            NodeId::from_hex(&id.to_hex()[1..]),
            Err(ParseNodeIdError::Length(63))
        );
        assert_eq!(
            NodeId::from_hex(&"g".repeat(64)),
            Err(ParseNodeIdError::NotHex)
        );
        let addr: NodeAddr = format!("{id}@127.0.0.1:4100").parse().unwrap();
        assert_eq!(addr.node_id, id);
        assert_eq!(addr.host_port, "127.0.0.1:4100");
        assert_eq!(addr.to_string(), format!("{id}@127.0.0.1:4100"));
        let v6: NodeAddr = format!("{id}@[::1]:9").parse().unwrap();
        assert_eq!(v6.host_port, "[::1]:9");
        for bad in [
            format!("{id}127.0.0.1:1"),
            format!("{id}@127.0.0.1"),
            format!("{id}@:1"),
            format!("{id}@h:port"),
        ] {
            assert!(bad.parse::<NodeAddr>().is_err(), "{bad}");
        }
    }
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn generate_then_load_round_trips_and_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let id = Identity::generate(dir.path(), "alice").unwrap();
        let path = Identity::key_path(dir.path(), "alice").unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let loaded = Identity::load(dir.path(), "alice").unwrap();
        assert_eq!(loaded.node_id(), id.node_id());
        assert!(matches!(
            Identity::generate(dir.path(), "alice"),
            Err(IdentityError::AlreadyExists(_))
        ));
        assert_eq!(
            Identity::load(dir.path(), "alice").unwrap().node_id(),
            id.node_id()
        );
        assert_eq!(NodeId::from_hex(&id.node_id().to_hex()), Ok(id.node_id()));
        // No temp files left behind.
        assert_eq!(
            fs::read_dir(dir.path().join("identities")).unwrap().count(),
            1
        );
    }

    #[test]
    fn bad_names_and_corrupt_files_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            Identity::generate(dir.path(), "../x"),
            Err(IdentityError::InvalidName(_))
        ));
        assert!(matches!(
            Identity::load(dir.path(), "nobody"),
            Err(IdentityError::NotFound(_))
        ));
        let id = Identity::from_seed([7; 32]);
        let mut bytes = id.to_key_file_bytes();
        bytes[68] ^= 1;
        assert!(matches!(
            Identity::from_key_file_bytes(&bytes, Path::new("x")),
            Err(IdentityError::Corrupt { .. })
        ));
    }
}
