//! Merkle branches: transaction proofs from a block's stored txids, and header checkpoint
//! proofs (`cp_height`) over the block hashes of heights 0..=cp_height.
//!
//! Hashing is double SHA-256 over internal byte order; an odd level repeats its last hash.
//! Header proofs would hash the whole chain each time, so the roots of complete 2,048-header
//! segments are cached: a proof then hashes one segment plus the (small) level of roots,
//! the same scheme as ElectrumX's `MerkleCache`.

use std::num::NonZeroUsize;
use std::sync::Arc;

use lru::LruCache;
use parking_lot::Mutex;

use crate::store::{Store, StoreError};
use crate::types::{sha256d, BlockHash, Height, Txid};

type Hash = [u8; 32];

fn pair(a: &Hash, b: &Hash) -> Hash {
    let mut buf = [0u8; 64];
    buf[..32].copy_from_slice(a);
    buf[32..].copy_from_slice(b);
    sha256d(&buf)
}

fn next_level(level: &[Hash]) -> Vec<Hash> {
    level
        .chunks(2)
        .map(|c| pair(&c[0], c.get(1).unwrap_or(&c[0])))
        .collect()
}

/// Levels needed above `n` leaves: ceil(log2(n)).
fn natural_depth(n: usize) -> u32 {
    if n <= 1 {
        0
    } else {
        usize::BITS - (n - 1).leading_zeros()
    }
}

/// The branch for `index` and the root, hashing exactly `depth` levels (default: the natural
/// depth). A fixed depth lets a segment's root stand for a node of a larger tree.
pub(crate) fn branch_and_root(
    hashes: &[Hash],
    index: usize,
    depth: Option<u32>,
) -> (Vec<Hash>, Hash) {
    assert!(index < hashes.len(), "merkle index out of range");
    let depth = depth.unwrap_or_else(|| natural_depth(hashes.len()));
    let mut level = hashes.to_vec();
    let mut index = index;
    let mut branch = Vec::with_capacity(depth as usize);
    for _ in 0..depth {
        if level.len() % 2 == 1 {
            // Odd level: the last hash pairs with itself.
            level.push(level[level.len() - 1]);
        }
        branch.push(level[index ^ 1]);
        index >>= 1;
        level = next_level(&level);
    }
    (branch, level[0])
}

pub fn root(hashes: &[Hash], depth: Option<u32>) -> Hash {
    branch_and_root(hashes, 0, depth).1
}

/// A block's full merkle tree, so every branch is a walk up precomputed levels.
#[derive(Debug)]
pub struct TxTree {
    pub block: BlockHash,
    levels: Vec<Vec<Hash>>,
}

impl TxTree {
    pub(crate) fn new(block: BlockHash, txids: &[Txid]) -> TxTree {
        let mut levels = vec![txids.iter().map(|t| t.0).collect::<Vec<_>>()];
        while levels.last().expect("one level").len() > 1 {
            let next = next_level(levels.last().expect("one level"));
            levels.push(next);
        }
        TxTree { block, levels }
    }

    pub fn len(&self) -> usize {
        self.levels[0].len()
    }

    pub fn is_empty(&self) -> bool {
        self.levels[0].is_empty()
    }

    pub(crate) fn txid(&self, pos: usize) -> Option<Txid> {
        self.levels[0].get(pos).map(|h| Txid(*h))
    }

    pub(crate) fn position(&self, txid: &Txid) -> Option<usize> {
        self.levels[0].iter().position(|h| *h == txid.0)
    }

    /// Sibling hashes from the leaves up, as display hex.
    pub fn branch(&self, pos: usize) -> Vec<String> {
        let mut out = Vec::with_capacity(self.levels.len());
        let mut i = pos;
        for level in &self.levels[..self.levels.len() - 1] {
            let sibling = level.get(i ^ 1).unwrap_or(&level[level.len() - 1]);
            out.push(Txid(*sibling).to_string());
            i >>= 1;
        }
        out
    }
}

/// Recently used block trees, keyed by height and checked against the block hash so a reorg
/// never serves a stale tree.
pub struct TxTreeCache {
    trees: Mutex<LruCache<u32, Arc<TxTree>>>,
}

impl TxTreeCache {
    pub fn new(capacity: usize) -> TxTreeCache {
        TxTreeCache {
            trees: Mutex::new(LruCache::new(
                NonZeroUsize::new(capacity.max(1)).expect("capacity ≥ 1"),
            )),
        }
    }

    /// The tree of the block at `height`, `None` past the tip. Blocking: RocksDB reads.
    pub fn get(&self, store: &Store, height: Height) -> Result<Option<Arc<TxTree>>, StoreError> {
        let Some(hash) = store.block_hash(height)? else {
            return Ok(None);
        };
        if let Some(t) = self.trees.lock().get(&height.0) {
            if t.block == hash {
                return Ok(Some(t.clone()));
            }
        }
        let Some(txids) = store.block_txids(height)? else {
            return Ok(None);
        };
        if txids.is_empty() {
            return Ok(None);
        }
        // ElectrumX stores the genesis block without its (unspendable) coinbase, so for it
        // block 0 holds no transaction: no proof, no `id_from_pos`. Answer the same.
        let txids = if height.0 == 0 { Vec::new() } else { txids };
        let tree = Arc::new(TxTree::new(hash, &txids));
        self.trees.lock().put(height.0, tree.clone());
        Ok(Some(tree))
    }
}

/// log2 of the header segment size.
const SEGMENT_DEPTH: u32 = 11;
const SEGMENT: usize = 1 << SEGMENT_DEPTH;

/// Cached roots of complete header segments, for checkpoint proofs.
pub struct HeaderMerkle {
    /// `roots[i]` = root of heights `i*SEGMENT .. (i+1)*SEGMENT`.
    roots: Mutex<Vec<Hash>>,
}

/// A header proof: branch (display hex, deepest first) and root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderProof {
    pub branch: Vec<String>,
    pub root: String,
}

impl Default for HeaderMerkle {
    fn default() -> Self {
        HeaderMerkle {
            roots: Mutex::new(Vec::new()),
        }
    }
}

fn block_hashes(store: &Store, start: usize, count: usize) -> Result<Vec<Hash>, StoreError> {
    let headers = store.headers(Height(start as u32), count as u32)?;
    if headers.len() != count {
        return Err(StoreError::Corrupt(format!(
            "headers {start}..{} missing",
            start + count
        )));
    }
    Ok(headers.iter().map(|h| store.chain_hash(h).0).collect())
}

impl HeaderMerkle {
    /// Forgets segments that may hold blocks at or above `height` (after a reorg).
    pub fn truncate(&self, height: u32) {
        let keep = height as usize / SEGMENT;
        let mut roots = self.roots.lock();
        roots.truncate(keep);
    }

    /// The proof for header `index` in the tree of the first `length` block hashes.
    /// Blocking: reads headers from the store.
    pub fn proof(
        &self,
        store: &Store,
        length: usize,
        index: usize,
    ) -> Result<HeaderProof, StoreError> {
        assert!(index < length, "header index out of range");
        let (branch, root) = if length <= SEGMENT {
            branch_and_root(&block_hashes(store, 0, length)?, index, None)
        } else {
            let full = length / SEGMENT;
            let mut level: Vec<Hash> = {
                let cached = self.roots.lock().len();
                let mut extra = Vec::new();
                for seg in cached..full {
                    extra.push(root(
                        &block_hashes(store, seg * SEGMENT, SEGMENT)?,
                        Some(SEGMENT_DEPTH),
                    ));
                }
                let mut roots = self.roots.lock();
                if roots.len() == cached {
                    roots.extend(extra);
                }
                if roots.len() < full {
                    // Another caller truncated meanwhile: use what we computed.
                    return self.proof_uncached(store, length, index);
                }
                roots[..full].to_vec()
            };
            if !length.is_multiple_of(SEGMENT) {
                let tail = block_hashes(store, full * SEGMENT, length - full * SEGMENT)?;
                level.push(root(&tail, Some(SEGMENT_DEPTH)));
            }
            let leaf_start = index / SEGMENT * SEGMENT;
            let count = SEGMENT.min(length - leaf_start);
            let leaves = block_hashes(store, leaf_start, count)?;
            let (mut branch, leaf_root) =
                branch_and_root(&leaves, index - leaf_start, Some(SEGMENT_DEPTH));
            if leaf_root != level[index / SEGMENT] {
                return Err(StoreError::Corrupt(
                    "header merkle cache inconsistent".into(),
                ));
            }
            let (upper, root) = branch_and_root(&level, index / SEGMENT, None);
            branch.extend(upper);
            (branch, root)
        };
        Ok(HeaderProof {
            branch: branch.iter().map(|h| BlockHash(*h).to_string()).collect(),
            root: BlockHash(root).to_string(),
        })
    }

    fn proof_uncached(
        &self,
        store: &Store,
        length: usize,
        index: usize,
    ) -> Result<HeaderProof, StoreError> {
        let (branch, root) = branch_and_root(&block_hashes(store, 0, length)?, index, None);
        Ok(HeaderProof {
            branch: branch.iter().map(|h| BlockHash(*h).to_string()).collect(),
            root: BlockHash(root).to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(n: u8) -> Hash {
        [n; 32]
    }

    #[test]
    fn one_two_three_leaves() {
        let (b, r) = branch_and_root(&[h(1)], 0, None);
        assert!(b.is_empty());
        assert_eq!(r, h(1));

        let (b, r) = branch_and_root(&[h(1), h(2)], 1, None);
        assert_eq!(b, vec![h(1)]);
        assert_eq!(r, pair(&h(1), &h(2)));

        // Three leaves: the third pairs with itself; pos 1's branch starts with pos 0.
        let top = pair(&pair(&h(1), &h(2)), &pair(&h(3), &h(3)));
        let (b, r) = branch_and_root(&[h(1), h(2), h(3)], 1, None);
        assert_eq!(b, vec![h(1), pair(&h(3), &h(3))]);
        assert_eq!(r, top);
        let (b, _) = branch_and_root(&[h(1), h(2), h(3)], 2, None);
        assert_eq!(b, vec![h(3), pair(&h(1), &h(2))]);
    }

    #[test]
    fn tx_tree_matches_direct_computation() {
        for n in 1..=13u8 {
            let leaves: Vec<Hash> = (0..n).map(h).collect();
            let txids: Vec<Txid> = leaves.iter().map(|l| Txid(*l)).collect();
            let tree = TxTree::new(BlockHash::default(), &txids);
            for (pos, txid) in txids.iter().enumerate() {
                let (b, _) = branch_and_root(&leaves, pos, None);
                let hexes: Vec<String> = b.iter().map(|x| Txid(*x).to_string()).collect();
                assert_eq!(tree.branch(pos), hexes, "n={n} pos={pos}");
                assert_eq!(tree.position(txid), Some(pos));
            }
        }
    }

    #[test]
    fn fixed_depth_segments_compose_into_the_full_tree() {
        // A segmented computation (as the header cache does) equals the plain one, including
        // for a partial last segment, with segments of 4 leaves.
        for n in 5..=19usize {
            let leaves: Vec<Hash> = (0..n as u8).map(h).collect();
            let level: Vec<Hash> = leaves.chunks(4).map(|c| root(c, Some(2))).collect();
            for index in 0..n {
                let (full_branch, full_root) = branch_and_root(&leaves, index, None);
                let start = index / 4 * 4;
                let (mut b, _) =
                    branch_and_root(&leaves[start..(start + 4).min(n)], index - start, Some(2));
                let (upper, r) = branch_and_root(&level, index / 4, None);
                b.extend(upper);
                assert_eq!((b, r), (full_branch, full_root), "n={n} index={index}");
            }
        }
    }

    #[test]
    fn natural_depths() {
        assert_eq!(natural_depth(1), 0);
        assert_eq!(natural_depth(2), 1);
        assert_eq!(natural_depth(3), 2);
        assert_eq!(natural_depth(4), 2);
        assert_eq!(natural_depth(5), 3);
    }
}
