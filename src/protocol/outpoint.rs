//! 1.7's outpoint status, as `blockchain.outpoint.subscribe` / `get_status` answer it and as
//! its notifications carry it: one function for both, so a notification never says less than
//! the answer a client would get by asking.
//!
//! The index knows every spendable output (UTXO set, spender index) and the mempool mirror
//! knows unconfirmed ones; an unspendable confirmed output (OP_RETURN) is in neither, so its
//! funding height comes from the daemon, as ElectrumX takes every outpoint's funder from it.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;

use super::Electrum;
use crate::query::OutpointStatus;
use crate::store::StoreError;
use crate::types::{Height, OutPoint};

impl Electrum {
    /// The statuses of `ops`: the index's and mempool's, then the daemon's funding height for
    /// those both lack.
    pub(crate) async fn outpoint_statuses(
        self: &Arc<Self>,
        ops: Vec<OutPoint>,
    ) -> Result<HashMap<OutPoint, OutpointStatus>, StoreError> {
        let q = self.query.clone();
        let mut statuses = tokio::task::spawn_blocking(move || {
            ops.into_iter()
                .map(|o| q.outpoint_status(&o).map(|s| (o, s)))
                .collect::<Result<HashMap<_, _>, _>>()
        })
        .await
        .map_err(|e| StoreError::Corrupt(format!("outpoint status task failed: {e}")))??;
        for (op, status) in statuses.iter_mut() {
            if *status == OutpointStatus::default() {
                status.funder_height = self.unindexed_funder(op).await;
            }
        }
        Ok(statuses)
    }

    /// The height of a confirmed output that is in neither the UTXO set nor the spender index:
    /// an unspendable one (OP_RETURN), which is never indexed and never spent. ElectrumX asks
    /// the daemon for an outpoint's funder (the transaction mined in one of its blocks, with that
    /// many outputs), so it answers `{"funder_height": h}` for such an output, and so does
    /// Sextant. After a reorg the daemon says where the transaction is now (or that it is in
    /// the mempool, which the mirror answers), as ElectrumX's answer is once the outpoint is
    /// touched again.
    async fn unindexed_funder(&self, op: &OutPoint) -> Option<i64> {
        let txid = Value::from(op.txid.to_string());
        let tx: Value = self
            .daemon
            .call("getrawtransaction", vec![txid, Value::from(1)])
            .await
            .ok()?;
        if op.vout as usize >= tx.get("vout")?.as_array()?.len() {
            return None;
        }
        let hash = tx.get("blockhash")?.as_str()?.to_string();
        let header: Value = self
            .daemon
            .call("getblockheader", vec![Value::from(hash.clone())])
            .await
            .ok()?;
        let height = u32::try_from(header.get("height")?.as_u64()?).ok()?;
        // Only a block this server has indexed, as ElectrumX maps the hash with its own database.
        let ours = self.query.store().block_hash(Height(height)).ok()??;
        (ours.to_string() == hash).then_some(i64::from(height))
    }
}
