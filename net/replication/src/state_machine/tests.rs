use std::time::Duration;

use net_mesh_engine::{OpenOptions, StoreConfig};
use net_mesh_rpc::rpc::Config;
use net_mesh_rpc::rpc::server::Router;
use net_mesh_rpc::{Endpoint, Identity};
use tokio_util::sync::CancellationToken;

use super::*;
use crate::fetch::MemberStreams;
use crate::sessions::Sessions;

/// A test's code run between a check of the objects and the commit that relies on it.
#[derive(Clone)]
pub(super) struct Hook(pub(super) Arc<dyn Fn() + Send + Sync>);

impl std::fmt::Debug for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Hook")
    }
}

/// A member B serving `data` (stored and pinned in its store) to `reader` over a real
/// socket on 127.0.0.1, until the token is cancelled.
async fn serving_member(
    root: &std::path::Path,
    data: &[u8],
    reader: &Identity,
) -> Result<(NodeAddr, CancellationToken), Box<dyn std::error::Error>> {
    let options = net_mesh_node::revoke::with_node_tables(
        OpenOptions::new(StoreConfig::default()).extension(crate::extension()),
    );
    let store = Arc::new(Store::open_with(root, options)?);
    store.store(data)?;
    let identity = Identity::from_seed([11; 32]);
    let node = net_mesh_node::Node::new(store, identity.node_id())?;
    let allow =
        net_mesh_node::Allow::parse(identity.node_id(), &format!("{} read\n", reader.node_id()))?;
    let endpoint = Endpoint::new(identity.clone(), node.router(allow), Config::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = NodeAddr {
        node_id: identity.node_id(),
        host_port: listener.local_addr()?.to_string(),
    };
    let stop = CancellationToken::new();
    let serving = stop.clone();
    tokio::spawn(async move { endpoint.serve(listener, serving).await });
    Ok((addr, stop))
}

/// A's side: its store, the blob whose objects it holds unreferenced, its state machine
/// of `c`, the objects its gc hook freed so far, and the fetcher's stop.
struct Unreferenced {
    store: Arc<Store>,
    blob_ref: BlobRef,
    sm: StateMachine,
    freed: Arc<AtomicU64>,
    stop: CancellationToken,
}

/// A's store holding `data`'s objects unreferenced (stored, then unpinned) and a channel
/// `c`; A's state machine of `c` fetching from the members it is told of, whose hook
/// runs a gc (grace 0) before every commit.
fn unreferenced_here(
    root: &std::path::Path,
    data: &[u8],
    identity: Identity,
) -> Result<Unreferenced, Box<dyn std::error::Error>> {
    let options = OpenOptions::new(StoreConfig::default()).extension(crate::extension());
    let store = Arc::new(Store::open_with(root, options)?);
    store.create_channel("c")?;
    let blob_ref = store.store(data)?.blob_ref;
    store.unpin(&blob_id(&blob_ref))?;
    assert!(missing_roots(&store, &blob_ref)?.is_empty());
    let stop = CancellationToken::new();
    let fetcher = fetching_as(identity, &stop);
    let freed = Arc::new(AtomicU64::new(0));
    let mut sm = StateMachine::new(store.clone(), "c").with_fetcher(fetcher);
    let (gc_store, gc_freed) = (store.clone(), freed.clone());
    sm.before_commit = Some(Hook(Arc::new(move || {
        let options = net_mesh_engine::GcOptions {
            grace: Duration::ZERO,
            dry_run: false,
            compact_threshold: 0.0,
            ..net_mesh_engine::GcOptions::default()
        };
        if let Ok(report) = gc_store.gc(&options) {
            gc_freed.fetch_add(report.objects_freed, Ordering::Relaxed);
        }
    })));
    Ok(Unreferenced {
        store,
        blob_ref,
        sm,
        freed,
        stop,
    })
}

/// The gc freed objects, and `c` holds exactly `blob_ref`'s pin, its objects all here.
fn pinned_after_a_gc(
    store: &Store,
    blob_ref: &BlobRef,
    freed: &AtomicU64,
) -> Result<(), Box<dyn std::error::Error>> {
    assert!(freed.load(Ordering::Relaxed) > 0, "the gc freed nothing");
    let pinned: Vec<Hash> = store.pins_in("c")?.pins.iter().map(|(id, _)| *id).collect();
    assert_eq!(pinned, [blob_id(blob_ref)]);
    assert!(missing_roots(store, blob_ref)?.is_empty());
    Ok(())
}

fn membership_of(b: &NodeAddr) -> StoredMembership {
    let id = crate::raft_id(&b.node_id);
    let membership = openraft::Membership::new(
        vec![std::collections::BTreeSet::from([id])],
        BTreeMap::from([(id, Member::from_addr(b))]),
    );
    StoredMembership::new(None, membership)
}

/// A pin whose objects were here (unreferenced) when the apply checked them, and which a
/// gc deletes before the apply's commit, is applied all the same: the refused commit
/// changes nothing and the objects are fetched from a member, as if they had been missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pin_whose_objects_a_gc_deletes_after_the_check_is_fetched_and_applied()
-> Result<(), Box<dyn std::error::Error>> {
    let (a_dir, b_dir) = (tempfile::tempdir()?, tempfile::tempdir()?);
    let data = b"a blob unpinned here long ago, pinned again by the log".repeat(500);
    let a = Identity::from_seed([10; 32]);
    let (b, stop_b) = serving_member(b_dir.path(), &data, &a).await?;
    let Unreferenced {
        store,
        blob_ref,
        sm,
        freed,
        stop,
    } = unreferenced_here(a_dir.path(), &data, a)?;
    let entry = Entry {
        log_id: LogId::new(openraft::CommittedLeaderId::new(1, 1), 1),
        payload: EntryPayload::Normal(PinOp::Pin {
            blob_ref: blob_ref.encode(),
            name: "p".into(),
        }),
    };
    let mut state = StateRow {
        last_applied: None,
        membership: membership_of(&b),
    };
    let applied = tokio::task::spawn_blocking(move || sm.apply_one(&entry, &mut state)).await?;
    assert!(applied.is_ok(), "{applied:?}");
    pinned_after_a_gc(&store, &blob_ref, &freed)?;
    stop.cancel();
    stop_b.cancel();
    Ok(())
}

/// The same for a snapshot install: its check found the pin's objects here, a gc
/// deleted them before its commit; the install fetches them and commits, holding none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_install_whose_objects_a_gc_deletes_after_the_check_fetches_them()
-> Result<(), Box<dyn std::error::Error>> {
    let (a_dir, b_dir) = (tempfile::tempdir()?, tempfile::tempdir()?);
    let data = b"a blob unpinned here long ago, in a snapshot now".repeat(500);
    let a = Identity::from_seed([10; 32]);
    let (b, stop_b) = serving_member(b_dir.path(), &data, &a).await?;
    let Unreferenced {
        store,
        blob_ref,
        sm,
        freed,
        stop,
    } = unreferenced_here(a_dir.path(), &data, a)?;
    let meta = SnapshotMeta {
        last_log_id: Some(LogId::new(openraft::CommittedLeaderId::new(1, 1), 4)),
        last_membership: membership_of(&b),
        snapshot_id: "1-4".into(),
    };
    let body = encode_row(&SnapshotBody {
        pins: vec![SnapshotPin {
            name: "p".into(),
            blob_ref: blob_ref.encode(),
        }],
    })?;
    let installed = tokio::task::spawn_blocking(move || sm.install(&meta, &body)).await?;
    assert!(installed.is_ok(), "{installed:?}");
    pinned_after_a_gc(&store, &blob_ref, &freed)?;
    let held = store.read_extension(NAMESPACE, |r| read_prefetched(r, "c"))?;
    assert!(held.is_empty(), "holds left: {held:?}");
    stop.cancel();
    stop_b.cancel();
    Ok(())
}

/// A snapshot whose pin's objects no member can give (its membership names no other
/// node) waits round after round; once the channel stops, the install ends `Stopped`
/// instead of going round forever without waiting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_install_with_no_member_to_fetch_from_ends_when_the_channel_stops()
-> Result<(), Box<dyn std::error::Error>> {
    let root = tempfile::tempdir()?;
    let store = store_with_channel_c(root.path())?;
    let missing = stored_elsewhere(b"a blob no member holds")?;
    let stop = CancellationToken::new();
    let fetcher = fetching_as(Identity::from_seed([7; 32]), &stop);
    let stats = fetcher.stats();
    let sm = StateMachine::new(store, "c").with_fetcher(fetcher);
    let meta = SnapshotMeta {
        last_log_id: Some(LogId::new(openraft::CommittedLeaderId::new(1, 1), 4)),
        last_membership: StoredMembership::default(),
        snapshot_id: "1-4".into(),
    };
    let body = encode_row(&SnapshotBody {
        pins: vec![SnapshotPin {
            name: "p".into(),
            blob_ref: missing.encode(),
        }],
    })?;
    let install = tokio::task::spawn_blocking(move || sm.install(&meta, &body));
    while stats.counts().rounds_failed < 2 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.cancel();
    // A bound on the test, not a timed assertion: the install ends at its next check.
    let ended = tokio::time::timeout(Duration::from_secs(30), install).await;
    assert!(
        matches!(ended, Ok(Ok(Err(ApplyError::Stopped { .. })))),
        "the install did not end Stopped: {ended:?}"
    );
    Ok(())
}

/// A purge waiting for an install's stored snapshot ends with an error as soon as the
/// state machine fails (here an apply whose pin's objects the store lacks and no fetcher
/// can get: openraft stops the group then), not only when the channel stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_waiting_for_an_install_ends_when_the_state_machine_fails()
-> Result<(), Box<dyn std::error::Error>> {
    use openraft::storage::RaftLogStorage;

    let root = tempfile::tempdir()?;
    let store = store_with_channel_c(root.path())?;
    let missing = stored_elsewhere(b"a blob this store never had")?;
    // Never cancelled while the purge waits: only the failure may end it.
    let stop = CancellationToken::new();
    let gate = InstallGate::new(stop.clone());
    let mut sm = StateMachine::new(store.clone(), "c").with_install_gate(gate.clone());
    let mut log = crate::log_store::LogStore::new(store.clone(), "c").with_install_gate(gate);
    let upto = LogId::new(openraft::CommittedLeaderId::new(1, 1), 4);
    let mut purge = tokio::spawn(async move { log.purge(upto).await });
    // A bound on a wait that must not end, not a timing figure: nothing failed yet.
    let early = tokio::time::timeout(Duration::from_millis(300), &mut purge).await;
    assert!(early.is_err(), "the purge ran early: {early:?}");
    let entry = Entry {
        log_id: LogId::new(openraft::CommittedLeaderId::new(1, 1), 1),
        payload: EntryPayload::Normal(PinOp::Pin {
            blob_ref: missing.encode(),
            name: "p".into(),
        }),
    };
    let applied = sm.apply([entry]).await;
    assert!(applied.is_err(), "applied without the objects");
    // A bound on the test, not a timed assertion.
    let purged = tokio::time::timeout(Duration::from_secs(30), purge).await;
    assert!(
        matches!(purged, Ok(Ok(Err(_)))),
        "the purge did not end with an error: {purged:?}"
    );
    let log_meta = store.read_extension(NAMESPACE, |r| {
        read_channel_row::<crate::tables::LogMetaRow>(r, crate::tables::LOG_META_TABLE, "c")
    })?;
    assert_eq!(log_meta.and_then(|m| m.last_purged), None, "purged anyway");
    stop.cancel();
    Ok(())
}

/// Once the channel's stop is cancelled the state machine commits nothing: openraft's
/// shutdown leaves its worker applying the commands queued before, and a moved replica's
/// cleanup forgets the channel's rows right after the shutdown. An apply that was
/// committing meanwhile ends before the commit lock is free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_state_machine_commits_nothing() -> Result<(), Box<dyn std::error::Error>> {
    let root = tempfile::tempdir()?;
    let store = store_with_channel_c(root.path())?;
    let first = store
        .store(b"a blob pinned while the channel runs")?
        .blob_ref;
    let later = store
        .store(b"a blob an entry queued before the stop pins")?
        .blob_ref;
    let pin = |index: u64, r: &BlobRef| Entry {
        log_id: LogId::new(openraft::CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(PinOp::Pin {
            blob_ref: r.encode(),
            name: format!("p{index}"),
        }),
    };
    let stop = CancellationToken::new();
    let (entered_tx, entered) = std::sync::mpsc::channel::<()>();
    let (release, release_rx) = std::sync::mpsc::channel::<()>();
    let release_rx = std::sync::Mutex::new(release_rx);
    let entered_tx = std::sync::Mutex::new(entered_tx);
    let mut sm = StateMachine::new(store.clone(), "c").with_stop(stop.clone());
    sm.before_commit = Some(tests::Hook(Arc::new(move || {
        let _ = entered_tx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(());
        let _ = release_rx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .recv_timeout(Duration::from_secs(30));
    })));
    let mut applying = sm.clone();
    let first_entry = pin(1, &first);
    let running = tokio::spawn(async move { applying.apply([first_entry]).await });
    tokio::task::spawn_blocking(move || entered.recv_timeout(Duration::from_secs(30))).await??;
    // The shutdown: cancel, then wait for the commit lock.
    stop.cancel();
    let lock = sm.commit_lock();
    let mut waited = tokio::task::spawn_blocking(move || drop(lock.lock()));
    // A bound on a wait that must not end, not a timing figure: the commit is held.
    let early = tokio::time::timeout(Duration::from_millis(300), &mut waited).await;
    assert!(early.is_err(), "the lock was free during a commit");
    release.send(())?;
    tokio::time::timeout(Duration::from_secs(30), waited).await??;
    assert!(running.await?.is_ok(), "the apply already committing ended");
    assert_eq!(stored_applied_index(&store), Some(1));

    // An entry queued before the stop, applied after it: refused, nothing written.
    release.send(())?;
    let refused = sm.apply([pin(2, &later)]).await;
    assert!(refused.is_err(), "applied after the stop");
    assert_eq!(stored_applied_index(&store), Some(1));
    assert_eq!(store.pins_in("c")?.pins.len(), 1);
    Ok(())
}

fn stored_applied_index(store: &Store) -> Option<u64> {
    crate::channel::stored_applied(store, "c")
        .ok()
        .flatten()
        .map(|(_, index)| index)
}

/// A store in `dir` with the replication extension and channel `c`.
fn store_with_channel_c(dir: &std::path::Path) -> Result<Arc<Store>, Box<dyn std::error::Error>> {
    let options = OpenOptions::new(StoreConfig::default()).extension(crate::extension());
    let store = Arc::new(Store::open_with(dir, options)?);
    store.create_channel("c")?;
    Ok(store)
}

/// The ref of `bytes` stored in another store (its objects are in no test store).
fn stored_elsewhere(bytes: &[u8]) -> Result<BlobRef, Box<dyn std::error::Error>> {
    let elsewhere = tempfile::tempdir()?;
    Ok(Store::open(elsewhere.path(), StoreConfig::default())?
        .store(bytes)?
        .blob_ref)
}

/// A's fetcher: its sessions as `identity`, stopped by `stop`.
fn fetching_as(identity: Identity, stop: &CancellationToken) -> Fetcher {
    Fetcher::new(
        Sessions::new(Endpoint::new(identity, Router::new(), Config::default())),
        Arc::new(MemberStreams::new(1)),
        tokio::runtime::Handle::current(),
        stop.clone(),
    )
}

/// openraft's purge behind a snapshot install (queued without waiting for it) waits until
/// the install has stored the snapshot; a member stopped while it fetches the snapshot's
/// objects then has its log purged and its applied state behind it, and finishes the
/// install from the stored snapshot when it opens again: pins, applied state, no
/// snapshot left pending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_behind_an_install_waits_for_the_stored_snapshot_that_a_reopen_installs()
-> Result<(), Box<dyn std::error::Error>> {
    use openraft::storage::RaftLogStorage;

    let (a_dir, b_dir) = (tempfile::tempdir()?, tempfile::tempdir()?);
    let data = b"a blob the snapshot pins, on member B only".repeat(500);
    let a = Identity::from_seed([10; 32]);
    let (b, stop_b) = serving_member(b_dir.path(), &data, &a).await?;
    let blob_ref = {
        let elsewhere = tempfile::tempdir()?;
        Store::open(elsewhere.path(), StoreConfig::default())?
            .store(&data)?
            .blob_ref
    };
    let options = || OpenOptions::new(StoreConfig::default()).extension(crate::extension());
    let store = Arc::new(Store::open_with(a_dir.path(), options())?);
    store.create_channel("c")?;
    let last = LogId::new(openraft::CommittedLeaderId::new(1, 1), 4);
    let meta = SnapshotMeta {
        last_log_id: Some(last),
        last_membership: membership_of(&b),
        snapshot_id: "1-4".into(),
    };
    let body = encode_row(&SnapshotBody {
        pins: vec![SnapshotPin {
            name: "p".into(),
            blob_ref: blob_ref.encode(),
        }],
    })?;

    // A fetches as an identity B refuses: the install keeps waiting for the objects.
    let stop = CancellationToken::new();
    let fetcher = fetching_as(Identity::from_seed([12; 32]), &stop);
    let stats = fetcher.stats();
    let gate = InstallGate::new(stop.clone());
    let mut sm = StateMachine::new(store.clone(), "c")
        .with_fetcher(fetcher)
        .with_install_gate(gate.clone());
    let mut log = crate::log_store::LogStore::new(store.clone(), "c").with_install_gate(gate);
    let mut purge = tokio::spawn(async move { log.purge(last).await });
    // A bound on a wait that must not end, not a timing figure: nothing is stored yet.
    let early = tokio::time::timeout(Duration::from_millis(300), &mut purge).await;
    assert!(
        early.is_err(),
        "the purge ran before the snapshot was stored: {early:?}"
    );
    let install = tokio::spawn(async move {
        sm.install_snapshot(&meta, Box::new(Cursor::new(body)))
            .await
    });
    tokio::time::timeout(Duration::from_secs(30), &mut purge).await???;
    while stats.counts().rounds_failed < 1 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pending = store.read_extension(NAMESPACE, |r| read_pending_snapshot(r, "c"))?;
    assert_eq!(pending.map(|p| p.last_log_id), Some(Some(last)));
    assert_eq!(
        store
            .read_extension(NAMESPACE, |r| {
                read_channel_row::<crate::tables::LogMetaRow>(r, crate::tables::LOG_META_TABLE, "c")
            })?
            .and_then(|m| m.last_purged),
        Some(last)
    );
    assert!(has_interrupted_install(&store, "c")?);
    stop.cancel();
    let stopped = tokio::time::timeout(Duration::from_secs(30), install).await?;
    assert!(
        stopped?.is_err(),
        "the install finished without the objects"
    );
    assert!(store.pins_in("c")?.pins.is_empty());
    drop(store);

    // Opened again, with a fetcher B serves.
    let store = Arc::new(Store::open_with(a_dir.path(), options())?);
    assert!(has_interrupted_install(&store, "c")?);
    let stop = CancellationToken::new();
    let sm = StateMachine::new(store.clone(), "c").with_fetcher(fetching_as(a, &stop));
    let finished = tokio::task::spawn_blocking(move || sm.finish_interrupted_install()).await?;
    assert!(matches!(finished, Ok(true)), "{finished:?}");
    let pinned: Vec<Hash> = store.pins_in("c")?.pins.iter().map(|(id, _)| *id).collect();
    assert_eq!(pinned, [blob_id(&blob_ref)]);
    let applied = store
        .read_extension(NAMESPACE, |r| {
            read_channel_row::<StateRow>(r, STATE_TABLE, "c")
        })?
        .and_then(|s| s.last_applied);
    assert_eq!(applied, Some(last));
    let pending = store.read_extension(NAMESPACE, |r| read_pending_snapshot(r, "c"))?;
    assert_eq!(pending, None, "the install left its snapshot pending");
    assert!(!has_interrupted_install(&store, "c")?);
    stop.cancel();
    stop_b.cancel();
    Ok(())
}

/// A member that crashed while it installed its first snapshot (a joining target) holds
/// nothing of the group but that snapshot: its channel still counts as replicated here,
/// so it opens at start and finishes the install.
#[test]
fn a_store_holding_only_a_received_snapshot_holds_the_channel_state()
-> Result<(), Box<dyn std::error::Error>> {
    let root = tempfile::tempdir()?;
    let options = OpenOptions::new(StoreConfig::default()).extension(crate::extension());
    let store = Store::open_with(root.path(), options)?;
    store.create_channel("c")?;
    assert!(!store.read_extension(NAMESPACE, |r| crate::tables::holds_state(r, "c"))?);
    let body = encode_row(&SnapshotBody::default())?;
    let pending = |index: u64, id: &str| -> Result<(), StoreError> {
        let row = PendingSnapshotRow {
            last_log_id: Some(LogId::new(openraft::CommittedLeaderId::new(1, 1), index)),
            membership: StoredMembership::default(),
            snapshot_id: id.to_string(),
            body: body.clone(),
        };
        store.commit_ops(vec![Box::new(RaftWrite {
            channel: "c".into(),
            change: Change::PendingSnapshot(row),
        })])?;
        Ok(())
    };
    let stored = || -> Result<Option<String>, StoreError> {
        Ok(store
            .read_extension(NAMESPACE, |r| read_pending_snapshot(r, "c"))?
            .map(|p| p.snapshot_id))
    };
    pending(4, "1-4")?;
    assert!(store.read_extension(NAMESPACE, |r| crate::tables::holds_state(r, "c"))?);
    assert!(has_interrupted_install(&store, "c")?);
    // A snapshot reaching less far (or as far) never replaces the stored one: the log it
    // covers may be purged already.
    pending(3, "1-3")?;
    pending(4, "another 1-4")?;
    assert_eq!(stored()?.as_deref(), Some("1-4"));
    // An install of an older snapshot (a second open's, late) leaves the newer one.
    let drop_upto = |index| -> Result<(), StoreError> {
        store.commit_ops(vec![Box::new(RaftWrite {
            channel: "c".into(),
            change: Change::DropPendingSnapshot(Some(LogId::new(
                openraft::CommittedLeaderId::new(1, 1),
                index,
            ))),
        })])?;
        Ok(())
    };
    drop_upto(3)?;
    assert!(has_interrupted_install(&store, "c")?);
    drop_upto(4)?;
    assert!(!store.read_extension(NAMESPACE, |r| crate::tables::holds_state(r, "c"))?);
    Ok(())
}
