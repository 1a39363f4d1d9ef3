//! A handler that panics emits one ERROR event with a `panic` field. In a test binary of its
//! own: tracing caches each call site's interest process-wide, so another test in the same
//! process hitting this call site with no subscriber at the wrong moment made it skip the
//! event here now and then.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::*;
use net_mesh_rpc::rpc::{CallOptions, ErrorKind};

/// Counts ERROR-level events that carry a `panic` field.
struct PanicEvents(Arc<AtomicUsize>);

impl tracing::Subscriber for PanicEvents {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let meta = event.metadata();
        if *meta.level() == tracing::Level::ERROR && meta.fields().field("panic").is_some() {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

// current-thread runtime: the thread-local subscriber sees the handler task's events.
#[tokio::test(flavor = "current_thread")]
async fn handler_panic_emits_a_tracing_error_event() {
    let seen = Arc::new(AtomicUsize::new(0));
    let _guard = tracing::subscriber::set_default(PanicEvents(seen.clone()));
    let h = harness().await;
    let err = within(
        h.session
            .call_unary::<(), ()>("panic", &(), CallOptions::default()),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind, ErrorKind::HandlerPanic);
    assert_eq!(seen.load(Ordering::SeqCst), 1);
}
