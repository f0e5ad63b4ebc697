//! Coin files: parsing, the embedded set, `COINS_DIR` overrides, and resolution of one net.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{Chain, HeaderFamily, TxFamily};
use crate::types::BlockHash;

include!(concat!(env!("OUT_DIR"), "/embedded_coins.rs"));

#[derive(Debug, thiserror::Error)]
pub enum CoinError {
    #[error("coin file {file}: {message}")]
    BadFile { file: String, message: String },
    #[error(
        "unknown coin {coin:?}; known coins: {known}. Add a coin file to COINS_DIR to define it"
    )]
    UnknownCoin { coin: String, known: String },
    #[error("coin {coin} has no net {net:?}; its nets: {known}")]
    UnknownNet {
        coin: String,
        net: String,
        known: String,
    },
    #[error("cannot read COINS_DIR {dir}: {source}")]
    Dir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Settings a net may override from the coin's top level.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Overridable {
    header_family: Option<HeaderFamily>,
    tx_family: Option<TxFamily>,
    reorg_limit: Option<u32>,
    tx_count_hint: Option<[u64; 2]>,
    tx_per_block_hint: Option<u64>,
    chain_name: Option<String>,
    estimatesmartfee: Option<bool>,
    max_send: Option<usize>,
    notarized: Option<bool>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NetFile {
    genesis_hash: String,
    rpc_port: u16,
    p2pkh_verbyte: u8,
    p2sh_verbytes: Vec<u8>,
    wif_byte: u8,
    bech32_hrp: Option<String>,
    tcp_port: u16,
    ssl_port: u16,
    #[serde(default)]
    peers: Vec<String>,
    #[serde(flatten)]
    overrides: Overridable,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CoinFile {
    name: String,
    shortname: String,
    #[serde(flatten)]
    defaults: Overridable,
    nets: BTreeMap<String, NetFile>,
}

/// One coin on one net, with everything the server needs to know about it.
#[derive(Clone, Debug)]
pub struct Coin {
    pub name: String,
    pub shortname: String,
    pub net: String,
    pub genesis_hash: BlockHash,
    pub chain: Chain,
    pub rpc_port: u16,
    pub reorg_limit: u32,
    pub p2pkh_verbyte: u8,
    pub p2sh_verbytes: Vec<u8>,
    pub wif_byte: u8,
    pub bech32_hrp: Option<String>,
    pub tcp_port: u16,
    pub ssl_port: u16,
    pub peers: Vec<String>,
    /// `[height, tx count]` of a recent chain state, for sync ETAs.
    pub tx_count_hint: [u64; 2],
    pub tx_per_block_hint: u64,
    /// The name the daemon must report in `getinfo.name`, checked at start-up. Komodo smart
    /// chains all share KMD's genesis hash, so only this tells them apart. `None`: no check
    /// (daemons without that field).
    pub chain_name: Option<String>,
    /// Whether the daemon has `estimatesmartfee`. `false` (komodod): call `estimatefee <blocks>`
    /// with that one parameter, dropping any mode the client sent.
    pub estimatesmartfee: bool,
    /// The coin's default `MAX_SEND` when the environment does not set one (Komodo: 2016
    /// Equihash headers are ~6 MB of hex). `None`: the server's own default.
    pub max_send: Option<usize>,
    /// Whether the daemon reports dPoW notarizations (komodod's `getinfo.notarized` and
    /// `notarizedhash`): followed, logged, and used to drop undo data nothing can need.
    pub notarized: bool,
}

/// All known coin files, by lower-cased coin name.
#[derive(Clone, Debug, Default)]
pub struct CoinRegistry {
    coins: BTreeMap<String, (String, CoinFile)>,
}

impl CoinRegistry {
    /// The coin files built into the binary.
    pub fn embedded() -> Result<CoinRegistry, CoinError> {
        let mut reg = CoinRegistry::default();
        for (file, text) in EMBEDDED_COINS {
            reg.add(file, text)?;
        }
        Ok(reg)
    }

    /// The embedded coins plus every `*.toml` in `dir`; a file there replaces an embedded coin
    /// of the same name, so an operator can also adjust a built-in chain.
    pub(crate) fn with_dir(dir: Option<&Path>) -> Result<CoinRegistry, CoinError> {
        let mut reg = CoinRegistry::embedded()?;
        let Some(dir) = dir else { return Ok(reg) };
        let read_err = |source| CoinError::Dir {
            dir: dir.to_path_buf(),
            source,
        };
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(read_err)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect();
        paths.sort();
        for path in paths {
            let text = std::fs::read_to_string(&path).map_err(read_err)?;
            reg.add(&path.display().to_string(), &text)?;
        }
        Ok(reg)
    }

    /// Parses and checks one coin file, so a mistake is reported at start-up with the file name.
    pub fn add(&mut self, file: &str, text: &str) -> Result<(), CoinError> {
        let bad = |message: String| CoinError::BadFile {
            file: file.to_string(),
            message,
        };
        let parsed: CoinFile = toml::from_str(text).map_err(|e| bad(e.to_string()))?;
        if parsed.nets.is_empty() {
            return Err(bad("no [nets.<name>] section".into()));
        }
        for (net, n) in &parsed.nets {
            if BlockHash::from_hex(&n.genesis_hash).is_none() {
                return Err(bad(format!("net {net}: genesis_hash is not 64 hex digits")));
            }
            let o = n.overrides.clone();
            if o.header_family.or(parsed.defaults.header_family).is_none() {
                return Err(bad(format!("net {net}: header_family is not set")));
            }
            if o.tx_family.or(parsed.defaults.tx_family).is_none() {
                return Err(bad(format!("net {net}: tx_family is not set")));
            }
        }
        self.coins
            .insert(parsed.name.to_lowercase(), (file.to_string(), parsed));
        Ok(())
    }

    pub fn names(&self) -> Vec<String> {
        self.coins.values().map(|(_, c)| c.name.clone()).collect()
    }

    /// Resolves `COIN` and `NET` (both case-insensitive) to one coin on one net.
    pub fn lookup(&self, coin: &str, net: &str) -> Result<Coin, CoinError> {
        let (_, file) =
            self.coins
                .get(&coin.to_lowercase())
                .ok_or_else(|| CoinError::UnknownCoin {
                    coin: coin.to_string(),
                    known: self.names().join(", "),
                })?;
        let (net_name, n) = file
            .nets
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(net))
            .ok_or_else(|| CoinError::UnknownNet {
                coin: file.name.clone(),
                net: net.to_string(),
                known: file.nets.keys().cloned().collect::<Vec<_>>().join(", "),
            })?;
        let d = &file.defaults;
        let o = &n.overrides;
        Ok(Coin {
            name: file.name.clone(),
            shortname: file.shortname.clone(),
            net: net_name.clone(),
            genesis_hash: BlockHash::from_hex(&n.genesis_hash).expect("checked in add"),
            chain: Chain {
                header: o.header_family.or(d.header_family).expect("checked"),
                tx: o.tx_family.or(d.tx_family).expect("checked"),
            },
            rpc_port: n.rpc_port,
            reorg_limit: o.reorg_limit.or(d.reorg_limit).unwrap_or(200),
            p2pkh_verbyte: n.p2pkh_verbyte,
            p2sh_verbytes: n.p2sh_verbytes.clone(),
            wif_byte: n.wif_byte,
            bech32_hrp: n.bech32_hrp.clone(),
            tcp_port: n.tcp_port,
            ssl_port: n.ssl_port,
            peers: n.peers.clone(),
            tx_count_hint: o.tx_count_hint.or(d.tx_count_hint).unwrap_or([0, 0]),
            tx_per_block_hint: o.tx_per_block_hint.or(d.tx_per_block_hint).unwrap_or(1),
            chain_name: o.chain_name.clone().or_else(|| d.chain_name.clone()),
            estimatesmartfee: o.estimatesmartfee.or(d.estimatesmartfee).unwrap_or(true),
            max_send: o.max_send.or(d.max_send),
            notarized: o.notarized.or(d.notarized).unwrap_or(false),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_coins_resolve_every_net() {
        let reg = CoinRegistry::embedded().unwrap();
        for (coin, net) in [
            ("Bitcoin", "mainnet"),
            ("bitcoin", "testnet"),
            ("BITCOIN", "signet"),
            ("Bitcoin", "regtest"),
            ("Litecoin", "mainnet"),
            ("Litecoin", "testnet"),
            ("Litecoin", "regtest"),
        ] {
            let c = reg.lookup(coin, net).unwrap();
            assert!(c.reorg_limit > 0, "{coin} {net}");
        }
        let ltc = reg.lookup("Litecoin", "regtest").unwrap();
        assert_eq!(ltc.chain.tx, TxFamily::Litecoin);
        assert_eq!(ltc.reorg_limit, 4000);
        assert_eq!(ltc.rpc_port, 19443);
        assert_eq!(
            ltc.genesis_hash.to_string(),
            "530827f38f93b43ed12af0b3ad25a288dc02ed74d6d7857862df51fc56c416f9"
        );
        assert_eq!(reg.lookup("Bitcoin", "mainnet").unwrap().reorg_limit, 200);
    }

    #[test]
    fn unknown_coin_and_net_name_the_choices() {
        let reg = CoinRegistry::embedded().unwrap();
        let e = reg.lookup("Dogecoin", "mainnet").unwrap_err().to_string();
        assert!(e.contains("Litecoin") && e.contains("COINS_DIR"), "{e}");
        let e = reg.lookup("Litecoin", "signet").unwrap_err().to_string();
        assert!(e.contains("regtest"), "{e}");
    }

    #[test]
    fn coins_dir_adds_a_chain_and_bad_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let text = EMBEDDED_COINS
            .iter()
            .find(|(n, _)| *n == "litecoin.toml")
            .unwrap()
            .1
            .replace("name = \"Litecoin\"", "name = \"Ferrite\"");
        std::fs::write(dir.path().join("ferrite.toml"), text).unwrap();
        let reg = CoinRegistry::with_dir(Some(dir.path())).unwrap();
        assert_eq!(reg.lookup("ferrite", "mainnet").unwrap().name, "Ferrite");
        assert!(reg.lookup("Bitcoin", "mainnet").is_ok());

        std::fs::write(dir.path().join("broken.toml"), "name = \"X\"\nshortname=1").unwrap();
        let e = CoinRegistry::with_dir(Some(dir.path()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("broken.toml"), "{e}");
    }

    #[test]
    fn komodo_and_smart_chains_resolve() {
        let reg = CoinRegistry::embedded().unwrap();
        let kmd_genesis = "027e3758c3a65b12aa1046462b486d0a63bfa1beae327897f56c5cfb7daaae71";
        for (coin, shortname, rpc_port) in [
            ("Komodo", "KMD", 7771),
            ("rick", "RICK", 25435),
            ("MORTY", "MORTY", 16348),
        ] {
            let c = reg.lookup(coin, "mainnet").unwrap();
            assert_eq!(c.shortname, shortname);
            assert_eq!(
                c.chain,
                Chain {
                    header: HeaderFamily::Equihash,
                    tx: TxFamily::Zcash
                },
                "{coin}"
            );
            assert_eq!(c.genesis_hash.to_string(), kmd_genesis, "{coin}");
            assert_eq!(c.rpc_port, rpc_port);
            assert_eq!(c.reorg_limit, 800);
            assert_eq!(
                (c.p2pkh_verbyte, c.p2sh_verbytes.as_slice(), c.wif_byte),
                (0x3c, &[0x55u8][..], 0xbc)
            );
            assert_eq!(c.chain_name.as_deref(), Some(shortname), "{coin}");
            assert!(!c.estimatesmartfee);
            assert_eq!(c.max_send, Some(8_100_000));
            assert!(c.notarized, "{coin} follows notarizations");
        }
        // The new fields are optional, with defaults that keep the other coins as they were.
        let btc = reg.lookup("Bitcoin", "mainnet").unwrap();
        assert_eq!(btc.chain_name, None);
        assert!(btc.estimatesmartfee);
        assert_eq!(btc.max_send, None);
        assert!(!btc.notarized);
    }

    #[test]
    fn a_net_may_override_the_komodo_fields() {
        let text = EMBEDDED_COINS
            .iter()
            .find(|(n, _)| *n == "rick.toml")
            .unwrap()
            .1
            .replace("name = \"RICK\"", "name = \"HELLOWORLD\"")
            .replace(
                "rpc_port = 25435",
                "rpc_port = 1234\nchain_name = \"HELLOWORLD\"",
            );
        let mut reg = CoinRegistry::default();
        reg.add("helloworld.toml", &text).unwrap();
        let c = reg.lookup("helloworld", "mainnet").unwrap();
        assert_eq!(c.chain_name.as_deref(), Some("HELLOWORLD"));
        assert_eq!(c.rpc_port, 1234);
    }

    #[test]
    fn a_net_without_families_is_rejected() {
        let mut reg = CoinRegistry::default();
        let text = r#"
            name = "X"
            shortname = "X"
            [nets.mainnet]
            genesis_hash = "000000000019d6689c085ae165831e934ff763ae46a2a6c172b3f1b60a8ce26f"
            rpc_port = 1
            p2pkh_verbyte = 0
            p2sh_verbytes = [5]
            wif_byte = 128
            tcp_port = 1
            ssl_port = 2
        "#;
        let e = reg.add("x.toml", text).unwrap_err().to_string();
        assert!(e.contains("header_family"), "{e}");
    }
}
