//! The peer table and its upkeep, following ElectrumX's `PeerManager`: peers come from our own
//! `REPORT_SERVICES`, the coin file's seeds, verified peers' `server.peers.subscribe` lists (two
//! new ones per list) and accepted `server.add_peer` calls; each is verified before it is listed
//! and re-verified on a schedule; failures back off exponentially and repeated ones forget the
//! peer. The table is saved in the store after every change, so it survives restarts.
//!
//! Differences from ElectrumX: `.onion` peers are kept without a proxy (never contacted, never
//! listed) instead of being ignored; the proxy is not auto-detected; with `PEER_ALLOW_PRIVATE`
//! private addresses are peers, each its own subnet bucket; there is no blacklist.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;
use tracing::{info, warn};

use super::client::{Conn, Dial, PeerError};
use super::peer::{Peer, Source};
use crate::coin::Coin;
use crate::config::{Host, Kind, PeerConfig, PeerDiscovery};
use crate::protocol::server_version;
use crate::protocol::version::{server_max, server_min};
use crate::store::Store;
use crate::types::is_private;
use crate::types::Height;

/// A peer whose tip is further than this from ours is on another chain or badly behind.
const MAX_TIP_HEIGHT_DIFF: u64 = 5;
/// The header compared is this far below the lower of the two tips, so short splits pass.
const MAX_CHAINSPLIT_LEN: u64 = 10;
/// New peers taken from one `server.peers.subscribe` reply.
const FROM_ONE_LIST: usize = 2;
/// Verifications running at once.
const MAX_IN_FLIGHT: usize = 16;
/// Script hashes of every coin we serve.
const HASH_FUNCTION: &str = "sha256";

/// The protocol versions we offer peers, as a client: everything we speak (as ElectrumX sends
/// its own range). What verification asks of a peer means the same at each of them.
fn client_protocols() -> [String; 2] {
    [server_min().to_string(), server_max().to_string()]
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

fn random_u64() -> u64 {
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
}

fn shuffle<T>(v: &mut [T]) {
    for i in (1..v.len()).rev() {
        v.swap(i, (random_u64() % (i as u64 + 1)) as usize);
    }
}

/// Counts by status, as ElectrumX's admin `getinfo` reports them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct PeerCounts {
    pub good: usize,
    pub stale: usize,
    pub never: usize,
    pub bad: usize,
}

struct State {
    peers: Vec<Peer>,
    in_flight: HashSet<String>,
    recent_adds: HashMap<String, Instant>,
    onion_permit_at: Instant,
}

pub(crate) struct PeerManager {
    config: PeerConfig,
    genesis: String,
    /// (ssl, tcp) for bare `s` / `t` in real names.
    default_ports: (u16, u16),
    seeds: Vec<String>,
    store: Arc<Store>,
    /// Our `server.features`, sent with `server.add_peer`.
    features: Value,
    /// The address outgoing clearnet connections come from: our listening IP, when `SERVICES`
    /// names one, so `server.add_peer`'s address check passes.
    local_ip: Option<IpAddr>,
    proxy_ip: Mutex<Option<IpAddr>>,
    state: Mutex<State>,
    wake: Notify,
    tls: tokio_rustls::TlsConnector,
}

impl PeerManager {
    pub(crate) fn new(config: PeerConfig, coin: &Coin, store: Arc<Store>, features: Value) -> Self {
        let local_ip = config
            .services
            .iter()
            .filter(|s| s.kind != Kind::Rpc)
            .find_map(|s| match s.host {
                Host::Ip(ip) => Some(ip),
                _ => None,
            });
        PeerManager {
            genesis: coin.genesis_hash.to_string(),
            default_ports: (coin.ssl_port, coin.tcp_port),
            seeds: coin.peers.clone(),
            store,
            features,
            local_ip,
            proxy_ip: Mutex::new(None),
            state: Mutex::new(State {
                peers: Vec::new(),
                in_flight: HashSet::new(),
                recent_adds: HashMap::new(),
                onion_permit_at: Instant::now(),
            }),
            wake: Notify::new(),
            tls: super::client::tls_connector(),
            config,
        }
    }

    pub(crate) fn on(&self) -> bool {
        self.config.discovery == PeerDiscovery::On
    }

    /// Ourselves, one peer per `REPORT_SERVICES` host, with our features.
    fn myselves(&self) -> Vec<Peer> {
        Peer::from_features(&self.features, Source::Myself)
    }

    /// Runs discovery until `stop` turns true. Does nothing unless `PEER_DISCOVERY=on`.
    pub(crate) async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        if !self.on() {
            info!("peer discovery is disabled");
            return;
        }
        info!(
            "peer discovery on; announce ourselves: {}; proxy: {:?}",
            self.config.announce, self.config.proxy
        );
        if let Some(addr) = self.proxy_addr().await {
            *self.proxy_ip.lock() = Some(addr.ip());
        }
        self.wait_listening().await;
        self.load_and_seed();
        let tick = (self.config.timings.wakeup / 10)
            .clamp(Duration::from_millis(50), Duration::from_secs(5));
        let mut tasks = JoinSet::new();
        loop {
            for peer in self.take_due(MAX_IN_FLIGHT.saturating_sub(tasks.len())) {
                let this = self.clone();
                tasks.spawn(async move { this.verify_and_apply(peer).await });
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(tick) => {}
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                _ = stop.changed() => break,
            }
        }
        tasks.abort_all();
        self.save();
    }

    /// Waits (a while at most) for our own service to accept connections, so the check of
    /// ourselves does not fail just for starting first.
    async fn wait_listening(&self) {
        let Some(addr) = self
            .config
            .services
            .iter()
            .filter(|s| matches!(s.kind, Kind::Tcp | Kind::Ssl))
            .flat_map(|s| s.bind_addrs())
            .next()
        else {
            return;
        };
        let addr = match addr.ip() {
            ip if ip.is_unspecified() && ip.is_ipv4() => {
                SocketAddr::from(([127, 0, 0, 1], addr.port()))
            }
            ip if ip.is_unspecified() => {
                SocketAddr::new(std::net::Ipv6Addr::LOCALHOST.into(), addr.port())
            }
            _ => addr,
        };
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn load_and_seed(&self) {
        let mut candidates = self.myselves();
        let defaults = self.default_ports;
        candidates.extend(
            self.seeds
                .iter()
                .filter_map(|name| Peer::from_real_name(name, defaults, Source::Coin)),
        );
        let stored: Vec<Peer> = match self.store.peer_table() {
            Ok(Some(bytes)) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                warn!("ignoring the stored peer table: {e}");
                Vec::new()
            }),
            Ok(None) => Vec::new(),
            Err(e) => {
                warn!("reading the stored peer table: {e}");
                Vec::new()
            }
        };
        let mut state = self.state.lock();
        let loaded = stored.len();
        for mut p in stored {
            p.wake = true;
            if !state.peers.iter().any(|q| q.matches(&p)) {
                state.peers.push(p);
            }
        }
        self.note(&mut state, candidates, None, false, "start-up");
        info!(
            "peer table: {} peers, {loaded} from the store",
            state.peers.len()
        );
    }

    /// Adds the candidates not already known (at most `limit`, chosen at random); with
    /// `check_ports`, a known peer seen with other ports is re-checked with those too.
    fn note(
        &self,
        state: &mut State,
        candidates: Vec<Peer>,
        limit: Option<usize>,
        check_ports: bool,
        from: &str,
    ) {
        let mut new: Vec<Peer> = Vec::new();
        for c in candidates {
            if !c.is_public(self.config.allow_private) {
                continue;
            }
            let mut known = false;
            for p in state.peers.iter_mut().filter(|p| p.matches(&c)) {
                known = true;
                if check_ports && p.check_ports(&c) {
                    info!("ports changed for peer {}", p.host);
                    p.wake = true;
                }
            }
            if !known && !new.iter().any(|n| n.matches(&c)) {
                new.push(c);
            }
        }
        shuffle(&mut new);
        new.truncate(limit.unwrap_or(usize::MAX));
        for mut p in new {
            info!("accepted new peer {} from {from}", p.host);
            p.wake = true;
            state.peers.push(p);
        }
        self.wake.notify_one();
    }

    fn contactable(&self, p: &Peer) -> bool {
        !(p.is_tor() || self.config.force_proxy) || self.config.proxy.is_some()
    }

    fn is_due(&self, p: &Peer, now: u64) -> bool {
        let t = &self.config.timings;
        let wait = if p.try_count == 0 {
            t.recheck()
        } else {
            t.retry_after(p.try_count)
        };
        p.wake || p.last_try == 0 || now >= p.last_try + ms(wait)
    }

    fn take_due(&self, room: usize) -> Vec<Peer> {
        let now = now_ms();
        let mut state = self.state.lock();
        let State {
            peers, in_flight, ..
        } = &mut *state;
        let mut out = Vec::new();
        for p in peers.iter_mut() {
            if out.len() >= room {
                break;
            }
            if in_flight.contains(&p.host) || !self.contactable(p) || !self.is_due(p, now) {
                continue;
            }
            p.wake = false;
            in_flight.insert(p.host.clone());
            out.push(p.clone());
        }
        out
    }

    async fn proxy_addr(&self) -> Option<SocketAddr> {
        let proxy = self.config.proxy.as_ref()?;
        match tokio::net::lookup_host((proxy.host.as_str(), proxy.port)).await {
            Ok(mut addrs) => addrs.next(),
            Err(e) => {
                warn!("resolving the proxy {}:{}: {e}", proxy.host, proxy.port);
                None
            }
        }
    }

    async fn verify_and_apply(self: Arc<Self>, mut peer: Peer) {
        peer.try_count += 1;
        peer.last_try = now_ms();
        let result = self.verify(&mut peer).await;
        self.apply(peer, result);
    }

    /// One verification attempt over each advertised port in turn, until one succeeds or a
    /// check fails. Returns the peers it lists.
    async fn verify(&self, peer: &mut Peer) -> Result<Vec<Peer>, PeerError> {
        let t = &self.config.timings;
        let proxied = peer.is_tor() || self.config.force_proxy;
        let proxy = if proxied {
            Some(
                self.proxy_addr()
                    .await
                    .ok_or_else(|| PeerError::Socks("the proxy does not resolve".into()))?,
            )
        } else {
            None
        };
        let order = peer.connection_order();
        peer.other_ports.clear();
        let mut last = PeerError::Malformed("no port to connect to".into());
        for (transport, port) in order {
            let host = peer.host.clone();
            let dial = Dial {
                host: &host,
                port,
                transport,
                proxy,
                local_ip: if proxied { None } else { self.local_ip },
                timeout: if peer.is_tor() {
                    t.tor_request_timeout
                } else {
                    t.request_timeout
                },
                tls: &self.tls,
            };
            match self.verify_over(&dial, peer).await {
                Ok(listed) => {
                    info!("peer {host} verified over {transport:?}");
                    return Ok(listed);
                }
                Err(e @ PeerError::Bad(_)) => return Err(e),
                Err(e) => {
                    info!("[{host}:{port} {transport:?}] {e}");
                    last = e;
                }
            }
        }
        Err(last)
    }

    async fn verify_over(&self, dial: &Dial<'_>, peer: &mut Peer) -> Result<Vec<Peer>, PeerError> {
        let mut conn = Conn::connect(dial).await?;
        if let Some(addr) = conn.remote.filter(|_| !peer.is_tor()) {
            peer.ip_addr = Some(addr.ip().to_canonical());
        }
        self.check_bucket(peer)?;
        let bad = |what: &str, v: &Value| PeerError::Bad(format!("bad {what} result: {v}"));

        let v = conn
            .request(
                "server.version",
                json!([server_version(), client_protocols()]),
            )
            .await?;
        match v.as_array().map(Vec::as_slice) {
            Some([Value::String(name), Value::String(_)]) => {
                peer.server_version = Some(name.clone())
            }
            _ => return Err(bad("server.version", &v)),
        }

        let f = conn.request("server.features", json!([])).await?;
        let hosts = f
            .get("hosts")
            .and_then(Value::as_object)
            .ok_or_else(|| bad("server.features", &f))?;
        if f.get("genesis_hash").and_then(Value::as_str) != Some(self.genesis.as_str()) {
            return Err(PeerError::Bad("incorrect genesis hash".into()));
        }
        let hash_function = f.get("hash_function").and_then(Value::as_str);
        if hash_function.is_some_and(|h| h != HASH_FUNCTION) {
            return Err(PeerError::Bad(format!(
                "unsupported hash function {hash_function:?}"
            )));
        }
        let Some(key) = hosts.keys().find(|h| h.eq_ignore_ascii_case(&peer.host)) else {
            let listed: Vec<&String> = hosts.keys().collect();
            return Err(PeerError::Bad(format!(
                "not listed in own hosts list {listed:?}"
            )));
        };
        let key = key.clone();
        peer.update_features(&key, &f);

        self.check_headers(&mut conn).await?;

        let list = conn.request("server.peers.subscribe", json!([])).await?;
        let listed = self.parse_peer_list(&list, &peer.host)?;

        if let Some(features) = self.features_to_register(peer, &listed) {
            info!("registering ourselves with {}", peer.host);
            if let Err(e) = conn.request("server.add_peer", json!([features])).await {
                info!("{}: server.add_peer failed: {e}", peer.host);
            }
        }
        Ok(listed)
    }

    /// At most one recently good peer per address (IPv6: per /64).
    fn check_bucket(&self, peer: &Peer) -> Result<(), PeerError> {
        if peer.is_tor() || peer.source == Source::Myself {
            return Ok(());
        }
        let bucket = peer.bucket_internal();
        let cutoff = now_ms().saturating_sub(ms(self.config.timings.stale));
        let state = self.state.lock();
        let crowded = state.peers.iter().any(|p| {
            p.host != peer.host
                && p.source != Source::Myself
                && p.last_good > cutoff
                && !p.bad
                && !p.is_tor()
                && p.bucket_internal() == bucket
        });
        if crowded {
            return Err(PeerError::Bad(format!(
                "too many peers already in bucket {bucket}"
            )));
        }
        Ok(())
    }

    /// The peer's tip must be near ours, and a header a little below both tips must be ours.
    async fn check_headers(&self, conn: &mut Conn) -> Result<(), PeerError> {
        let tip = conn
            .request("blockchain.headers.subscribe", json!([]))
            .await?;
        let theirs = tip
            .get("height")
            .and_then(Value::as_u64)
            .ok_or_else(|| PeerError::Bad(format!("invalid height in {tip}")))?;
        let ours = self
            .store
            .tip()
            .map(|t| u64::from(t.height.0))
            .ok_or_else(|| PeerError::Malformed("our index is empty".into()))?;
        if ours.abs_diff(theirs) > MAX_TIP_HEIGHT_DIFF {
            return Err(PeerError::Bad(format!(
                "bad height {theirs} (ours: {ours})"
            )));
        }
        let check = ours.min(theirs).saturating_sub(MAX_CHAINSPLIT_LEN);
        let our_header = self
            .store
            .header(Height(check as u32))
            .map_err(|e| PeerError::Malformed(format!("reading our header {check}: {e}")))?
            .map(hex::encode)
            .unwrap_or_default();
        let their_header = conn
            .request("blockchain.block.header", json!([check]))
            .await?;
        if their_header.as_str() != Some(our_header.as_str()) {
            return Err(PeerError::Bad(format!(
                "our header {our_header} and theirs {their_header} differ at height {check}"
            )));
        }
        Ok(())
    }

    /// `[[ip, host, ["v1.4", "s50002", …]], …]` into peers; anything else marks the peer bad.
    fn parse_peer_list(&self, list: &Value, from: &str) -> Result<Vec<Peer>, PeerError> {
        let bad = || PeerError::Bad("bad server.peers.subscribe response".into());
        let items = list.as_array().ok_or_else(bad)?;
        items
            .iter()
            .map(|item| {
                let host = item.get(1).and_then(Value::as_str).ok_or_else(bad)?;
                let details = item.get(2).and_then(Value::as_array).ok_or_else(bad)?;
                let mut name = host.to_string();
                for d in details {
                    name.push(' ');
                    name.push_str(d.as_str().ok_or_else(bad)?);
                }
                Peer::from_real_name(&name, self.default_ports, Source::PeerList).ok_or_else(bad)
            })
            .collect::<Result<Vec<_>, _>>()
            .inspect_err(|_| warn!("{from} sent a malformed peer list"))
    }

    /// Our features, when we should announce ourselves to `peer` (which lists `listed`).
    fn features_to_register(&self, peer: &Peer, listed: &[Peer]) -> Option<Value> {
        if !self.config.announce || peer.source == Source::Myself {
            return None;
        }
        let selves = self.myselves();
        if selves.iter().any(|m| m.matches(peer)) {
            return None;
        }
        let me = selves.into_iter().find(|m| !m.is_tor())?;
        if !me.is_public(self.config.allow_private) {
            return None;
        }
        let known = listed
            .iter()
            .filter(|p| p.matches(&me))
            .any(|p| p.tcp_port == me.tcp_port && p.ssl_port == me.ssl_port);
        (!known).then(|| self.features.clone())
    }

    fn apply(&self, verified: Peer, result: Result<Vec<Peer>, PeerError>) {
        let now = now_ms();
        let mut state = self.state.lock();
        state.in_flight.remove(&verified.host);
        let Some(i) = state.peers.iter().position(|p| p.host == verified.host) else {
            return;
        };
        let other_ports = std::mem::take(&mut state.peers[i].other_ports);
        let wake = state.peers[i].wake;
        let source = state.peers[i].source;
        state.peers[i] = Peer {
            other_ports,
            wake,
            ..verified
        };
        match result {
            Ok(listed) => {
                let p = &mut state.peers[i];
                p.try_count = 0;
                p.last_good = now;
                p.source = if source == Source::Myself {
                    source
                } else {
                    Source::Verified
                };
                // One server reached by name and by address: keep the name.
                let (host, ip) = (p.host.clone(), p.ip_addr);
                state
                    .peers
                    .retain(|q| q.host == host || ip.is_none() || q.ip() != ip);
                self.note(&mut state, listed, Some(FROM_ONE_LIST), false, &host);
            }
            Err(e) => {
                let p = &mut state.peers[i];
                if let PeerError::Bad(why) = &e {
                    warn!("peer {} marked bad: {why}", p.host);
                    p.bad = true;
                }
                let limit = if p.last_good > 0 && !p.bad { 10 } else { 3 };
                if p.try_count >= limit {
                    let what = if p.bad { "bad" } else { "unreachable" };
                    info!("forgetting {what} peer {} ({e})", p.host);
                    state.peers.remove(i);
                }
            }
        }
        drop(state);
        self.save();
    }

    fn save(&self) {
        let table: Vec<Peer> = self
            .state
            .lock()
            .peers
            .iter()
            .filter(|p| p.source != Source::Myself)
            .cloned()
            .collect();
        let result = serde_json::to_vec(&table)
            .map_err(|e| e.to_string())
            .and_then(|bytes| self.store.put_peer_table(&bytes).map_err(|e| e.to_string()));
        if let Err(e) = result {
            warn!("saving the peer table: {e}");
        }
    }

    /// `server.add_peer(features)` from `source`: accepted only when the first host resolves
    /// to the caller's address, at most once per bucket per pause; onion hosts at most one
    /// per random interval. Accepting schedules a verification.
    pub(crate) async fn on_add_peer(&self, features: &Value, source: IpAddr) -> bool {
        if !self.on() {
            return false;
        }
        let Some(peer) = Peer::from_features(features, Source::AddPeer)
            .into_iter()
            .next()
        else {
            info!("ignored add_peer request: no peers given");
            return false;
        };
        let bucket = if peer.ip().is_some() {
            "ip_addr".to_string()
        } else {
            let labels: Vec<&str> = peer.host.rsplit('.').take(2).collect();
            labels.into_iter().rev().collect::<Vec<_>>().join(".")
        };
        let now = Instant::now();
        let pause = self.config.timings.add_pause;
        {
            let mut state = self.state.lock();
            let last = state.recent_adds.insert(bucket, now);
            if last.is_some_and(|t| now.duration_since(t) <= pause) {
                return false;
            }
        }
        let source = source.to_canonical();
        let (permit, reason) = if peer.is_tor() {
            let mut state = self.state.lock();
            let permit = now >= state.onion_permit_at;
            if permit {
                let span = ms(self.config.timings.onion_pause).max(1);
                state.onion_permit_at = now + Duration::from_millis(random_u64() % span);
            }
            (permit, "rate limiting")
        } else {
            match tokio::net::lookup_host((peer.host.as_str(), 80)).await {
                Ok(addrs) => (
                    addrs.map(|a| a.ip().to_canonical()).any(|ip| ip == source),
                    "source-destination mismatch",
                ),
                Err(_) => (false, "address resolution failure"),
            }
        };
        if permit {
            info!("accepted add_peer request from {source} for {}", peer.host);
            let mut state = self.state.lock();
            self.note(&mut state, vec![peer], None, true, "add_peer");
            drop(state);
            self.save();
        } else {
            warn!(
                "rejected add_peer request from {source} for {} ({reason})",
                peer.host
            );
        }
        permit
    }

    /// `server.peers.subscribe`: ourselves (when our own check passed) and peers verified
    /// within the stale window, at most two per IPv4 /16 or IPv6 /56, and a share of onion
    /// peers (up to 50 for a client that comes through our Tor proxy).
    pub(crate) fn on_peers_subscribe(&self, client: IpAddr) -> Vec<Value> {
        if !self.on() {
            return Vec::new();
        }
        let cutoff = now_ms().saturating_sub(ms(self.config.timings.stale));
        let allow_private = self.config.allow_private;
        let state = self.state.lock();
        let recent = state
            .peers
            .iter()
            .filter(|p| p.last_good > cutoff && !p.bad);
        let mut chosen: Vec<&Peer> = Vec::new();
        let mut onions: Vec<&Peer> = Vec::new();
        let mut buckets: HashMap<String, Vec<&Peer>> = HashMap::new();
        for p in recent {
            if p.source == Source::Myself {
                chosen.push(p);
            } else if !p.is_public(allow_private) {
                continue;
            } else if p.is_tor() {
                onions.push(p);
            } else {
                // Private networks are not the internet: each address is its own bucket.
                let key = match p.ip_addr {
                    Some(ip) if allow_private && is_private(&ip) => ip.to_string(),
                    _ => p.bucket_external(),
                };
                buckets.entry(key).or_default().push(p);
            }
        }
        for mut group in buckets.into_values() {
            shuffle(&mut group);
            chosen.extend(group.into_iter().take(2));
        }
        shuffle(&mut onions);
        let is_tor_client = *self.proxy_ip.lock() == Some(client.to_canonical());
        let max_onion = if is_tor_client {
            50
        } else {
            (chosen.len() / 4).max(10)
        };
        chosen.extend(onions.into_iter().take(max_onion));
        chosen.into_iter().map(Peer::to_tuple).collect()
    }

    /// Peers by status, for metrics.
    pub(crate) fn counts(&self) -> PeerCounts {
        let cutoff = now_ms().saturating_sub(ms(self.config.timings.stale));
        let mut c = PeerCounts::default();
        for p in &self.state.lock().peers {
            match p {
                p if p.bad => c.bad += 1,
                p if p.last_good > cutoff => c.good += 1,
                p if p.last_good > 0 => c.stale += 1,
                _ => c.never += 1,
            }
        }
        c
    }

    /// The admin RPC's `peers`: ElectrumX's fields, bad peers last, most recently good first.
    pub(crate) fn admin_view(&self) -> Vec<Value> {
        let cutoff = now_ms().saturating_sub(ms(self.config.timings.stale));
        let mut peers = self.peers();
        peers.sort_by_key(|p| (p.bad, std::cmp::Reverse(p.last_good)));
        let secs = |t: u64| t as f64 / 1000.0;
        peers
            .iter()
            .map(|p| {
                let status = match p {
                    p if p.bad => "bad",
                    p if p.last_good > cutoff => "good",
                    p if p.last_good > 0 => "stale",
                    _ => "never",
                };
                json!({
                    "host": p.host,
                    "features": {
                        "hosts": {p.host.clone(): {"tcp_port": p.tcp_port, "ssl_port": p.ssl_port}},
                        "pruning": p.pruning,
                        "server_version": p.server_version,
                        "protocol_max": p.protocol_max,
                        "tcp_port": p.tcp_port,
                        "ssl_port": p.ssl_port,
                    },
                    "source": p.source.name(),
                    "ip_addr": p.ip_addr.map(|ip| ip.to_string()),
                    "last_good": secs(p.last_good),
                    "last_try": secs(p.last_try),
                    "try_count": p.try_count,
                    "status": status,
                })
            })
            .collect()
    }

    /// The admin RPC's `add_peer REAL_NAME` (e.g. `host s50002 t50001`): checked like any
    /// other candidate, and re-checked with new ports when the host is known.
    pub(crate) fn admin_add(&self, real_name: &str) -> bool {
        let Some(peer) = Peer::from_real_name(real_name, self.default_ports, Source::Admin) else {
            return false;
        };
        let mut state = self.state.lock();
        self.note(&mut state, vec![peer], None, true, "RPC");
        drop(state);
        self.save();
        true
    }

    /// A copy of the table, for tests and diagnostics.
    pub(crate) fn peers(&self) -> Vec<Peer> {
        self.state.lock().peers.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coin::CoinRegistry;
    use crate::config::Env;
    use crate::config::ServerSettings;
    use crate::store::Mode;
    use std::collections::HashMap;

    fn manager(pairs: &[(&'static str, &'static str)]) -> (PeerManager, tempfile::TempDir) {
        let env: HashMap<&str, &str> = pairs.iter().copied().collect();
        let settings = ServerSettings::from_env(&env).unwrap();
        let config = PeerConfig::from_env(&env as &dyn Env, &settings).unwrap();
        let coin = CoinRegistry::embedded()
            .unwrap()
            .lookup("Litecoin", "regtest")
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path(), &coin, 16, Mode::Follow).unwrap());
        let features = json!({"hosts": {}, "genesis_hash": coin.genesis_hash.to_string()});
        (PeerManager::new(config, &coin, store, features), dir)
    }

    fn features(host: &str) -> Value {
        json!({"hosts": {host: {"tcp_port": 50001}}, "protocol_max": "1.4.2"})
    }

    fn localhost() -> IpAddr {
        "127.0.0.1".parse().unwrap()
    }

    #[tokio::test]
    async fn add_peer_needs_the_callers_address_and_is_rate_limited() {
        let (m, _dir) = manager(&[("PEER_ALLOW_PRIVATE", "1")]);
        assert!(!m.on_add_peer(&json!({"hosts": []}), localhost()).await);
        assert!(
            !m.on_add_peer(&features("127.0.0.9"), localhost()).await,
            "the host is not the caller"
        );
        let (m, _dir) = manager(&[("PEER_ALLOW_PRIVATE", "1")]);
        assert!(m.on_add_peer(&features("127.0.0.1"), localhost()).await);
        assert_eq!(m.peers()[0].host, "127.0.0.1");
        assert_eq!(m.peers()[0].tcp_port, Some(50001));
        assert!(
            !m.on_add_peer(&features("127.0.0.1"), localhost()).await,
            "one per bucket per pause"
        );
        let (m, _dir) = manager(&[("PEER_DISCOVERY", "off")]);
        assert!(!m.on_add_peer(&features("127.0.0.1"), localhost()).await);
        // Without PEER_ALLOW_PRIVATE the request is accepted but a loopback peer is not kept,
        // as in ElectrumX.
        let (m, _dir) = manager(&[]);
        assert!(m.on_add_peer(&features("127.0.0.1"), localhost()).await);
        assert!(m.peers().is_empty());
    }

    #[test]
    fn subscribe_lists_recent_good_peers_two_per_subnet() {
        let (m, _dir) = manager(&[]);
        let now = now_ms();
        let peer = |host: &str, last_good: u64, bad: bool| {
            let mut p = Peer::new(host, Source::Verified);
            p.ip_addr = p.ip();
            p.tcp_port = Some(50001);
            p.last_good = last_good;
            p.bad = bad;
            p
        };
        m.state.lock().peers = vec![
            peer("1.2.3.4", now, false),
            peer("1.2.3.5", now, false),
            peer("1.2.3.6", now, false),
            peer("5.6.7.8", now, false),
            peer("9.9.9.9", now, true),
            peer("8.8.8.8", now - ms(m.config.timings.stale) - 1, false),
            peer("7.7.7.7", 0, false),
            peer("xyzxyzxyzxyzxyzx.onion", now, false),
        ];
        let list = m.on_peers_subscribe(localhost());
        let hosts: Vec<&str> = list.iter().map(|p| p[1].as_str().unwrap()).collect();
        assert_eq!(hosts.len(), 4, "{hosts:?}");
        assert_eq!(
            hosts.iter().filter(|h| h.starts_with("1.2.3.")).count(),
            2,
            "at most two per /16"
        );
        assert!(hosts.contains(&"5.6.7.8") && hosts.contains(&"xyzxyzxyzxyzxyzx.onion"));
        assert_eq!(
            m.counts(),
            PeerCounts {
                good: 5,
                stale: 1,
                never: 1,
                bad: 1
            }
        );
        let (off, _dir) = manager(&[("PEER_DISCOVERY", "self")]);
        off.state.lock().peers = vec![peer("5.6.7.8", now, false)];
        assert!(off.on_peers_subscribe(localhost()).is_empty());
    }

    #[test]
    fn admin_view_and_add() {
        let (m, _dir) = manager(&[]);
        assert!(m.admin_add("electrum.example.com s t50009"));
        assert!(!m.admin_add(" "));
        let view = m.admin_view();
        assert_eq!(view.len(), 1);
        assert_eq!(view[0]["host"], "electrum.example.com");
        assert_eq!(view[0]["source"], "RPC");
        assert_eq!(view[0]["status"], "never");
        assert_eq!(view[0]["features"]["ssl_port"], 51002, "the coin's default");
        assert_eq!(view[0]["features"]["tcp_port"], 50009);
        assert!(
            m.admin_add("electrum.example.com t50010"),
            "known: ports remembered"
        );
        assert_eq!(m.peers().len(), 1);
        assert!(m.peers()[0]
            .other_ports
            .contains(&(super::super::peer::Transport::Tcp, 50010)));
    }

    #[test]
    fn the_table_survives_a_restart() {
        let (m, dir) = manager(&[]);
        let mut p = Peer::new("electrum.example.com", Source::Verified);
        p.last_good = 1234;
        m.state.lock().peers = vec![p.clone(), Peer::new("127.0.0.1", Source::Myself)];
        m.save();
        drop(m);
        let coin = CoinRegistry::embedded()
            .unwrap()
            .lookup("Litecoin", "regtest")
            .unwrap();
        let store = Store::open(dir.path(), &coin, 16, Mode::Follow).unwrap();
        let bytes = store.peer_table().unwrap().unwrap();
        let back: Vec<Peer> = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            back.len(),
            1,
            "ourselves come from the environment, not the table"
        );
        assert_eq!(
            (back[0].host.as_str(), back[0].last_good),
            (p.host.as_str(), 1234)
        );
    }
}
