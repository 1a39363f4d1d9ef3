//! A node's move rows in `ext.raft.moves_v1` (and the previous one a target keeps), and the
//! applied membership it answers as its handoff state.

use super::*;

impl Moves {
    /// This node's applied state of `channel`, as `move/v1/state` answers it.
    pub(super) async fn handoff_state(&self, channel: &str) -> Result<HandoffState, MoveError> {
        let state = self.read_state(channel).await?;
        Ok(state.map(|s| handoff_of(&s)).unwrap_or(HandoffState {
            applied: None,
            voters: Vec::new(),
            learners: Vec::new(),
        }))
    }

    pub(super) async fn read_row(&self, channel: &str) -> Result<Option<MoveRow>, MoveError> {
        let store = self.inner.store.clone();
        let ch = channel.to_string();
        tokio::task::spawn_blocking(move || store.read_extension(NAMESPACE, |r| read_move(r, &ch)))
            .await
            .map_err(|e| usage(channel, e.to_string()))?
            .map_err(|source| MoveError::Store {
                channel: channel.to_string(),
                source: Box::new(source),
            })
    }

    pub(super) async fn read_previous_row(
        &self,
        channel: &str,
    ) -> Result<Option<MoveRow>, MoveError> {
        let store = self.inner.store.clone();
        let ch = channel.to_string();
        tokio::task::spawn_blocking(move || {
            store.read_extension(NAMESPACE, |r| read_previous_move(r, &ch))
        })
        .await
        .map_err(|e| usage(channel, e.to_string()))?
        .map_err(|source| MoveError::Store {
            channel: channel.to_string(),
            source: Box::new(source),
        })
    }

    pub(super) async fn read_previous_handoff(
        &self,
        channel: &str,
    ) -> Result<Option<HandoffState>, MoveError> {
        let store = self.inner.store.clone();
        let ch = channel.to_string();
        tokio::task::spawn_blocking(move || {
            store.read_extension(NAMESPACE, |r| read_previous_handoff(r, &ch))
        })
        .await
        .map_err(|e| usage(channel, e.to_string()))?
        .map_err(|source| MoveError::Store {
            channel: channel.to_string(),
            source: Box::new(source),
        })
    }

    pub(super) async fn read_state(&self, channel: &str) -> Result<Option<StateRow>, MoveError> {
        let store = self.inner.store.clone();
        let ch = channel.to_string();
        tokio::task::spawn_blocking(move || {
            store.read_extension(NAMESPACE, |r| {
                read_channel_row::<StateRow>(r, STATE_TABLE, &ch)
            })
        })
        .await
        .map_err(|e| usage(channel, e.to_string()))?
        .map_err(|source| MoveError::Store {
            channel: channel.to_string(),
            source: Box::new(source),
        })
    }

    pub(super) async fn write_row(&self, channel: &str, row: &MoveRow) -> Result<(), MoveError> {
        self.write_rows(channel, row, None).await
    }

    /// Writes the channel's move row and, if given, its previous move row (with the applied
    /// state that made it give way, or keeping the stored one), in one transaction.
    pub(super) async fn write_rows(
        &self,
        channel: &str,
        row: &MoveRow,
        previous: Option<(MoveRow, Option<HandoffState>)>,
    ) -> Result<(), MoveError> {
        let store = self.inner.store.clone();
        let write = |change| -> Box<dyn ExtensionOp> {
            Box::new(RaftWrite {
                channel: channel.to_string(),
                change,
            })
        };
        let mut ops = vec![write(Change::Move(row.clone()))];
        if let Some((previous, handoff)) = previous {
            ops.push(write(Change::PreviousMove {
                row: previous,
                handoff,
            }));
        }
        tokio::task::spawn_blocking(move || store.commit_ops(ops))
            .await
            .map_err(|e| usage(channel, e.to_string()))?
            .map_err(|source| MoveError::Store {
                channel: channel.to_string(),
                source: Box::new(source),
            })?;
        Ok(())
    }
}
