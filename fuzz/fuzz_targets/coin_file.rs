//! A coin file (`COINS_DIR/*.toml`): checked as start-up checks it, then resolved on each of
//! its nets and the usual ones.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sextant::coin::CoinRegistry;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut reg = CoinRegistry::default();
    if reg.add("fuzz.toml", text).is_err() {
        return;
    }
    let mut nets = vec!["mainnet".to_string(), "testnet".into(), "regtest".into()];
    if let Ok(toml::Value::Table(t)) = text.parse::<toml::Value>() {
        if let Some(toml::Value::Table(n)) = t.get("nets") {
            nets.extend(n.keys().cloned());
        }
    }
    for name in reg.names() {
        for net in &nets {
            if let Ok(coin) = reg.lookup(&name, net) {
                let _ = coin.chain.parse_block(&[]);
            }
        }
    }
});
