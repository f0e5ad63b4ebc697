//! Kevacoin's key-value namespaces: the index the Kevacoin ElectrumX fork builds and the
//! `blockchain.keva.*` methods wallets read it with.
//!
//! Every keva operation adds its transaction to the histories of synthetic "name index" scripts
//! (see [`index`]) in the ordinary history store, so paging, reorgs and the mempool treat them
//! like any script. Per transaction the output scripts and inputs are kept in their own column
//! family ([`record`]) for the methods. Only coins with the `kevacoin` transaction family build
//! any of it: for every other coin [`crate::coin::ParsedTx::keva`] is `None`.

pub mod index;
pub mod info;
pub mod methods;
pub mod record;
pub mod script;

pub use index::KevaTx;

/// `BANNED_HASHTAGS` as the fork reads it: a comma list, each tag trimmed and lower-cased
/// (`#` not included).
pub fn banned_hashtags(var: &Option<String>) -> Vec<String> {
    var.as_deref()
        .unwrap_or("")
        .to_lowercase()
        .split(',')
        .map(|t| t.trim().to_string())
        .collect()
}
