//! The scale benchmark's chain generator and block-file stand-in daemon (issue 16).
//!
//! `gen` writes a mainnet-shaped Litecoin regtest chain straight to files; `serve` answers an
//! index server's daemon calls from those files; `layout` is the on-disk format both share.
//! The examples `scale-chain` and `scale-daemon` (bench/scale/bin/) and the CI test
//! `tests/scale_chain.rs` include this directory with `#[path]`, so it is compiled the same way
//! in all three. See bench/README.md, "The scale chain".
#![allow(dead_code)]

pub mod gen;
pub mod layout;
pub mod serve;
