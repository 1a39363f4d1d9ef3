//! A client's write on any member, carried to the group: proposed here on the leader, else
//! forwarded to it (`raft/v1/propose`, whose handler fetches what it lacks from the caller).

use super::*;

/// How long a write waits for the group (a leader to be known, the entry committed and
/// applied here) before it gives up with `Busy`.
const WRITE_WAIT: Duration = Duration::from_secs(30);
/// Pause between forwarding attempts while the group has no leader or it changed.
const RETRY_PAUSE: Duration = Duration::from_millis(200);

impl NodeReplicas {
    /// Proposes `op` through the group: on the leader directly, else forwarded to it; retried
    /// while the group has no leader or it changed, up to [`WRITE_WAIT`]. Waits until the
    /// entry is applied here. Refused at once on a node whose copy is no longer the group's.
    pub(super) async fn write(&self, channel: &str, op: PinOp) -> NodeResult<u64> {
        let group = self.running_or_refused(channel)?;
        if let Some(why) = group.excluded() {
            // No leader of its group would ever take it: refused now, not after WRITE_WAIT.
            return Err(excluded_refusal(channel, &why));
        }
        let deadline = tokio::time::Instant::now() + WRITE_WAIT;
        let index = loop {
            let status = group.status();
            let attempt = if status.is_leader {
                propose_here(&group, &op).await
            } else if let Some(leader) = status.leader {
                forward(&group, &leader, &op).await
            } else {
                Attempt::Retry("no leader is known".into())
            };
            match attempt {
                Attempt::Done(index) => break index,
                Attempt::Failed(e) => return Err(e),
                Attempt::Retry(why) => {
                    if let Some(excluded) = group.excluded() {
                        return Err(excluded_refusal(channel, &excluded));
                    }
                    if tokio::time::Instant::now() >= deadline {
                        return Err(NodeError::new(
                            ErrorClass::Busy,
                            format!("channel {channel}: no leader took the write: {why}"),
                        ));
                    }
                    tracing::debug!(channel, why, "retrying a replicated write");
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
            }
        };
        let waited = group
            .raft
            .wait(Some(
                deadline.saturating_duration_since(tokio::time::Instant::now()),
            ))
            .applied_index_at_least(Some(index), "the write applied here")
            .await;
        if let Err(e) = waited {
            return Err(NodeError::new(
                ErrorClass::Busy,
                format!(
                    "channel {channel}: entry {index} is committed but not applied on this node yet: {e}"
                ),
            ));
        }
        Ok(index)
    }
}

/// Forwards a write to the leader `leader` on the channel's session to it.
async fn forward(group: &ReplicatedChannel, leader: &NodeAddr, op: &PinOp) -> Attempt {
    let call = async {
        let held = group.sessions.get(leader).await.map_err(|e| {
            NodeError::new(ErrorClass::Busy, format!("dial the leader {leader}: {e}"))
        })?;
        let opts =
            CallOptions::with_timeout(WRITE_WAIT).metadata(encode_metadata(group.channel(), &[]));
        let answer = held
            .session
            .call_unary::<PinOp, Proposed>(METHOD_PROPOSE, op, opts)
            .await
            .map_err(|e| NodeError::from_rpc(&e));
        if answer.is_err() {
            group.sessions.call_failed(leader, &held);
        }
        answer
    };
    match call.await {
        Ok(Proposed::Committed(index)) => Attempt::Done(index),
        Ok(Proposed::NotLeader(_)) => Attempt::Retry(format!("{leader} is no longer the leader")),
        Err(e) if matches!(e.class, ErrorClass::Busy | ErrorClass::Io) => {
            Attempt::Retry(format!("the leader {leader}: {}", e.message))
        }
        Err(e) => Attempt::Failed(NodeError::new(
            e.class,
            format!("the leader {leader}: {}", e.message),
        )),
    }
}

/// One try at a replicated write.
enum Attempt {
    Done(u64),
    Retry(String),
    Failed(NodeError),
}

async fn propose_here(group: &ReplicatedChannel, op: &PinOp) -> Attempt {
    let proposed = match op {
        PinOp::Pin { blob_ref, name } => match BlobRef::decode(blob_ref) {
            Ok(b) => group.propose_pin(&b, name).await,
            Err(e) => {
                return Attempt::Failed(NodeError::new(
                    ErrorClass::Usage,
                    format!("blob ref does not decode: {e}"),
                ));
            }
        },
        PinOp::Unpin { blob_id } => group.propose_unpin(blob_id).await,
    };
    match proposed {
        Ok(index) => Attempt::Done(index),
        Err(ProposeError::NotLeader { .. }) => Attempt::Retry("leadership moved".into()),
        Err(e @ (ProposeError::Busy { .. } | ProposeError::NotDurable { .. })) => {
            Attempt::Retry(e.to_string())
        }
        Err(e) => Attempt::Failed(NodeError::new(e.class(), e.to_string())),
    }
}

pub(super) struct ProposeHandler(pub(super) Arc<NodeReplicas>);

impl RpcUnaryHandler for ProposeHandler {
    type Req = PinOp;
    type Resp = Proposed;

    async fn call(&self, ctx: RpcContext, op: PinOp) -> Result<Proposed, RpcError> {
        let channel = metadata_channel(ctx.metadata())
            .map_err(|e| RpcError::new(ErrorKind::InvalidArgument, format!("metadata: {e}")))?;
        let Some(group) = self.0.channel(&channel) else {
            // As the admission hook answers it: the group does not run here (now).
            return Err(RpcError::new(
                ErrorKind::Unavailable,
                format!("channel {channel} is not replicated on this node"),
            ));
        };
        // Only a member proposes (the hook checked it; checked again), and its address in
        // the membership is where the blob's objects come from.
        let peer = ctx.peer().node_id();
        let source = {
            let metrics = group.raft.metrics();
            let metrics = metrics.borrow();
            metrics
                .membership_config
                .nodes()
                .find(|(_, m)| m.is(&peer))
                .and_then(|(_, m)| Member::addr(m))
        };
        let Some(source) = source else {
            return Err(RpcError::new(
                ErrorKind::PermissionDenied,
                format!("node {peer} is not a member of channel {channel}'s group"),
            ));
        };
        if !group.status().is_leader {
            return Ok(Proposed::NotLeader(
                group.status().leader.map(|l| l.to_string()),
            ));
        }
        if let PinOp::Pin { blob_ref, .. } = &op {
            let blob_ref = request_blob_ref(blob_ref)?;
            fetch_held(&group, &source, &blob_ref, &self.0.stop)
                .await
                .map_err(|e| e.to_rpc())?;
        }
        match propose_here(&group, &op).await {
            Attempt::Done(index) => Ok(Proposed::Committed(index)),
            Attempt::Retry(why) => Err(NodeError::new(ErrorClass::Busy, why).to_rpc()),
            Attempt::Failed(e) => Err(e.to_rpc()),
        }
    }
}

/// Brings what this store lacks of `blob_ref` from `source` (verified) and holds it, in one
/// transaction (nothing when the store has it all).
async fn fetch_held(
    group: &ReplicatedChannel,
    source: &NodeAddr,
    blob_ref: &BlobRef,
    stop: &CancellationToken,
) -> NodeResult<()> {
    let fetcher = Fetcher::new(
        group.sessions.clone(),
        group.replication.member_streams(),
        tokio::runtime::Handle::current(),
        stop.child_token(),
    );
    let store = group.store.clone();
    let (source, blob_ref) = (source.clone(), blob_ref.clone());
    let channel = group.channel().to_string();
    tokio::task::spawn_blocking(move || {
        let missing = crate::state_machine::missing_roots(&store, &blob_ref)
            .map_err(|e| node_error(&e))?;
        if missing.is_empty() {
            return Ok(());
        }
        let mut importer = store.importer().map_err(|e| node_error(&e))?;
        fetcher.fetch_from(&source, &mut importer, &blob_ref)?;
        importer.push_op(Box::new(hold_op(&channel, &blob_ref)));
        importer.commit().map_err(|e| node_error(&e))?;
        tracing::debug!(channel, id = %net_mesh_engine::class::short_hex(&blob_id(&blob_ref)), "fetched a forwarded pin's objects");
        Ok(())
    })
    .await
    .map_err(|e| NodeError::new(ErrorClass::Io, format!("worker failed: {e}")))?
}
