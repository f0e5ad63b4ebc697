//! Every file in `coins/` parses, is built into the binary, and is consistent with itself and with
//! the others: names that `COIN` can pick without ambiguity, ports an operator can use, parsing
//! families that belong together, and for Komodo's smart chains (which all share KMD's genesis
//! hash) the fields that tell them apart and that komodod needs, plus a comment saying where the
//! chain's facts came from.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use sextant::coin::{Coin, CoinRegistry, HeaderFamily, TxFamily};

const KMD_GENESIS: &str = "027e3758c3a65b12aa1046462b486d0a63bfa1beae327897f56c5cfb7daaae71";

/// 2016 Equihash headers (1487 bytes) as hex, the most a Komodo DeFi Framework wallet asks for at
/// once, must fit in one response.
const KOMODO_MIN_MAX_SEND: usize = 2016 * 1487 * 2;

struct CoinFile {
    path: PathBuf,
    text: String,
    /// The coin on each of its nets, as the server resolves it.
    nets: Vec<Coin>,
}

fn coin_files() -> Vec<CoinFile> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("coins");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    paths.sort();
    assert!(paths.len() >= 6, "coins/ holds {paths:?}");
    paths
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            let mut reg = CoinRegistry::default();
            reg.add(&path.display().to_string(), &text)
                .unwrap_or_else(|e| panic!("{e}"));
            let [name] = reg.names().try_into().unwrap();
            let nets = net_names(&text)
                .iter()
                .map(|net| reg.lookup(&name, net).unwrap())
                .collect();
            CoinFile { path, text, nets }
        })
        .collect()
}

/// The `[nets.<name>]` sections of a coin file.
fn net_names(text: &str) -> Vec<String> {
    let nets: Vec<String> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("[nets.")?.strip_suffix(']'))
        .map(str::to_string)
        .collect();
    assert!(!nets.is_empty());
    nets
}

/// The comment lines of a file (where its sources are recorded).
fn comments(text: &str) -> String {
    text.lines()
        .filter(|l| l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n")
}

fn is_komodo(c: &Coin) -> bool {
    c.chain.header == HeaderFamily::Equihash
}

#[test]
fn every_coin_file_parses_and_is_built_in() {
    let files = coin_files();
    let embedded = CoinRegistry::embedded().unwrap();
    let mut built_in: Vec<String> = embedded.names();
    let mut in_tree: Vec<String> = files.iter().map(|f| f.nets[0].name.clone()).collect();
    built_in.sort();
    in_tree.sort();
    assert_eq!(built_in, in_tree, "build.rs embeds exactly coins/*.toml");
    for f in &files {
        for c in &f.nets {
            let built = embedded.lookup(&c.name, &c.net).unwrap();
            assert_eq!(built.genesis_hash, c.genesis_hash, "{}", f.path.display());
            assert_eq!(built.rpc_port, c.rpc_port, "{}", f.path.display());
        }
    }
}

#[test]
fn names_pick_one_coin_and_match_the_file_name() {
    let mut names = BTreeSet::new();
    for f in coin_files() {
        let c = &f.nets[0];
        let stem = f.path.file_stem().unwrap().to_str().unwrap();
        assert_eq!(stem, c.name.to_lowercase(), "file named after its coin");
        assert!(
            !c.name.is_empty() && !c.name.contains(char::is_whitespace),
            "COIN={:?} must be one word",
            c.name
        );
        assert!(!c.shortname.is_empty(), "{stem}");
        // COIN is case-insensitive, so names must differ in more than case.
        assert!(names.insert(c.name.to_lowercase()), "{} twice", c.name);
    }
}

#[test]
fn ports_and_limits_are_usable() {
    for f in coin_files() {
        for c in &f.nets {
            let at = format!("{} {}", f.path.display(), c.net);
            for (what, port) in [
                ("rpc_port", c.rpc_port),
                ("tcp_port", c.tcp_port),
                ("ssl_port", c.ssl_port),
            ] {
                assert!(port >= 1024, "{at}: {what} {port} is privileged or zero");
            }
            assert_ne!(c.tcp_port, c.ssl_port, "{at}");
            assert!(c.reorg_limit > 0, "{at}");
            assert!(c.tx_per_block_hint > 0, "{at}");
            if let Some(max_send) = c.max_send {
                assert!(max_send >= 350_000, "{at}: below ElectrumX's floor");
            }
        }
    }
}

#[test]
fn header_and_transaction_families_belong_together() {
    for f in coin_files() {
        for c in &f.nets {
            let ok = match c.chain.header {
                HeaderFamily::Bitcoin => {
                    matches!(c.chain.tx, TxFamily::Bitcoin | TxFamily::Litecoin)
                }
                HeaderFamily::Equihash => c.chain.tx == TxFamily::Zcash,
                HeaderFamily::Kevacoin => c.chain.tx == TxFamily::Kevacoin,
            };
            assert!(ok, "{}: {:?}", f.path.display(), c.chain);
        }
    }
}

/// Coins that share a genesis hash on a net can only be told apart by the daemon's
/// `getinfo.name`, so each must name a different one.
#[test]
fn chains_with_one_genesis_have_distinct_chain_names() {
    let mut by_genesis: BTreeMap<(String, String), Vec<Coin>> = BTreeMap::new();
    for f in coin_files() {
        for c in f.nets {
            by_genesis
                .entry((c.net.clone(), c.genesis_hash.to_string()))
                .or_default()
                .push(c);
        }
    }
    let kmd = &by_genesis[&("mainnet".to_string(), KMD_GENESIS.to_string())];
    assert!(kmd.len() > 3, "the smart chains share KMD's genesis");
    for ((net, genesis), coins) in by_genesis {
        if coins.len() < 2 {
            continue;
        }
        let mut chain_names = BTreeSet::new();
        for c in &coins {
            let name = c.chain_name.clone().unwrap_or_else(|| {
                panic!(
                    "{} shares genesis {genesis} on {net} but has no chain_name",
                    c.name
                )
            });
            assert!(chain_names.insert(name.clone()), "chain_name {name} twice");
        }
    }
}

/// What komodod needs from Sextant, for KMD and every smart chain alike (coins/rick.toml is the
/// model): its name checked, its notarizations followed, room for 2016 headers, `estimatefee`
/// rather than `estimatesmartfee`, KMD's address bytes, and RPC ports that differ so that their
/// daemons can run on one machine.
#[test]
fn komodo_chains_carry_what_komodod_needs() {
    let mut rpc_ports = BTreeMap::new();
    let mut count = 0;
    for f in coin_files() {
        for c in f.nets.iter().filter(|c| is_komodo(c)) {
            count += 1;
            let at = format!("{} {}", f.path.display(), c.net);
            assert_eq!(c.genesis_hash.to_string(), KMD_GENESIS, "{at}");
            let chain_name = c.chain_name.as_deref().unwrap_or_else(|| panic!("{at}"));
            assert!(
                !chain_name.is_empty()
                    && chain_name
                        .chars()
                        .all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '-'),
                "{at}: chain_name {chain_name:?} is not an -ac_name"
            );
            assert!(c.notarized, "{at}: notarizations are followed");
            assert!(!c.estimatesmartfee, "{at}: komodod has only estimatefee");
            assert!(
                c.max_send.is_some_and(|m| m >= KOMODO_MIN_MAX_SEND),
                "{at}: max_send {:?} cannot hold 2016 headers",
                c.max_send
            );
            assert_eq!(
                (c.p2pkh_verbyte, c.p2sh_verbytes.as_slice(), c.wif_byte),
                (0x3c, &[0x55u8][..], 0xbc),
                "{at}: KMD's address bytes"
            );
            assert_eq!(c.bech32_hrp, None, "{at}");
            if let Some(other) = rpc_ports.insert((c.net.clone(), c.rpc_port), c.name.clone()) {
                panic!("{at}: rpc_port {} is also {other}'s", c.rpc_port);
            }
        }
    }
    assert!(count >= 10, "KMD and the smart chains: {count}");
}

/// A smart chain's facts come from outside (the Komodo DeFi Framework's coin list, the chain's
/// launch parameters), so its file says where: at least its RPC port and `-ac_name` appear in its
/// comments next to a source.
#[test]
fn smart_chain_files_say_where_their_facts_come_from() {
    for f in coin_files() {
        let c = &f.nets[0];
        if !is_komodo(c) || c.chain_name.as_deref() == Some("KMD") {
            continue;
        }
        let notes = comments(&f.text);
        let at = f.path.display();
        assert!(
            notes.contains(&format!("-ac_name={}", c.chain_name.as_deref().unwrap())),
            "{at}: the comments name the chain's -ac_name"
        );
        assert!(
            notes.contains(&c.rpc_port.to_string()),
            "{at}: the comments say where rpc_port {} comes from",
            c.rpc_port
        );
        assert!(
            notes.contains("Komodo DeFi Framework"),
            "{at}: the comments cite the framework's coin list"
        );
    }
}
