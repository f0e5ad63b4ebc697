//! The daemon's ZMQ notifications, where it publishes them: a wake-up the moment a block
//! connects (`hashblock`, `sequence` C/D) or a transaction enters or leaves the mempool
//! (`sequence` A/R, or `hashtx` where `sequence` is missing: Komodo). Each message is the
//! daemon's multipart `[topic, body, 4-byte little-endian sequence]`.
//!
//! ZMQ is fire-and-forget: a message may be dropped (high-water mark, reconnect, daemon
//! restart). So it only rings the block and mempool followers, which read the chain and the
//! mempool over RPC themselves; a gap in a topic's sequence rings both (a full look); and their
//! slow polls stay as the safety net.
//!
//! The crate is `zeromq`, pure Rust on tokio: no libzmq to build or ship in the image, and a
//! SUB socket that reconnects by itself. The `zmq` bindings would add a C library to every build
//! for a socket that only ever subscribes on a local network.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tracing::{debug, info, warn};
use zeromq::{Socket, SocketRecv, SubSocket};

use super::{Daemon, DaemonError};
use crate::config::ZmqEndpoints;

/// What a message asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Wake {
    Blocks,
    Mempool,
}

fn classify(topic: &[u8], body: &[u8]) -> Option<Wake> {
    match topic {
        b"hashblock" | b"rawblock" => Some(Wake::Blocks),
        b"hashtx" | b"rawtx" => Some(Wake::Mempool),
        // 32-byte hash, then C (connected) / D (disconnected) / A (added) / R (removed).
        b"sequence" => match body.get(32)? {
            b'C' | b'D' => Some(Wake::Blocks),
            b'A' | b'R' => Some(Wake::Mempool),
            _ => None,
        },
        _ => None,
    }
}

/// The last sequence number of each topic; a jump means messages were lost.
#[derive(Default)]
struct Sequences(HashMap<Vec<u8>, u32>);

impl Sequences {
    fn gap(&mut self, topic: &[u8], seq: u32) -> bool {
        match self.0.insert(topic.to_vec(), seq) {
            Some(prev) => seq != prev.wrapping_add(1),
            None => false,
        }
    }
}

/// The topics to subscribe to and where, from `getzmqnotifications`: hashblock and sequence,
/// hashtx only where no sequence is published. Wildcard hosts (`0.0.0.0`, `*`) are the daemon's.
fn plan(notifications: &[(String, String)], daemon_host: &str) -> Vec<(String, Vec<&'static str>)> {
    let has = |t: &str| notifications.iter().any(|(ty, _)| ty == t);
    let mut wanted: Vec<&'static str> = vec!["hashblock", "sequence"];
    if !has("pubsequence") {
        wanted.push("hashtx");
    }
    let mut by_address: HashMap<String, BTreeSet<&'static str>> = HashMap::new();
    for (ty, address) in notifications {
        let Some(topic) = wanted.iter().find(|w| ty.strip_prefix("pub") == Some(**w)) else {
            continue;
        };
        let address = address
            .replace("//0.0.0.0:", &format!("//{daemon_host}:"))
            .replace("//*:", &format!("//{daemon_host}:"));
        by_address.entry(address).or_default().insert(topic);
    }
    let mut out: Vec<(String, Vec<&'static str>)> = by_address
        .into_iter()
        .map(|(a, t)| (a, t.into_iter().collect()))
        .collect();
    out.sort();
    out
}

/// The daemon's endpoints, or none (no ZMQ: the method is missing or lists nothing).
async fn discover(daemon: &Daemon) -> Result<Vec<(String, Vec<&'static str>)>, DaemonError> {
    let reply: serde_json::Value = match daemon.call("getzmqnotifications", vec![]).await {
        Ok(v) => v,
        Err(DaemonError::Rpc(_)) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let notifications: Vec<(String, String)> = reply
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|n| Some((n["type"].as_str()?.into(), n["address"].as_str()?.into())))
                .collect()
        })
        .unwrap_or_default();
    let host = url::Url::parse(&daemon.url())
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .unwrap_or_else(|| "127.0.0.1".into());
    Ok(plan(&notifications, &host))
}

/// Subscribes to the daemon's ZMQ notifications until `stop` turns true, ringing `blocks` and
/// `mempool` (with `notify_one`) as messages come; returns at once when there are none.
pub async fn follow_zmq(
    daemon: Daemon,
    endpoints: ZmqEndpoints,
    blocks: Arc<Notify>,
    mempool: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
) {
    let plan = match endpoints {
        ZmqEndpoints::Off => return,
        ZmqEndpoints::Fixed(list) => list
            .into_iter()
            .map(|e| (e, vec!["hashblock", "sequence", "hashtx"]))
            .collect(),
        ZmqEndpoints::Discover => {
            let found = tokio::select! {
                r = discover(&daemon) => r,
                _ = stop.changed() => return,
            };
            match found {
                Ok(p) => p,
                Err(e) => {
                    warn!("ZMQ: cannot ask the daemon for its notifications: {e}");
                    return;
                }
            }
        }
    };
    if plan.is_empty() {
        debug!("the daemon publishes no ZMQ notifications");
        return;
    }
    let mut socket = SubSocket::new();
    let mut topics: BTreeSet<&'static str> = BTreeSet::new();
    for (address, wanted) in &plan {
        if let Err(e) = socket.connect(address).await {
            warn!("ZMQ: cannot connect to {address}: {e}; relying on polls");
            return;
        }
        topics.extend(wanted.iter().copied());
        info!("ZMQ: subscribed to {} at {address}", wanted.join(", "));
    }
    for t in &topics {
        if let Err(e) = socket.subscribe(t).await {
            warn!("ZMQ: cannot subscribe to {t}: {e}; relying on polls");
            return;
        }
    }
    let mut sequences = Sequences::default();
    let mut failing = false;
    loop {
        let msg = tokio::select! {
            m = socket.recv() => m,
            _ = stop.changed() => return,
        };
        let msg = match msg {
            Ok(m) => {
                failing = false;
                m
            }
            Err(e) => {
                if !failing {
                    warn!("ZMQ: {e}; reconnecting (polls cover the gap)");
                    failing = true;
                }
                // Whatever was lost meanwhile: look at both.
                blocks.notify_one();
                mempool.notify_one();
                tokio::time::sleep(Duration::from_millis(250)).await;
                continue;
            }
        };
        let frames = msg.into_vec();
        let (Some(topic), Some(body)) = (frames.first(), frames.get(1)) else {
            continue;
        };
        let seq = frames
            .get(2)
            .and_then(|s| <[u8; 4]>::try_from(&s[..]).ok())
            .map(u32::from_le_bytes);
        if seq.is_some_and(|s| sequences.gap(topic, s)) {
            debug!(
                "ZMQ: {} messages lost: a full look",
                String::from_utf8_lossy(topic)
            );
            blocks.notify_one();
            mempool.notify_one();
            continue;
        }
        match classify(topic, body) {
            Some(Wake::Blocks) => blocks.notify_one(),
            Some(Wake::Mempool) => mempool.notify_one(),
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DaemonUrl;
    use crate::metrics::Metrics;
    use zeromq::{PubSocket, SocketSend, ZmqMessage};

    #[test]
    fn messages_wake_the_right_follower() {
        let hash = [7u8; 32];
        let seq = |label: u8| [&hash[..], &[label], &5u64.to_le_bytes()].concat();
        assert_eq!(classify(b"hashblock", &hash), Some(Wake::Blocks));
        assert_eq!(classify(b"hashtx", &hash), Some(Wake::Mempool));
        assert_eq!(classify(b"sequence", &seq(b'C')[..33]), Some(Wake::Blocks));
        assert_eq!(classify(b"sequence", &seq(b'D')[..33]), Some(Wake::Blocks));
        assert_eq!(classify(b"sequence", &seq(b'A')), Some(Wake::Mempool));
        assert_eq!(classify(b"sequence", &seq(b'R')), Some(Wake::Mempool));
        assert_eq!(classify(b"sequence", &hash), None);
        assert_eq!(classify(b"other", &hash), None);

        let mut s = Sequences::default();
        assert!(!s.gap(b"hashblock", 7), "the first message of a topic");
        assert!(!s.gap(b"hashblock", 8));
        assert!(!s.gap(b"sequence", 0), "topics count apart");
        assert!(s.gap(b"hashblock", 10));
        assert!(!s.gap(b"hashblock", 11));
        let mut w = Sequences::default();
        assert!(!w.gap(b"hashtx", u32::MAX));
        assert!(!w.gap(b"hashtx", 0), "the counter wraps");
    }

    #[test]
    fn discovery_subscribes_where_the_daemon_publishes() {
        let n = |t: &str, a: &str| (t.to_string(), a.to_string());
        let core = [
            n("pubhashblock", "tcp://0.0.0.0:28332"),
            n("pubsequence", "tcp://0.0.0.0:28332"),
            n("pubhashtx", "tcp://127.0.0.1:28333"),
            n("pubrawblock", "tcp://127.0.0.1:28334"),
        ];
        assert_eq!(
            plan(&core, "10.0.0.2"),
            vec![(
                "tcp://10.0.0.2:28332".to_string(),
                vec!["hashblock", "sequence"]
            )]
        );
        // Komodo publishes no sequence: hashtx instead.
        let komodo = [
            n("pubhashblock", "tcp://127.0.0.1:30000"),
            n("pubhashtx", "tcp://127.0.0.1:30000"),
        ];
        assert_eq!(
            plan(&komodo, "x"),
            vec![(
                "tcp://127.0.0.1:30000".to_string(),
                vec!["hashblock", "hashtx"]
            )]
        );
        assert!(plan(&[], "x").is_empty());
    }

    fn message(topic: &str, body: Vec<u8>, seq: u32) -> ZmqMessage {
        let mut m = ZmqMessage::from(topic.to_string());
        m.push_back(body.into());
        m.push_back(seq.to_le_bytes().to_vec().into());
        m
    }

    const PATIENCE: Duration = Duration::from_secs(20);

    /// A publisher speaking the daemon's wire format on a real ZMQ socket: a block rings the
    /// block follower, a mempool addition the mempool follower, and a lost message both.
    #[tokio::test]
    async fn a_test_publisher_drives_both_followers_and_a_gap_rings_both() {
        let mut publisher = PubSocket::new();
        let endpoint = publisher.bind("tcp://127.0.0.1:0").await.unwrap();
        let url = DaemonUrl::parse("http://u:p@127.0.0.1:1/", 1, false).unwrap();
        let daemon = Daemon::new(vec![url], None, Metrics::new()).unwrap();
        let (blocks, mempool) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
        let (stop_tx, stop) = watch::channel(false);
        let task = tokio::spawn(follow_zmq(
            daemon,
            ZmqEndpoints::Fixed(vec![endpoint.to_string()]),
            blocks.clone(),
            mempool.clone(),
            stop,
        ));
        // A PUB socket drops what it sends before the subscription reaches it: publish blocks,
        // in sequence, until one is heard.
        let mut block_seq = 0u32;
        let heard = tokio::time::timeout(PATIENCE, async {
            loop {
                publisher
                    .send(message("hashblock", vec![1; 32], block_seq))
                    .await
                    .unwrap();
                block_seq += 1;
                if tokio::time::timeout(Duration::from_millis(100), blocks.notified())
                    .await
                    .is_ok()
                {
                    return;
                }
            }
        })
        .await;
        assert!(heard.is_ok(), "a hashblock rings the block follower");

        let added = [&[2u8; 32][..], b"A", &9u64.to_le_bytes()].concat();
        publisher.send(message("sequence", added, 0)).await.unwrap();
        tokio::time::timeout(PATIENCE, mempool.notified())
            .await
            .expect("a mempool addition rings the mempool follower");

        // Two hashblock messages lost: the next one rings the mempool follower too.
        publisher
            .send(message("hashblock", vec![3; 32], block_seq + 2))
            .await
            .unwrap();
        tokio::time::timeout(PATIENCE, mempool.notified())
            .await
            .expect("a gap asks for a full look");
        tokio::time::timeout(PATIENCE, blocks.notified())
            .await
            .expect("at the blocks too");

        stop_tx.send(true).unwrap();
        tokio::time::timeout(PATIENCE, task)
            .await
            .expect("stops when told")
            .unwrap();
    }
}
