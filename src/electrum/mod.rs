//! The Electrum protocol, 1.4 – 1.4.2, answer for answer like ElectrumX.
//!
//! | module | job |
//! |---|---|
//! | `jsonrpc` | framing dialects, batches, error codes and texts |
//! | `params` | argument arity and value validation |
//! | `version` | `server.version` negotiation |
//! | `methods` | the methods and their answers |
//! | `status` | histories and status hashes |
//! | `merkle` | transaction and header-checkpoint proofs, with caches |
//! | `histogram` | the compact fee histogram |
//! | `daemon_calls` | daemon-backed answers, their caches and error form |
//! | `session` | one connection: reading, dispatch, writing |
//! | `subs` | sessions and subscriptions, indexed by script |
//! | `notify` | fan-out of block and mempool changes |
//! | `settings` | the protocol's environment variables |
//! | `pyfmt` | Python-style text in messages |

pub mod daemon_calls;
pub mod histogram;
pub mod jsonrpc;
pub mod merkle;
pub mod methods;
pub mod notify;
pub mod params;
pub mod pyfmt;
pub mod server;
pub mod session;
pub mod settings;
pub mod status;
pub mod subs;
pub mod version;

use std::sync::Arc;

use parking_lot::RwLock;
use tokio::sync::{broadcast, watch};

use crate::coin::Coin;
use crate::daemon::Daemon;
use crate::index::IndexEvent;
use crate::mempool::{Mempool, MempoolDelta};
use crate::store::Store;
pub use server::Server;
pub use settings::ServerSettings;

/// Serves Electrum clients on every configured service until `shutdown` turns true.
///
/// `index_events` and `mempool_events` drive notifications: each `IndexEvent` (new tip,
/// touched scripts) and each `MempoolDelta` (touched scripts) after a mempool refresh. Call it
/// once the index has caught up: clients are answered from the store as it is.
#[allow(clippy::too_many_arguments)]
pub async fn serve(
    settings: ServerSettings,
    coin: Coin,
    store: Arc<Store>,
    mempool: Arc<RwLock<Mempool>>,
    daemon: Daemon,
    index_events: broadcast::Receiver<IndexEvent>,
    mempool_events: broadcast::Receiver<MempoolDelta>,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let server = Arc::new(Server::new(settings, coin, store, mempool, daemon));
    {
        let s = server.clone();
        tokio::task::spawn_blocking(move || s.refresh_tip()).await??;
    }
    let notifier = tokio::spawn(notify::run(
        server.clone(),
        index_events,
        mempool_events,
        shutdown.clone(),
    ));
    let result = crate::net::listen(server.clone(), shutdown).await;
    notifier.abort();
    for s in server.registry.sessions() {
        s.close();
    }
    result
}
