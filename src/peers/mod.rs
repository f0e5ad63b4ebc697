//! Peer discovery, as ElectrumX does it: wallets find servers through other servers.
//!
//! | module | job |
//! |---|---|
//! | `peer` | one peer: real names, features, which hosts may be peers, buckets |
//! | `client` | outgoing connections (TCP, TLS, SOCKS5) and JSON-RPC requests |
//! | `manager` | the peer table: sources, verification, backoff, `server.peers.subscribe`, `server.add_peer`, announcing ourselves, persistence |
//!
//! The composition root builds one [`PeerManager`] and hands it to the protocol (as its
//! [`Peers`](crate::protocol::Peers)), the admin RPC and the metrics.

mod client;
mod manager;
pub(crate) mod peer;

use std::net::IpAddr;

use serde_json::Value;

use crate::protocol::{BoxFuture, Peers};
pub(crate) use manager::PeerManager;

impl Peers for PeerManager {
    fn subscribe(&self, client: IpAddr) -> Vec<Value> {
        self.on_peers_subscribe(client)
    }

    fn add_peer<'a>(&'a self, features: &'a Value, source: IpAddr) -> BoxFuture<'a, bool> {
        Box::pin(self.on_add_peer(features, source))
    }
}

impl PeerManager {
    /// The admin RPC's `peers` list (`[]` without discovery, as ElectrumX).
    pub(crate) fn admin_peers(&self) -> Value {
        Value::Array(self.admin_view())
    }

    /// The admin `getinfo`'s `peers` counts.
    pub(crate) fn admin_counts(&self) -> Value {
        let c = self.counts();
        serde_json::json!({
            "bad": c.bad, "good": c.good, "never": c.never, "stale": c.stale,
            "total": c.bad + c.good + c.never + c.stale,
        })
    }

    /// The admin RPC's `add_peer REAL_NAME`; false without discovery or for an empty name.
    pub(crate) fn admin_add_peer(&self, real_name: &str) -> bool {
        self.on() && self.admin_add(real_name)
    }
}
