//! Error lines, exit codes and progress bars shared by the subcommands.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};
use net_mesh_engine::index::PinNameTooLong;
use net_mesh_engine::{BlobError, OpenError, RepairError, StoreError};

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

/// 3 for integrity failures anywhere in the chain, 2 for usage errors, else 1.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    for cause in err.chain() {
        if cause.downcast_ref::<PinNameTooLong>().is_some()
            || matches!(
                cause.downcast_ref::<StoreError>(),
                Some(StoreError::PinName(_))
            )
            || matches!(
                cause.downcast_ref::<net_mesh_engine::StagingError>(),
                Some(net_mesh_engine::StagingError::Store(StoreError::PinName(_)))
            )
        {
            return EXIT_USAGE;
        }
        if cause.downcast_ref::<crate::fsck::ProblemsFound>().is_some() {
            return EXIT_INTEGRITY;
        }
        if let Some(e) = cause.downcast_ref::<BlobError>()
            && e.is_integrity()
        {
            return EXIT_INTEGRITY;
        }
        if let Some(e) = cause.downcast_ref::<RepairError>()
            && e.is_integrity()
        {
            return EXIT_INTEGRITY;
        }
        if let Some(StoreError::Segments(e)) = cause.downcast_ref::<StoreError>()
            && e.is_corruption()
        {
            return EXIT_INTEGRITY;
        }
        if let Some(e) = cause.downcast_ref::<net_mesh_engine::StagingError>()
            && e.is_integrity()
        {
            return EXIT_INTEGRITY;
        }
        if let Some(OpenError::Segments(e)) = cause.downcast_ref::<OpenError>()
            && e.is_corruption()
        {
            return EXIT_INTEGRITY;
        }
    }
    1
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
