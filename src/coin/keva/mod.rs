//! Kevacoin's key-value operations as the parser sees them: keva scripts
//! (`OP_KEVA_NAMESPACE`/`PUT`/`DELETE`) and which name-index scripts a transaction belongs to.
//!
//! Every keva operation adds its transaction to the histories of synthetic "name index" scripts
//! (see [`index`]) in the ordinary history store, so paging, reorgs and the mempool treat them
//! like any script. Only coins with the `kevacoin` transaction family produce any of it: for
//! every other coin [`crate::coin::ParsedTx::keva`] is `None`.

pub mod index;
pub mod script;

pub(crate) use index::KevaTx;
