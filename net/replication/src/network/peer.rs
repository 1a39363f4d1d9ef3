//! The sending side of a channel's raft messages: openraft's network factory and one client
//! per member, on the raft lane of the node's shared sessions.

use super::*;

/// Reaches members for one channel's group (openraft's network factory), on the raft lane
/// of the sessions the node's channels share.
#[derive(Debug, Clone)]
pub struct Network {
    sessions: Sessions,
    metadata: Arc<[u8]>,
    replication: Replication,
    channel: Arc<str>,
}

impl Network {
    pub(crate) fn new(replication: &Replication, endpoint: &Endpoint, channel: &str) -> Network {
        Network {
            sessions: replication.lanes(endpoint).raft,
            metadata: encode_metadata(channel, &[]).into(),
            replication: replication.clone(),
            channel: channel.into(),
        }
    }

    /// Asks member `target` (at `node`) whether it takes this node as a member of the group:
    /// a `raft/v1/pinned` question (of a blob id no blob has), which only members are
    /// admitted to ask, its answer noted as a raft message's is
    /// ([`Replication::refused_by`]). What the answer says of the blob is not looked at.
    pub(crate) async fn ask_membership(&self, target: u64, node: &Member, timeout: Duration) {
        let mut client = self.clone().new_client(target, node).await;
        let question = PinnedRequest { blob_id: [0; 32] };
        let answer = client
            .call::<_, PinnedState>(METHOD_PINNED, &question, &RPCOption::new(timeout))
            .await;
        if let Err(CallFailure::Unreachable(why) | CallFailure::Refused(why)) = client.noted(answer)
        {
            tracing::debug!(target, "asking a voter whether it takes this node: {why}");
        }
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: u64, node: &Member) -> PeerClient {
        PeerClient {
            sessions: self.sessions.clone(),
            metadata: self.metadata.clone(),
            replication: self.replication.clone(),
            channel: self.channel.clone(),
            target,
            addr: node.addr(),
        }
    }
}

/// One member as seen by the leader (or a candidate): the node's shared raft session to it,
/// dialed pinned to its node id when there is none.
#[derive(Debug)]
pub struct PeerClient {
    sessions: Sessions,
    metadata: Arc<[u8]>,
    replication: Replication,
    channel: Arc<str>,
    target: u64,
    addr: Option<NodeAddr>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Transport(String);

/// How a call failed below openraft's own errors.
enum CallFailure {
    /// Could not reach the member (dial, session, timeout): back off and retry.
    Unreachable(Transport),
    /// The member refused the call (bad request, busy): a network error.
    Refused(Transport),
    /// The member refused the call at admission because it does not take this node as a
    /// member of the group ([`not_admitted`]). A network error, noted for
    /// [`Replication::refused_by`].
    NotAdmitted(Transport),
    /// The member's group stopped.
    Stopped(String),
    Mismatch(SnapshotMismatch),
}

impl PeerClient {
    async fn call<Req: Serialize, Resp: DeserializeOwned + Serialize>(
        &mut self,
        method: &str,
        req: &Req,
        option: &RPCOption,
    ) -> Result<Resp, CallFailure> {
        let Some(addr) = &self.addr else {
            return Err(CallFailure::Refused(Transport(format!(
                "member {:#018x} has no valid node id",
                self.target
            ))));
        };
        let held = self
            .sessions
            .get(addr)
            .await
            .map_err(|e| CallFailure::Unreachable(Transport(format!("dial {addr}: {e}"))))?;
        let timeout = option.hard_ttl().max(Duration::from_millis(50));
        let opts = CallOptions::with_timeout(timeout).metadata(self.metadata.to_vec());
        match held
            .session
            .call_unary::<Req, Reply<Resp>>(method, req, opts)
            .await
        {
            Ok(Reply::Ok(r)) => Ok(r),
            Ok(Reply::Stopped(why)) => Err(CallFailure::Stopped(why)),
            Ok(Reply::SnapshotMismatch(m)) => Err(CallFailure::Mismatch(m)),
            Err(e) => {
                let refused = matches!(
                    e.kind,
                    ErrorKind::PermissionDenied
                        | ErrorKind::InvalidArgument
                        | ErrorKind::UnknownMethod
                        | ErrorKind::Decode
                        | ErrorKind::ResourceExhausted
                );
                if !refused {
                    self.sessions.call_failed(addr, &held);
                }
                let t = Transport(format!("{method} to {:#018x}: {e}", self.target));
                Err(if not_admitted(&e) {
                    CallFailure::NotAdmitted(t)
                } else if refused {
                    CallFailure::Refused(t)
                } else {
                    CallFailure::Unreachable(t)
                })
            }
        }
    }

    /// Notes whether the member took this node's message or refused it at admission
    /// ([`Replication::refused_by`]); other failures say nothing about membership.
    fn noted<T>(&self, answer: Result<T, CallFailure>) -> Result<T, CallFailure> {
        match &answer {
            Ok(_) => self
                .replication
                .note_answer(&self.channel, self.target, false),
            Err(CallFailure::NotAdmitted(_)) => {
                self.replication
                    .note_answer(&self.channel, self.target, true);
            }
            Err(_) => {}
        }
        answer
    }
}

fn rpc_error<E: std::error::Error>(f: CallFailure) -> RPCError<u64, Member, RaftError<u64, E>> {
    match f {
        CallFailure::Unreachable(t) => RPCError::Unreachable(Unreachable::new(&t)),
        CallFailure::Refused(t) | CallFailure::NotAdmitted(t) => {
            RPCError::Network(NetworkError::new(&t))
        }
        CallFailure::Stopped(why) => RPCError::Unreachable(Unreachable::new(&Transport(why))),
        CallFailure::Mismatch(m) => RPCError::Network(NetworkError::new(&Transport(m.to_string()))),
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, Member, RaftError<u64>>> {
        let answer = self.call(METHOD_APPEND, &rpc, &option).await;
        self.noted(answer).map_err(rpc_error)
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<u64>,
        RPCError<u64, Member, RaftError<u64, InstallSnapshotError>>,
    > {
        let answer = self.call(METHOD_SNAPSHOT, &rpc, &option).await;
        match self.noted(answer) {
            Ok(r) => Ok(r),
            Err(CallFailure::Mismatch(m)) => Err(RPCError::RemoteError(RemoteError::new(
                self.target,
                RaftError::APIError(InstallSnapshotError::SnapshotMismatch(m)),
            ))),
            Err(f) => Err(rpc_error(f)),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, Member, RaftError<u64>>> {
        let answer = self.call(METHOD_VOTE, &rpc, &option).await;
        self.noted(answer).map_err(rpc_error)
    }
}

/// Whether a member's refusal of this node's raft message says that it does not take this
/// node as a member of the group: `PermissionDenied`, told by its kind alone (a callee that
/// does not run the group answers `Unavailable`, which says nothing of who the members are).
/// A callee of an earlier build answered that one with `PermissionDenied` too, in the words
/// [`LEGACY_NOT_RUNNING`]: such an answer is not taken for a refusal of membership (the only
/// words looked at, and only those earlier builds' own).
pub(super) fn not_admitted(e: &RpcError) -> bool {
    e.kind == ErrorKind::PermissionDenied && !e.message.contains(LEGACY_NOT_RUNNING)
}
