//! Sextant: an Electrum protocol server that indexes a `txindex=1` full node into RocksDB.
//!
//! Data flows one way: daemon → parse (coin) → index → store → query → protocol → network.

pub mod coin;
pub mod config;
pub mod daemon;
pub mod electrum;
pub mod index;
pub mod keva;
pub mod mempool;
pub mod metrics;
pub mod net;
pub mod peers;
pub mod query;
pub mod rest;
pub mod store;
pub mod types;
