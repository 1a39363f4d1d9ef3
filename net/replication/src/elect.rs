//! Ends split votes that repeat in step.
//!
//! openraft 0.9 draws each member's election timeout once, when the member starts, and checks
//! it on a tick (1.5 × the heartbeat), not at the exact moment. Two members whose timeouts
//! round to the same number of ticks and whose ticks run in step (members started together,
//! e.g. in one process) stand in the same instant, each votes for itself, both lose, and both
//! start the next round from that same instant: the split repeats every round (seen: two
//! survivors of a stopped leader splitting 17 terms in a row, 28 s without a leader).
//!
//! [`break_split_votes`] watches the member: once it has been a voter without a leader for
//! [`stalled_after`] (longer than openraft's own first election can take), it stands on a
//! schedule of its own: after a delay that differs from member to member and from term to
//! term ([`delay_fraction`], no randomness: a simulated run replays the same), then once a
//! round for as long as it stays without a leader. The first of two such members asks the other before
//! the other stands, and wins. Standing is an ordinary Raft election, so it changes nothing
//! that Raft's safety rests on.

use std::time::Duration;

use openraft::Raft;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::types::TypeConfig;

/// How long a voter goes without a leader before it stands on its own schedule: two of
/// openraft's election rounds (a member knows no leader from its first round on; each round
/// lasts at most `election_timeout_max`).
pub(crate) fn stalled_after(election_timeout_max: Duration) -> Duration {
    election_timeout_max.saturating_mul(2)
}

/// The part (0 ≤ f < 1) of `election_timeout_max` member `own` waits before it stands in
/// `term`: a mix of both (splitmix64), so two members of one term wait different times.
pub(crate) fn delay_fraction(own: u64, term: u64) -> f64 {
    let mut z = own ^ term.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    // The top 53 bits as a fraction in [0, 1).
    (z >> 11) as f64 / (1u64 << 53) as f64
}

/// Watches `raft` (member `own`) every `heartbeat` until `stop`; see the module docs.
pub(crate) async fn break_split_votes(
    raft: Raft<TypeConfig>,
    own: u64,
    heartbeat: Duration,
    election_timeout_max: Duration,
    stop: CancellationToken,
) {
    let stalled = stalled_after(election_timeout_max);
    let mut metrics = raft.metrics();
    // When this member stands next if it still has no leader then.
    let mut next_try: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(heartbeat) => {}
        }
        let (term, waiting) = {
            let m = metrics.borrow_and_update();
            let voter = m
                .membership_config
                .membership()
                .voter_ids()
                .any(|v| v == own);
            (m.current_term, voter && m.current_leader.is_none())
        };
        if !waiting {
            next_try = None;
            continue;
        }
        let at = *next_try.get_or_insert_with(|| Instant::now() + stalled);
        if Instant::now() < at {
            continue;
        }
        let delay = election_timeout_max.mul_f64(delay_fraction(own, term));
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
        if metrics.borrow().current_leader.is_none() {
            tracing::info!(term, "no leader for {stalled:?}: standing for election");
            if raft.trigger().elect().await.is_err() {
                return;
            }
        }
        // The next attempt, if still needed, one election round later.
        next_try = Some(Instant::now() + election_timeout_max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_of_one_term_wait_different_times_and_each_term_differs() {
        let fractions: Vec<f64> = (0..1000u64).map(|term| delay_fraction(7, term)).collect();
        assert!(fractions.iter().all(|f| (0.0..1.0).contains(f)));
        // Spread over the whole range, not stuck in one place.
        let low = fractions.iter().filter(|f| **f < 0.5).count();
        assert!((400..600).contains(&low), "{low} of 1000 below one half");
        for term in 0..100 {
            assert_ne!(delay_fraction(7, term), delay_fraction(8, term));
        }
        assert_eq!(delay_fraction(7, 3), delay_fraction(7, 3));
    }
}
