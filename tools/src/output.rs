//! Error lines, exit codes and progress bars shared by the subcommands.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};
use net_mesh_engine::fsck::FsckError;
use net_mesh_engine::index::PinNameTooLong;
use net_mesh_engine::{
    BlobError, Classify, ErrorClass, GcError, OpenError, RepairError, StoreError,
};
use net_mesh_staging::StagingError;

/// `println!` that returns an error instead of panicking when stdout is closed.
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)
            .map_err(|e| anyhow::Error::new(e).context("writing stdout"))?;
    }};
}

/// True when the failure is only that the reader of our stdout went away (`… | head`): the
/// process then exits 1 without an error line, like other Unix tools that stop on EPIPE.
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
            || c.downcast_ref::<net_mesh_engine::BlobError>().is_some_and(
                |e| matches!(e, BlobError::Sink(io) if io.kind() == std::io::ErrorKind::BrokenPipe),
            )
    })
}

/// Exit code for an integrity failure.
pub const EXIT_INTEGRITY: u8 = 3;
/// Exit code for a request refused as malformed before anything ran (clap uses it too).
pub const EXIT_USAGE: u8 = 2;
/// Exit code for a refused request (nothing was changed).
pub const EXIT_REFUSED: u8 = 4;

/// The error and its causes on one line.
pub fn one_line(err: &anyhow::Error) -> String {
    let mut line = err.to_string();
    for cause in err.chain().skip(1) {
        let text = cause.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
    }
    line.replace('\n', " ")
}

/// The exit code of an error class: the one place they are mapped.
pub fn exit_code_of(class: ErrorClass) -> u8 {
    match class {
        ErrorClass::Integrity => EXIT_INTEGRITY,
        ErrorClass::Usage => EXIT_USAGE,
        ErrorClass::Refused => EXIT_REFUSED,
        ErrorClass::NotFound | ErrorClass::Busy | ErrorClass::Io => 1,
    }
}

/// The class of the first classified error in the chain (the outermost one that knows).
fn class_of(err: &anyhow::Error) -> Option<ErrorClass> {
    err.chain().find_map(|cause| {
        if cause.downcast_ref::<crate::fsck::ProblemsFound>().is_some() {
            return Some(ErrorClass::Integrity);
        }
        let classified: Option<&dyn Classify> = cause
            .downcast_ref::<StoreError>()
            .map(|e| e as &dyn Classify)
            .or_else(|| {
                cause
                    .downcast_ref::<BlobError>()
                    .map(|e| e as &dyn Classify)
            })
            .or_else(|| {
                cause
                    .downcast_ref::<OpenError>()
                    .map(|e| e as &dyn Classify)
            })
            .or_else(|| {
                cause
                    .downcast_ref::<RepairError>()
                    .map(|e| e as &dyn Classify)
            })
            .or_else(|| cause.downcast_ref::<GcError>().map(|e| e as &dyn Classify))
            .or_else(|| {
                cause
                    .downcast_ref::<FsckError>()
                    .map(|e| e as &dyn Classify)
            })
            .or_else(|| {
                cause
                    .downcast_ref::<StagingError>()
                    .map(|e| e as &dyn Classify)
            })
            .or_else(|| {
                cause
                    .downcast_ref::<PinNameTooLong>()
                    .map(|_| &USAGE as &dyn Classify)
            });
        classified.map(Classify::class)
    })
}

struct Usage;
const USAGE: Usage = Usage;
impl Classify for Usage {
    fn class(&self) -> ErrorClass {
        ErrorClass::Usage
    }
}

/// The exit code of a failed command: from the class of its error, 1 when unclassified.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    class_of(err).map_or(1, exit_code_of)
}

/// A byte progress bar on stderr when stderr is a terminal; hidden otherwise.
pub fn progress(total: Option<u64>, what: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = match total {
        Some(n) => ProgressBar::new(n),
        None => ProgressBar::new_spinner(),
    };
    let template = if total.is_some() {
        "{msg} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}"
    } else {
        "{msg} {spinner} {bytes} {binary_bytes_per_sec}"
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what.to_string());
    bar
}
