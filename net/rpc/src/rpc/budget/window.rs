//! The two sides of a per-call window: what the peer granted us to send, and what we granted
//! the peer and return as its messages are consumed.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

use tokio::sync::{Notify, Semaphore};

use super::Reservation;
use crate::rpc::{ErrorKind, RpcError};

/// Why a message could not be sent within the peer's window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WindowError {
    /// The message's charge exceeds the whole window the peer granted for this call.
    TooLarge { window: u32 },
    /// The call ended.
    Closed,
}

impl WindowError {
    /// The error a sender reports for a `charge`-byte message: `TooLarge` as
    /// `ResourceExhausted` naming the window's owner (`"server"`, `"caller"`), `Closed` as the
    /// call's own end (`ended`).
    pub(crate) fn into_rpc(
        self,
        charge: usize,
        owner: &str,
        ended: impl FnOnce() -> RpcError,
    ) -> RpcError {
        match self {
            WindowError::TooLarge { window } => RpcError::new(
                ErrorKind::ResourceExhausted,
                format!("a {charge}-byte message exceeds the {owner}'s {window}-byte window"),
            ),
            WindowError::Closed => ended(),
        }
    }
}

/// Window bytes taken for one message not yet queued (see [`SendWindow::take_message`]).
#[must_use]
pub(crate) struct TakenWindow<'a> {
    window: &'a SendWindow,
    /// What goes back if the message is not queued; 0 once it was.
    charge: usize,
}

impl TakenWindow<'_> {
    /// The message was queued: its bytes are the peer's to return.
    pub(crate) fn spent(mut self) {
        self.charge = 0;
    }
}

impl Drop for TakenWindow<'_> {
    fn drop(&mut self) {
        if self.charge > 0 {
            // Taken from the window and never sent: the peer will not return them, so the
            // call's next message takes them first, as it takes an appended message's saving.
            self.window.owed.fetch_add(self.charge, Ordering::Relaxed);
        }
    }
}

/// The window a peer granted us for one call: what we may still send.
#[derive(Debug)]
pub(crate) struct SendWindow {
    available: Semaphore,
    /// The window the peer announced (its first grant, or the call header's response window);
    /// 0 until announced.
    window: AtomicU32,
    /// Bytes sent and not yet returned by the peer.
    outstanding: AtomicU64,
    /// Bytes taken for messages that were appended to a queued chunk frame, which cost that
    /// much less than the frame of their own they were taken for (see
    /// [`crate::frame::APPENDED_MESSAGE_SAVING`]); the next message takes these first. Only
    /// the call's one sender touches it.
    owed: AtomicUsize,
    announced: Notify,
}

impl SendWindow {
    /// A window the peer announces later with its first grant.
    pub(crate) fn unannounced() -> Self {
        SendWindow {
            available: Semaphore::new(0),
            window: AtomicU32::new(0),
            outstanding: AtomicU64::new(0),
            owed: AtomicUsize::new(0),
            announced: Notify::new(),
        }
    }

    /// A window the peer announced up front (the response window of a call header).
    pub(crate) fn announced(window: u32) -> Self {
        SendWindow {
            available: Semaphore::new(window as usize),
            window: AtomicU32::new(window),
            outstanding: AtomicU64::new(0),
            owed: AtomicUsize::new(0),
            announced: Notify::new(),
        }
    }

    /// A grant from the peer: the first of an unannounced window announces it, later ones
    /// return bytes sent. `Err` when the peer returns more than was sent (a violation).
    pub(crate) fn grant(&self, bytes: u32) -> Result<(), ()> {
        if self
            .window
            .compare_exchange(0, bytes, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            self.available.add_permits(bytes as usize);
            self.announced.notify_waiters();
            return Ok(());
        }
        self.outstanding
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |out| {
                out.checked_sub(u64::from(bytes))
            })
            .map_err(|_| ())?;
        self.available.add_permits(bytes as usize);
        Ok(())
    }

    /// The message just sent was appended to a queued chunk frame: it cost
    /// [`crate::frame::APPENDED_MESSAGE_SAVING`] bytes less than was taken for it, which the
    /// next message takes first.
    pub(crate) fn appended(&self) {
        self.owed
            .fetch_add(crate::frame::APPENDED_MESSAGE_SAVING, Ordering::Relaxed);
    }

    /// Waits until a message charged `charge` bytes fits the window and takes its bytes, the
    /// ones owed by appended messages (see [`SendWindow::appended`]) first.
    pub(crate) async fn acquire(&self, charge: usize) -> Result<(), WindowError> {
        let owed = self.owed.load(Ordering::Relaxed);
        let covered = owed.min(charge);
        self.take(charge, charge.saturating_sub(covered)).await?;
        self.owed
            .store(owed.saturating_sub(covered), Ordering::Relaxed);
        Ok(())
    }

    /// [`SendWindow::acquire`] for one message about to be queued: the bytes go back to the
    /// window (owed to the call's next message) unless [`TakenWindow::spent`] says the message
    /// was queued — so a send that fails after this, or whose future is dropped (a caller's
    /// own timeout around it), does not shrink the call's window for good.
    pub(crate) async fn take_message(&self, charge: usize) -> Result<TakenWindow<'_>, WindowError> {
        self.acquire(charge).await?;
        Ok(TakenWindow {
            window: self,
            charge,
        })
    }

    /// [`SendWindow::take_message`] when the window has room right now (never waits): `None`
    /// when the caller must wait or fail, and nothing is taken then. A sender's fast path, so
    /// that a message that need not wait costs no future of its own.
    pub(crate) fn try_take_message(&self, charge: usize) -> Option<TakenWindow<'_>> {
        let window = self.window.load(Ordering::Acquire);
        if window == 0 || charge > window as usize {
            return None;
        }
        let owed = self.owed.load(Ordering::Relaxed);
        let covered = owed.min(charge);
        let n = u32::try_from(charge.saturating_sub(covered)).ok()?;
        self.available.try_acquire_many(n).ok()?.forget();
        self.outstanding.fetch_add(u64::from(n), Ordering::AcqRel);
        self.owed
            .store(owed.saturating_sub(covered), Ordering::Relaxed);
        Some(TakenWindow {
            window: self,
            charge,
        })
    }

    /// Waits until a message charged `charge` bytes fits the window and takes `take` bytes.
    async fn take(&self, charge: usize, take: usize) -> Result<(), WindowError> {
        let window = self.window.load(Ordering::Acquire);
        if window != 0 {
            if charge > window as usize {
                return Err(WindowError::TooLarge { window });
            }
            let n = u32::try_from(take).map_err(|_| WindowError::TooLarge { window })?;
            match self.available.try_acquire_many(n) {
                Ok(permit) => {
                    permit.forget();
                    self.outstanding.fetch_add(u64::from(n), Ordering::AcqRel);
                    return Ok(());
                }
                Err(tokio::sync::TryAcquireError::Closed) => return Err(WindowError::Closed),
                Err(tokio::sync::TryAcquireError::NoPermits) => {}
            }
        }
        loop {
            let notified = self.announced.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let window = self.window.load(Ordering::Acquire);
            if window == 0 {
                if self.available.is_closed() {
                    return Err(WindowError::Closed);
                }
                notified.await;
                continue;
            }
            if charge > window as usize {
                return Err(WindowError::TooLarge { window });
            }
            let n = u32::try_from(take).map_err(|_| WindowError::TooLarge { window })?;
            let permit = self
                .available
                .acquire_many(n)
                .await
                .map_err(|_| WindowError::Closed)?;
            permit.forget();
            self.outstanding.fetch_add(u64::from(n), Ordering::AcqRel);
            return Ok(());
        }
    }

    /// Ends the call for senders: waiters fail with `Closed`.
    pub(crate) fn close(&self) {
        self.available.close();
        self.announced.notify_waiters();
    }

    /// Bytes that can be sent right now.
    pub(crate) fn available(&self) -> usize {
        self.available.available_permits()
    }

    /// The announced window (0 until announced).
    pub(crate) fn window(&self) -> u32 {
        self.window.load(Ordering::Acquire)
    }
}

/// Our receive window for one call: what the peer may still send, backed by a reservation.
#[derive(Debug)]
pub(crate) struct RecvWindow {
    window: u32,
    remaining: AtomicU64,
    _reservation: Reservation,
}

impl RecvWindow {
    /// A window of the reservation's size, all of it open to the peer.
    pub(crate) fn new(reservation: Reservation) -> Self {
        let window = u32::try_from(reservation.bytes()).unwrap_or(u32::MAX);
        RecvWindow {
            window,
            remaining: AtomicU64::new(u64::from(window)),
            _reservation: reservation,
        }
    }

    pub(crate) fn window(&self) -> u32 {
        self.window
    }

    /// Takes `charge` bytes for an arriving frame; `false` when the peer has not been granted
    /// that much (a violation).
    pub(crate) fn admit(&self, charge: usize) -> bool {
        let charge = u64::try_from(charge).unwrap_or(u64::MAX);
        self.remaining
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |left| {
                left.checked_sub(charge)
            })
            .is_ok()
    }

    /// Opens `bytes` again (just before they are returned to the peer in a grant).
    pub(crate) fn reopen(&self, bytes: u32) {
        self.remaining.fetch_add(u64::from(bytes), Ordering::AcqRel);
    }
}

/// The consumer side of a receive window: decides when consumed bytes go back to the peer.
#[derive(Debug)]
pub(crate) struct Returner {
    window: u32,
    unreturned: u32,
}

impl Returner {
    pub(crate) fn new(window: u32) -> Self {
        Returner {
            window,
            unreturned: 0,
        }
    }

    /// Notes one consumed message of `charge` bytes; returns the bytes to grant back now, once
    /// half the window is consumed.
    pub(crate) fn consumed(&mut self, charge: usize) -> Option<u32> {
        let charge = u32::try_from(charge).unwrap_or(u32::MAX);
        self.unreturned = self.unreturned.saturating_add(charge);
        if self.unreturned >= (self.window / 2).max(1) {
            Some(std::mem::take(&mut self.unreturned))
        } else {
            None
        }
    }

    /// The consumer found its queue empty and waits: returns everything consumed so far, so a
    /// sender whose next message needs more than it has left is never stuck behind a small
    /// return (and a consumer that keeps up sends one grant per wait, not per message).
    pub(crate) fn idle(&mut self) -> Option<u32> {
        (self.unreturned > 0).then(|| std::mem::take(&mut self.unreturned))
    }
}
