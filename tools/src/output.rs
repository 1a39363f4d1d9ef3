//! Error lines, exit codes and progress bars shared by the subcommands.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};
use net_mesh_engine::{BlobError, OpenError, RepairError, StoreError};

/// Exit code for an integrity failure.
pub const EXIT_INTEGRITY: u8 = 3;

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

/// 3 for integrity failures anywhere in the chain, else 1.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    for cause in err.chain() {
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
