//! `net-mesh staging …` (list, resume, abort) and `net-mesh blob put --resumable` on the local
//! data dir, and the printing their `--node` forms share.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use clap::Subcommand;
use net_mesh_engine::index::DEFAULT_CHANNEL;
use net_mesh_engine::{ErrorClass, PutOutcome, Store, StoreConfig};
use net_mesh_node::proto::StagingRow;
use net_mesh_staging::{
    CheckpointCadence, Piece, Resumed, StagingConfig, StagingError, StagingHandle,
    begin_streaming_store_in, finalize_streaming_store, list_staging, resume_streaming_store,
};
use serde_json::json;

use crate::Ctx;
use crate::outln;
use crate::output::{CliError, CliResult, ErrorContext, progress};

/// `staging`: the channel whose uploads it acts on, and the subcommand.
#[derive(Debug, clap::Args)]
pub struct StagingArgs {
    /// The channel whose uploads `list` shows and `resume` and `abort` act on: an upload
    /// belongs to the channel it began in (`blob --channel NAME put --resumable`), and acting
    /// on it by id under another channel is refused (exit 4)
    #[arg(long, global = true, value_name = "NAME", default_value = DEFAULT_CHANNEL)]
    pub channel: String,
    #[command(subcommand)]
    pub cmd: StagingCmd,
}

#[derive(Debug, Subcommand)]
pub enum StagingCmd {
    /// List the channel's live resumable uploads (id, bytes committed, resume offset, age,
    /// chunking)
    List {
        #[arg(long)]
        json: bool,
    },
    /// Replay FILE from the upload's resume offset, finalize it and print the blob ref (an
    /// upload that already finished prints its ref)
    Resume {
        /// Staging id printed by `blob put --resumable`
        id: String,
        /// The same input the upload started with
        file: std::path::PathBuf,
        #[arg(long)]
        json: bool,
        /// Input bytes between two checkpoints (K/M/G suffixes) [default:
        /// $NET_MESH_CHECKPOINT_INTERVAL, else 64M]
        #[arg(long, value_name = "SIZE", value_parser = parse_size)]
        checkpoint_interval: Option<u64>,
        /// With --node: reconnect and resume this many times after the connection drops
        #[arg(long, value_name = "N", default_value_t = 5)]
        retries: u32,
    },
    /// Abort a resumable upload and release what it holds
    Abort { id: String },
}

/// The environment variable that sets the checkpoint interval of resumable uploads.
pub const CHECKPOINT_INTERVAL_VAR: &str = "NET_MESH_CHECKPOINT_INTERVAL";

/// The checkpoint interval of a resumable upload: `--checkpoint-interval`, else
/// [`CHECKPOINT_INTERVAL_VAR`] (a usage error naming the variable when it is not a size), else
/// `None` (the default). Read only for an upload that is resumable, so a bad value never fails
/// another command.
pub fn checkpoint_interval(flag: Option<u64>) -> CliResult<Option<u64>> {
    if flag.is_some() {
        return Ok(flag);
    }
    let Some(value) = std::env::var_os(CHECKPOINT_INTERVAL_VAR).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let text = value.to_string_lossy();
    parse_size(&text).map(Some).map_err(|e| {
        CliError::msg(
            ErrorClass::Usage,
            format!("environment variable {CHECKPOINT_INTERVAL_VAR}: {e}"),
        )
    })
}

/// Parses a byte count with an optional K/M/G (binary) suffix.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let (digits, shift) = match text.strip_suffix(['K', 'k']) {
        Some(d) => (d, 10),
        None => match text.strip_suffix(['M', 'm']) {
            Some(d) => (d, 20),
            None => match text.strip_suffix(['G', 'g']) {
                Some(d) => (d, 30),
                None => (text, 0),
            },
        },
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a size (e.g. 65536, 64K, 64M)"))?;
    let n = n
        .checked_mul(1u64 << shift)
        .ok_or_else(|| format!("{text:?} is too large"))?;
    if n == 0 {
        return Err("size must be > 0".to_string());
    }
    Ok(n)
}

fn cadence(interval: Option<u64>) -> CheckpointCadence {
    let mut c = CheckpointCadence::default();
    if let Some(i) = interval {
        c.interval_bytes = i;
    }
    c
}

use crate::open::open;

/// Size of the pieces read from the input and handed to the upload's cutting thread.
const READ_PIECE: usize = 1024 * 1024;

/// Feeds `input` to the upload until EOF (cut on one thread, stored on this one).
fn feed(
    handle: &mut StagingHandle<'_>,
    mut input: impl Read + Send,
    bar: &indicatif::ProgressBar,
) -> CliResult {
    let mut failed = None;
    handle.write_from(|| {
        let mut piece = vec![0u8; READ_PIECE];
        loop {
            match input.read(&mut piece) {
                Ok(0) => return Some(Piece::End),
                Ok(n) => {
                    piece.truncate(n);
                    bar.inc(n as u64);
                    return Some(Piece::Data(piece.into()));
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    failed = Some(e);
                    return None;
                }
            }
        }
    })?;
    match failed {
        Some(e) => Err(CliError::new(ErrorClass::Io, e).context("reading input")),
        None => Ok(()),
    }
}

/// `blob put --resumable [--staging-id ID] FILE`.
pub fn put_resumable(
    ctx: &Ctx,
    config: StoreConfig,
    file: &Path,
    name: net_mesh_engine::index::PinName,
    staging_id: Option<String>,
    checkpoint_interval: Option<u64>,
    json: bool,
) -> CliResult {
    let store = open(&ctx.dir, config.clone())?;
    let (input, size): (Box<dyn Read + Send>, Option<u64>) = if file == Path::new("-") {
        (Box::new(std::io::stdin()), None)
    } else {
        input_metadata(file)?;
        let f = File::open(file)
            .with_class(ErrorClass::Io, || format!("opening {}", file.display()))?;
        let size = f.metadata().ok().map(|m| m.len());
        (Box::new(f), size)
    };
    let requested = name.name.clone();
    let mut handle = begin_streaming_store_in(
        &store,
        &ctx.channel,
        StagingConfig {
            staging_id,
            pin_name: name.name,
            pin_name_given: name.given,
            chunking: config.chunking,
            tree: config.tree,
            cadence: cadence(checkpoint_interval),
        },
    )?;
    eprintln!("staging-id: {}", handle.staging_id());
    let bar = progress(size, "put");
    feed(&mut handle, input, &bar)?;
    let outcome = finalize_streaming_store(handle)?;
    bar.finish_and_clear();
    let pinned_as = store.pin_name_in(&ctx.channel, &outcome.blob_ref)?;
    crate::blob::print_put(&outcome, pinned_as.as_deref(), Some(&requested), json)
}

/// The metadata of an upload's input; a directory is refused here, before anything begins.
pub(crate) fn input_metadata(path: &Path) -> CliResult<std::fs::Metadata> {
    let meta = std::fs::metadata(path)
        .with_class(ErrorClass::Io, || format!("opening {}", path.display()))?;
    if meta.is_dir() {
        return Err(CliError::msg(
            ErrorClass::Io,
            format!("{} is a directory, not a file", path.display()),
        ));
    }
    Ok(meta)
}

/// Positions a replayed input at the upload's resume offset; an input shorter than that is not
/// the upload's.
pub(crate) fn seek_input(
    input: &mut File,
    file: &Path,
    size: Option<u64>,
    offset: u64,
) -> CliResult {
    if size.is_some_and(|s| s < offset) {
        return Err(CliError::msg(
            ErrorClass::Refused,
            format!(
                "{} has {} bytes, fewer than the upload's resume offset {offset}: it is not \
                 the upload's input",
                file.display(),
                size.unwrap_or(0)
            ),
        ));
    }
    input
        .seek(SeekFrom::Start(offset))
        .with_class(ErrorClass::Io, || {
            format!("seeking {} to {offset}", file.display())
        })?;
    Ok(())
}

/// Refuses to act on upload `id` under `channel` when it began in another channel (its
/// checkpoint's while live, its finished record's once finished), as a node refuses such a
/// call; an id that is not there passes (the command says it is not found).
fn check_channel(store: &Store, id: &str, channel: &str) -> CliResult {
    let live = net_mesh_staging::checkpoint_of(store, id)?.map(|c| c.channel);
    let belongs = match live {
        Some(channel) => Some(channel),
        None => store
            .read_extension(net_mesh_staging::table::NAMESPACE, |r| {
                net_mesh_staging::table::finished(r, id)
            })
            .map_err(StagingError::from)?
            .map(|done| done.channel),
    };
    match belongs {
        Some(belongs) if belongs != channel => Err(CliError::msg(
            ErrorClass::Refused,
            format!(
                "upload {id} belongs to channel {belongs}, not {channel}: name it with \
                 --channel {belongs}"
            ),
        )),
        _ => Ok(()),
    }
}

fn resume(
    ctx: &Ctx,
    id: &str,
    file: &Path,
    json: bool,
    checkpoint_interval: Option<u64>,
) -> CliResult {
    let store = open(&ctx.dir, StoreConfig::default())?;
    check_channel(&store, id, &ctx.channel)?;
    if file != Path::new("-") {
        input_metadata(file)?;
    }
    let (mut handle, offset) =
        match resume_streaming_store(&store, id, cadence(checkpoint_interval))? {
            Resumed::Live { writer, offset } => (*writer, offset),
            // It finished already (the publisher lost the answer): its ref, as `blob put` prints
            // it; nothing was replayed.
            Resumed::Finished {
                outcome, channel, ..
            } => {
                let pinned_as = store.pin_name_in(&channel, &outcome.blob_ref)?;
                return print_resumed(&outcome, pinned_as.as_deref(), None, Some(0), json);
            }
        };
    let (input, size) = replay_input(file, offset)?;
    let bar = progress(size.map(|s| s.saturating_sub(offset)), "resume");
    feed(&mut handle, input, &bar)?;
    let channel = handle.channel().to_string();
    let outcome: PutOutcome = finalize_streaming_store(handle)?;
    bar.finish_and_clear();
    let replayed = size.map(|s| s.saturating_sub(offset));
    let pinned_as = store.pin_name_in(&channel, &outcome.blob_ref)?;
    print_resumed(&outcome, pinned_as.as_deref(), Some(offset), replayed, json)
}

/// The input a resume replays, positioned at `offset`, and its size when it is a regular file:
/// stdin (`-`), a FIFO or a device can only be replayed from the start.
fn replay_input(file: &Path, offset: u64) -> CliResult<(Box<dyn Read + Send>, Option<u64>)> {
    if file == Path::new("-") {
        check_replayable_from(offset)?;
        return Ok((Box::new(std::io::stdin()), None));
    }
    let meta = input_metadata(file)?;
    let mut input =
        File::open(file).with_class(ErrorClass::Io, || format!("opening {}", file.display()))?;
    if !meta.is_file() {
        check_replayable_from(offset)?;
        return Ok((Box::new(input), None));
    }
    seek_input(&mut input, file, Some(meta.len()), offset)?;
    Ok((Box::new(input), Some(meta.len())))
}

/// Stdin, a FIFO or a device cannot be positioned: a replay from `offset` > 0 is refused.
pub(crate) fn check_replayable_from(offset: u64) -> CliResult {
    if offset == 0 {
        return Ok(());
    }
    Err(CliError::msg(
        ErrorClass::Usage,
        format!(
            "input from stdin, a FIFO or a device cannot be replayed from the resume offset \
             {offset}; resume with a regular file holding the same bytes"
        ),
    ))
}

/// Prints a resumed upload's blob like `blob put` does (`pin_name` as there); `--json` adds
/// where the replay started (`null` when the upload had already finished) and how many input
/// bytes were replayed.
pub(crate) fn print_resumed(
    outcome: &PutOutcome,
    pin_name: Option<&str>,
    resumed_from: Option<u64>,
    replayed_bytes: Option<u64>,
    json: bool,
) -> CliResult {
    if !json {
        return crate::blob::print_put(outcome, pin_name, None, false);
    }
    let mut object = crate::blob::put_json(outcome, pin_name);
    if let Some(fields) = object.as_object_mut() {
        fields.insert("resumed_from".into(), json!(resumed_from));
        fields.insert("replayed_bytes".into(), json!(replayed_bytes));
    }
    outln!("{object}");
    Ok(())
}

/// `staging list`'s output.
pub(crate) fn print_staging(rows: &[StagingRow], json: bool) -> CliResult {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0);
    if json {
        let rows: Vec<_> = rows
            .iter()
            .map(|r| {
                json!({
                    "staging_id": r.staging_id,
                    "bytes_committed": r.bytes_committed,
                    "resume_offset": r.resume_offset,
                    "seq": r.seq,
                    "chunks": r.chunks,
                    "created_unix_ms": r.created_unix_ms,
                    "last_checkpoint_unix_ms": r.last_checkpoint_unix_ms,
                    "age_ms": now.saturating_sub(r.last_checkpoint_unix_ms),
                    "chunking": r.chunking,
                    "name": r.name,
                })
            })
            .collect();
        outln!("{}", serde_json::Value::Array(rows));
    } else {
        for r in rows {
            let age_s = now.saturating_sub(r.last_checkpoint_unix_ms) / 1000;
            outln!(
                "{}  committed {:>14}  resume at {:>14}  age {:>6}s  {}  {}",
                r.staging_id,
                r.bytes_committed,
                r.resume_offset,
                age_s,
                r.chunking,
                r.name
            );
        }
    }
    Ok(())
}

/// The error `staging abort` gives for an id that is not there.
pub(crate) fn not_found(id: &str) -> CliError {
    CliError::msg(
        ErrorClass::NotFound,
        format!("staging upload {id:?} does not exist"),
    )
}

pub fn run(cmd: StagingCmd, ctx: &Ctx) -> CliResult {
    if let Some(addr) = &ctx.node {
        return crate::node_blob::run_staging(cmd, ctx, addr);
    }
    let dir = ctx.dir.as_path();
    match cmd {
        StagingCmd::List { json } => {
            let store = open(dir, StoreConfig::default())?;
            crate::blob::check_channel_exists(&store, &ctx.channel)?;
            let rows: Vec<StagingRow> = list_staging(&store)?
                .into_iter()
                .filter(|r| r.channel == ctx.channel)
                .map(|r| StagingRow {
                    staging_id: r.staging_id,
                    bytes_committed: r.bytes_committed,
                    resume_offset: r.resume_offset,
                    seq: r.seq,
                    chunks: r.chunks,
                    created_unix_ms: r.created_unix_ms,
                    last_checkpoint_unix_ms: r.last_checkpoint_unix_ms,
                    chunking: r.chunking.to_string(),
                    name: r.pin_name,
                })
                .collect();
            print_staging(&rows, json)
        }
        StagingCmd::Resume {
            id,
            file,
            json,
            checkpoint_interval,
            retries: _,
        } => resume(
            ctx,
            &id,
            &file,
            json,
            crate::staging::checkpoint_interval(checkpoint_interval)?,
        ),
        StagingCmd::Abort { id } => {
            let store = open(dir, StoreConfig::default())?;
            check_channel(&store, &id, &ctx.channel)?;
            if !net_mesh_staging::abort_staging_id(&store, &id)? {
                return Err(not_found(&id));
            }
            Ok(())
        }
    }
}
