//! [`SimDisk`]: an in-memory disk that records every operation and can show what a power cut
//! leaves behind, for power-loss tests (feature `sim`).
//!
//! One `SimDisk` holds every file and directory of a test (segment files, the index database,
//! the data dir itself). Cloning shares it. It implements [`SegmentBackend`], so a store can run
//! on it unchanged; the engine adapts its files to redb's storage backend as well.
//!
//! # What is recorded
//!
//! Every state-changing call appends one operation to a single global log, in the order the
//! calls took the disk's lock: `create`, `mkdir`, `unlink`, `rename` (directory-entry
//! operations, each belonging to the directory that holds the entry), `write` and `set_len`
//! (content operations, each belonging to one file, i.e. one inode), `sync file` (`fdatasync` or
//! `fsync` of a file) and `sync dir` (`fsync` of a directory). Reads see every operation done so
//! far (the page cache), whatever has been synced.
//!
//! # The crash model
//!
//! [`SimDisk::crash`] with cut point `N` builds the disk as it is after power was lost when
//! exactly the first `N` operations had been issued (operation `N` and later never happened):
//!
//! 1. A content operation on a file is **durable** if a `sync file` of the same file comes
//!    after it (and before `N`). A `sync file` persists the file's contents and length, never
//!    its name: POSIX does not promise that an `fsync` of a new file makes its directory entry
//!    durable.
//! 2. A directory-entry operation is **durable** if a `sync dir` of its directory comes after
//!    it (and before `N`). A rename (of a file, within one directory) is one atomic entry
//!    operation: after the crash the file has its old name or its new one.
//! 3. Every durable operation survives. Each operation that is not durable is, according to the
//!    [`CrashMode`]: lost ([`CrashMode::DropUnsynced`]), kept ([`CrashMode::KeepAll`], what a
//!    process kill leaves), or chosen at random ([`CrashMode::Random`], seeded): an entry
//!    operation or `set_len` survives or is lost; a `write` survives whole, is lost, or is
//!    **torn**: a prefix of it, or an arbitrary subset of its [`SECTOR`]-byte aligned pieces,
//!    survives (each sector is atomic; bytes outside the written range never change, redb's
//!    "powersafe overwrite" assumption). A torn write that extends the file may or may not
//!    extend its length; bytes of the new length no surviving piece covers read as zeros.
//!    Survivors are applied in program order, so any later operation can survive while an
//!    earlier one is lost: this is how reordering of unsynced writes is modelled.
//! 4. A file whose name did not survive is gone, whatever was synced of its contents; a
//!    directory whose entry did not survive is gone with everything below it.
//!
//! The result is a fresh `SimDisk` whose every file is durable (its log is empty).
//!
//! Cut points worth exploring are listed by [`SimDisk::sync_points`]: cutting just before and
//! just after every sync covers every distinct durable state; random cuts with
//! [`CrashMode::Random`] add reordered and torn states in between.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::backend::{SegmentBackend, SegmentFile};

/// Granularity of torn writes: aligned pieces of this many bytes are written whole or not at all.
pub const SECTOR: u64 = 512;

/// What happens to operations that were not made durable before the power cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashMode {
    /// Every operation not made durable by a sync is lost.
    DropUnsynced,
    /// Every operation survives (what a killed process leaves: the page cache is written back).
    KeepAll,
    /// Each operation not made durable survives, is lost or (a write) is torn, chosen by a
    /// generator seeded with this value.
    Random(u64),
}

/// An inode number.
type Ino = u64;

/// What a directory entry names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Node {
    File(Ino),
    Dir,
}

/// The state of the disk: directories (by full path) with their entries, file contents by inode.
#[derive(Debug, Clone, Default)]
struct Image {
    dirs: BTreeMap<PathBuf, BTreeMap<OsString, Node>>,
    /// Contents of every inode; an unlinked inode stays readable through open handles.
    files: HashMap<Ino, Vec<u8>>,
}

/// One recorded operation.
#[derive(Clone)]
enum Op {
    Create {
        dir: PathBuf,
        name: OsString,
        ino: Ino,
    },
    Mkdir {
        dir: PathBuf,
        name: OsString,
    },
    Unlink {
        dir: PathBuf,
        name: OsString,
    },
    Rename {
        dir: PathBuf,
        from: OsString,
        to: OsString,
    },
    Write {
        ino: Ino,
        offset: u64,
        data: Vec<u8>,
    },
    SetLen {
        ino: Ino,
        len: u64,
    },
    SyncFile {
        ino: Ino,
    },
    SyncDir {
        dir: PathBuf,
    },
}

impl fmt::Debug for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Create { dir, name, ino } => {
                write!(f, "create {} (inode {ino})", dir.join(name).display())
            }
            Op::Mkdir { dir, name } => write!(f, "mkdir {}", dir.join(name).display()),
            Op::Unlink { dir, name } => write!(f, "unlink {}", dir.join(name).display()),
            Op::Rename { dir, from, to } => write!(
                f,
                "rename {} -> {}",
                dir.join(from).display(),
                to.to_string_lossy()
            ),
            Op::Write { ino, offset, data } => {
                write!(f, "write inode {ino} [{offset}, +{})", data.len())
            }
            Op::SetLen { ino, len } => write!(f, "set_len inode {ino} to {len}"),
            Op::SyncFile { ino } => write!(f, "sync file inode {ino}"),
            Op::SyncDir { dir } => write!(f, "sync dir {}", dir.display()),
        }
    }
}

/// What an operation changes: one file's contents, one directory's entries, or nothing.
enum Target<'a> {
    File(Ino),
    Dir(&'a Path),
    Sync,
}

impl Op {
    fn target(&self) -> Target<'_> {
        match self {
            Op::Create { dir, .. }
            | Op::Mkdir { dir, .. }
            | Op::Unlink { dir, .. }
            | Op::Rename { dir, .. } => Target::Dir(dir),
            Op::Write { ino, .. } | Op::SetLen { ino, .. } => Target::File(*ino),
            Op::SyncFile { .. } | Op::SyncDir { .. } => Target::Sync,
        }
    }
}

#[derive(Debug)]
struct Disk {
    /// The durable state the log starts from.
    base: Image,
    /// `base` with every logged operation applied: what reads see.
    live: Image,
    log: Vec<Op>,
    next_ino: Ino,
}

/// An in-memory disk that records every operation (see the module docs for the crash model).
#[derive(Clone)]
pub struct SimDisk {
    disk: Arc<Mutex<Disk>>,
}

impl fmt::Debug for SimDisk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let disk = lock(&self.disk);
        f.debug_struct("SimDisk")
            .field("ops", &disk.log.len())
            .field("files", &disk.live.files.len())
            .finish_non_exhaustive()
    }
}

/// Statistics of the recorded log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimStats {
    /// Operations recorded (cut points are `0..=ops`).
    pub ops: usize,
    /// `sync file` and `sync dir` operations among them.
    pub syncs: usize,
    /// Bytes written.
    pub bytes_written: u64,
}

fn lock(disk: &Mutex<Disk>) -> MutexGuard<'_, Disk> {
    // The disk's state is consistent between operations; a panicking test thread cannot leave
    // it half-changed (every change is applied in one call below).
    disk.lock().unwrap_or_else(|e| e.into_inner())
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("sim: {} does not exist", path.display()),
    )
}

/// Splits a path into its directory and file name.
fn split(path: &Path) -> io::Result<(PathBuf, OsString)> {
    match (path.parent(), path.file_name()) {
        (Some(dir), Some(name)) => Ok((dir.to_path_buf(), name.to_os_string())),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("sim: {} has no parent directory", path.display()),
        )),
    }
}

impl Image {
    fn root() -> Image {
        let mut image = Image::default();
        image.dirs.insert(PathBuf::from("/"), BTreeMap::new());
        image
    }

    fn lookup(&self, path: &Path) -> Option<Node> {
        if self.dirs.contains_key(path) {
            return Some(Node::Dir);
        }
        let (dir, name) = split(path).ok()?;
        self.dirs.get(&dir)?.get(&name).copied()
    }

    /// Applies one operation as it happened (entry operations whose precondition no longer
    /// holds in a crash image — e.g. an unlink of a file whose creation was lost — do nothing).
    fn apply(&mut self, op: &Op) {
        match op {
            Op::Create { dir, name, ino } => {
                self.files.entry(*ino).or_default();
                if let Some(entries) = self.dirs.get_mut(dir) {
                    entries.insert(name.clone(), Node::File(*ino));
                }
            }
            Op::Mkdir { dir, name } => {
                if let Some(entries) = self.dirs.get_mut(dir) {
                    entries.insert(name.clone(), Node::Dir);
                    self.dirs.entry(dir.join(name)).or_default();
                }
            }
            Op::Unlink { dir, name } => {
                if let Some(entries) = self.dirs.get_mut(dir) {
                    entries.remove(name);
                }
            }
            Op::Rename { dir, from, to } => {
                if let Some(entries) = self.dirs.get_mut(dir)
                    && let Some(node) = entries.remove(from)
                {
                    entries.insert(to.clone(), node);
                }
            }
            Op::Write { ino, offset, data } => write_into(self.file(*ino), *offset, data),
            Op::SetLen { ino, len } => resize(self.file(*ino), *len),
            Op::SyncFile { .. } | Op::SyncDir { .. } => {}
        }
    }

    fn file(&mut self, ino: Ino) -> &mut Vec<u8> {
        self.files.entry(ino).or_default()
    }

    /// Drops directories that are no longer reachable from the root and inodes no entry names.
    fn prune(&mut self) {
        let mut reachable: BTreeMap<PathBuf, BTreeMap<OsString, Node>> = BTreeMap::new();
        let mut todo = vec![PathBuf::from("/")];
        while let Some(dir) = todo.pop() {
            let Some(entries) = self.dirs.remove(&dir) else {
                continue;
            };
            for (name, node) in &entries {
                if *node == Node::Dir {
                    todo.push(dir.join(name));
                }
            }
            reachable.insert(dir, entries);
        }
        // An entry naming a directory whose own map is gone cannot happen (mkdir creates both);
        // drop such entries anyway so lookups stay consistent.
        let dirs: Vec<PathBuf> = reachable.keys().cloned().collect();
        for (dir, entries) in reachable.iter_mut() {
            entries.retain(|name, node| *node != Node::Dir || dirs.contains(&dir.join(name)));
        }
        let named: std::collections::HashSet<Ino> = reachable
            .values()
            .flat_map(|entries| entries.values())
            .filter_map(|node| match node {
                Node::File(ino) => Some(*ino),
                Node::Dir => None,
            })
            .collect();
        self.files.retain(|ino, _| named.contains(ino));
        self.dirs = reachable;
    }
}

fn resize(file: &mut Vec<u8>, len: u64) {
    file.resize(usize::try_from(len).unwrap_or(usize::MAX), 0);
}

fn write_into(file: &mut Vec<u8>, offset: u64, data: &[u8]) {
    let Ok(start) = usize::try_from(offset) else {
        return;
    };
    let end = start.saturating_add(data.len());
    if file.len() < end {
        file.resize(end, 0);
    }
    if let Some(dst) = file.get_mut(start..end) {
        dst.copy_from_slice(data);
    }
}

/// splitmix64: a small seeded generator (no dependency, stable across versions).
#[derive(Debug)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }

    fn coin(&mut self) -> bool {
        self.next() & 1 == 1
    }
}

/// Applies a torn version of a write: a sector-aligned prefix, or a random subset of its
/// sectors; the file length grows to the write's end or stays.
fn apply_torn(image: &mut Image, ino: Ino, offset: u64, data: &[u8], rng: &mut Rng) {
    let file = image.file(ino);
    let old_len = file.len() as u64;
    let len = data.len() as u64;
    let end = offset.saturating_add(len);
    // Pieces: [offset, next sector boundary), whole sectors, the rest.
    let mut pieces = Vec::new();
    let mut at = offset;
    while at < end {
        let next = (at / SECTOR)
            .saturating_add(1)
            .saturating_mul(SECTOR)
            .min(end);
        pieces.push((at, next));
        at = next;
    }
    let prefix = rng.coin();
    let prefix_len = rng.below(pieces.len() as u64);
    let keep: Vec<bool> = (0..pieces.len() as u64)
        .map(|i| if prefix { i < prefix_len } else { rng.coin() })
        .collect();
    let grow = end > old_len && rng.coin();
    if grow {
        resize(file, end);
    }
    let visible = file.len() as u64;
    for ((start, stop), kept) in pieces.into_iter().zip(keep) {
        if !kept || start >= visible {
            continue;
        }
        let stop = stop.min(visible);
        let (Ok(from), Ok(to)) = (
            usize::try_from(start.saturating_sub(offset)),
            usize::try_from(stop.saturating_sub(offset)),
        ) else {
            continue;
        };
        if let Some(bytes) = data.get(from..to) {
            write_into(file, start, bytes);
        }
    }
}

impl SimDisk {
    /// An empty disk holding only `dir` and its ancestors, all durable (`dir` must be absolute).
    pub fn with_dir(dir: &Path) -> SimDisk {
        let mut image = Image::root();
        let mut at = PathBuf::from("/");
        for part in dir.components().skip(1) {
            let name = part.as_os_str().to_os_string();
            if let Some(entries) = image.dirs.get_mut(&at) {
                entries.insert(name.clone(), Node::Dir);
            }
            at = at.join(name);
            image.dirs.entry(at.clone()).or_default();
        }
        SimDisk {
            disk: Arc::new(Mutex::new(Disk {
                live: image.clone(),
                base: image,
                log: Vec::new(),
                next_ino: 1,
            })),
        }
    }

    /// Number of operations recorded so far: the cut point "now".
    pub fn op_count(&self) -> usize {
        lock(&self.disk).log.len()
    }

    /// Indexes in the log of every sync (file or directory). Cutting at `i` loses that sync,
    /// cutting at `i + 1` keeps it.
    pub fn sync_points(&self) -> Vec<usize> {
        lock(&self.disk)
            .log
            .iter()
            .enumerate()
            .filter(|(_, op)| matches!(op.target(), Target::Sync))
            .map(|(i, _)| i)
            .collect()
    }

    /// What the log holds.
    pub fn stats(&self) -> SimStats {
        let disk = lock(&self.disk);
        let mut stats = SimStats {
            ops: disk.log.len(),
            ..SimStats::default()
        };
        for op in &disk.log {
            match op {
                Op::SyncFile { .. } | Op::SyncDir { .. } => stats.syncs += 1,
                Op::Write { data, .. } => {
                    stats.bytes_written = stats.bytes_written.saturating_add(data.len() as u64);
                }
                _ => {}
            }
        }
        stats
    }

    /// A one-line description of operation `i` of the log (for failure messages).
    pub fn describe(&self, i: usize) -> String {
        let disk = lock(&self.disk);
        match disk.log.get(i) {
            Some(op) => format!("{op:?}"),
            None => format!("op {i} (end of log)"),
        }
    }

    /// The disk after a power cut at `cut` (the first `cut` operations happened; see the module
    /// docs). `cut` past the end of the log means "now". The original disk is not changed.
    pub fn crash(&self, cut: usize, mode: CrashMode) -> SimDisk {
        let disk = lock(&self.disk);
        let ops = disk.log.get(..cut).unwrap_or(&disk.log);
        let mut file_synced: HashMap<Ino, usize> = HashMap::new();
        let mut dir_synced: HashMap<&Path, usize> = HashMap::new();
        for (i, op) in ops.iter().enumerate() {
            match op {
                Op::SyncFile { ino } => {
                    file_synced.insert(*ino, i);
                }
                Op::SyncDir { dir } => {
                    dir_synced.insert(dir.as_path(), i);
                }
                _ => {}
            }
        }
        let mut rng = Rng(match mode {
            CrashMode::Random(seed) => seed,
            _ => 0,
        });
        let mut image = disk.base.clone();
        for (i, op) in ops.iter().enumerate() {
            let durable = match op.target() {
                Target::File(ino) => file_synced.get(&ino).is_some_and(|s| *s > i),
                Target::Dir(dir) => dir_synced.get(dir).is_some_and(|s| *s > i),
                Target::Sync => continue,
            };
            if durable {
                image.apply(op);
                continue;
            }
            match mode {
                CrashMode::DropUnsynced => {}
                CrashMode::KeepAll => image.apply(op),
                CrashMode::Random(_) => match op {
                    Op::Write { ino, offset, data } => match rng.below(4) {
                        0 => {}
                        1 => apply_torn(&mut image, *ino, *offset, data, &mut rng),
                        _ => image.apply(op),
                    },
                    _ => {
                        if rng.coin() {
                            image.apply(op);
                        }
                    }
                },
            }
        }
        image.prune();
        SimDisk {
            disk: Arc::new(Mutex::new(Disk {
                live: image.clone(),
                base: image,
                log: Vec::new(),
                next_ino: disk.next_ino,
            })),
        }
    }

    /// The current (page cache) contents of the file at `path`, if it exists.
    pub fn read_file(&self, path: &Path) -> Option<Vec<u8>> {
        let disk = lock(&self.disk);
        match disk.live.lookup(path)? {
            Node::File(ino) => disk.live.files.get(&ino).cloned(),
            Node::Dir => None,
        }
    }

    fn file_handle(&self, ino: Ino, path: &Path, writable: bool) -> Box<dyn SegmentFile> {
        Box::new(SimFile {
            disk: Arc::clone(&self.disk),
            ino,
            path: path.to_path_buf(),
            writable,
        })
    }
}

/// Appends `op` to the log and applies it to the live image.
fn record(disk: &mut Disk, op: Op) {
    disk.live.apply(&op);
    disk.log.push(op);
}

impl SegmentBackend for SimDisk {
    fn create(&self, path: &Path) -> io::Result<Box<dyn SegmentFile>> {
        let (dir, name) = split(path)?;
        let mut disk = lock(&self.disk);
        if !disk.live.dirs.contains_key(&dir) {
            return Err(not_found(&dir));
        }
        if disk.live.lookup(path).is_some() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("sim: {} exists", path.display()),
            ));
        }
        let ino = disk.next_ino;
        disk.next_ino = ino.saturating_add(1);
        record(&mut disk, Op::Create { dir, name, ino });
        drop(disk);
        Ok(self.file_handle(ino, path, true))
    }

    fn open(&self, path: &Path, writable: bool) -> io::Result<Box<dyn SegmentFile>> {
        let ino = match lock(&self.disk).live.lookup(path) {
            Some(Node::File(ino)) => ino,
            Some(Node::Dir) => {
                return Err(io::Error::new(
                    io::ErrorKind::IsADirectory,
                    format!("sim: {} is a directory", path.display()),
                ));
            }
            None => return Err(not_found(path)),
        };
        Ok(self.file_handle(ino, path, writable))
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        let disk = lock(&self.disk);
        let entries = disk.live.dirs.get(dir).ok_or_else(|| not_found(dir))?;
        Ok(entries.keys().map(|name| dir.join(name)).collect())
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        let (dir, name) = split(path)?;
        let mut disk = lock(&self.disk);
        match disk.live.lookup(path) {
            Some(Node::File(_)) => {}
            Some(Node::Dir) => {
                return Err(io::Error::new(
                    io::ErrorKind::IsADirectory,
                    format!("sim: {} is a directory", path.display()),
                ));
            }
            None => return Err(not_found(path)),
        }
        record(&mut disk, Op::Unlink { dir, name });
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let (dir, from_name) = split(from)?;
        let (to_dir, to_name) = split(to)?;
        if dir != to_dir {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "sim: rename across directories",
            ));
        }
        let mut disk = lock(&self.disk);
        match disk.live.lookup(from) {
            Some(Node::File(_)) => {}
            Some(Node::Dir) => {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "sim: only files are renamed",
                ));
            }
            None => return Err(not_found(from)),
        }
        if disk.live.lookup(to) == Some(Node::Dir) {
            return Err(io::Error::new(
                io::ErrorKind::IsADirectory,
                format!("sim: {} is a directory", to.display()),
            ));
        }
        record(
            &mut disk,
            Op::Rename {
                dir,
                from: from_name,
                to: to_name,
            },
        );
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut disk = lock(&self.disk);
        if !disk.live.dirs.contains_key(dir) {
            return Err(not_found(dir));
        }
        record(
            &mut disk,
            Op::SyncDir {
                dir: dir.to_path_buf(),
            },
        );
        Ok(())
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut disk = lock(&self.disk);
        let mut missing = Vec::new();
        let mut at = dir;
        while !disk.live.dirs.contains_key(at) {
            if disk.live.lookup(at).is_some() {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("sim: {} is a file", at.display()),
                ));
            }
            missing.push(at);
            at = at.parent().ok_or_else(|| not_found(dir))?;
        }
        for path in missing.into_iter().rev() {
            let (parent, name) = split(path)?;
            record(&mut disk, Op::Mkdir { dir: parent, name });
        }
        Ok(())
    }
}

/// An open file of a [`SimDisk`].
struct SimFile {
    disk: Arc<Mutex<Disk>>,
    ino: Ino,
    path: PathBuf,
    writable: bool,
}

impl fmt::Debug for SimFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimFile")
            .field("path", &self.path)
            .field("ino", &self.ino)
            .finish_non_exhaustive()
    }
}

impl SimFile {
    fn check_writable(&self) -> io::Result<()> {
        if self.writable {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("sim: {} is open read-only", self.path.display()),
            ))
        }
    }
}

impl SegmentFile for SimFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let disk = lock(&self.disk);
        let data = disk
            .live
            .files
            .get(&self.ino)
            .ok_or_else(|| not_found(&self.path))?;
        let src = usize::try_from(offset)
            .ok()
            .and_then(|start| data.get(start..start.checked_add(buf.len())?))
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "sim: read of {} bytes at {offset} past the end of {} ({} bytes)",
                        buf.len(),
                        self.path.display(),
                        data.len()
                    ),
                )
            })?;
        buf.copy_from_slice(src);
        Ok(())
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.check_writable()?;
        record(
            &mut lock(&self.disk),
            Op::Write {
                ino: self.ino,
                offset,
                data: buf.to_vec(),
            },
        );
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        record(&mut lock(&self.disk), Op::SyncFile { ino: self.ino });
        Ok(())
    }

    fn len(&self) -> io::Result<u64> {
        let disk = lock(&self.disk);
        Ok(disk.live.files.get(&self.ino).map_or(0, |f| f.len() as u64))
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.check_writable()?;
        record(&mut lock(&self.disk), Op::SetLen { ino: self.ino, len });
        Ok(())
    }
}
