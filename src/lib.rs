//! Sextant: an Electrum protocol server that indexes a `txindex=1` full node into RocksDB.
//!
//! Data flows one way, and every module imports only the ones before it in this list:
//!
//! ```text
//! types, coin, config, metrics   shared vocabulary; metrics is a sink that knows no component
//! store                          RocksDB: column families, keys, atomic batches, migrations
//! rest, daemon                   the node: REST blocks, JSON-RPC with failover and retries
//! mempool, index                 the mempool mirror; initial sync, tip following, reorgs
//! query                          the read side: histories, balances, UTXOs, headers, proofs
//! protocol                       Electrum methods: one table, requests parsed once, answers
//! sessions                       connections, costs and limits, subscriptions, notifications
//! net                            transports: TCP, TLS, WebSocket listeners and framing
//! peers, admin                   peer discovery; the admin RPC
//! fuzzing                        entry points for the fuzz targets in fuzz/ (not an API)
//! app, cli                       the composition root that builds and runs all of it; the
//!                                command line: `--help`, `--version` (no settings)
//! ```

#![warn(unreachable_pub)]

mod admin;
pub mod app;
pub mod cli;
pub mod coin;
pub mod config;
pub mod daemon;
#[doc(hidden)]
pub mod fuzzing;
pub mod index;
pub mod mempool;
pub mod metrics;
mod net;
mod peers;
mod protocol;
pub mod query;
mod rest;
mod sessions;
pub mod store;
pub mod types;
