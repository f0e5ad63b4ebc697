//! The generator's model of the UTXO set: 8 bytes per coin, with the spending pattern of a real
//! chain (mostly young coins, a long tail spread over the whole set).
//!
//! A coin is a `u64`: its transaction's number in the chain (32 bits), its output index (11
//! bits) and an owner tag (21 bits, see [`Tag`]). The txid comes from the generator's txid table
//! and the script from the tag, so nothing else is kept per coin: 50M coins are 400 MB, where
//! a map from outpoint to (txid, value, script) would take several GB.
//!
//! Coins live in two places: the `young` ring holds the last `window` coins created in creation
//! order (spent ones become tombstones), and coins that fall off its old end move to `old`, an
//! unordered vector where a uniform pick and `swap_remove` are O(1). Young picks take a
//! log-uniform age (most spends are of coins minutes or hours old); old picks are uniform over
//! everything older, which is what makes a server's UTXO lookups miss its caches.

use std::collections::VecDeque;

use super::rng::Rng;

pub const VOUT_BITS: u32 = 11;
pub const TAG_BITS: u32 = 21;
pub const MAX_OUTPUTS: usize = 1 << VOUT_BITS;
const TOMBSTONE: u64 = u64::MAX;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Coin {
    pub tx_num: u32,
    pub vout: u32,
    pub tag: u32,
}

impl Coin {
    pub fn pack(self) -> u64 {
        debug_assert!((self.vout as usize) < MAX_OUTPUTS && self.tag < (1 << TAG_BITS));
        (self.tx_num as u64) << 32 | (self.vout as u64) << TAG_BITS | self.tag as u64
    }

    pub fn unpack(v: u64) -> Coin {
        Coin {
            tx_num: (v >> 32) as u32,
            vout: ((v >> TAG_BITS) & ((1 << VOUT_BITS) - 1)) as u32,
            tag: (v & ((1 << TAG_BITS) - 1)) as u32,
        }
    }
}

pub struct Pool {
    young: VecDeque<u64>,
    young_live: usize,
    old: Vec<u64>,
    window: usize,
    /// Coinbase coins waiting for maturity: (height they become spendable, coin).
    maturing: VecDeque<(u64, u64)>,
    /// Young picks that found only tombstones and fell back to an old coin.
    pub fallbacks: u64,
}

/// Tries at a young pick before falling back to the old coins, and how many older slots each
/// try looks at past a tombstone.
const YOUNG_TRIES: usize = 4;
const YOUNG_SCAN: usize = 64;

impl Pool {
    pub fn new(window: usize, expected_old: usize) -> Pool {
        Pool {
            young: VecDeque::with_capacity(window + 1),
            young_live: 0,
            old: Vec::with_capacity(expected_old),
            window,
            maturing: VecDeque::new(),
            fallbacks: 0,
        }
    }

    /// Spendable coins.
    pub fn len(&self) -> usize {
        self.young_live + self.old.len()
    }

    /// Every unspent coin, immature coinbases included.
    pub fn unspent(&self) -> usize {
        self.len() + self.maturing.len()
    }

    pub fn add(&mut self, c: Coin) {
        self.young.push_back(c.pack());
        self.young_live += 1;
        if self.young.len() > self.window {
            let v = self.young.pop_front().unwrap();
            if v != TOMBSTONE {
                self.young_live -= 1;
                self.old.push(v);
            }
        }
        // Tombstones at the old end are dead weight for picks: drop them.
        while self.young.front() == Some(&TOMBSTONE) {
            self.young.pop_front();
        }
    }

    /// A coinbase coin, spendable from `height` on.
    pub fn add_maturing(&mut self, height: u64, c: Coin) {
        self.maturing.push_back((height, c.pack()));
    }

    /// Moves coinbase coins that are mature at `height` into the pool.
    pub fn mature(&mut self, height: u64) {
        while let Some(&(h, v)) = self.maturing.front() {
            if h > height {
                break;
            }
            self.maturing.pop_front();
            self.add(Coin::unpack(v));
        }
    }

    /// Removes and returns a coin: an old one (uniform over the old set) with probability
    /// `old_share`, else a young one; the other kind when the chosen one is empty.
    pub fn take(&mut self, rng: &mut Rng, old_share: f64) -> Option<Coin> {
        let v = if rng.chance(old_share) {
            self.take_old(rng)
        } else {
            None
        };
        let v = v
            .or_else(|| self.take_young(rng))
            .or_else(|| {
                self.fallbacks += 1;
                self.take_old(rng)
            })
            .or_else(|| self.take_newest());
        v.map(Coin::unpack)
    }

    fn take_old(&mut self, rng: &mut Rng) -> Option<u64> {
        if self.old.is_empty() {
            return None;
        }
        let i = rng.below(self.old.len() as u64) as usize;
        Some(self.old.swap_remove(i))
    }

    /// A young coin of log-uniform age: the first live coin at or just before the drawn age
    /// (the youngest coins are mostly spent already); `None` when the tries find none.
    fn take_young(&mut self, rng: &mut Rng) -> Option<u64> {
        if self.young_live == 0 {
            return None;
        }
        let n = self.young.len();
        for _ in 0..YOUNG_TRIES {
            let age = rng.log_uniform(1, n as u64) as usize;
            let newest = n - age;
            let oldest = newest.saturating_sub(YOUNG_SCAN);
            for i in (oldest..=newest).rev() {
                let v = self.young[i];
                if v != TOMBSTONE {
                    self.young[i] = TOMBSTONE;
                    self.young_live -= 1;
                    return Some(v);
                }
            }
        }
        None
    }

    /// The newest live young coin (a wallet spending its change), when nothing else is left.
    fn take_newest(&mut self) -> Option<u64> {
        if self.young_live == 0 {
            return None;
        }
        let i = self.young.iter().rposition(|v| *v != TOMBSTONE)?;
        self.young_live -= 1;
        Some(std::mem::replace(&mut self.young[i], TOMBSTONE))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_round_trips() {
        let c = Coin {
            tx_num: u32::MAX - 1,
            vout: (MAX_OUTPUTS - 1) as u32,
            tag: (1 << TAG_BITS) - 1,
        };
        assert_eq!(Coin::unpack(c.pack()), c);
    }
}
