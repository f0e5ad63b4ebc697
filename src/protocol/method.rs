//! The method table: every method's name, its signature and the versions and coins that have
//! it, in one place the compiler checks (a new method is a new variant, and every `match` on
//! [`Method`] must then handle it) — and a call parsed once against it into a [`Request`].

use super::jsonrpc::{Call, RpcError, METHOD_NOT_FOUND};
use super::params::{Args, Signature};
use super::version::Version;
use crate::coin::{Coin, TxFamily};

/// Declares [`Method`], its names and the list of all of them, from one table.
macro_rules! methods {
    ($($variant:ident => $name:literal,)*) => {
        /// A method of the protocol (or of a coin's dialect of it).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub(crate) enum Method {
            $($variant,)*
        }

        impl Method {
            pub(crate) const ALL: &'static [Method] = &[$(Method::$variant,)*];

            /// The name clients call it by.
            pub(crate) fn name(self) -> &'static str {
                match self {
                    $(Method::$variant => $name,)*
                }
            }
        }
    };
}

methods! {
    ServerVersion => "server.version",
    ServerBanner => "server.banner",
    ServerDonationAddress => "server.donation_address",
    ServerFeatures => "server.features",
    ServerPeersSubscribe => "server.peers.subscribe",
    ServerAddPeer => "server.add_peer",
    ServerPing => "server.ping",
    HeadersSubscribe => "blockchain.headers.subscribe",
    BlockHeader => "blockchain.block.header",
    BlockHeaders => "blockchain.block.headers",
    EstimateFee => "blockchain.estimatefee",
    RelayFee => "blockchain.relayfee",
    GetBalance => "blockchain.scripthash.get_balance",
    GetHistory => "blockchain.scripthash.get_history",
    GetMempool => "blockchain.scripthash.get_mempool",
    ListUnspent => "blockchain.scripthash.listunspent",
    Subscribe => "blockchain.scripthash.subscribe",
    Unsubscribe => "blockchain.scripthash.unsubscribe",
    Broadcast => "blockchain.transaction.broadcast",
    BroadcastPackage => "blockchain.transaction.broadcast_package",
    TransactionGet => "blockchain.transaction.get",
    GetMerkle => "blockchain.transaction.get_merkle",
    IdFromPos => "blockchain.transaction.id_from_pos",
    FeeHistogram => "mempool.get_fee_histogram",
    MempoolInfo => "mempool.get_info",
    // Protocol 1.7's.
    SpkGetBalance => "blockchain.scriptpubkey.get_balance",
    SpkGetHistory => "blockchain.scriptpubkey.get_history",
    SpkGetMempool => "blockchain.scriptpubkey.get_mempool",
    SpkListUnspent => "blockchain.scriptpubkey.listunspent",
    SpkSubscribe => "blockchain.scriptpubkey.subscribe",
    SpkUnsubscribe => "blockchain.scriptpubkey.unsubscribe",
    TestMempoolAccept => "blockchain.transaction.testmempoolaccept",
    OutpointSubscribe => "blockchain.outpoint.subscribe",
    OutpointGetStatus => "blockchain.outpoint.get_status",
    OutpointUnsubscribe => "blockchain.outpoint.unsubscribe",
    MempoolRecent => "mempool.recent",
    // The Kevacoin ElectrumX fork's.
    BlockCount => "blockchain.block.count",
    KevaGetKeyvalues => "blockchain.keva.get_keyvalues",
    KevaGetHashtag => "blockchain.keva.get_hashtag",
    KevaGetKeyvalueReactions => "blockchain.keva.get_keyvalue_reactions",
    KevaGetTransactionsInfo => "blockchain.keva.get_transactions_info",
}

const NO_ARGS: Signature = Signature::new(&[], &[]);
const SCRIPTHASH: Signature = Signature::new(&["scripthash"], &[]);

impl Method {
    /// Its parameters, by position and name.
    pub(crate) fn signature(self) -> Signature {
        use Method::*;
        match self {
            ServerVersion => Signature {
                required: &[],
                optional: &["client_name", "protocol_version"],
                var_args: true,
            },
            ServerBanner
            | ServerDonationAddress
            | ServerFeatures
            | ServerPeersSubscribe
            | HeadersSubscribe
            | RelayFee
            | FeeHistogram
            | MempoolInfo
            | MempoolRecent
            | BlockCount => NO_ARGS,
            ServerAddPeer => Signature::new(&["features"], &[]),
            // ElectrumX 2 takes (and ignores below 1.7) up to two arguments.
            ServerPing => Signature::new(&[], &["pong_len", "data"]),
            BlockHeader => Signature::new(&["height"], &["cp_height"]),
            BlockHeaders => Signature::new(&["start_height", "count"], &["cp_height"]),
            EstimateFee => Signature::new(&["number"], &["mode"]),
            GetBalance | GetHistory | GetMempool | ListUnspent | Subscribe | Unsubscribe => {
                SCRIPTHASH
            }
            SpkGetBalance | SpkGetHistory | SpkGetMempool | SpkListUnspent | SpkSubscribe
            | SpkUnsubscribe => Signature::new(&["spk"], &[]),
            TestMempoolAccept => Signature::new(&["raw_txs"], &[]),
            // The hint is checked and ignored, as ElectrumX does: the index knows outpoints.
            OutpointSubscribe | OutpointGetStatus => {
                Signature::new(&["tx_hash", "txout_idx", "spk_hint"], &[])
            }
            OutpointUnsubscribe => Signature::new(&["tx_hash", "txout_idx"], &[]),
            Broadcast => Signature::new(&["raw_tx"], &[]),
            BroadcastPackage => Signature::new(&["raw_txs"], &["verbose"]),
            TransactionGet => Signature::new(&["tx_hash"], &["verbose"]),
            GetMerkle => Signature::new(&["tx_hash", "height"], &[]),
            IdFromPos => Signature::new(&["height", "tx_pos"], &["merkle"]),
            KevaGetKeyvalues | KevaGetHashtag => {
                Signature::new(&["scripthash", "start_tx_num"], &[])
            }
            KevaGetKeyvalueReactions => Signature::new(&["tx_hash", "start_tx_num"], &[]),
            KevaGetTransactionsInfo => Signature::new(&["txs", "namespace_info"], &[]),
        }
    }

    /// The flat cost charged for a call whatever it did (methods whose work varies charge the
    /// rest themselves; see `cost`).
    pub(crate) fn base_cost(self) -> f64 {
        use Method::*;
        match self {
            ServerPing
            | ServerDonationAddress
            | Unsubscribe
            | SpkUnsubscribe
            | OutpointUnsubscribe
            | EstimateFee => 0.1,
            ServerFeatures => 0.2,
            HeadersSubscribe => 0.25,
            ServerVersion | ServerBanner => 0.5,
            ServerPeersSubscribe | RelayFee | FeeHistogram | MempoolInfo | MempoolRecent
            | TransactionGet => 1.0,
            ServerAddPeer => 100.0,
            BlockHeader
            | BlockHeaders
            | GetBalance
            | GetHistory
            | GetMempool
            | ListUnspent
            | Subscribe
            | SpkGetBalance
            | SpkGetHistory
            | SpkGetMempool
            | SpkListUnspent
            | SpkSubscribe
            | TestMempoolAccept
            | OutpointSubscribe
            | OutpointGetStatus
            | Broadcast
            | BroadcastPackage
            | GetMerkle
            | IdFromPos
            | BlockCount
            | KevaGetKeyvalues
            | KevaGetHashtag
            | KevaGetKeyvalueReactions
            | KevaGetTransactionsInfo => 0.0,
        }
    }

    /// Whether the method exists at `version` for `coin`.
    fn exists(self, version: &Version, coin: &Coin) -> bool {
        use Method::*;
        match self {
            GetBalance | GetHistory | GetMempool | ListUnspent | Subscribe => !version.is_1_7(),
            Unsubscribe => version.has_unsubscribe() && !version.is_1_7(),
            SpkGetBalance | SpkGetHistory | SpkGetMempool | SpkListUnspent | SpkSubscribe
            | SpkUnsubscribe | TestMempoolAccept | MempoolRecent | OutpointSubscribe
            | OutpointGetStatus | OutpointUnsubscribe => version.is_1_7(),
            RelayFee => !version.has_mempool_info(),
            MempoolInfo | BroadcastPackage => version.has_mempool_info(),
            BlockCount
            | KevaGetKeyvalues
            | KevaGetHashtag
            | KevaGetKeyvalueReactions
            | KevaGetTransactionsInfo => coin.chain.tx == TxFamily::Kevacoin,
            _ => true,
        }
    }

    /// The method called `name`, if it exists at `version` for `coin`.
    pub(crate) fn find(name: &str, version: &Version, coin: &Coin) -> Option<Method> {
        Method::ALL
            .iter()
            .copied()
            .find(|m| m.name() == name && m.exists(version, coin))
    }

    /// Whether `name` names a method at all (any version, any coin): the bounded set of
    /// method labels in metrics.
    pub(crate) fn is_known(name: &str) -> bool {
        Method::ALL.iter().any(|m| m.name() == name)
    }
}

/// A call, parsed once: which method, its arguments bound to its signature, and the protocol
/// version it is answered at (some answers change form with it).
#[derive(Debug)]
pub(crate) struct Request {
    pub method: Method,
    pub args: Args,
    pub version: Version,
}

impl Request {
    /// Binds the call's arguments to `method` (found at `version`, the caller's; `None`: there
    /// is none by that name): the error is ElectrumX's for an unknown method or a wrong number of
    /// arguments.
    pub(crate) fn bind(
        method: Option<Method>,
        call: &Call,
        version: Version,
    ) -> Result<Request, RpcError> {
        let method = method.ok_or_else(|| {
            RpcError::new(
                METHOD_NOT_FOUND,
                format!("unknown method \"{}\"", call.method),
            )
        })?;
        let args = method.signature().bind(&call.method, &call.params)?;
        Ok(Request {
            method,
            args,
            version,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coin::CoinRegistry;

    fn coin(name: &str) -> Coin {
        CoinRegistry::embedded()
            .unwrap()
            .lookup(name, "mainnet")
            .unwrap()
    }

    #[test]
    fn every_method_has_one_name() {
        for m in Method::ALL {
            let same: Vec<_> = Method::ALL
                .iter()
                .filter(|o| o.name() == m.name())
                .collect();
            assert_eq!(same, [m], "{m:?}");
        }
    }

    #[test]
    fn method_availability_by_version() {
        let ltc = coin("Litecoin");
        let v14 = Version::new(&[1, 4]);
        let v141 = Version::new(&[1, 4, 1]);
        let v142 = Version::new(&[1, 4, 2]);
        let unsubscribe = "blockchain.scripthash.unsubscribe";
        assert!(Method::find(unsubscribe, &v14, &ltc).is_none());
        assert!(Method::find(unsubscribe, &v141, &ltc).is_none());
        assert_eq!(
            Method::find(unsubscribe, &v142, &ltc),
            Some(Method::Unsubscribe)
        );
        assert!(Method::find("blockchain.relayfee", &v142, &ltc).is_some());
        for v in [Version::new(&[1, 6]), Version::new(&[1, 6, 0])] {
            assert!(Method::find("blockchain.relayfee", &v, &ltc).is_none());
            assert_eq!(
                Method::find("mempool.get_info", &v, &ltc),
                Some(Method::MempoolInfo)
            );
            assert_eq!(
                Method::find("blockchain.transaction.broadcast_package", &v, &ltc),
                Some(Method::BroadcastPackage)
            );
            assert_eq!(
                Method::find(unsubscribe, &v, &ltc),
                Some(Method::Unsubscribe)
            );
        }
        let v15 = Version::new(&[1, 5]);
        assert!(Method::find("blockchain.relayfee", &v15, &ltc).is_some());
        assert!(Method::find("mempool.get_info", &v15, &ltc).is_none());
        assert!(Method::find("blockchain.transaction.broadcast_package", &v15, &ltc).is_none());
        assert!(Method::is_known("mempool.get_info"));
        for gone in [
            "blockchain.address.get_balance",
            "blockchain.numblocks.subscribe",
            "blockchain.block.get_header",
            "blockchain.block.get_chunk",
            "blockchain.utxo.get_address",
            "mempool.get_info",
            "blockchain.transaction.broadcast_package",
        ] {
            assert!(Method::find(gone, &v142, &ltc).is_none(), "{gone}");
        }
        for never in [
            "blockchain.address.get_balance",
            "blockchain.numblocks.subscribe",
            "blockchain.block.get_header",
            "blockchain.block.get_chunk",
            "blockchain.utxo.get_address",
        ] {
            assert!(!Method::is_known(never), "{never}");
        }
    }

    #[test]
    fn scripthash_methods_give_way_to_scriptpubkey_ones_at_1_7() {
        let ltc = coin("Litecoin");
        let pairs = [
            ("get_balance", Method::GetBalance, Method::SpkGetBalance),
            ("get_history", Method::GetHistory, Method::SpkGetHistory),
            ("get_mempool", Method::GetMempool, Method::SpkGetMempool),
            ("listunspent", Method::ListUnspent, Method::SpkListUnspent),
            ("subscribe", Method::Subscribe, Method::SpkSubscribe),
            ("unsubscribe", Method::Unsubscribe, Method::SpkUnsubscribe),
        ];
        let v16 = Version::new(&[1, 6]);
        for v17 in [Version::new(&[1, 7]), Version::new(&[1, 7, 0])] {
            for (name, old, new) in pairs {
                let sh = format!("blockchain.scripthash.{name}");
                let spk = format!("blockchain.scriptpubkey.{name}");
                assert_eq!(Method::find(&sh, &v16, &ltc), Some(old), "{sh}");
                assert_eq!(Method::find(&spk, &v16, &ltc), None, "{spk}");
                assert_eq!(Method::find(&sh, &v17, &ltc), None, "{sh}");
                assert_eq!(Method::find(&spk, &v17, &ltc), Some(new), "{spk}");
            }
            for m in [
                "blockchain.transaction.testmempoolaccept",
                "mempool.recent",
                "blockchain.outpoint.subscribe",
                "blockchain.outpoint.get_status",
                "blockchain.outpoint.unsubscribe",
            ] {
                assert!(Method::find(m, &v17, &ltc).is_some(), "{m}");
                assert!(Method::find(m, &v16, &ltc).is_none(), "{m}");
            }
            // 1.6's additions stay.
            assert!(Method::find("mempool.get_info", &v17, &ltc).is_some());
            assert!(Method::find("blockchain.relayfee", &v17, &ltc).is_none());
        }
    }

    #[test]
    fn keva_methods_exist_for_kevacoin_only() {
        let (kva, ltc) = (coin("Kevacoin"), coin("Litecoin"));
        let v = Version::new(&[1, 4]);
        for m in [
            "blockchain.block.count",
            "blockchain.keva.get_keyvalues",
            "blockchain.keva.get_hashtag",
            "blockchain.keva.get_keyvalue_reactions",
            "blockchain.keva.get_transactions_info",
        ] {
            assert!(Method::find(m, &v, &kva).is_some(), "{m}");
            assert!(Method::find(m, &v, &ltc).is_none(), "{m}");
        }
        assert!(Method::find("blockchain.keva.put", &v, &kva).is_none());
    }

    #[test]
    fn requests_bind_arguments_once() {
        let ltc = coin("Litecoin");
        let call = |method: &str, params: serde_json::Value| Call {
            id: Some(serde_json::json!(1)),
            method: method.into(),
            params: super::super::jsonrpc::Params::Positional(params.as_array().unwrap().clone()),
        };
        let v = Version::new(&[1, 4]);
        let parse = |c: &Call| Request::bind(Method::find(&c.method, &v, &ltc), c, v.clone());
        let r = parse(&call("blockchain.block.header", serde_json::json!([5]))).unwrap();
        assert_eq!(r.method, Method::BlockHeader);
        assert_eq!(r.args.req(0), &serde_json::json!(5));
        assert_eq!(r.version, v);
        let e = parse(&call("no.such", serde_json::json!([]))).unwrap_err();
        assert_eq!(e.code, METHOD_NOT_FOUND);
        assert_eq!(e.message, "unknown method \"no.such\"");
        assert!(parse(&call("blockchain.block.header", serde_json::json!([]))).is_err());
    }
}
