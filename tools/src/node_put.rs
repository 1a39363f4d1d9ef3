//! Uploads to a node. A plain upload is a staging upload whose id is chosen here, so a client
//! whose connection drops (or whose node restarted) can come back before it ever heard from the
//! node: it reconnects, asks where the upload stands and replays its input from there, up to
//! `--retries` times with exponential backoff. An erasure-coded upload is not staged: a retry
//! sends the whole input again. Input from stdin, a FIFO or a device cannot be replayed, so it
//! is never retried.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use net_mesh_engine::index::blob_id;
use net_mesh_engine::{BlobRef, ErrorClass, PutOutcome};
use net_mesh_node::proto::{BandwidthClass, PutDone, PutStart, StagingState, TreeShape};
use net_mesh_node::{NodeClient, NodeError, PutInput};
use net_mesh_staging::StagingError;

use crate::output::{CliError, CliResult, ErrorContext, progress};
use crate::remote::{DialError, Remote, backoff};

/// The failpoint hit after every piece of input a node upload sent (tests kill the client
/// there).
pub const FAILPOINT_AFTER_PIECE: &str = "cli.node_put.after_piece";

/// Where an upload's bytes come from.
#[derive(Debug, Clone)]
pub enum Input {
    /// A regular file: replayed from any offset.
    File(PathBuf),
    /// A FIFO, a device or a socket: read once, like stdin.
    Stream(PathBuf),
    Stdin,
}

impl Input {
    /// The input named on the command line (`-`: stdin). A directory, or a path that cannot be
    /// looked at, is refused here, before anything begins on the node.
    pub fn new(path: &Path) -> CliResult<Input> {
        if path == Path::new("-") {
            return Ok(Input::Stdin);
        }
        let meta = crate::staging::input_metadata(path)?;
        Ok(if meta.is_file() {
            Input::File(path.to_path_buf())
        } else {
            Input::Stream(path.to_path_buf())
        })
    }

    /// Whether a retry can send the input again.
    fn replayable(&self) -> bool {
        matches!(self, Input::File(_))
    }

    fn size(&self) -> CliResult<Option<u64>> {
        match self {
            Input::Stdin | Input::Stream(_) => Ok(None),
            Input::File(path) => std::fs::metadata(path)
                .map(|m| Some(m.len()))
                .with_class(ErrorClass::Io, || format!("opening {}", path.display())),
        }
    }

    /// The input from byte `offset` on.
    fn open_at(&self, offset: u64) -> CliResult<PutInput> {
        match self {
            Input::Stdin => {
                crate::staging::check_replayable_from(offset)?;
                Ok(PutInput::Stream(Box::new(std::io::stdin())))
            }
            Input::Stream(path) => {
                crate::staging::check_replayable_from(offset)?;
                File::open(path)
                    .map(|file| PutInput::Stream(Box::new(file)))
                    .with_class(ErrorClass::Io, || format!("opening {}", path.display()))
            }
            Input::File(path) => {
                let mut file = File::open(path)
                    .with_class(ErrorClass::Io, || format!("opening {}", path.display()))?;
                let size = file.metadata().ok().map(|m| m.len());
                crate::staging::seek_input(&mut file, path, size, offset)?;
                Ok(PutInput::file(file))
            }
        }
    }
}

/// How an upload starts on the node.
#[derive(Debug, Clone)]
pub enum Start {
    /// A new staging upload.
    Begin {
        staging_id: String,
        name: String,
        /// Whether the user gave `name` (it then renames an existing pin).
        name_given: bool,
        chunking: String,
        tree: TreeShape,
        checkpoint_interval: Option<u64>,
    },
    /// Continue a staging upload from where the node says it stands (`staging resume`).
    Resume {
        staging_id: String,
        checkpoint_interval: Option<u64>,
    },
    /// An erasure-coded upload, sent whole each try.
    ErasureCoded {
        name: String,
        name_given: bool,
        chunking: String,
        tree: TreeShape,
        k: u8,
        n: u8,
    },
}

impl Start {
    fn staging_id(&self) -> Option<&str> {
        match self {
            Start::Begin { staging_id, .. } | Start::Resume { staging_id, .. } => Some(staging_id),
            Start::ErasureCoded { .. } => None,
        }
    }
}

/// A finished upload: the blob, where the first replay of the input started (`None`: the
/// upload had finished before), and the input's size when known.
#[derive(Debug)]
pub struct Uploaded {
    pub outcome: PutOutcome,
    pub resumed_from: Option<u64>,
    pub input_size: Option<u64>,
    /// The name of the blob's pin after the put, as the node answered.
    pub pin_name: Option<String>,
}

/// Why one try failed: worth another (the connection or the node went away, or the node is
/// busy), or final.
enum Failure {
    Retry(CliError),
    Final(CliError),
}

impl From<DialError> for Failure {
    fn from(e: DialError) -> Failure {
        match e {
            DialError::Pinned(e) => Failure::Final(e),
            DialError::Failed(e) => Failure::Retry(e),
        }
    }
}

impl From<CliError> for Failure {
    fn from(e: CliError) -> Failure {
        Failure::Final(e)
    }
}

fn node_failure(e: NodeError) -> Failure {
    match e.class {
        ErrorClass::Io | ErrorClass::Busy => Failure::Retry(e.into()),
        _ => Failure::Final(e.into()),
    }
}

/// The blob a node's answer names.
pub fn outcome(done: &PutDone) -> CliResult<PutOutcome> {
    let blob_ref = BlobRef::decode(&done.blob_ref).map_err(|e| {
        CliError::msg(
            ErrorClass::Integrity,
            format!("the node answered with a ref that does not decode: {e}"),
        )
    })?;
    Ok(PutOutcome {
        blob_id: blob_id(&blob_ref),
        blob_ref,
        chunks: done.chunks,
        new_chunks: done.new_chunks,
        new_bytes: done.new_bytes,
    })
}

/// Runs the upload to its end, retrying a dropped connection up to `retries` times.
pub fn upload(
    remote: &mut Remote,
    input: &Input,
    start: &Start,
    retries: u32,
) -> CliResult<Uploaded> {
    let input_size = input.size()?;
    let bar = progress(input_size, "put");
    // A resume asks where the upload stands before it sends anything; so does every retry.
    let mut ask_first = matches!(start, Start::Resume { .. });
    let mut resumed_from = None;
    let mut tries = 0;
    loop {
        match attempt(remote, input, start, ask_first, &bar, &mut resumed_from) {
            Ok(done) => {
                bar.finish_and_clear();
                return Ok(Uploaded {
                    outcome: outcome(&done)?,
                    resumed_from: resumed_from.flatten(),
                    input_size,
                    pin_name: done.pin_name.clone(),
                });
            }
            Err(Failure::Final(e)) => return Err(e),
            Err(Failure::Retry(e)) => {
                remote.disconnect();
                if !input.replayable() {
                    let what = match start.staging_id() {
                        Some(id) => format!(
                            "input from stdin, a FIFO or a device cannot be replayed; upload \
                             {id} keeps its checkpoint: finish it with `staging resume {id} \
                             FILE --node {}` from a file with the same bytes",
                            remote.addr()
                        ),
                        None => {
                            "input from stdin, a FIFO or a device cannot be sent again".to_string()
                        }
                    };
                    return Err(e.context(what));
                }
                if tries >= retries {
                    return Err(e.context(format!("gave up after {retries} retries")));
                }
                tries += 1;
                let wait = backoff(tries);
                eprintln!(
                    "net-mesh: {}; retry {tries}/{retries} in {} ms",
                    e.one_line(),
                    wait.as_millis()
                );
                std::thread::sleep(wait);
                ask_first = true;
            }
        }
    }
}

/// The start message of a try: a resume at `resume_at` when the node holds the staged upload,
/// else the upload's own start.
fn put_start(start: &Start, resume_at: Option<u64>, class: BandwidthClass) -> PutStart {
    match (start, resume_at) {
        (
            Start::Begin {
                staging_id,
                checkpoint_interval,
                ..
            }
            | Start::Resume {
                staging_id,
                checkpoint_interval,
            },
            Some(offset),
        ) => PutStart::Resume {
            class,
            staging_id: staging_id.clone(),
            offset,
            checkpoint_interval: *checkpoint_interval,
        },
        (
            Start::Begin {
                staging_id,
                name,
                name_given,
                chunking,
                tree,
                checkpoint_interval,
            },
            None,
        ) => PutStart::Begin {
            class,
            name_given: *name_given,
            staging_id: Some(staging_id.clone()),
            name: name.clone(),
            chunking: Some(chunking.clone()),
            tree: Some(*tree),
            checkpoint_interval: *checkpoint_interval,
        },
        (
            Start::Resume {
                staging_id,
                checkpoint_interval,
            },
            None,
        ) => PutStart::Resume {
            class,
            staging_id: staging_id.clone(),
            offset: 0,
            checkpoint_interval: *checkpoint_interval,
        },
        (
            Start::ErasureCoded {
                name,
                name_given,
                chunking,
                tree,
                k,
                n,
            },
            _,
        ) => PutStart::ErasureCoded {
            class,
            name_given: *name_given,
            name: name.clone(),
            chunking: Some(chunking.clone()),
            tree: Some(*tree),
            k: *k,
            n: *n,
        },
    }
}

/// One try: connect, learn where a staged upload stands when asked to, and send the input from
/// there. `resumed_from` records the first try's starting point.
fn attempt(
    remote: &mut Remote,
    input: &Input,
    start: &Start,
    ask_first: bool,
    bar: &indicatif::ProgressBar,
    resumed_from: &mut Option<Option<u64>>,
) -> Result<PutDone, Failure> {
    let client = remote.client()?;
    let resume_at = match (start.staging_id(), ask_first) {
        (Some(id), true) => match remote
            .block_on(client.staging_state(id))
            .map_err(node_failure)?
        {
            StagingState::Live { resume_offset } => Some(resume_offset),
            StagingState::Finished(_) => {
                // Its finish committed, but on a replicated channel that only held the blob:
                // if the node died before proposing the pin, only a put call proposes it. A
                // resume call with no input does (from the finished record) and answers the
                // same ref; anywhere else it just answers the ref.
                resumed_from.get_or_insert(None);
                let put_start = put_start(start, Some(0), remote.class());
                return send(
                    remote,
                    client,
                    put_start,
                    PutInput::Stream(Box::new(std::io::empty())),
                    |_| {},
                );
            }
            // A new upload that never began durably begins again under the same id.
            StagingState::NotFound if matches!(start, Start::Begin { .. }) => None,
            StagingState::NotFound => {
                return Err(Failure::Final(
                    StagingError::NotFound(id.to_string()).into(),
                ));
            }
        },
        _ => None,
    };
    let offset = resume_at.unwrap_or(0);
    let put_start = put_start(start, resume_at, remote.class());
    resumed_from.get_or_insert(Some(offset));
    if offset > 0
        && let Some(id) = start.staging_id()
    {
        eprintln!("net-mesh: resuming upload {id} at offset {offset}");
    }
    let input = input.open_at(offset)?;
    bar.set_position(offset);
    let progress = bar.clone();
    send(remote, client, put_start, input, move |n| {
        progress.inc(n);
        net_mesh_segments::failpoint::hit(FAILPOINT_AFTER_PIECE);
    })
}

/// One put call: `put_start`, then everything `input` gives (`sent` told of each piece).
fn send(
    remote: &Remote,
    client: Arc<NodeClient>,
    put_start: PutStart,
    input: PutInput,
    mut sent: impl FnMut(u64) + Send + 'static,
) -> Result<PutDone, Failure> {
    let sent = remote.block_on(
        remote
            .handle()
            .spawn(async move { client.put(put_start, input, &mut sent).await }),
    );
    match sent {
        Ok(done) => done.map_err(node_failure),
        Err(e) => Err(Failure::Final(CliError::msg(
            ErrorClass::Io,
            format!("the upload task failed: {e}"),
        ))),
    }
}
