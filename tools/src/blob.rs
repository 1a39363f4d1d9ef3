//! `net-mesh blob …`: put, get, cat, stat, ls, rm, chunks on the local data dir, and the
//! printing both they and their `--node` forms (`node_blob`) use, so the two cannot drift.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use clap::Subcommand;
use net_mesh_engine::codec::Encoding;
use net_mesh_engine::codec::Hash;
use net_mesh_engine::error::hex;
use net_mesh_engine::index::{PinName, check_pin_name};
use net_mesh_engine::{
    BlobRef, BlobStat, ChunkingStrategy, ErrorClass, Store, StoreConfig, StoreError, TreePolicy,
    Unpinned,
};
use net_mesh_node::proto::BandwidthClass;
use net_mesh_rpc::NodeAddr;
use serde_json::json;

use crate::Ctx;

use crate::outln;
use crate::output::{CliError, CliResult, ErrorContext, RowPrinter, progress};

#[derive(Debug, Subcommand)]
pub enum BlobCmd {
    /// Store a file (or stdin with `-`) as a blob, pin it and print its ref. With --node it is
    /// a resumable upload on the node (`staging-id: ID` on stderr) that reconnects and resumes
    /// by itself when the connection drops; input from stdin cannot be replayed, so such an
    /// upload fails instead (finish it with `staging resume ID FILE --node`)
    Put {
        /// File to store, or `-` for stdin
        file: PathBuf,
        /// cdc | cdc:MIN,AVG,MAX | fixed:SIZE (sizes in bytes or with K/M suffix)
        /// [default: cdc; with --rs: fixed:1M]
        #[arg(long)]
        chunking: Option<ChunkingStrategy>,
        /// Print a JSON object instead of the ref
        #[arg(long)]
        json: bool,
        /// Erasure-code the blob: stripes of K data chunks get N-K parity chunks (2 <= K < N <= 255)
        #[arg(long, value_name = "K,N", value_parser = parse_rs)]
        rs: Option<(u8, u8)>,
        /// Pin name of the blob, at most 1024 bytes [default: the file name; `-` for stdin]
        #[arg(long, value_name = "NAME")]
        name: Option<String>,
        /// Chunk refs per leaf node (tests use tiny values to build deep trees)
        #[arg(long, hide = true)]
        leaf_fanout: Option<usize>,
        /// Children per internal node
        #[arg(long, hide = true)]
        internal_fanout: Option<usize>,
        /// Most chunk refs a Manifest ref inlines before the blob becomes a Tree
        #[arg(long, hide = true)]
        manifest_max_refs: Option<usize>,
        /// Upload with durable checkpoints; prints `staging-id: ID` on stderr at once, and a
        /// killed upload continues with `staging resume ID FILE`
        #[arg(long, conflicts_with = "rs")]
        resumable: bool,
        /// Staging id to use with --resumable (default: a random one)
        #[arg(long, value_name = "ID", requires = "resumable")]
        staging_id: Option<String>,
        /// Input bytes between two checkpoints of a --resumable put (K/M/G suffixes) [default:
        /// $NET_MESH_CHECKPOINT_INTERVAL, read only for a resumable put, else 64M]
        #[arg(long, value_name = "SIZE", requires = "resumable",
              value_parser = crate::staging::parse_size)]
        checkpoint_interval: Option<u64>,
        /// With --node: reconnect and resume this many times after the connection drops (with
        /// exponential backoff from 200 ms up to 5 s between tries)
        #[arg(long, value_name = "N", default_value_t = 5)]
        retries: u32,
        /// With --node: the bandwidth class of the transfer on the node (foreground |
        /// background | realtime; see `serve --bandwidth`). Without --node it is accepted and
        /// has no effect (a local command has no bandwidth budget)
        #[arg(long, value_name = "CLASS", default_value = "foreground", value_parser = parse_class)]
        class: BandwidthClass,
    },
    /// Write a whole blob to stdout or a file, verified
    Get {
        /// Blob ref (nm1…) or the hex prefix of a pinned blob's id
        blob: String,
        /// Write to FILE instead of stdout (written to a temp file, renamed when verified, with
        /// the mode of any new file: 0666 less the umask; a device or FIFO such as /dev/null is
        /// written to directly; a directory is refused before anything is read; a symlink to a
        /// file is written through, the link staying a link). A failed get, or one SIGINT/SIGTERM/SIGHUP stops (exit 128 +
        /// the signal's number), removes the temp file and leaves an existing FILE as it was
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// With --node: the bandwidth class of the transfer on the node (foreground |
        /// background | realtime; see `serve --bandwidth`). Without --node it is accepted and
        /// has no effect (a local command has no bandwidth budget)
        #[arg(long, value_name = "CLASS", default_value = "foreground", value_parser = parse_class)]
        class: BandwidthClass,
    },
    /// Write bytes A (inclusive) to B (exclusive) of a blob to stdout, verified
    Cat {
        blob: String,
        /// A..B
        #[arg(long, value_name = "A..B")]
        range: String,
        /// With --node: the bandwidth class of the transfer on the node (foreground |
        /// background | realtime; see `serve --bandwidth`). Without --node it is accepted and
        /// has no effect (a local command has no bandwidth budget)
        #[arg(long, value_name = "CLASS", default_value = "foreground", value_parser = parse_class)]
        class: BandwidthClass,
    },
    /// Show a blob's kind, size, depth, chunk count and encoding
    Stat {
        blob: String,
        #[arg(long)]
        json: bool,
    },
    /// List pinned blobs
    Ls {
        #[arg(long)]
        json: bool,
    },
    /// Unpin a blob (space is reclaimed by gc). A pin row that does not decode is named by its
    /// full id (64 hex digits, as `blob ls` and fsck print it)
    Rm {
        /// Blob ref (nm1…), the hex prefix of a pinned blob's id, or a pin row's full id
        blob: String,
    },
    /// List every chunk of a blob: hash, size, role (data/parity) and stripe
    Chunks {
        blob: String,
        #[arg(long)]
        json: bool,
    },
    /// Make the node (--node) fetch a blob from another node, only the objects it lacks, each
    /// verified, and pin it; the node's identity needs read on the other node
    Pull {
        /// The blob's full ref (nm1…)
        blob: String,
        /// The node to fetch from: NODEID@HOST:PORT
        #[arg(long, value_name = "NODE_ADDR")]
        from: NodeAddr,
        /// Pin name on the node [default: the blob's id]
        #[arg(long, value_name = "NAME")]
        name: Option<String>,
        /// Print `{"blob_ref","objects_fetched","bytes_fetched"}`
        #[arg(long)]
        json: bool,
        /// With --node: the bandwidth class of the transfer on the node (foreground |
        /// background | realtime; see `serve --bandwidth`). Without --node it is accepted and
        /// has no effect (a local command has no bandwidth budget)
        #[arg(long, value_name = "CLASS", default_value = "foreground", value_parser = parse_class)]
        class: BandwidthClass,
    },
}

/// `K,N` for `--rs`.
/// Default chunk size of erasure-coded puts (`blob put --rs` without `--chunking`).
pub(crate) const RS_DEFAULT_CHUNK: u32 = 1024 * 1024;

fn parse_class(text: &str) -> Result<BandwidthClass, String> {
    BandwidthClass::from_name(text)
        .ok_or_else(|| format!("{text:?} is not a class: foreground, background or realtime"))
}

fn parse_rs(text: &str) -> Result<(u8, u8), String> {
    let (k, n) = text
        .split_once(',')
        .ok_or_else(|| format!("{text:?} is not K,N"))?;
    let k: u8 = k.trim().parse().map_err(|e| format!("K {k:?}: {e}"))?;
    let n: u8 = n.trim().parse().map_err(|e| format!("N {n:?}: {e}"))?;
    net_mesh_engine::RsParams::for_writing(k, n).map_err(|e| e.to_string())?;
    Ok((k, n))
}

use crate::open::open;

/// A blob named on the command line: a full ref, or the id prefix of a blob pinned in
/// `channel`.
pub(crate) fn resolve(store: &Store, channel: &str, text: &str) -> CliResult<BlobRef> {
    if text.starts_with("nm1") {
        return BlobRef::from_text(text)
            .with_class(ErrorClass::Usage, || format!("invalid blob ref {text:?}"));
    }
    Ok(store.find_pin_in(channel, text)?.1.blob_ref)
}

pub(crate) fn parse_range(text: &str) -> CliResult<std::ops::Range<u64>> {
    let Some((a, b)) = text.split_once("..") else {
        return Err(CliError::msg(
            ErrorClass::Usage,
            format!("range {text:?} is not A..B"),
        ));
    };
    let a: u64 = a
        .parse()
        .with_class(ErrorClass::Usage, || format!("range start {a:?}"))?;
    let b: u64 = b
        .parse()
        .with_class(ErrorClass::Usage, || format!("range end {b:?}"))?;
    Ok(a..b)
}

pub(crate) fn encoding_name(e: Encoding) -> String {
    match e {
        Encoding::Plain => "plain".to_string(),
        Encoding::ReedSolomon {
            data_shards,
            total_shards,
        } => {
            format!("rs:{data_shards},{total_shards}")
        }
    }
}

pub(crate) fn kind_name(r: &BlobRef) -> &'static str {
    match r {
        BlobRef::Small { .. } => "small",
        BlobRef::Manifest { .. } => "manifest",
        BlobRef::Tree { .. } => "tree",
    }
}

pub fn run(cmd: BlobCmd, ctx: &Ctx) -> CliResult {
    if let Some(addr) = &ctx.node {
        return crate::node_blob::run(cmd, ctx, addr);
    }
    let dir = ctx.dir.as_path();
    match cmd {
        BlobCmd::Put {
            file,
            chunking,
            json,
            rs,
            name,
            leaf_fanout,
            internal_fanout,
            manifest_max_refs,
            resumable,
            staging_id,
            checkpoint_interval,
            retries: _,
            class: _,
        } => {
            let name = PinName::given_or(name, || default_pin_name(&file));
            check_pin_name(&name.name).map_err(StoreError::from)?;
            let (chunking, tree) = put_layout(
                chunking,
                rs,
                [leaf_fanout, internal_fanout, manifest_max_refs],
            );
            let config = StoreConfig {
                chunking,
                tree,
                ..StoreConfig::default()
            };
            if resumable {
                return crate::staging::put_resumable(
                    ctx,
                    config,
                    &file,
                    name,
                    staging_id,
                    crate::staging::checkpoint_interval(checkpoint_interval)?,
                    json,
                );
            }
            let store = open(dir, config)?;
            put(&store, &ctx.channel, &file, &name, json, rs)
        }
        BlobCmd::Get { blob, output, .. } => {
            let store = open(dir, StoreConfig::default())?;
            let blob_ref = resolve(&store, &ctx.channel, &blob)?;
            get(&blob_ref, output.as_deref(), &mut |sink| {
                Ok(store.fetch(&blob_ref, sink)?)
            })
        }
        BlobCmd::Cat { blob, range, .. } => {
            let range = parse_range(&range)?;
            let store = open(dir, StoreConfig::default())?;
            let blob_ref = resolve(&store, &ctx.channel, &blob)?;
            cat(&mut |sink| Ok(store.fetch_range(&blob_ref, range.clone(), sink)?))
        }
        BlobCmd::Stat { blob, json } => {
            let store = open(dir, StoreConfig::default())?;
            let blob_ref = resolve(&store, &ctx.channel, &blob)?;
            let stat = store.stat(&blob_ref)?;
            print_stat(&blob_ref, &stat, json)
        }
        BlobCmd::Ls { json } => {
            let store = open(dir, StoreConfig::default())?;
            check_channel_exists(&store, &ctx.channel)?;
            let mut printer = RowPrinter::new(json);
            // Stopped early only by a failed write, which `finish` reports.
            let _stopped = store.for_each_pin_in(&ctx.channel, &mut |row| match row {
                Ok((blob_id, pin)) => print_pin(
                    &mut printer,
                    &PinLine {
                        blob_id,
                        name: pin.name,
                        blob_ref: pin.blob_ref,
                        created_unix_ms: pin.created_unix_ms,
                    },
                ),
                Err(bad) => {
                    warn_undecodable_pin(&bad.id, &bad.error.to_string());
                    ControlFlow::Continue(())
                }
            })?;
            printer.finish()
        }
        BlobCmd::Chunks { blob, json } => {
            let store = open(dir, StoreConfig::default())?;
            let blob_ref = resolve(&store, &ctx.channel, &blob)?;
            crate::chunk::list(&store, &blob_ref, json)
        }
        BlobCmd::Pull { .. } => Err(CliError::msg(
            ErrorClass::Usage,
            "`blob pull` makes a node fetch a blob: pass --node NODE_ADDR",
        )),
        BlobCmd::Rm { blob } => {
            let store = open(dir, StoreConfig::default())?;
            let id = if blob.starts_with("nm1") {
                net_mesh_engine::index::blob_id(&resolve(&store, &ctx.channel, &blob)?)
            } else {
                store.find_pin_id_in(&ctx.channel, &blob)?
            };
            report_unpinned(store.unpin_in(&ctx.channel, &id)?, &hex(&id))
        }
    }
}

/// Fails with [`StoreError::NoSuchChannel`] (not found) unless the store has `channel`: a
/// listing of a channel that does not exist is not an empty one.
pub(crate) fn check_channel_exists(store: &Store, channel: &str) -> CliResult {
    if store.has_channel(channel)? {
        Ok(())
    } else {
        Err(StoreError::NoSuchChannel(channel.to_string()).into())
    }
}

/// Counts bytes read for the progress bar.
struct Counted<R> {
    inner: R,
    bar: indicatif::ProgressBar,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bar.inc(n as u64);
        Ok(n)
    }
}

/// The pin name `blob put FILE` uses without `--name`: the file name, `-` for stdin.
/// The chunking and tree shape of a put: the options given, the defaults for the rest.
/// Parity chunks are as long as their stripe's largest chunk, so erasure-coded blobs default to
/// equal-size chunks (10+4 stores 1.4x the input instead of ~1.76x with CDC's spread of sizes);
/// an explicit --chunking still wins. `fanouts`: --leaf-fanout, --internal-fanout,
/// --manifest-max-refs.
pub(crate) fn put_layout(
    chunking: Option<ChunkingStrategy>,
    rs: Option<(u8, u8)>,
    fanouts: [Option<usize>; 3],
) -> (ChunkingStrategy, TreePolicy) {
    let [leaf_fanout, internal_fanout, manifest_max_refs] = fanouts;
    let defaults = TreePolicy::default();
    let tree = TreePolicy {
        leaf_fanout: leaf_fanout.unwrap_or(defaults.leaf_fanout),
        internal_fanout: internal_fanout.unwrap_or(defaults.internal_fanout),
        manifest_max_refs: manifest_max_refs.unwrap_or(defaults.manifest_max_refs),
    };
    let chunking = chunking.unwrap_or(match rs {
        Some(_) => ChunkingStrategy::Fixed {
            size: RS_DEFAULT_CHUNK,
        },
        None => ChunkingStrategy::default(),
    });
    (chunking, tree)
}

pub(crate) fn default_pin_name(file: &Path) -> String {
    if file == Path::new("-") {
        return "-".to_string();
    }
    file.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn put(
    store: &Store,
    channel: &str,
    file: &Path,
    name: &PinName,
    json: bool,
    rs: Option<(u8, u8)>,
) -> CliResult {
    // Refused before any byte is read, not at the end of the upload.
    check_channel_exists(store, channel)?;
    let (input, size): (Box<dyn Read + Send>, Option<u64>) = if file == Path::new("-") {
        (Box::new(std::io::stdin()), None)
    } else {
        // A directory is refused as with --node, not left to fail the first read.
        crate::staging::input_metadata(file)?;
        let f = File::open(file)
            .with_class(ErrorClass::Io, || format!("opening {}", file.display()))?;
        let size = f.metadata().ok().map(|m| m.len());
        (Box::new(f), size)
    };
    let bar = progress(size, "put");
    let counted = Counted {
        inner: input,
        bar: bar.clone(),
    };
    let outcome = match rs {
        None => store.store_stream_named_in(channel, counted, name)?,
        Some((k, n)) => store.store_stream_with_rs_named_in(channel, counted, k, n, name)?,
    };
    bar.finish_and_clear();
    let pinned_as = store.pin_name_in(channel, &outcome.blob_ref)?;
    print_put(&outcome, pinned_as.as_deref(), Some(&name.name), json)
}

/// The `blob put --json` object of a finished upload.
pub(crate) fn put_json(
    outcome: &net_mesh_engine::PutOutcome,
    pin_name: Option<&str>,
) -> serde_json::Value {
    let r = &outcome.blob_ref;
    json!({
        "blob_ref": r.to_text(),
        "blob_id": hex(&outcome.blob_id),
        "kind": kind_name(r),
        "size": r.size(),
        "depth": r.depth(),
        "chunks": outcome.chunks,
        "new_chunks": outcome.new_chunks,
        "new_bytes": outcome.new_bytes,
        "encoding": encoding_name(r.encoding()),
        "name": pin_name,
    })
}

/// Prints a finished upload like `blob put` does (the ref, or a JSON object). `pin_name`:
/// the name of the blob's pin after the put (`name` in JSON; `None` when it is unknown, e.g.
/// from an older node); `requested`: the name this put asked for, if known (text mode notes
/// on stderr a pin that kept another name, [`note_kept_name`]).
pub(crate) fn print_put(
    outcome: &net_mesh_engine::PutOutcome,
    pin_name: Option<&str>,
    requested: Option<&str>,
    json: bool,
) -> CliResult {
    if json {
        outln!("{}", put_json(outcome, pin_name));
    } else {
        note_kept_name(pin_name, requested);
        outln!("{}", outcome.blob_ref.to_text());
    }
    Ok(())
}

/// Says on stderr that the blob was pinned already under another name than the `requested`
/// one and keeps it: a given `--name` renames the pin, so only a default name (the file's, the
/// blob id) can differ, and the user may not expect the old name to stay.
pub(crate) fn note_kept_name(pinned: Option<&str>, requested: Option<&str>) {
    if let (Some(pinned), Some(requested)) = (pinned, requested)
        && pinned != requested
    {
        eprintln!(
            "net-mesh: the blob was pinned already as {}; it keeps that name (--name renames it)",
            printable(pinned)
        );
    }
}

/// The sink of `get` and `cat`: counts bytes written for the progress bar, and keeps the error
/// of a failed write. A read reports that error inside its own (a node read only as a message),
/// while a failed write of ours is what the command must report: a closed stdout (`| head`) then
/// ends it quietly ([`CliError::is_broken_pipe`]), locally and with `--node` alike.
struct OutputSink<W> {
    inner: W,
    bar: indicatif::ProgressBar,
    /// The first write that failed, kept as its kind and message.
    failed: Option<std::io::Error>,
}

impl<W: Write> OutputSink<W> {
    fn new(inner: W, bar: &indicatif::ProgressBar) -> OutputSink<W> {
        OutputSink {
            inner,
            bar: bar.clone(),
            failed: None,
        }
    }

    /// Runs `fetch` into this sink and flushes it; a failed write is reported as writing `what`,
    /// whatever error the read wrapped it in.
    fn fetch(mut self, fetch: &mut Fetch<'_>, what: &str) -> CliResult {
        let fetched = fetch(&mut self).map(drop);
        let flushed = fetched.and_then(|()| {
            self.flush()
                .with_class(ErrorClass::Io, || format!("writing {what}"))
        });
        match (flushed, self.failed.take()) {
            (Ok(()), _) => Ok(()),
            (Err(_), Some(write)) => {
                Err(CliError::new(ErrorClass::Io, write).context(format!("writing {what}")))
            }
            (Err(e), None) => Err(e),
        }
    }

    fn keep<T>(&mut self, result: std::io::Result<T>) -> std::io::Result<T> {
        if let Err(e) = &result
            && self.failed.is_none()
        {
            self.failed = Some(std::io::Error::new(e.kind(), e.to_string()));
        }
        result
    }
}

impl<W: Write> Write for OutputSink<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let written = self.inner.write(buf);
        let n = self.keep(written)?;
        self.bar.inc(n as u64);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        let flushed = self.inner.flush();
        self.keep(flushed)
    }
}

/// The buffer of `get` and `cat` output: small chunks are gathered into writes of this size,
/// while a chunk at least this large (every chunk of the default chunking) is written straight
/// from where the read holds it, never copied into the buffer first.
const OUT_BUFFER: usize = 64 * 1024;

/// A verified read of a blob into a sink (the local store's, or a node's checked here).
pub(crate) type Fetch<'a> = dyn FnMut(&mut dyn Write) -> CliResult<u64> + 'a;

/// `blob get`: the whole blob to stdout, or to `output` through a temp file renamed into place
/// only once every byte was verified (created 0666 less the umask, like any new file). An
/// `output` that exists and is no regular file (a device such as `/dev/null`, a FIFO) is
/// written to directly, never replaced; a directory is refused; a symlink is written through.
pub(crate) fn get(blob_ref: &BlobRef, output: Option<&Path>, fetch: &mut Fetch<'_>) -> CliResult {
    let bar = progress(Some(blob_ref.size()), "get");
    match output {
        None => fetch_into(std::io::stdout().lock(), &bar, fetch, "stdout")?,
        Some(path) if is_special_file(path) => {
            let file = std::fs::OpenOptions::new()
                .write(true)
                .open(path)
                .with_class(ErrorClass::Io, || format!("opening {}", path.display()))?;
            fetch_into(file, &bar, fetch, &path.display().to_string())?;
        }
        Some(path) => {
            // Refused before a byte is read, not once the whole blob is in the temp file.
            if std::fs::metadata(path).is_ok_and(|m| m.is_dir()) {
                return Err(CliError::msg(
                    ErrorClass::Io,
                    format!("{} is a directory, not a file", path.display()),
                ));
            }
            // A symlink to a file is written through: the file it names is replaced, the link
            // stays a link.
            let target = written_through(path);
            let path = target.as_path();
            let dir = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            // Created 0666 less the umask, as any new file is (a temp file's own default, 0600,
            // would stay on the output once renamed into place).
            let tmp = tempfile::Builder::new()
                .permissions(new_file_permissions())
                .tempfile_in(dir)
                .with_class(ErrorClass::Io, || {
                    format!("creating a temp file in {}", dir.display())
                })?;
            // Ctrl-C or `kill` while it is written removes it too.
            let _removed_on_signal = crate::interrupt::RemovedOnSignal::arm(tmp.path())?;
            fetch_into(tmp.as_file(), &bar, fetch, &path.display().to_string())?;
            tmp.persist(path).with_class(ErrorClass::Io, || {
                format!("renaming into {}", path.display())
            })?;
        }
    }
    bar.finish_and_clear();
    Ok(())
}

/// Where `get -o path` puts the blob: the file a symlink `path` names (when the link resolves),
/// else `path` itself.
fn written_through(path: &Path) -> PathBuf {
    let is_link = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
    match is_link {
        true => std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf()),
        false => path.to_path_buf(),
    }
}

/// The mode a new output file is created with: 0666, which the OS narrows by the umask.
fn new_file_permissions() -> std::fs::Permissions {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::Permissions::from_mode(0o666)
}

/// Runs `fetch` into `sink` through the output buffer, counting on `bar`, and flushes it
/// (`what` names the sink in errors).
fn fetch_into(
    sink: impl Write,
    bar: &indicatif::ProgressBar,
    fetch: &mut Fetch<'_>,
    what: &str,
) -> CliResult {
    OutputSink::new(BufWriter::with_capacity(OUT_BUFFER, sink), bar).fetch(fetch, what)
}

/// True when `path` exists and is neither a regular file nor a directory (following symlinks).
fn is_special_file(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| !m.is_file() && !m.is_dir())
}

/// `blob cat --range`: the verified bytes of the range to stdout.
pub(crate) fn cat(fetch: &mut Fetch<'_>) -> CliResult {
    let out = BufWriter::with_capacity(OUT_BUFFER, std::io::stdout().lock());
    OutputSink::new(out, &indicatif::ProgressBar::hidden()).fetch(fetch, "stdout")
}

/// `blob stat`'s output.
pub(crate) fn print_stat(blob_ref: &BlobRef, stat: &BlobStat, json: bool) -> CliResult {
    if json {
        outln!(
            "{}",
            json!({
                "blob_ref": blob_ref.to_text(),
                "blob_id": hex(&net_mesh_engine::index::blob_id(blob_ref)),
                "kind": stat.kind,
                "size": stat.size,
                "depth": stat.depth,
                "chunks": stat.chunks,
                "encoding": encoding_name(stat.encoding),
            })
        );
    } else {
        outln!("kind:     {}", stat.kind);
        outln!("size:     {}", stat.size);
        outln!("depth:    {}", stat.depth);
        outln!("chunks:   {}", stat.chunks);
        outln!("encoding: {}", encoding_name(stat.encoding));
    }
    Ok(())
}

/// One pinned blob as `blob ls` prints it.
#[derive(Debug, Clone)]
pub(crate) struct PinLine {
    pub blob_id: Hash,
    pub name: String,
    pub blob_ref: BlobRef,
    pub created_unix_ms: u64,
}

/// One row of `blob ls`: a line per pin, or with `--json` its object.
pub(crate) fn print_pin(printer: &mut RowPrinter, pin: &PinLine) -> ControlFlow<()> {
    printer.print(
        || {
            json!({
                "blob_id": hex(&pin.blob_id),
                "name": pin.name,
                "kind": kind_name(&pin.blob_ref),
                "size": pin.blob_ref.size(),
                "created_unix_ms": pin.created_unix_ms,
                "blob_ref": pin.blob_ref.to_text(),
            })
        },
        || {
            let id = hex(&pin.blob_id);
            let short = id.get(..16).unwrap_or(&id);
            let kind = kind_name(&pin.blob_ref);
            format!(
                "{short}  {kind:<8} {:>14}  {}",
                pin.blob_ref.size(),
                printable(&pin.name)
            )
        },
    )
}

/// `name` with its control characters escaped (`\n`, `\u{1b}`), so that a name can neither
/// start a line of its own in a listing nor drive the terminal; `--json` keeps it as it is.
pub(crate) fn printable(name: &str) -> std::borrow::Cow<'_, str> {
    if !name.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(name);
    }
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// A pin row of `blob ls` that does not decode: a warning on stderr, never a reason to hide
/// the others.
pub(crate) fn warn_undecodable_pin(id: &Hash, error: &str) {
    eprintln!(
        "net-mesh: warning: pin {} does not decode (run fsck): {error}",
        hex(id)
    );
}

/// What `blob rm` reports for the unpin of the blob with (hex) id `id`.
pub(crate) fn report_unpinned(unpinned: Unpinned, id: &str) -> CliResult {
    match unpinned {
        Unpinned::Removed => Ok(()),
        Unpinned::RemovedUndecodable => {
            eprintln!(
                "net-mesh: warning: pin row {} did not decode; it was removed, but the \
                 references it held are unknown and were kept: run `net-mesh fsck --repair` \
                 to recompute the counts (until then gc cannot reclaim that space)",
                id
            );
            Ok(())
        }
        Unpinned::NotPinned => Err(CliError::msg(
            ErrorClass::NotFound,
            format!("blob {} is not pinned", id.get(..16).unwrap_or(id)),
        )),
    }
}
