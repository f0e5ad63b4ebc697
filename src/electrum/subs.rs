//! Who is connected and who is subscribed to what, indexed both ways: a session knows its
//! script hashes (with the status last sent), and each script hash knows its sessions, so a
//! block touching N scripts costs N lookups, not sessions × subscriptions.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use parking_lot::RwLock;

use super::session::SessionHandle;
use crate::types::HashX;

#[derive(Default)]
pub struct Registry {
    sessions: RwLock<HashMap<u64, Arc<SessionHandle>>>,
    by_hashx: RwLock<HashMap<HashX, HashSet<u64>>>,
}

impl Registry {
    pub fn add_session(&self, s: Arc<SessionHandle>) {
        self.sessions.write().insert(s.id, s);
    }

    /// Forgets a session and all its subscriptions.
    pub fn remove_session(&self, id: u64) {
        let Some(s) = self.sessions.write().remove(&id) else {
            return;
        };
        let hashxs: Vec<HashX> = s.subs.lock().keys().copied().collect();
        let mut by = self.by_hashx.write();
        for h in hashxs {
            if let Some(set) = by.get_mut(&h) {
                set.remove(&id);
                if set.is_empty() {
                    by.remove(&h);
                }
            }
        }
    }

    pub fn session_count(&self) -> usize {
        self.sessions.read().len()
    }

    pub fn sessions(&self) -> Vec<Arc<SessionHandle>> {
        self.sessions.read().values().cloned().collect()
    }

    pub fn subscribe(&self, id: u64, hashx: HashX) {
        self.by_hashx.write().entry(hashx).or_default().insert(id);
    }

    pub fn unsubscribe(&self, id: u64, hashx: &HashX) {
        let mut by = self.by_hashx.write();
        if let Some(set) = by.get_mut(hashx) {
            set.remove(&id);
            if set.is_empty() {
                by.remove(hashx);
            }
        }
    }

    /// The touched script hashes somebody is subscribed to, with their sessions.
    pub fn subscribed(&self, touched: &HashSet<HashX>) -> Vec<(HashX, Vec<Arc<SessionHandle>>)> {
        let by = self.by_hashx.read();
        let sessions = self.sessions.read();
        let resolve = |ids: &HashSet<u64>| -> Vec<Arc<SessionHandle>> {
            ids.iter()
                .filter_map(|id| sessions.get(id).cloned())
                .collect()
        };
        if touched.len() < by.len() {
            touched
                .iter()
                .filter_map(|h| by.get(h).map(|ids| (*h, resolve(ids))))
                .collect()
        } else {
            by.iter()
                .filter(|(h, _)| touched.contains(*h))
                .map(|(h, ids)| (*h, resolve(ids)))
                .collect()
        }
    }

    /// Every subscribed script hash (after missed events, everything is re-checked).
    pub fn all_subscribed(&self) -> HashSet<HashX> {
        self.by_hashx.read().keys().copied().collect()
    }

    pub fn subscription_count(&self) -> usize {
        self.by_hashx.read().values().map(|s| s.len()).sum()
    }
}
