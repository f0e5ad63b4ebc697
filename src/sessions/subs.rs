//! Who is connected and who is subscribed to what, in one structure behind one lock, indexed
//! both ways: each script hash knows its subscribers (with the spelling each used and the status
//! each was last sent), and each session knows its script hashes — so a block touching N scripts
//! costs N lookups, not sessions × subscriptions, and no caller can update one side only.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use parking_lot::RwLock;

use crate::types::HashX;

/// One session's subscription to a script hash.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Sub {
    /// The script hash as the client wrote it: notifications use the same text.
    alias: String,
    /// The status last sent.
    status: Option<String>,
}

struct Entry<S> {
    session: Arc<S>,
    scripts: HashSet<HashX>,
    /// Subscriptions reserved while their status is computed, by script hash: how many
    /// requests hold each. They count against the cap, so concurrent subscribes cannot all
    /// pass it before any of them is stored.
    pending: HashMap<HashX, usize>,
    /// How many of `pending`'s script hashes are not in `scripts`: with `scripts.len()`, the
    /// number the cap is checked against.
    pending_new: usize,
}

impl<S> Entry<S> {
    fn new(session: Arc<S>) -> Self {
        Entry {
            session,
            scripts: HashSet::new(),
            pending: HashMap::new(),
            pending_new: 0,
        }
    }

    /// Takes a place under `cap` (0: no cap) for `hashx`; one already held or reserved is
    /// always allowed.
    fn reserve(&mut self, hashx: HashX, cap: usize) -> bool {
        let held = self.scripts.contains(&hashx);
        let reserved = self.pending.contains_key(&hashx);
        if !held && !reserved {
            if cap != 0 && self.scripts.len() + self.pending_new >= cap {
                return false;
            }
            self.pending_new += 1;
        }
        *self.pending.entry(hashx).or_default() += 1;
        true
    }

    /// Gives back one reservation of `hashx` (none held: nothing to do).
    fn release(&mut self, hashx: &HashX) {
        let Some(n) = self.pending.get_mut(hashx) else {
            return;
        };
        *n -= 1;
        if *n == 0 {
            self.pending.remove(hashx);
            if !self.scripts.contains(hashx) {
                self.pending_new -= 1;
            }
        }
    }

    fn hold(&mut self, hashx: HashX) {
        if self.scripts.insert(hashx) && self.pending.contains_key(&hashx) {
            self.pending_new -= 1;
        }
    }

    fn drop_script(&mut self, hashx: &HashX) -> bool {
        let held = self.scripts.remove(hashx);
        if held && self.pending.contains_key(hashx) {
            self.pending_new += 1;
        }
        held
    }
}

struct Inner<S> {
    sessions: HashMap<u64, Entry<S>>,
    by_hashx: HashMap<HashX, HashMap<u64, Sub>>,
}

impl<S> Inner<S> {
    fn unlink(&mut self, id: u64, hashx: &HashX) -> Option<Sub> {
        let subs = self.by_hashx.get_mut(hashx)?;
        let sub = subs.remove(&id);
        if subs.is_empty() {
            self.by_hashx.remove(hashx);
        }
        sub
    }
}

/// A status to send: `session` gets `(alias, status)`.
pub(crate) struct Change<S> {
    pub session: Arc<S>,
    pub alias: String,
    pub status: Option<String>,
}

/// The sessions (of type `S`, known here by their ids) and their subscriptions.
pub(crate) struct Registry<S> {
    inner: RwLock<Inner<S>>,
}

impl<S> Default for Registry<S> {
    fn default() -> Self {
        Registry {
            inner: RwLock::new(Inner {
                sessions: HashMap::new(),
                by_hashx: HashMap::new(),
            }),
        }
    }
}

impl<S> Registry<S> {
    /// Adds a session unless `max` (0: no limit) are already open; the count is checked and
    /// the session added under one lock, so concurrent connections cannot all pass.
    pub(crate) fn add_session_within(&self, id: u64, session: Arc<S>, max: usize) -> bool {
        let mut inner = self.inner.write();
        if max > 0 && inner.sessions.len() >= max {
            return false;
        }
        inner.sessions.insert(id, Entry::new(session));
        true
    }

    /// Forgets a session and all its subscriptions.
    pub(crate) fn remove_session(&self, id: u64) {
        let mut inner = self.inner.write();
        let Some(entry) = inner.sessions.remove(&id) else {
            return;
        };
        for hashx in &entry.scripts {
            inner.unlink(id, hashx);
        }
    }

    pub(crate) fn session_count(&self) -> usize {
        self.inner.read().sessions.len()
    }

    pub(crate) fn sessions(&self) -> Vec<Arc<S>> {
        let inner = self.inner.read();
        inner.sessions.values().map(|e| e.session.clone()).collect()
    }

    /// Subscriptions of session `id`.
    pub(crate) fn count_of(&self, id: u64) -> usize {
        self.inner
            .read()
            .sessions
            .get(&id)
            .map_or(0, |e| e.scripts.len())
    }

    /// Reserves session `id` a subscription to `hashx` under `cap` (0: no cap) while its status
    /// is computed: `false` when the cap is reached. Renewing one it holds (or is already
    /// reserving) is always allowed. Each reservation ends with [`Self::subscribe`] or
    /// [`Self::release`].
    pub(crate) fn reserve(&self, id: u64, hashx: HashX, cap: usize) -> bool {
        let mut inner = self.inner.write();
        let Some(e) = inner.sessions.get_mut(&id) else {
            return true;
        };
        e.reserve(hashx, cap)
    }

    /// Gives back a reservation that did not become a subscription (the status failed).
    pub(crate) fn release(&self, id: u64, hashx: &HashX) {
        if let Some(e) = self.inner.write().sessions.get_mut(&id) {
            e.release(hashx);
        }
    }

    /// Stores (or renews) a subscription with the status just sent, ending its reservation. A
    /// session already gone is not subscribed.
    pub(crate) fn subscribe(&self, id: u64, hashx: HashX, alias: String, status: Option<String>) {
        let mut inner = self.inner.write();
        let Some(e) = inner.sessions.get_mut(&id) else {
            return;
        };
        e.hold(hashx);
        e.release(&hashx);
        inner
            .by_hashx
            .entry(hashx)
            .or_default()
            .insert(id, Sub { alias, status });
    }

    /// Whether there was a subscription to drop.
    pub(crate) fn unsubscribe(&self, id: u64, hashx: &HashX) -> bool {
        let mut inner = self.inner.write();
        let held = inner
            .sessions
            .get_mut(&id)
            .is_some_and(|e| e.drop_script(hashx));
        inner.unlink(id, hashx);
        held
    }

    /// Which of `touched` somebody is subscribed to.
    pub(crate) fn subscribed(&self, touched: &HashSet<HashX>) -> Vec<HashX> {
        let inner = self.inner.read();
        if touched.len() < inner.by_hashx.len() {
            touched
                .iter()
                .filter(|h| inner.by_hashx.contains_key(*h))
                .copied()
                .collect()
        } else {
            inner
                .by_hashx
                .keys()
                .filter(|h| touched.contains(*h))
                .copied()
                .collect()
        }
    }

    /// Every subscribed script hash (after missed events, everything is re-checked).
    pub(crate) fn all_subscribed(&self) -> HashSet<HashX> {
        self.inner.read().by_hashx.keys().copied().collect()
    }

    /// Records that `hashx`'s status is now `status`; returns its subscribers (each pays for
    /// the status computed for it) and whom to tell: every subscriber last sent another status.
    /// `None` means the history grew too large: as in ElectrumX, the subscriptions are dropped
    /// and a null status is sent.
    pub(crate) fn status_changed(
        &self,
        hashx: &HashX,
        status: Option<&Option<String>>,
    ) -> (Vec<Arc<S>>, Vec<Change<S>>) {
        let mut inner = self.inner.write();
        let inner = &mut *inner;
        let Some(subs) = inner.by_hashx.get_mut(hashx) else {
            return (Vec::new(), Vec::new());
        };
        let subscribers = subs
            .keys()
            .filter_map(|id| inner.sessions.get(id).map(|e| e.session.clone()))
            .collect();
        let mut changes = Vec::new();
        match status {
            Some(status) => {
                for (id, sub) in subs.iter_mut() {
                    if sub.status == *status {
                        continue;
                    }
                    sub.status = status.clone();
                    if let Some(e) = inner.sessions.get(id) {
                        changes.push(Change {
                            session: e.session.clone(),
                            alias: sub.alias.clone(),
                            status: status.clone(),
                        });
                    }
                }
            }
            None => {
                let dropped = inner.by_hashx.remove(hashx).unwrap_or_default();
                for (id, sub) in dropped {
                    if let Some(e) = inner.sessions.get_mut(&id) {
                        e.drop_script(hashx);
                        changes.push(Change {
                            session: e.session.clone(),
                            alias: sub.alias,
                            status: None,
                        });
                    }
                }
            }
        }
        (subscribers, changes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hx(n: u8) -> HashX {
        HashX([n; HashX::LEN])
    }

    /// Sessions are their ids here.
    fn registry_with(ids: &[u64]) -> Registry<u64> {
        let r = Registry::default();
        for id in ids {
            assert!(r.add_session_within(*id, Arc::new(*id), 0));
        }
        r
    }

    fn told(changes: &[Change<u64>]) -> Vec<(u64, Option<String>)> {
        let mut v: Vec<_> = changes
            .iter()
            .map(|c| (*c.session, c.status.clone()))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn both_sides_stay_in_step() {
        let r = registry_with(&[1, 2]);
        r.subscribe(1, hx(7), "a".into(), None);
        r.subscribe(2, hx(7), "b".into(), None);
        r.subscribe(2, hx(8), "c".into(), None);
        assert_eq!((r.count_of(1), r.count_of(2)), (1, 2));
        assert!(r.unsubscribe(2, &hx(8)));
        assert!(!r.unsubscribe(2, &hx(8)), "nothing left to drop");
        assert_eq!(r.all_subscribed(), HashSet::from([hx(7)]));
        r.remove_session(1);
        assert_eq!(r.session_count(), 1);
        assert_eq!(r.all_subscribed(), HashSet::from([hx(7)]));
        r.remove_session(2);
        assert!(
            r.all_subscribed().is_empty(),
            "no script outlives its subscribers"
        );
        r.subscribe(2, hx(9), "gone".into(), None);
        assert!(
            r.all_subscribed().is_empty(),
            "a closed session cannot subscribe"
        );
    }

    #[test]
    fn a_status_change_reaches_those_last_told_otherwise() {
        let r = registry_with(&[1, 2]);
        let (old, new) = (Some("old".to_string()), Some("new".to_string()));
        r.subscribe(1, hx(7), "one".into(), old.clone());
        r.subscribe(2, hx(7), "two".into(), new.clone());
        let (charged, changes) = r.status_changed(&hx(7), Some(&new));
        assert_eq!(charged.len(), 2, "every subscriber pays");
        assert_eq!(told(&changes), [(1, new.clone())]);
        assert_eq!(changes[0].alias, "one");
        let (_, again) = r.status_changed(&hx(7), Some(&new));
        assert!(again.is_empty(), "nothing changed since");
        assert!(r.status_changed(&hx(8), Some(&new)).1.is_empty());
    }

    #[test]
    fn a_history_grown_too_large_ends_every_subscription_with_null() {
        let r = registry_with(&[1, 2]);
        r.subscribe(1, hx(7), "one".into(), Some("s".into()));
        r.subscribe(2, hx(7), "two".into(), Some("s".into()));
        r.subscribe(2, hx(8), "other".into(), None);
        let (_, changes) = r.status_changed(&hx(7), None);
        assert_eq!(told(&changes), [(1, None), (2, None)]);
        assert_eq!((r.count_of(1), r.count_of(2)), (0, 1));
        assert_eq!(r.all_subscribed(), HashSet::from([hx(8)]));
    }

    #[test]
    fn sessions_past_the_maximum_are_not_added() {
        let r = Registry::default();
        assert!(r.add_session_within(1, Arc::new(1), 2));
        assert!(r.add_session_within(2, Arc::new(2), 2));
        assert!(!r.add_session_within(3, Arc::new(3), 2));
        assert_eq!(r.session_count(), 2);
        r.remove_session(1);
        assert!(r.add_session_within(3, Arc::new(3), 2));
        assert!(r.add_session_within(4, Arc::new(4), 0), "0: no limit");
    }

    #[test]
    fn the_cap_counts_distinct_scripts_and_allows_renewals() {
        let r = registry_with(&[1]);
        r.subscribe(1, hx(1), "a".into(), None);
        r.subscribe(1, hx(2), "b".into(), None);
        assert!(!r.reserve(1, hx(3), 2));
        assert!(r.reserve(1, hx(2), 2), "renewing one held");
        r.subscribe(1, hx(2), "b again".into(), None);
        assert!(r.reserve(1, hx(3), 0), "0: no cap");
        r.release(1, &hx(3));
        assert_eq!(r.count_of(1), 2);
    }

    #[test]
    fn reservations_count_against_the_cap_until_stored_or_released() {
        let r = registry_with(&[1]);
        // Three concurrent subscribes under a cap of 2: the third is refused at once.
        assert!(r.reserve(1, hx(1), 2));
        assert!(r.reserve(1, hx(2), 2));
        assert!(!r.reserve(1, hx(3), 2), "both places are taken");
        assert!(
            r.reserve(1, hx(2), 2),
            "the same script twice takes one place"
        );
        // One status fails: its place is free again.
        r.release(1, &hx(1));
        assert!(r.reserve(1, hx(3), 2));
        r.subscribe(1, hx(2), "b".into(), None);
        r.subscribe(1, hx(2), "b".into(), None);
        r.subscribe(1, hx(3), "c".into(), None);
        assert_eq!(r.count_of(1), 2);
        assert!(!r.reserve(1, hx(4), 2));
        // A reservation of a held script keeps a place after an unsubscribe.
        assert!(r.reserve(1, hx(3), 2));
        assert!(r.unsubscribe(1, &hx(3)));
        assert!(!r.reserve(1, hx(4), 2), "hx(3) is being subscribed again");
        r.release(1, &hx(3));
        assert!(r.reserve(1, hx(4), 2));
        // A stray release changes nothing.
        r.release(1, &hx(9));
        assert!(!r.reserve(1, hx(5), 2));
    }
}
