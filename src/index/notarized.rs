//! komodod's dPoW notarizations: the daemon's last notarized height and block hash (`getinfo`:
//! `notarized`, `notarizedhash`), polled for coins whose file says `notarized = true`.
//!
//! Once a height is notarized no reorg can undo it, so undo records at or below it are dropped —
//! but only when our block at that height is the notarized one: on another branch, that undo data
//! is exactly what the reorg to the daemon's chain needs.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::daemon::Daemon;
use crate::store::Store;
use crate::types::{BlockHash, Height};

/// The daemon's last notarization (height, block hash) as last polled; `None` for coins without
/// dPoW, before the first poll, or while the daemon reports none. For admin `getinfo` and metrics.
pub(crate) type Notarized = Option<(Height, BlockHash)>;

/// The notarization in a komodod `getinfo` reply; `None` when the chain has none yet (komodod
/// reports height 0 then).
pub(crate) fn from_getinfo(info: &Value) -> Result<Option<(Height, BlockHash)>, String> {
    let height = match info.get("notarized") {
        None | Some(Value::Null) => return Ok(None),
        Some(h) => h
            .as_u64()
            .and_then(|h| u32::try_from(h).ok())
            .ok_or_else(|| format!("getinfo.notarized is not a height: {h}"))?,
    };
    if height == 0 {
        return Ok(None);
    }
    let hash = info
        .get("notarizedhash")
        .and_then(Value::as_str)
        .and_then(BlockHash::from_hex)
        .ok_or_else(|| format!("getinfo.notarizedhash is not a block hash: {info}"))?;
    Ok(Some((Height(height), hash)))
}

/// Follows the notarized height until `stop` turns true, publishing each move on `notarized`.
pub async fn follow(
    daemon: Daemon,
    store: Arc<Store>,
    poll: Duration,
    notarized: watch::Sender<Notarized>,
    mut stop: watch::Receiver<bool>,
) {
    let mut f = Follower {
        store,
        last: None,
        pruned_below: Height(0),
        published: notarized,
    };
    loop {
        let info = tokio::select! {
            r = daemon.call::<Value>("getinfo", vec![]) => r,
            _ = stop.changed() => return,
        };
        let result = info
            .map_err(|e| e.to_string())
            .and_then(|info| from_getinfo(&info))
            .and_then(|n| f.update(n));
        if let Err(e) = result {
            warn!("notarization: {e}");
        }
        tokio::select! {
            _ = tokio::time::sleep(poll) => {}
            _ = stop.changed() => return,
        }
    }
}

struct Follower {
    store: Arc<Store>,
    last: Notarized,
    published: watch::Sender<Notarized>,
    /// Undo records below this height are gone.
    pruned_below: Height,
}

impl Follower {
    fn update(&mut self, n: Option<(Height, BlockHash)>) -> Result<(), String> {
        // Pruned before the move is logged, so a log reader knows the undo data is gone.
        let pruned = match n {
            Some((height, hash)) => self.prune(height, hash),
            None => Ok(()),
        };
        if n != self.last {
            match n {
                Some((h, hash)) => info!("notarized height {h} ({hash})"),
                None => info!("no notarized height"),
            }
            self.last = n;
            self.published.send_replace(n);
        }
        pruned
    }

    fn prune(&mut self, height: Height, hash: BlockHash) -> Result<(), String> {
        let ours = self.store.block_hash(height).map_err(|e| e.to_string())?;
        // Not indexed yet, or indexed on another branch: keep everything.
        if ours != Some(hash) {
            return Ok(());
        }
        let end = Height(height.0 + 1);
        if end > self.pruned_below {
            self.store
                .delete_undo_range(self.pruned_below..end)
                .map_err(|e| e.to_string())?;
            debug!("undo data below height {end} dropped");
            self.pruned_below = end;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn notarizations_from_komodod_getinfo() {
        let hash = "0000000826456528152a7e6c206fe41e2cf00df341828e00ce0374d347e3984f";
        let info = json!({"name": "KMD", "notarized": 3140500, "notarizedhash": hash,
                          "notarizedtxid": "00".repeat(32), "blocks": 3140508});
        assert_eq!(
            from_getinfo(&info).unwrap(),
            Some((Height(3140500), BlockHash::from_hex(hash).unwrap()))
        );
        // A fresh chain, and daemons without dPoW.
        let none = json!({"notarized": 0, "notarizedhash": "00".repeat(32)});
        assert_eq!(from_getinfo(&none).unwrap(), None);
        assert_eq!(from_getinfo(&json!({"blocks": 5})).unwrap(), None);
        assert!(from_getinfo(&json!({"notarized": "x"})).is_err());
        assert!(from_getinfo(&json!({"notarized": 5, "notarizedhash": "zz"})).is_err());
        assert!(from_getinfo(&json!({"notarized": 5})).is_err());
    }
}
