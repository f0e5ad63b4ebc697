//! Memory budgets of the sessions: the bytes a session holds of requests being worked on and
//! of replies not yet written to its socket, counted against its own budget
//! (`MAX_SESSION_MEMORY`) and against one shared by every session (`MAX_SERVER_MEMORY`).
//!
//! A charge is taken before work starts and given back when its bytes are gone (the reply
//! written, the request answered), so what the counters say is what is held. Work that would
//! take the server past its budget is refused; a session past its own stops being read until
//! its client drains its replies, and is dropped if it does not (a reader too slow on purpose
//! would otherwise make the server hold its replies without bound).
//!
//! A big result that many sessions send at once (a hot script's kept answer) is one buffer
//! they share: each session is charged all of it (it is what that client has to read), the
//! server once, while any session still holds it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::value::RawValue;
use tokio::sync::Notify;

/// The budget every session draws from.
pub(crate) struct ServerBudget {
    used: AtomicUsize,
    /// 0: unlimited.
    limit: usize,
    /// Shared results queued, by address: how many queued messages hold each.
    shared: Mutex<HashMap<usize, usize>>,
}

impl ServerBudget {
    pub(crate) fn new(limit: usize) -> ServerBudget {
        ServerBudget {
            used: AtomicUsize::new(0),
            limit,
            shared: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one more holder of `body`, charging its bytes if it is the first.
    fn hold(&self, body: &Arc<RawValue>) {
        let mut shared = self.shared.lock();
        let holders = shared.entry(address(body)).or_insert(0);
        if *holders == 0 {
            self.used.fetch_add(body.get().len(), Ordering::Relaxed);
        }
        *holders += 1;
    }

    /// Counts one holder of `body` less, giving its bytes back with the last.
    fn release(&self, body: &Arc<RawValue>) {
        let mut shared = self.shared.lock();
        let key = address(body);
        let Some(holders) = shared.get_mut(&key) else {
            return;
        };
        *holders -= 1;
        if *holders == 0 {
            shared.remove(&key);
            self.used.fetch_sub(body.get().len(), Ordering::Relaxed);
        }
    }

    /// Bytes charged by every session together.
    pub(crate) fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    pub(crate) fn limit(&self) -> usize {
        self.limit
    }
}

/// Why a charge was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Over {
    /// It alone is bigger than the session's budget.
    Session { limit: usize },
    /// The sessions together would pass the server's budget.
    Server { limit: usize },
}

/// One session's budget.
pub(crate) struct Budget {
    server: Arc<ServerBudget>,
    /// 0: unlimited.
    limit: usize,
    /// Everything charged: requests in flight and replies queued.
    used: AtomicUsize,
    /// Replies queued for the writer, part of `used`.
    queued: AtomicUsize,
    /// Queued replies given back so far (written, or dropped with the connection): a client
    /// that makes this move is reading, however slowly.
    drained: AtomicUsize,
    /// Woken whenever charged bytes are given back.
    released: Notify,
    /// Woken when queued replies pass the budget.
    overflowed: Notify,
}

impl Budget {
    pub(crate) fn new(server: Arc<ServerBudget>, limit: usize) -> Arc<Budget> {
        Arc::new(Budget {
            server,
            limit,
            used: AtomicUsize::new(0),
            queued: AtomicUsize::new(0),
            drained: AtomicUsize::new(0),
            released: Notify::new(),
            overflowed: Notify::new(),
        })
    }

    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    pub(crate) fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    pub(crate) fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// Whether the session holds more than its budget (it is then not read).
    pub(crate) fn over(&self) -> bool {
        self.limit > 0 && self.used() > self.limit
    }

    /// Whether the replies waiting for the client alone pass the budget.
    pub(crate) fn replies_over(&self) -> bool {
        self.limit > 0 && self.queued() > self.limit
    }

    /// Charges work about to start: refused when `bytes` alone passes the session's budget
    /// (it could never fit) or would take the server past its own.
    pub(crate) fn try_charge(self: &Arc<Self>, bytes: usize) -> Result<Charge, Over> {
        if self.limit > 0 && bytes > self.limit {
            return Err(Over::Session { limit: self.limit });
        }
        let server = &self.server;
        let before = server.used.fetch_add(bytes, Ordering::Relaxed);
        if server.limit > 0 && before + bytes > server.limit {
            server.used.fetch_sub(bytes, Ordering::Relaxed);
            return Err(Over::Server {
                limit: server.limit,
            });
        }
        self.used.fetch_add(bytes, Ordering::Relaxed);
        Ok(Charge {
            budget: self.clone(),
            bytes,
            queued: false,
            shared: None,
        })
    }

    /// Charges a reply handed to the writer: it exists already, so it is never refused (the
    /// session stops being read instead).
    pub(crate) fn charge_queued(self: &Arc<Self>, bytes: usize) -> Charge {
        self.server.used.fetch_add(bytes, Ordering::Relaxed);
        self.queue(bytes, None)
    }

    /// [`Budget::charge_queued`] for a reply of `own` bytes around a result other sessions
    /// may be sending too: the session is charged both, the server `body` only while no other
    /// queued reply holds it.
    pub(crate) fn charge_queued_around(
        self: &Arc<Self>,
        own: usize,
        body: &Arc<RawValue>,
    ) -> Charge {
        self.server.hold(body);
        self.server.used.fetch_add(own, Ordering::Relaxed);
        self.queue(own + body.get().len(), Some(body.clone()))
    }

    /// The session's side of a queued reply's charge (the server's is taken by the caller).
    fn queue(self: &Arc<Self>, bytes: usize, shared: Option<Arc<RawValue>>) -> Charge {
        self.used.fetch_add(bytes, Ordering::Relaxed);
        let queued = self.queued.fetch_add(bytes, Ordering::Relaxed) + bytes;
        if self.limit > 0 && queued > self.limit {
            self.overflowed.notify_waiters();
        }
        Charge {
            budget: self.clone(),
            bytes,
            queued: true,
            shared,
        }
    }

    /// Waits until the session is back within its budget; `false` when its queued replies
    /// stayed over it for `patience` with none of them read (a client that does not read).
    pub(crate) async fn within(&self, patience: Duration) -> bool {
        let mut deadline = tokio::time::Instant::now() + patience;
        let mut drained = self.drained();
        loop {
            let released = self.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            if !self.over() {
                return true;
            }
            let timed_out = tokio::time::timeout_at(deadline, released).await.is_err();
            if timed_out && self.replies_over() && self.drained() == drained {
                return false;
            }
            if timed_out || self.drained() != drained {
                // Over by requests still running, or by replies a slow client is reading:
                // paused, not dropped.
                drained = self.drained();
                deadline = tokio::time::Instant::now() + patience;
            }
        }
    }

    /// Completes once the queued replies have stayed over the budget for `patience` with none
    /// of them read: the watch of a session waiting for its next message (it may be sent
    /// notifications only).
    pub(crate) async fn stuck(&self, patience: Duration) {
        if self.limit == 0 {
            return std::future::pending().await;
        }
        loop {
            loop {
                let overflowed = self.overflowed.notified();
                tokio::pin!(overflowed);
                overflowed.as_mut().enable();
                if self.replies_over() {
                    break;
                }
                overflowed.await;
            }
            let mut deadline = tokio::time::Instant::now() + patience;
            let mut drained = self.drained();
            loop {
                let released = self.released.notified();
                tokio::pin!(released);
                released.as_mut().enable();
                if !self.replies_over() {
                    break;
                }
                let timed_out = tokio::time::timeout_at(deadline, released).await.is_err();
                if timed_out && self.drained() == drained {
                    if self.replies_over() {
                        return;
                    }
                    break;
                }
                if self.drained() != drained {
                    drained = self.drained();
                    deadline = tokio::time::Instant::now() + patience;
                }
            }
        }
    }

    fn drained(&self) -> usize {
        self.drained.load(Ordering::Relaxed)
    }
}

/// Bytes charged to a session and the server, given back when dropped.
pub(crate) struct Charge {
    budget: Arc<Budget>,
    bytes: usize,
    queued: bool,
    /// The shared result the bytes include, counted by the server once (kept alive by this,
    /// so its address names it until released).
    shared: Option<Arc<RawValue>>,
}

impl Drop for Charge {
    fn drop(&mut self) {
        let b = &self.budget;
        let own = match &self.shared {
            Some(body) => {
                b.server.release(body);
                self.bytes - body.get().len()
            }
            None => self.bytes,
        };
        b.server.used.fetch_sub(own, Ordering::Relaxed);
        b.used.fetch_sub(self.bytes, Ordering::Relaxed);
        if self.queued {
            b.queued.fetch_sub(self.bytes, Ordering::Relaxed);
            b.drained.fetch_add(1, Ordering::Relaxed);
        }
        b.released.notify_waiters();
    }
}

fn address(body: &Arc<RawValue>) -> usize {
    Arc::as_ptr(body) as *const u8 as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_are_refused_past_either_budget_and_given_back_on_drop() {
        let server = Arc::new(ServerBudget::new(1000));
        let a = Budget::new(server.clone(), 600);
        let b = Budget::new(server.clone(), 600);
        assert_eq!(
            a.try_charge(601).err(),
            Some(Over::Session { limit: 600 }),
            "bigger than the session's budget alone"
        );
        let ca = a.try_charge(500).unwrap();
        let cb = b.try_charge(500).unwrap();
        assert_eq!(server.used(), 1000);
        assert_eq!(
            b.try_charge(1).err(),
            Some(Over::Server { limit: 1000 }),
            "the server's budget is shared"
        );
        assert_eq!(server.used(), 1000, "a refusal holds nothing");
        // Replies are charged whatever the budgets say, and make the session over.
        let q = a.charge_queued(200);
        assert!(a.over() && !a.replies_over());
        assert_eq!((a.used(), a.queued(), server.used()), (700, 200, 1200));
        drop((ca, cb, q));
        assert_eq!(
            (a.used(), a.queued(), b.used(), server.used()),
            (0, 0, 0, 0)
        );
    }

    #[test]
    fn a_shared_result_is_charged_to_each_session_and_once_to_the_server() {
        let server = Arc::new(ServerBudget::new(0));
        let (a, b) = (
            Budget::new(server.clone(), 0),
            Budget::new(server.clone(), 0),
        );
        let body: Arc<RawValue> = RawValue::from_string(format!("\"{}\"", "x".repeat(998)))
            .unwrap()
            .into();
        let other: Arc<RawValue> = RawValue::from_string("[1,2,3]".into()).unwrap().into();
        let a1 = a.charge_queued_around(30, &body);
        let a2 = a.charge_queued_around(30, &body);
        let b1 = b.charge_queued_around(40, &body);
        let b2 = b.charge_queued_around(40, &other);
        assert_eq!((a.used(), a.queued()), (2060, 2060));
        assert_eq!((b.used(), b.queued()), (1087, 1087));
        assert_eq!(server.used(), 30 + 30 + 40 + 40 + 1000 + 7);
        drop((a1, b2));
        assert_eq!(server.used(), 30 + 40 + 1000);
        drop(a2);
        assert_eq!(server.used(), 40 + 1000, "still held by b");
        drop(b1);
        assert_eq!((a.used(), b.used(), server.used()), (0, 0, 0));
        assert!(server.shared.lock().is_empty());
    }

    #[tokio::test]
    async fn a_session_waits_for_its_replies_to_drain_and_gives_up_on_a_client_that_reads_nothing()
    {
        let server = Arc::new(ServerBudget::new(0));
        let s = Budget::new(server, 100);
        let q = s.charge_queued(150);
        let patience = Duration::from_millis(400);
        let drained = tokio::spawn({
            let s = s.clone();
            async move { s.within(patience).await }
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        drop(q);
        assert!(drained.await.unwrap(), "resumed once the replies were read");
        let _q = s.charge_queued(150);
        let t = std::time::Instant::now();
        assert!(!s.within(patience).await, "never drained");
        assert!(t.elapsed() >= patience);
        let t = std::time::Instant::now();
        s.stuck(patience).await;
        assert!(t.elapsed() >= patience);
    }

    /// A client that reads its replies slower than they pile up stays over its budget for
    /// longer than the patience: paused, not dropped, while it reads; dropped once it stops.
    #[tokio::test(start_paused = true)]
    async fn a_client_reading_slowly_is_paused_not_dropped_until_it_stops_reading() {
        let server = Arc::new(ServerBudget::new(0));
        let s = Budget::new(server, 100);
        let patience = Duration::from_secs(30);
        // Ten replies of 40 bytes over a 100-byte budget, read one every 20 s: over it for
        // 160 s (until two are left), and never 30 s without one being read.
        let mut queued: Vec<Charge> = (0..10).map(|_| s.charge_queued(40)).collect();
        let waiting = tokio::spawn({
            let s = s.clone();
            async move { (s.within(patience).await, tokio::time::Instant::now()) }
        });
        let watching = tokio::spawn({
            let s = s.clone();
            async move {
                s.stuck(patience).await;
                tokio::time::Instant::now()
            }
        });
        let t0 = tokio::time::Instant::now();
        for _ in 0..8 {
            tokio::time::sleep(Duration::from_secs(20)).await;
            assert!(!watching.is_finished(), "dropped while reading");
            queued.pop();
        }
        let (resumed, at) = waiting.await.unwrap();
        assert!(
            resumed && at - t0 == Duration::from_secs(160),
            "{resumed} {:?}",
            at - t0
        );
        // Over again, and nothing read from now on: dropped after the patience.
        queued.extend((0..5).map(|_| s.charge_queued(40)));
        let t1 = tokio::time::Instant::now();
        let at = watching.await.unwrap();
        assert_eq!(at - t1, patience);
        assert!(!s.within(patience).await);
    }
}
