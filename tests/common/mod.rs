//! Integration-test harness: a real `litecoind -regtest -txindex=1` per test, chain builders, and
//! an independent oracle of the expected index computed from the daemon's own JSON.
//!
//! Include with `mod common;` and `use common::*;`.
#![allow(dead_code)]
#![allow(unused_imports)]

pub mod chain;
pub mod litecoind;
pub mod oracle;
pub mod rpc;
pub mod servers;

pub use chain::{
    AddrType, MwebInfo, ReorgInfo, UnconfirmedChain, UsedScript, VariedChain, COIN,
    COINBASE_MATURITY, MWEB_HEIGHT,
};
pub use litecoind::{
    free_port, wait_until, Litecoind, LitecoindConfig, MAIN_WALLET, MWEB_WALLET, RPC_PASS, RPC_USER,
};
pub use oracle::{
    amount_to_sats, decimal_to_sats, sats_to_amount, scripthash, scripthash_bytes, status_of,
    HistoryItem, Mempool, MempoolEntry, MempoolTx, Oracle, TxLocation, Utxo,
};
pub use rpc::{RpcClient, RpcError};
pub use servers::{base_command, electrumx_venv, make_cert, Proc};
