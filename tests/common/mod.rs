//! Integration-test harness: a real `litecoind -regtest -txindex=1` per test, chain builders, and
//! an independent oracle of the expected index computed from the daemon's own JSON; a JSON-RPC
//! stand-in daemon for coins whose daemon cannot run here; the ElectrumX comparison machinery.
//!
//! Include with `mod common;` and `use common::*;`.
#![allow(dead_code)]
#![allow(unused_imports)]

pub mod certs;
pub mod chain;
pub mod client;
pub mod differential;
pub mod gate;
pub mod komodo;
pub mod litecoind;
pub mod oracle;
pub mod process;
pub mod rpc;
pub mod server;
pub mod shim;
pub mod standin;

pub use certs::make_cert;
pub use chain::{
    AddrType, MwebInfo, ReorgInfo, UnconfirmedChain, UsedScript, VariedChain, COIN,
    COINBASE_MATURITY, MWEB_HEIGHT,
};
pub use client::Client;
pub use differential::*;
pub use gate::DaemonGate;
pub use litecoind::{
    free_port, Litecoind, LitecoindConfig, MAIN_WALLET, MWEB_WALLET, RPC_PASS, RPC_USER,
};
pub use oracle::{
    amount_to_sats, decimal_to_sats, sats_to_amount, scripthash, scripthash_bytes, status_of,
    HistoryItem, Mempool, MempoolEntry, MempoolTx, Oracle, TxLocation, Utxo,
};
pub use process::{base_command, wait_until, Proc};
pub use rpc::{RpcClient, RpcError};
pub use server::{rpc_json, sextant_command, sextant_env, sextant_rpc, InProcess};
pub use shim::DaemonShim;
pub use standin::{
    dsha256_hex, Standin, StandinBlock, StandinConfig, StandinTx, STANDIN_PASS, STANDIN_USER,
};
