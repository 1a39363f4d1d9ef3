//! The node's metrics, kept in a `prometheus-client` registry and rendered in the Prometheus
//! text format (`serve --metrics HOST:PORT`); `status` reads the same numbers.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use net_mesh_engine::ErrorClass;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabel {
    method: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClassLabel {
    class: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ChannelLabel {
    channel: String,
}

/// A replication counter (its name).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabel {
    event: String,
}

/// A live stream (only live ones are kept, so the label sets stay few).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StreamLabel {
    stream: String,
    kind: String,
    class: String,
}

/// Every number the node reports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<MethodLabel, Counter>,
    errors: Family<ClassLabel, Counter>,
    refusals: Family<MethodLabel, Counter>,
    token_refusals: Family<ReasonLabel, Counter>,
    latency: Family<MethodLabel, Histogram, fn() -> Histogram>,
    bytes_in: Counter,
    bytes_out: Counter,
    gc_runs: Counter,
    live_uploads: Gauge,
    store_bytes: Gauge,
    open_sessions: Gauge,
    blob_count: Gauge,
    stream_class: Family<StreamLabel, Gauge>,
    stream_bytes: Family<StreamLabel, Gauge>,
    stream_paused: Family<StreamLabel, Gauge>,
    replication_events: Family<EventLabel, Counter>,
    transport_events: Family<EventLabel, Counter>,
    replication_term: Family<ChannelLabel, Gauge>,
    replication_committed: Family<ChannelLabel, Gauge>,
    replication_applied: Family<ChannelLabel, Gauge>,
    replication_pending_apply: Family<ChannelLabel, Gauge>,
    replication_is_leader: Family<ChannelLabel, Gauge>,
    replication_excluded: Family<ChannelLabel, Gauge>,
    /// Mirrors of the counters, for `status`.
    bytes_in_total: AtomicU64,
    bytes_out_total: AtomicU64,
}

fn latency_histogram() -> Histogram {
    // 100 µs … ~105 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 21))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("net_mesh_node");
        let requests = Family::<MethodLabel, Counter>::default();
        let errors = Family::<ClassLabel, Counter>::default();
        let refusals = Family::<MethodLabel, Counter>::default();
        let token_refusals = Family::<ReasonLabel, Counter>::default();
        let latency = Family::<MethodLabel, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram,
        );
        let bytes_in = Counter::default();
        let bytes_out = Counter::default();
        let gc_runs = Counter::default();
        let live_uploads = Gauge::default();
        let store_bytes = Gauge::default();
        let open_sessions = Gauge::default();
        let blob_count = Gauge::default();
        registry.register("requests", "Calls served, by method", requests.clone());
        registry.register(
            "errors",
            "Calls that failed, by error class",
            errors.clone(),
        );
        registry.register(
            "authorization_refusals",
            "Calls refused (by the allow list and, if the call carried one, its permission \
             token), by method",
            refusals.clone(),
        );
        registry.register(
            "token_refusals",
            "Permission tokens refused, by reason (a VerifyError's label, or metadata_version)",
            token_refusals.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time from a call's start to its end, by method",
            latency.clone(),
        );
        registry.register("received_bytes", "Blob bytes received", bytes_in.clone());
        registry.register("sent_bytes", "Object bytes sent", bytes_out.clone());
        registry.register("gc_runs", "Garbage collections run", gc_runs.clone());
        registry.register(
            "live_staging_uploads",
            "Resumable uploads with a live checkpoint",
            live_uploads.clone(),
        );
        registry.register(
            "store_bytes",
            "Bytes of the store's segment files",
            store_bytes.clone(),
        );
        registry.register(
            "open_sessions",
            "Sessions open on the node",
            open_sessions.clone(),
        );
        registry.register("pinned_blobs", "Blobs pinned", blob_count.clone());
        let stream_class = Family::<StreamLabel, Gauge>::default();
        let stream_bytes = Family::<StreamLabel, Gauge>::default();
        let stream_paused = Family::<StreamLabel, Gauge>::default();
        registry.register(
            "current_bandwidth_class",
            "Live streams, by stream id, kind and bandwidth class (always 1)",
            stream_class.clone(),
        );
        registry.register(
            "bytes_in_class",
            "Payload bytes a live stream moved in its bandwidth class",
            stream_bytes.clone(),
        );
        registry.register(
            "paused_for_higher_class_ms",
            "Milliseconds a live stream waited while a higher bandwidth class was served",
            stream_paused.clone(),
        );
        let replication_events = Family::<EventLabel, Counter>::default();
        registry.register(
            "replication_events",
            "Replication refusals, by event: peer_auth_rejections (raft calls from non-members), \
             prefetch_rejections, move_rejections (move phase messages from anyone but the bound \
             peer), spurious_cleanups",
            replication_events.clone(),
        );
        let transport_events = Family::<EventLabel, Counter>::default();
        registry.register(
            "transport_events",
            "nRPC events on the node's endpoint, by event (net_mesh_rpc::rpc::Metrics): \
             sessions_opened, handshake_failures, handshakes_refused, sessions_refused, \
             sessions_refused_addr, sessions_refused_identity, sessions_refused_memory, \
             accept_errors, idle_closes, stalled_closes, malformed_frames, oversized_frames, \
             transport_errors, unknown_dispatch, protocol_violations, credit_violations, \
             stray_frames, budget_refusals, send_queue_overflows, handler_panics, \
             deadlines_exceeded",
            transport_events.clone(),
        );
        let channel_gauge = |registry: &mut Registry, name: &str, help: &str| {
            let family = Family::<ChannelLabel, Gauge>::default();
            registry.register(name, help, family.clone());
            family
        };
        let replication_term = channel_gauge(
            &mut registry,
            "replication_term",
            "A replicated channel's current term, as this member sees it",
        );
        let replication_committed = channel_gauge(
            &mut registry,
            "replication_committed_index",
            "A replicated channel's quorum-committed log index, as far as this member knows it",
        );
        let replication_applied = channel_gauge(
            &mut registry,
            "replication_applied_index",
            "The last log index this member applied to its pins",
        );
        let replication_pending_apply = channel_gauge(
            &mut registry,
            "replication_pending_apply",
            "Entries in this member's log not applied yet (its uncommitted tail included)",
        );
        let replication_is_leader = channel_gauge(
            &mut registry,
            "replication_is_leader",
            "1 while this member leads the channel's group",
        );
        let replication_excluded = channel_gauge(
            &mut registry,
            "replication_excluded",
            "1 while this member's copy of the channel is no longer the group's (its voters refuse it, or the membership leaves it out): its pins are stale and it refuses reads",
        );
        Metrics {
            registry,
            replication_events,
            transport_events,
            replication_term,
            replication_committed,
            replication_applied,
            replication_pending_apply,
            replication_is_leader,
            replication_excluded,
            requests,
            errors,
            refusals,
            token_refusals,
            latency,
            bytes_in,
            bytes_out,
            gc_runs,
            live_uploads,
            store_bytes,
            open_sessions,
            blob_count,
            stream_class,
            stream_bytes,
            stream_paused,
            bytes_in_total: AtomicU64::new(0),
            bytes_out_total: AtomicU64::new(0),
        }
    }
}

fn class_name(class: ErrorClass) -> &'static str {
    match class {
        ErrorClass::Integrity => "integrity",
        ErrorClass::Refused => "refused",
        ErrorClass::NotFound => "not_found",
        ErrorClass::Busy => "busy",
        ErrorClass::Io => "io",
        ErrorClass::Usage => "usage",
    }
}

impl Metrics {
    /// A call of `method` ended after `took`, with `error`'s class if it failed.
    pub fn call(&self, method: &str, took: Duration, error: Option<ErrorClass>) {
        let label = MethodLabel {
            method: method.to_string(),
        };
        self.requests.get_or_create(&label).inc();
        self.latency
            .get_or_create(&label)
            .observe(took.as_secs_f64());
        if let Some(class) = error {
            self.errors
                .get_or_create(&ClassLabel {
                    class: class_name(class).to_string(),
                })
                .inc();
        }
    }

    /// A call of `method` refused.
    pub fn refused(&self, method: &str) {
        self.refusals
            .get_or_create(&MethodLabel {
                method: method.to_string(),
            })
            .inc();
    }

    /// A call's permission token refused for `reason`.
    pub fn token_refused(&self, reason: &str) {
        self.token_refusals
            .get_or_create(&ReasonLabel {
                reason: reason.to_string(),
            })
            .inc();
    }

    /// Permission tokens refused so far for `reason`.
    pub fn token_refusals(&self, reason: &str) -> u64 {
        self.token_refusals
            .get(&ReasonLabel {
                reason: reason.to_string(),
            })
            .map_or(0, |counter| counter.get())
    }

    pub fn received(&self, bytes: u64) {
        self.bytes_in.inc_by(bytes);
        self.bytes_in_total.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn sent(&self, bytes: u64) {
        self.bytes_out.inc_by(bytes);
        self.bytes_out_total.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn gc_ran(&self) {
        self.gc_runs.inc();
    }

    /// (bytes received, bytes sent) so far.
    pub fn transferred(&self) -> (u64, u64) {
        (
            self.bytes_in_total.load(Ordering::Relaxed),
            self.bytes_out_total.load(Ordering::Relaxed),
        )
    }

    /// The gauges, set just before they are read.
    pub fn set_gauges(&self, live_uploads: u64, store_bytes: u64, open_sessions: u64, blobs: u64) {
        let as_i64 = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.live_uploads.set(as_i64(live_uploads));
        self.store_bytes.set(as_i64(store_bytes));
        self.open_sessions.set(as_i64(open_sessions));
        self.blob_count.set(as_i64(blobs));
    }

    /// The live streams' class counters, replacing the previous ones (a stream that ended goes).
    pub fn set_streams(&self, streams: &[crate::proto::StreamRow]) {
        let as_i64 = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.stream_class.clear();
        self.stream_bytes.clear();
        self.stream_paused.clear();
        for s in streams {
            let label = StreamLabel {
                stream: s.id.clone(),
                kind: s.kind.clone(),
                class: s.class.name().to_string(),
            };
            self.stream_class.get_or_create(&label).set(1);
            self.stream_bytes
                .get_or_create(&label)
                .set(as_i64(s.bytes_in_class));
            self.stream_paused
                .get_or_create(&label)
                .set(as_i64(s.paused_for_higher_class_ms));
        }
    }

    /// Sets the transport events from the node's endpoint's counters.
    pub fn set_transport(&self, rpc: &net_mesh_rpc::rpc::Metrics) {
        let get = net_mesh_rpc::rpc::Metrics::get;
        for (event, value) in [
            ("sessions_opened", get(&rpc.sessions_opened)),
            ("handshake_failures", get(&rpc.handshake_failures)),
            ("handshakes_refused", get(&rpc.handshakes_refused)),
            ("sessions_refused", get(&rpc.sessions_refused)),
            ("sessions_refused_addr", get(&rpc.sessions_refused_addr)),
            (
                "sessions_refused_identity",
                get(&rpc.sessions_refused_identity),
            ),
            ("sessions_refused_memory", get(&rpc.sessions_refused_memory)),
            ("accept_errors", get(&rpc.accept_errors)),
            ("idle_closes", get(&rpc.idle_closes)),
            ("stalled_closes", get(&rpc.stalled_closes)),
            ("malformed_frames", get(&rpc.malformed_frames)),
            ("oversized_frames", get(&rpc.oversized_frames)),
            ("transport_errors", get(&rpc.transport_errors)),
            ("unknown_dispatch", get(&rpc.unknown_dispatch)),
            ("protocol_violations", get(&rpc.protocol_violations)),
            ("credit_violations", get(&rpc.credit_violations)),
            ("stray_frames", get(&rpc.stray_frames)),
            ("budget_refusals", get(&rpc.budget_refusals)),
            ("send_queue_overflows", get(&rpc.send_queue_overflows)),
            ("handler_panics", get(&rpc.handler_panics)),
            ("deadlines_exceeded", get(&rpc.deadlines_exceeded)),
        ] {
            let counter = self.transport_events.get_or_create(&EventLabel {
                event: event.to_string(),
            });
            counter.inc_by(value.saturating_sub(counter.get()));
        }
    }

    /// Sets the replication numbers from the node's replicated channels.
    pub fn set_replicas(&self, counters: &crate::replicas::ReplicaCounters) {
        let as_i64 = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        for (event, value) in [
            ("peer_auth_rejections", counters.peer_auth_rejections),
            ("prefetch_rejections", counters.prefetch_rejections),
            ("move_rejections", counters.move_rejections),
            ("spurious_cleanups", counters.spurious_cleanups),
        ] {
            let counter = self.replication_events.get_or_create(&EventLabel {
                event: event.to_string(),
            });
            counter.inc_by(value.saturating_sub(counter.get()));
        }
        for family in [
            &self.replication_term,
            &self.replication_committed,
            &self.replication_applied,
            &self.replication_pending_apply,
            &self.replication_is_leader,
            &self.replication_excluded,
        ] {
            family.clear();
        }
        for s in &counters.channels {
            let label = ChannelLabel {
                channel: s.channel.clone(),
            };
            self.replication_term
                .get_or_create(&label)
                .set(as_i64(s.term));
            if let Some(c) = s.committed {
                self.replication_committed
                    .get_or_create(&label)
                    .set(as_i64(c));
            }
            if let Some(a) = s.applied {
                self.replication_applied
                    .get_or_create(&label)
                    .set(as_i64(a));
            }
            self.replication_pending_apply
                .get_or_create(&label)
                .set(as_i64(s.pending_apply));
            self.replication_is_leader
                .get_or_create(&label)
                .set(i64::from(s.is_leader));
            self.replication_excluded
                .get_or_create(&label)
                .set(i64::from(s.excluded.is_some()));
        }
    }

    /// Everything in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
