#![allow(clippy::unwrap_used)]
use super::window::WindowError;
use super::*;
use tokio_util::sync::CancellationToken;

fn peer(node: &NodeBudgets) -> Arc<PeerBudgets> {
    node.peer(crate::handshake::PeerIdentity::for_harness().node_id())
}

fn node(recv: usize, send: usize) -> Arc<NodeBudgets> {
    Arc::new(NodeBudgets::new(
        (recv, recv),
        (send, send),
        Arc::new(Metrics::default()),
    ))
}

#[test]
fn reservations_respect_both_limits_and_release_on_drop() {
    let node = node(100, 100);
    let a = RecvBudget::new(60, peer(&node), node.clone());
    let b = RecvBudget::new(60, peer(&node), node.clone());
    let r1 = a.reserve(50, 50).unwrap();
    assert!(a.reserve(20, 20).is_none(), "session limit");
    let r2 = b.reserve(60, 10).unwrap();
    assert_eq!(r2.bytes(), 50, "endpoint limit leaves 50");
    assert!(b.reserve(1, 1).is_none());
    drop(r1);
    assert_eq!(node.recv.held(), 50);
    assert_eq!(a.held(), 0);
    drop(r2);
    assert_eq!(node.recv.held(), 0);
}

/// Spare reservations, as a session's buffer pool holds them.
#[derive(Debug, Default)]
struct Spares(Mutex<Vec<Reservation>>);

impl Reclaim for Spares {
    fn reclaim(&self) -> usize {
        let taken = std::mem::take(&mut *self.0.lock().unwrap());
        taken.iter().map(Reservation::bytes).sum()
    }
}

#[test]
fn spares_give_their_bytes_back_before_a_window_is_cut_or_refused() {
    let node = node(150, 0);
    let a = RecvBudget::new(100, peer(&node), node.clone());
    let b = RecvBudget::new(100, peer(&node), node.clone());
    let (a_spares, b_spares) = (Arc::new(Spares::default()), Arc::new(Spares::default()));
    let weak: std::sync::Weak<Spares> = Arc::downgrade(&a_spares);
    node.register_spares(weak);
    let weak: std::sync::Weak<Spares> = Arc::downgrade(&b_spares);
    node.register_spares(weak);

    // The session's own spares make room for a whole window.
    a_spares.0.lock().unwrap().push(a.reserve(70, 70).unwrap());
    let window = a.reserve_reclaiming(60, 10, &*a_spares).unwrap();
    assert_eq!(window.bytes(), 60);
    assert_eq!(a.held(), 60);

    // Another session's spares make room at the endpoint.
    a_spares.0.lock().unwrap().push(a.reserve(40, 40).unwrap());
    assert_eq!(node.recv.held(), 100);
    let other = b.reserve_reclaiming(80, 80, &*b_spares).unwrap();
    assert_eq!(
        other.bytes(),
        80,
        "a's spares gave the endpoint's bytes back"
    );
    assert_eq!(node.recv.held(), 140);
    assert_eq!(a.held(), 60);

    // Real reservations are never taken back: beyond them the call is refused.
    assert!(a.reserve_reclaiming(60, 60, &*a_spares).is_none());
    assert_eq!(a.held(), 60);
    drop((window, other));
    assert_eq!(node.recv.held(), 0);
}

#[tokio::test]
async fn send_budget_returns_endpoint_bytes_when_dropped() {
    let node = node(0, 100);
    let peer = node.peer(crate::handshake::PeerIdentity::for_harness().node_id());
    let s = SendBudget::new(80, 50, peer, node.clone(), CancellationToken::new());
    let call = SendBudget::call_budget(50);
    s.acquire(Some(&call), 40).await.unwrap();
    assert_eq!(
        s.acquire(None, 90).await,
        Err(SendBudgetError::TooLarge { limit: 80 })
    );
    // Over the call's budget: fails at once instead of waiting for bytes it can never have.
    assert_eq!(
        s.acquire(Some(&call), 60).await,
        Err(SendBudgetError::TooLarge { limit: 50 })
    );
    assert_eq!(call.available_permits(), 10);
    assert_eq!(node.send.available_permits(), 60);
    drop(s);
    assert_eq!(node.send.available_permits(), 100);
}

#[tokio::test]
async fn send_window_announces_then_only_takes_back_what_was_sent() {
    let w = SendWindow::unannounced();
    assert!(w.grant(100).is_ok());
    assert_eq!(w.window(), 100);
    assert_eq!(
        w.acquire(101).await,
        Err(WindowError::TooLarge { window: 100 })
    );
    w.acquire(60).await.unwrap();
    assert!(w.grant(61).is_err(), "returning more than was sent");
    assert!(w.grant(60).is_ok());
    assert_eq!(w.available(), 100);
    // Bytes saved by appended messages pay for the next message first.
    w.appended();
    let saved = crate::frame::APPENDED_MESSAGE_SAVING;
    w.acquire(90).await.unwrap();
    assert_eq!(w.available(), 100 - (90 - saved.min(90)));
}

#[tokio::test]
async fn window_taken_for_a_message_never_queued_goes_to_the_next_message() {
    let w = SendWindow::announced(1000);
    // A send whose future is dropped (or that fails) after taking its bytes.
    drop(w.take_message(600).await.unwrap());
    assert_eq!(w.available(), 400);
    // The next message of that size is covered by what was given back, at once.
    let next = tokio::time::timeout(std::time::Duration::from_secs(5), w.take_message(600))
        .await
        .expect("the window taken for the dropped send was given back")
        .unwrap();
    next.spent();
    assert_eq!(w.available(), 400);
    // The peer returns what was sent once: the whole window is back.
    assert!(w.grant(600).is_ok());
    assert_eq!(w.available(), 1000);
    assert!(
        w.grant(1).is_err(),
        "nothing else was outstanding beyond what is owed"
    );
}

#[tokio::test]
async fn the_send_fast_paths_take_what_the_waiting_ones_take_or_nothing() {
    // The window: nothing before it is announced, nothing past it, owed bytes first.
    let w = SendWindow::unannounced();
    assert!(w.try_take_message(10).is_none());
    assert!(w.grant(1000).is_ok());
    assert!(w.try_take_message(1001).is_none());
    assert_eq!(w.available(), 1000);
    w.try_take_message(600).unwrap().spent();
    assert_eq!(w.available(), 400);
    assert!(w.try_take_message(500).is_none(), "only 400 are left");
    assert_eq!(w.available(), 400, "a refused take holds nothing");
    // A message taken and never queued is owed to the next one, which takes it first.
    drop(w.try_take_message(300).unwrap());
    assert_eq!(w.available(), 100);
    w.try_take_message(350).unwrap().spent();
    assert_eq!(w.available(), 50);
    assert!(w.grant(950).is_ok());
    assert_eq!(w.available(), 1000);
    assert!(w.grant(1).is_err(), "nothing else was outstanding");

    // The budgets: all four at once, or none.
    let node = node(0, 100);
    let peer = node.peer(crate::handshake::PeerIdentity::for_harness().node_id());
    let s = SendBudget::new(80, 50, peer, node.clone(), CancellationToken::new());
    let call = SendBudget::call_budget(50);
    assert!(s.try_acquire(Some(&call), 40));
    assert!(!s.try_acquire(Some(&call), 20), "past the call's budget");
    assert!(!s.try_acquire(None, 41), "past the session's budget");
    assert_eq!(call.available_permits(), 10);
    assert_eq!(node.send.available_permits(), 60);
    assert!(s.try_acquire(None, 40));
    assert_eq!(node.send.available_permits(), 20);
    s.release(Some(&call), 40);
    s.release(None, 40);
    assert_eq!(call.available_permits(), 50);
    assert_eq!(node.send.available_permits(), 100);
}

#[test]
fn returner_returns_at_half_window_or_when_the_consumer_waits() {
    let mut r = Returner::new(100);
    assert_eq!(r.consumed(10), None);
    assert_eq!(r.idle(), Some(10));
    assert_eq!(r.idle(), None);
    assert_eq!(r.consumed(30), None);
    assert_eq!(r.consumed(20), Some(50));
    assert_eq!(r.idle(), None);
}
