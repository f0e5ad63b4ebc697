//! One computation per key at a time: when 500 wallets start at once and subscribe to the same
//! exchange script, one of them reads its history and the others wait for what it keeps,
//! instead of all reading the same rows side by side.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;

use parking_lot::Mutex;

pub(crate) struct SingleFlight<K> {
    running: Mutex<HashMap<K, Arc<Mutex<()>>>>,
}

impl<K> Default for SingleFlight<K> {
    fn default() -> Self {
        SingleFlight {
            running: Mutex::default(),
        }
    }
}

impl<K: Hash + Eq + Clone> SingleFlight<K> {
    /// Runs `f` once no other `f` for `key` is running (a caller that waited should look again
    /// for what the one before it kept). Blocking.
    pub(crate) fn run<T>(&self, key: &K, f: impl FnOnce() -> T) -> T {
        let lock = self.running.lock().entry(key.clone()).or_default().clone();
        let out = {
            let _only = lock.lock();
            f()
        };
        let mut running = self.running.lock();
        // Ours and the map's: nobody else is waiting.
        if Arc::strong_count(&lock) == 2 {
            running.remove(key);
        }
        out
    }

    /// Keys with a computation running or waited for.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.running.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[test]
    fn one_run_per_key_at_a_time_and_nothing_left_behind() {
        let flight = SingleFlight::<u8>::default();
        let inside = AtomicUsize::new(0);
        let most = AtomicUsize::new(0);
        let other_key_ran = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    flight.run(&1, || {
                        let n = inside.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(n, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(5));
                        inside.fetch_sub(1, Ordering::SeqCst);
                    })
                });
            }
            s.spawn(|| flight.run(&2, || other_key_ran.fetch_add(1, Ordering::SeqCst)));
        });
        assert_eq!(most.load(Ordering::SeqCst), 1, "key 1 ran alone every time");
        assert_eq!(other_key_ran.load(Ordering::SeqCst), 1);
        assert_eq!(flight.len(), 0, "no lock kept once nobody waits");
    }
}
