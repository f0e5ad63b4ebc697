//! The Electrum protocol, 1.4 – 1.7, answer for answer like ElectrumX: what a request means
//! and what its answer is, read from [`Query`] and the daemon. Connections, costs and
//! subscriptions are the session layer's; it reaches them through the [`Caller`] a request
//! comes with.
//!
//! | module | job |
//! |---|---|
//! | `jsonrpc` | framing dialects, batches, error codes and texts |
//! | `method` | the method table: names, signatures, versions; a call parsed once into a [`Request`] |
//! | `params` | argument arity and value validation |
//! | `version` | `server.version` negotiation |
//! | `methods` | the answers |
//! | `outpoint` | 1.7's outpoint statuses, one function for answers and notifications |
//! | `broadcast` | transactions and packages sent through the daemon |
//! | `cost` | what each method's work costs |
//! | `daemon_calls` | daemon-backed answers, their caches and error form |
//! | `keva` | Kevacoin's `blockchain.keva.*` methods |
//! | `pyfmt` | Python-style text in messages |

mod broadcast;
pub(crate) mod cost;
mod daemon_calls;
pub(crate) mod jsonrpc;
mod keva;
pub(crate) mod method;
mod methods;
mod outpoint;
pub(crate) mod params;
pub(crate) mod pyfmt;
pub(crate) mod version;

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;

use serde_json::value::RawValue;
use serde_json::Value;
use tokio::sync::Notify;
use tracing::error;

use crate::coin::Coin;
use crate::config::ServerSettings;
use crate::daemon::Daemon;
use crate::query::{history_limit, Query};
use crate::store::StoreError;
use crate::types::{HashX, OutPoint};
use daemon_calls::DaemonCache;
use jsonrpc::RpcError;
pub(crate) use method::{Method, Request};
pub(crate) use methods::{ping_notification, server_features};
pub(crate) use version::Version;

/// A method's answer: the result's JSON, or the error to send. The JSON is shared: a kept
/// answer (see [`crate::query::answers`]) goes to every session asking for it without a copy.
pub(crate) type Reply = Result<Arc<RawValue>, RpcError>;

pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The software name and version, as `server.version` and `server.features` report it.
pub(crate) fn server_version() -> String {
    format!("Sextant {}", env!("CARGO_PKG_VERSION"))
}

/// What the protocol needs of the connection a request came on. The session layer implements
/// it: costs, the negotiated version and subscriptions live there.
pub(crate) trait Caller: Send + Sync {
    fn id(&self) -> u64;
    fn peer(&self) -> SocketAddr;
    /// Adds to the caller's cost (methods charge for the work they did).
    fn charge(&self, cost: f64);
    /// `server.version` succeeded: the client's name (at most 100 characters) and the version.
    fn identified(&self, client_name: Option<String>, version: Version);
    fn subscribe_headers(&self);
    /// Reserves one more script subscription, `Err(cap)` when the cap is reached; the
    /// reservation ends with `subscribed` or `not_subscribed`.
    fn may_subscribe(&self, hashx: &HashX) -> Result<(), usize>;
    /// Gives back a reservation that did not become a subscription.
    fn not_subscribed(&self, hashx: &HashX);
    /// Stores a script subscription with the status just sent and the spelling to notify under.
    fn subscribed(&self, hashx: HashX, alias: String, status: Option<String>);
    /// Whether there was a subscription to drop.
    fn unsubscribe(&self, hashx: &HashX) -> bool;
    /// Subscribes to an outpoint (1.7); `Err(cap)` when the session has as many as it may.
    fn subscribe_outpoint(&self, outpoint: OutPoint) -> Result<(), usize>;
    /// Whether there was an outpoint subscription to drop.
    fn unsubscribe_outpoint(&self, outpoint: &OutPoint) -> bool;
    /// A transaction was broadcast for this caller.
    fn sent_tx(&self);
}

/// Peer discovery as the protocol sees it (`server.peers.subscribe`, `server.add_peer`).
pub(crate) trait Peers: Send + Sync {
    fn subscribe(&self, client: IpAddr) -> Vec<Value>;
    fn add_peer<'a>(&'a self, features: &'a Value, source: IpAddr) -> BoxFuture<'a, bool>;
}

/// Everything the methods answer from.
pub(crate) struct Electrum {
    settings: ServerSettings,
    coin: Coin,
    query: Arc<Query>,
    daemon: Daemon,
    daemon_cache: DaemonCache,
    peers: Arc<dyn Peers>,
    /// Notified after a successful broadcast: the mempool follower refreshes at once.
    mempool_kick: Arc<Notify>,
    history_limit: usize,
}

impl Electrum {
    pub(crate) fn new(
        settings: ServerSettings,
        coin: Coin,
        query: Arc<Query>,
        daemon: Daemon,
        peers: Arc<dyn Peers>,
        mempool_kick: Arc<Notify>,
    ) -> Electrum {
        Electrum {
            history_limit: history_limit(settings.max_send),
            settings,
            coin,
            query,
            daemon,
            daemon_cache: DaemonCache::default(),
            peers,
            mempool_kick,
        }
    }

    pub(crate) fn settings(&self) -> &ServerSettings {
        &self.settings
    }

    pub(crate) fn coin(&self) -> &Coin {
        &self.coin
    }

    pub(crate) fn query(&self) -> &Arc<Query> {
        &self.query
    }

    pub(crate) fn daemon(&self) -> &Daemon {
        &self.daemon
    }

    /// Most confirmed history entries a script may have to be served (from `MAX_SEND`).
    pub(crate) fn history_limit(&self) -> usize {
        self.history_limit
    }

    /// Runs blocking work (RocksDB reads, hashing) off the async reactor.
    async fn blocking<T, F>(self: &Arc<Self>, f: F) -> Result<T, RpcError>
    where
        T: Send + 'static,
        F: FnOnce(&Electrum) -> Result<T, RpcError> + Send + 'static,
    {
        let this = self.clone();
        tokio::task::spawn_blocking(move || f(&this))
            .await
            .map_err(|e| {
                error!("blocking task failed: {e}");
                RpcError::internal()
            })?
    }
}

/// A result as its JSON text.
fn json<T: serde::Serialize + ?Sized>(v: &T) -> Reply {
    serde_json::value::to_raw_value(v)
        .map(Arc::from)
        .map_err(|e| {
            tracing::warn!("serializing a reply: {e}");
            RpcError::internal()
        })
}

/// A store failure seen by a client: logged, answered as an internal error.
pub(crate) fn store_error(e: StoreError) -> RpcError {
    error!("store: {e}");
    RpcError::internal()
}
