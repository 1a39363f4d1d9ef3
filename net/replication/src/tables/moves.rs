//! The rows of a replica move: its phase, its nodes, and the handoff state a target keeps.

use net_mesh_engine::{ExtensionError, ExtensionReader};
use serde::{Deserialize, Serialize};

use super::*;

/// The phase a replica move has reached (docs/REPLICATION.md, replica moves). The order is the
/// order of the phases (`SourceForgotten` between `Left` and `CleanedUp`, whatever its stored
/// index); a move only ever moves forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MovePhase {
    /// Bound on this node (a participant told of the move, or the coordinator that started
    /// it); nothing done yet.
    Bound,
    /// The target is in the group as a learner (its membership entry is committed).
    LearnerAdded,
    /// The target matched the committed index of the group.
    CaughtUp,
    /// The voters are the old ones less the source plus the target (committed).
    CutOver,
    /// The target has applied a membership without the source, at or past the cutover.
    Left,
    /// The source removed its copy of the channel.
    CleanedUp,
    /// Given up before the cutover ([`crate::Moves::abandon`]): the target left the group
    /// (on the coordinator), the source keeps its copy and is free for another move (on the
    /// source), the target removed its copy (on the target). Like `CleanedUp`, an end.
    Abandoned,
    /// On the coordinator: the source left the group (`Left`) but could not be told to remove
    /// its copy, and the operator gave it up ([`crate::Moves::forget_source`]). An end for
    /// the coordinator (free for another move); resumed, the move still asks the source to
    /// clean up (then `CleanedUp`).
    SourceForgotten,
}

impl MovePhase {
    /// The phase's place in a move (see the type's docs).
    fn rank(self) -> u8 {
        match self {
            MovePhase::Bound => 0,
            MovePhase::LearnerAdded => 1,
            MovePhase::CaughtUp => 2,
            MovePhase::CutOver => 3,
            MovePhase::Left => 4,
            MovePhase::SourceForgotten => 5,
            MovePhase::CleanedUp => 6,
            MovePhase::Abandoned => 7,
        }
    }

    /// Whether the move is over on the node holding this phase: nothing of it runs or waits
    /// there, and another move of the channel may replace it.
    pub fn is_end(self) -> bool {
        matches!(
            self,
            MovePhase::CleanedUp | MovePhase::Abandoned | MovePhase::SourceForgotten
        )
    }
}

impl PartialOrd for MovePhase {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for MovePhase {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.rank().cmp(&other.rank())
    }
}

impl MovePhase {
    /// The phase's name as the CLI prints it.
    pub fn name(self) -> &'static str {
        match self {
            MovePhase::Bound => "bound",
            MovePhase::LearnerAdded => "learner_added",
            MovePhase::CaughtUp => "caught_up",
            MovePhase::CutOver => "cut_over",
            MovePhase::Left => "left",
            MovePhase::CleanedUp => "cleaned_up",
            MovePhase::Abandoned => "abandoned",
            MovePhase::SourceForgotten => "source_forgotten",
        }
    }
}

/// A node of a move as a row keeps it: full node id and address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MoveNode {
    pub node_id: [u8; 32],
    pub host_port: String,
}

/// A replica move this node takes part in (as its coordinator, its source or its target).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MoveRow {
    /// Chosen by whoever started the move; every phase message names it.
    pub id: u64,
    pub from: MoveNode,
    pub to: MoveNode,
    /// The only node whose phase messages this node accepts.
    pub coordinator: [u8; 32],
    pub phase: MovePhase,
    pub started_unix_ms: u64,
    /// The log index of the membership entry that made the cutover (once known).
    pub cutover: Option<u64>,
}

impl MoveRow {
    pub(crate) fn check(&self) -> Result<(), String> {
        for n in [&self.from, &self.to] {
            if n.host_port.len() > MAX_HOST_PORT_LEN {
                return Err(format!(
                    "host_port of {} bytes (most {MAX_HOST_PORT_LEN})",
                    n.host_port.len()
                ));
            }
        }
        Ok(())
    }
}

/// Reads a channel's move row ([`MOVES_TABLE`]), checking its bounds.
pub fn read_move(
    reader: &ExtensionReader<'_>,
    channel: &str,
) -> Result<Option<MoveRow>, ExtensionError> {
    read_move_in(reader, MOVES_TABLE, channel)
}

/// Reads a channel's previous move row ([`PREVIOUS_MOVE_TABLE`]), checking its bounds.
pub fn read_previous_move(
    reader: &ExtensionReader<'_>,
    channel: &str,
) -> Result<Option<MoveRow>, ExtensionError> {
    read_move_in(reader, PREVIOUS_MOVE_TABLE, channel)
}

/// Response of `move/v1/state` (and a [`PREVIOUS_HANDOFF_TABLE`] value): the target's applied
/// state of the channel (its `ext.raft.state_v1` row: committed, since it is applied).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandoffState {
    /// The last log index applied on the target.
    pub applied: Option<u64>,
    /// Full node ids of the voters of the applied membership (every configuration).
    pub voters: Vec<[u8; 32]>,
    /// Full node ids of the learners of the applied membership.
    pub learners: Vec<[u8; 32]>,
}

/// Reads the applied state a target kept when its previous move's row gave way
/// ([`PREVIOUS_HANDOFF_TABLE`]), checking its bounds.
pub fn read_previous_handoff(
    reader: &ExtensionReader<'_>,
    channel: &str,
) -> Result<Option<HandoffState>, ExtensionError> {
    let row: Option<HandoffState> = read_channel_row(reader, PREVIOUS_HANDOFF_TABLE, channel)?;
    if let Some(r) = &row {
        check_handoff(r).map_err(|e| corrupted(PREVIOUS_HANDOFF_TABLE, e))?;
    }
    Ok(row)
}

/// The bounds of a stored [`HandoffState`]: at most [`MAX_HANDOFF_NODES`] node ids.
pub fn check_handoff(state: &HandoffState) -> Result<(), String> {
    let nodes = state.voters.len().saturating_add(state.learners.len());
    if nodes > MAX_HANDOFF_NODES {
        return Err(format!("{nodes} node ids (most {MAX_HANDOFF_NODES})"));
    }
    Ok(())
}

fn read_move_in(
    reader: &ExtensionReader<'_>,
    table: &str,
    channel: &str,
) -> Result<Option<MoveRow>, ExtensionError> {
    let row: Option<MoveRow> = read_channel_row(reader, table, channel)?;
    if let Some(r) = &row {
        r.check().map_err(|e| corrupted(table, e))?;
    }
    Ok(row)
}
