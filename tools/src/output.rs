//! Error lines, exit codes and progress bars shared by the subcommands.
//!
//! A command fails with a [`CliError`]: the error with its context, and the [`ErrorClass`] it
//! carries from where it was raised to the exit code. Engine errors convert with `?` and keep
//! their own class; context is added with [`ErrorContext::context_classified`], which keeps it.
//! Errors without a class of their own (the OS's, a codec's, the CLI's own checks) are given
//! one where they are raised, with [`ErrorContext::with_class`] or [`CliError::new`]. There is
//! no implicit conversion from `anyhow::Error`: it would let a `.with_context(..)` on an engine
//! error drop its class without anyone noticing.

use std::fmt::{Debug, Display};
use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};
use net_mesh_engine::{BlobError, Classify, ErrorClass};

/// `println!` that returns an error instead of panicking when stdout is closed.
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        use $crate::output::ErrorContext as _;
        writeln!(std::io::stdout().lock(), $($arg)*)
            .with_class(net_mesh_engine::ErrorClass::Io, || "writing stdout")?;
    }};
}

/// Exit code for an integrity failure.
pub const EXIT_INTEGRITY: u8 = 3;
/// Exit code for a request refused as malformed before anything ran (clap uses it too).
pub const EXIT_USAGE: u8 = 2;
/// Exit code for a refused request (nothing was changed).
pub const EXIT_REFUSED: u8 = 4;
/// Exit code for every other failure.
pub const EXIT_OTHER: u8 = 1;

/// The exit code of a failure of `class` (`None`: no class fits): the one place they are mapped.
pub fn exit_code_of(class: Option<ErrorClass>) -> u8 {
    match class {
        Some(ErrorClass::Integrity) => EXIT_INTEGRITY,
        Some(ErrorClass::Usage) => EXIT_USAGE,
        Some(ErrorClass::Refused) => EXIT_REFUSED,
        Some(ErrorClass::NotFound | ErrorClass::Busy | ErrorClass::Io) | None => EXIT_OTHER,
    }
}

/// A failed command: the error with its context, and its class.
#[derive(Debug)]
pub struct CliError {
    class: Option<ErrorClass>,
    error: anyhow::Error,
}

/// What a command returns.
pub type CliResult<T = ()> = Result<T, CliError>;

impl CliError {
    /// `error` as a failure of `class`.
    pub fn new(class: ErrorClass, error: impl Into<anyhow::Error>) -> CliError {
        CliError {
            class: Some(class),
            error: error.into(),
        }
    }

    /// A failure of `class` described by `message`.
    pub fn msg(
        class: ErrorClass,
        message: impl Display + Debug + Send + Sync + 'static,
    ) -> CliError {
        CliError::new(class, anyhow::Error::msg(message))
    }

    /// A failure no class fits (exit 1).
    pub fn unclassified(error: impl Into<anyhow::Error>) -> CliError {
        CliError {
            class: None,
            error: error.into(),
        }
    }

    /// Wraps the error in `context`; the class stays.
    pub fn context(self, context: impl Display + Send + Sync + 'static) -> CliError {
        CliError {
            class: self.class,
            error: self.error.context(context),
        }
    }

    /// The failure's class (`None`: none fits).
    pub fn class(&self) -> Option<ErrorClass> {
        self.class
    }

    /// The process exit code for this failure.
    pub fn exit_code(&self) -> u8 {
        exit_code_of(self.class)
    }

    /// The error and its causes on one line.
    pub fn one_line(&self) -> String {
        let mut line = self.error.to_string();
        for cause in self.error.chain().skip(1) {
            let text = cause.to_string();
            if !line.contains(&text) {
                line.push_str(": ");
                line.push_str(&text);
            }
        }
        line.replace('\n', " ")
    }

    /// True when the failure is only that the reader of our stdout went away (`… | head`):
    /// the process then exits 1 without an error line, like other Unix tools that stop on EPIPE.
    pub fn is_broken_pipe(&self) -> bool {
        self.error.chain().any(|c| {
            c.downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
                || c.downcast_ref::<BlobError>().is_some_and(|e| {
                    matches!(e, BlobError::Sink(io) if io.kind() == std::io::ErrorKind::BrokenPipe)
                })
        })
    }
}

impl<E> From<E> for CliError
where
    E: Classify + std::error::Error + Send + Sync + 'static,
{
    /// An error that knows its class keeps it.
    fn from(e: E) -> CliError {
        CliError::new(e.class(), e)
    }
}

/// Context for a failed `Result`, keeping or giving the error's class.
pub trait ErrorContext<T, E> {
    /// Wraps the error in `context`, keeping the class it carries.
    fn context_classified(self, context: impl Display + Send + Sync + 'static) -> CliResult<T>
    where
        E: Into<CliError>;

    /// Gives an error without a class of its own (an OS or codec error) `class`, and wraps it in
    /// `context`.
    fn with_class<C, F>(self, class: ErrorClass, context: F) -> CliResult<T>
    where
        E: Into<anyhow::Error>,
        C: Display + Send + Sync + 'static,
        F: FnOnce() -> C;
}

impl<T, E> ErrorContext<T, E> for Result<T, E> {
    fn context_classified(self, context: impl Display + Send + Sync + 'static) -> CliResult<T>
    where
        E: Into<CliError>,
    {
        self.map_err(|e| e.into().context(context))
    }

    fn with_class<C, F>(self, class: ErrorClass, context: F) -> CliResult<T>
    where
        E: Into<anyhow::Error>,
        C: Display + Send + Sync + 'static,
        F: FnOnce() -> C,
    {
        self.map_err(|e| CliError::new(class, e).context(context()))
    }
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

/// Shows the stages of a store operation (`fsck`, `gc`) on stderr while it runs: a byte bar
/// for a stage that knows its bytes, a spinner for one that does not. Only when stderr is a
/// terminal (else nothing runs); the bar is cleared when the display is dropped.
pub struct StageDisplay {
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Starts a [`StageDisplay`] of `progress`, its lines prefixed with `what`.
pub fn show_stages(progress: &net_mesh_engine::Progress, what: &'static str) -> StageDisplay {
    if !std::io::stderr().is_terminal() {
        return StageDisplay {
            stop: None,
            thread: None,
        };
    }
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    let progress = progress.clone();
    let thread = std::thread::spawn(move || {
        let mut shown: Option<(net_mesh_engine::Stage, ProgressBar)> = None;
        loop {
            let (stage, done) = progress.now();
            if let Some(stage) = stage {
                if shown.as_ref().is_none_or(|(s, _)| *s != stage) {
                    if let Some((_, bar)) = shown.take() {
                        bar.finish_and_clear();
                    }
                    let bar = stage_bar(stage.total, format!("{what}: {}", stage.name));
                    shown = Some((stage, bar));
                }
                if let Some((_, bar)) = &shown {
                    bar.set_position(done);
                }
            }
            match stopped.recv_timeout(std::time::Duration::from_millis(100)) {
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                _ => break,
            }
        }
        if let Some((_, bar)) = shown {
            bar.finish_and_clear();
        }
    });
    StageDisplay {
        stop: Some(stop),
        thread: Some(thread),
    }
}

/// One stage's bar: bytes against the stage's total, or a spinner when it has none (hidden
/// when stderr is not a terminal).
pub(crate) fn stage_bar(total: Option<u64>, message: String) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let (bar, template) = match total {
        Some(n) => (
            ProgressBar::new(n),
            "{msg} [{bar:30}] {bytes}/{total_bytes} ({elapsed})",
        ),
        None => (ProgressBar::new_spinner(), "{msg} {spinner} ({elapsed})"),
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(message);
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    bar
}

impl Drop for StageDisplay {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A listing's output, written row by row as the rows come (a listing of millions of rows is
/// never held whole): a line per row, or with `--json` one array of row objects on one line.
/// A listing that fails midway leaves the array unclosed (and the command fails), so a
/// partial listing never parses as a whole one.
pub struct RowPrinter {
    out: std::io::BufWriter<std::io::Stdout>,
    as_json: bool,
    rows: u64,
    /// The write that failed, reported by [`RowPrinter::finish`].
    failed: Option<CliError>,
}

impl RowPrinter {
    pub fn new(as_json: bool) -> RowPrinter {
        RowPrinter {
            out: std::io::BufWriter::new(std::io::stdout()),
            as_json,
            rows: 0,
            failed: None,
        }
    }

    /// Prints one row, as `json()` with `--json`, else as the line `text()`; `Break` once a
    /// write failed (the listing should stop there).
    pub fn print(
        &mut self,
        json: impl FnOnce() -> serde_json::Value,
        text: impl FnOnce() -> String,
    ) -> std::ops::ControlFlow<()> {
        use std::io::Write as _;
        let written = if self.as_json {
            let open = if self.rows == 0 { "[" } else { "," };
            write!(self.out, "{open}{}", json())
        } else {
            writeln!(self.out, "{}", text())
        };
        self.rows = self.rows.saturating_add(1);
        match written.with_class(ErrorClass::Io, || "writing stdout") {
            Ok(()) => std::ops::ControlFlow::Continue(()),
            Err(e) => {
                self.failed = Some(e);
                std::ops::ControlFlow::Break(())
            }
        }
    }

    /// Closes the listing (the JSON array) and flushes it, or reports the write that failed.
    pub fn finish(mut self) -> CliResult {
        use std::io::Write as _;
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        let closed = match (self.as_json, self.rows) {
            (false, _) => Ok(()),
            (true, 0) => writeln!(self.out, "[]"),
            (true, _) => writeln!(self.out, "]"),
        };
        closed
            .and_then(|()| self.out.flush())
            .with_class(ErrorClass::Io, || "writing stdout")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use net_mesh_engine::StoreError;
    use net_mesh_staging::StagingError;

    /// Fails with `e` through `?`, as commands do.
    fn fail_with<E>(e: E) -> CliResult
    where
        E: Classify + std::error::Error + Send + Sync + 'static,
    {
        Err(e)?
    }

    #[test]
    fn every_class_has_its_exit_code() {
        assert_eq!(exit_code_of(Some(ErrorClass::Integrity)), 3);
        assert_eq!(exit_code_of(Some(ErrorClass::Usage)), 2);
        assert_eq!(exit_code_of(Some(ErrorClass::Refused)), 4);
        assert_eq!(exit_code_of(Some(ErrorClass::NotFound)), 1);
        assert_eq!(exit_code_of(Some(ErrorClass::Busy)), 1);
        assert_eq!(exit_code_of(Some(ErrorClass::Io)), 1);
        assert_eq!(exit_code_of(None), 1);
    }

    #[test]
    fn an_engine_error_keeps_its_class_through_context() {
        let refused: Result<(), _> = Err(StagingError::Exists("x".into()));
        let err = refused
            .context_classified("starting upload x")
            .context_classified("outer")
            .unwrap_err();
        assert_eq!(err.exit_code(), 4);
        assert_eq!(
            err.one_line(),
            "outer: starting upload x: staging id \"x\" already exists; resume or abort it"
        );
        let err = fail_with(StoreError::NotPinned("ab".into())).unwrap_err();
        assert_eq!(err.exit_code(), 1);
        let err = fail_with(StagingError::InvalidId("?".into())).unwrap_err();
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn errors_without_a_class_get_one_where_they_are_raised() {
        let parsed: Result<u64, _> = "x".parse::<u64>();
        let err = parsed
            .with_class(ErrorClass::Usage, || "range start")
            .unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert_eq!(err.one_line(), "range start: invalid digit found in string");
        let err = CliError::unclassified(anyhow::anyhow!("odd")).context("while x");
        assert_eq!(err.exit_code(), 1);
        assert_eq!(err.one_line(), "while x: odd");
    }

    #[test]
    fn a_closed_stdout_is_a_broken_pipe_and_nothing_else_is() {
        let pipe = std::io::Error::from(std::io::ErrorKind::BrokenPipe);
        let err = CliError::new(ErrorClass::Io, pipe).context("writing stdout");
        assert!(err.is_broken_pipe());
        let sink = BlobError::Sink(std::io::Error::from(std::io::ErrorKind::BrokenPipe));
        assert!(CliError::from(sink).is_broken_pipe());
        let other = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        assert!(!CliError::new(ErrorClass::Io, other).is_broken_pipe());
    }
}
