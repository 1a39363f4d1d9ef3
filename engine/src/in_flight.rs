//! What live uploads rely on that the index does not anchor yet, and how GC stays clear of it
//! without ever waiting for an upload.
//!
//! An upload references objects before any committed parent or pin counts them: chunks of its
//! open leaf, nodes waiting for their parent, and objects it found already stored (dedup).
//! Those may have count 0 in the index. Each upload *holds* every object it puts here (an
//! in-memory multiset shared by the store) and releases one once a committed parent counts it
//! (or when the upload ends). GC's delete transaction skips held objects.
//!
//! The race this closes: an upload looks an object up in an index snapshot, finds it, and
//! relies on it; a GC delete transaction must not remove it in between. Protocol:
//! - GC: [`InFlight::begin_sweep`] (active sweeps +1), then reads holds inside its delete
//!   transaction, commits, then ends the sweep (generation +1, active −1).
//! - Upload: holds the object first, then trusts its snapshot only if no sweep is active and no
//!   sweep ended since the snapshot was taken ([`InFlight::lookup_state`]); on a newer
//!   generation it takes a fresh snapshot, and while a sweep is active it does not dedup (it
//!   appends the bytes again; the index keeps one copy, the other is dead bytes).
//!
//! A sweep that starts after the hold sees the hold; one that ended before the check is in the
//! fresh snapshot; one running during the check disables dedup. All counters are `SeqCst`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::codec::Hash;

/// Shared by a store's uploads and its GC.
#[derive(Debug, Default)]
pub(crate) struct InFlight {
    held: Mutex<HashMap<Hash, u64>>,
    active_sweeps: AtomicU64,
    sweep_generation: AtomicU64,
}

/// Whether an upload may trust an index snapshot for dedup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LookupState {
    /// No sweep ran since the snapshot of this generation was taken.
    Current,
    /// Sweeps ended since: take a new snapshot (it is then current for this generation).
    Stale(u64),
    /// A sweep is deleting right now: do not rely on anything found.
    Sweeping,
}

impl InFlight {
    pub(crate) fn hold(&self, hash: Hash) {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let n = held.entry(hash).or_insert(0);
        *n = n.saturating_add(1);
    }

    pub(crate) fn release(&self, hash: &Hash, times: u64) {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = held.get_mut(hash) {
            *n = n.saturating_sub(times);
            if *n == 0 {
                held.remove(hash);
            }
        }
    }

    pub(crate) fn is_held(&self, hash: &Hash) -> bool {
        let held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        held.contains_key(hash)
    }

    /// The generation a snapshot taken now belongs to (read it *before* taking the snapshot).
    pub(crate) fn generation(&self) -> u64 {
        self.sweep_generation.load(Ordering::SeqCst)
    }

    /// Call after holding the object, before trusting a snapshot of generation `snapshot`.
    pub(crate) fn lookup_state(&self, snapshot: u64) -> LookupState {
        if self.active_sweeps.load(Ordering::SeqCst) != 0 {
            return LookupState::Sweeping;
        }
        let now = self.sweep_generation.load(Ordering::SeqCst);
        if now == snapshot {
            LookupState::Current
        } else {
            LookupState::Stale(now)
        }
    }

    /// Marks a delete transaction as running until the guard drops (after its commit).
    pub(crate) fn begin_sweep(&self) -> SweepGuard<'_> {
        self.active_sweeps.fetch_add(1, Ordering::SeqCst);
        SweepGuard { in_flight: self }
    }
}

/// A running sweep; dropping it ends the sweep.
#[derive(Debug)]
pub(crate) struct SweepGuard<'a> {
    in_flight: &'a InFlight,
}

impl Drop for SweepGuard<'_> {
    fn drop(&mut self) {
        self.in_flight
            .sweep_generation
            .fetch_add(1, Ordering::SeqCst);
        self.in_flight.active_sweeps.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_count_per_hold_and_release() {
        let f = InFlight::default();
        f.hold([1; 32]);
        f.hold([1; 32]);
        f.release(&[1; 32], 1);
        assert!(f.is_held(&[1; 32]));
        f.release(&[1; 32], 1);
        assert!(!f.is_held(&[1; 32]));
    }

    #[test]
    fn a_snapshot_is_trusted_only_with_no_sweep_since() {
        let f = InFlight::default();
        let generation = f.generation();
        assert_eq!(f.lookup_state(generation), LookupState::Current);
        let sweep = f.begin_sweep();
        assert_eq!(f.lookup_state(generation), LookupState::Sweeping);
        drop(sweep);
        assert_eq!(
            f.lookup_state(generation),
            LookupState::Stale(generation + 1)
        );
    }
}
