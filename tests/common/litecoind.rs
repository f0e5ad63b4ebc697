//! A real `litecoind -regtest -txindex=1` owned by one test (or by the benchmarks' chain
//! builder, on a datadir it keeps): loopback-only ports,
//! two wallets (`main` for everything, `mweb` for MWEB peg-ins/peg-outs), killed on drop.

use std::collections::HashSet;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::process::Proc;
use super::rpc::{RpcClient, RpcError};

pub const RPC_USER: &str = "sextant";
pub const RPC_PASS: &str = "sextant-regtest";
/// The wallet every helper uses, unless it says otherwise.
pub const MAIN_WALLET: &str = "main";
/// A second wallet that holds the MWEB coins, so that the main wallet never selects MWEB inputs
/// (a main-wallet payment with MWEB inputs would turn into a peg-out, whose transparent output
/// appears in the block's HogEx instead of the transaction itself).
pub const MWEB_WALLET: &str = "mweb";

/// How long to wait for the daemon to answer RPC after (re)start.
const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// Options for [`Litecoind::start_with`].
#[derive(Clone, Debug)]
pub struct LitecoindConfig {
    /// The binary; default `$LITECOIND` or `litecoind` on `PATH`.
    pub binary: PathBuf,
    /// Extra command-line arguments, appended after the harness's own (a later value of the
    /// same option wins).
    pub extra_args: Vec<String>,
    /// A datadir to keep (created if missing; the daemon is stopped cleanly on drop, so its
    /// chain survives); `None`: a fresh temporary one, killed and deleted on drop.
    pub datadir: Option<PathBuf>,
    /// Create and load the `main` and `mweb` wallets the chain helpers use.
    pub wallets: bool,
}

impl Default for LitecoindConfig {
    fn default() -> Self {
        LitecoindConfig {
            binary: std::env::var_os("LITECOIND")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("litecoind")),
            extra_args: Vec::new(),
            datadir: None,
            wallets: true,
        }
    }
}

/// Where a daemon keeps its data: a temporary directory of its own, or one it was given.
enum Datadir {
    Temporary(tempfile::TempDir),
    Kept(PathBuf),
}

impl Datadir {
    fn path(&self) -> &Path {
        match self {
            Datadir::Temporary(t) => t.path(),
            Datadir::Kept(p) => p,
        }
    }
}

/// Mutable bookkeeping shared by the chain helpers.
#[derive(Default, Debug)]
pub(crate) struct ChainState {
    /// The main wallet's address that `mine()` pays coinbases to.
    pub miner_address: String,
    /// Txids of MWEB peg-ins made by the harness (the first one activates MWEB at height 432).
    pub pegins: Vec<String>,
    /// Counter for unique labels/amounts.
    pub counter: u64,
}

pub struct Litecoind {
    config: LitecoindConfig,
    datadir: Datadir,
    rpc_port: u16,
    p2p_port: u16,
    process: Mutex<Option<Proc>>,
    node: RpcClient,
    main: RpcClient,
    mweb: RpcClient,
    pub(crate) state: Mutex<ChainState>,
}

impl Litecoind {
    /// Start a fresh regtest daemon with an empty chain and the two wallets loaded.
    /// Panics (telling to `apt-get install litecoind`) when the binary is missing.
    pub fn start() -> Litecoind {
        Self::start_with(LitecoindConfig::default())
    }

    pub fn start_with(config: LitecoindConfig) -> Litecoind {
        let mut last_err = String::new();
        for _attempt in 0..4 {
            let datadir = match &config.datadir {
                Some(p) => {
                    std::fs::create_dir_all(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
                    Datadir::Kept(p.clone())
                }
                None => Datadir::Temporary(
                    tempfile::Builder::new()
                        .prefix("sextant-litecoind-")
                        .tempdir()
                        .expect("create temp datadir"),
                ),
            };
            let rpc_port = free_port();
            let p2p_port = free_port();
            let addr: SocketAddr = ([127, 0, 0, 1], rpc_port).into();
            let d = Litecoind {
                node: RpcClient::new(addr, "/", RPC_USER, RPC_PASS),
                main: RpcClient::new(addr, &format!("/wallet/{MAIN_WALLET}"), RPC_USER, RPC_PASS),
                mweb: RpcClient::new(addr, &format!("/wallet/{MWEB_WALLET}"), RPC_USER, RPC_PASS),
                config: config.clone(),
                datadir,
                rpc_port,
                p2p_port,
                process: Mutex::new(None),
                state: Mutex::new(ChainState::default()),
            };
            d.spawn();
            match d.wait_ready() {
                Ok(()) => {
                    if d.config.wallets {
                        d.create_wallets();
                    }
                    return d;
                }
                Err(e) => {
                    // Most likely a port race with another process: try again with new ports.
                    last_err = e;
                    d.kill();
                }
            }
        }
        panic!("litecoind did not start after 4 attempts; last error:\n{last_err}");
    }

    /// A client of the node's own RPC (not a wallet's), on its own connection.
    pub fn client(&self) -> RpcClient {
        self.node.clone()
    }

    /// `http://user:pass@127.0.0.1:PORT` — what `DAEMON_URL` takes.
    pub fn rpc_url(&self) -> String {
        format!("http://{RPC_USER}:{RPC_PASS}@127.0.0.1:{}", self.rpc_port)
    }

    pub fn rpc_port(&self) -> u16 {
        self.rpc_port
    }

    pub fn p2p_port(&self) -> u16 {
        self.p2p_port
    }

    pub fn rpc_addr(&self) -> SocketAddr {
        ([127, 0, 0, 1], self.rpc_port).into()
    }

    pub fn datadir(&self) -> &Path {
        self.datadir.path()
    }

    /// Call `method` on the main wallet's endpoint (node-level methods work there too).
    pub fn rpc(&self, method: &str, params: Value) -> Result<Value, RpcError> {
        self.main.call(method, params)
    }

    /// Like [`rpc`](Self::rpc) but panics with the method, params and error on failure.
    pub fn call(&self, method: &str, params: Value) -> Value {
        match self.main.call(method, params.clone()) {
            Ok(v) => v,
            Err(e) => panic!("litecoind {method} {params} failed: {e}"),
        }
    }

    /// Call on the node endpoint (`/`), not a wallet endpoint.
    pub fn node_rpc(&self, method: &str, params: Value) -> Result<Value, RpcError> {
        self.node.call(method, params)
    }

    /// Call on a named wallet's endpoint (`main` or `mweb`, or one the test created).
    pub fn wallet_rpc(&self, wallet: &str, method: &str, params: Value) -> Result<Value, RpcError> {
        match wallet {
            MAIN_WALLET => self.main.call(method, params),
            MWEB_WALLET => self.mweb.call(method, params),
            other => RpcClient::new(
                self.rpc_addr(),
                &format!("/wallet/{other}"),
                RPC_USER,
                RPC_PASS,
            )
            .call(method, params),
        }
    }

    /// A JSON-RPC batch on the node endpoint; one result per call, in order.
    pub fn rpc_batch(
        &self,
        calls: &[(&str, Value)],
    ) -> Result<Vec<Result<Value, RpcError>>, RpcError> {
        self.node.batch(calls)
    }

    /// Is the daemon process alive?
    pub fn is_running(&self) -> bool {
        let mut g = self.process_guard();
        match g.as_mut() {
            Some(p) => matches!(p.child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// SIGKILL the daemon (a crash, for outage tests) and reap it. Idempotent. Blocks mined since
    /// the last flush may be lost on restart (call [`flush`](Self::flush) first to keep them);
    /// the mempool is lost (the wallet resubmits its own txs when it loads).
    pub fn kill(&self) {
        // Dropping the process kills and reaps it.
        drop(self.process_guard().take());
    }

    /// Graceful shutdown through the `stop` RPC; waits for the process to exit (SIGKILL after 60 s).
    pub fn stop(&self) {
        let Some(mut p) = self.process_guard().take() else {
            return;
        };
        let _ = self.node.call("stop", json!([]));
        let deadline = Instant::now() + Duration::from_secs(60);
        // Past the deadline, dropping `p` kills it.
        while Instant::now() < deadline {
            if !matches!(p.child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Start the daemon again on the same datadir and ports (after `stop()` or `kill()`), wait
    /// until RPC answers, the mempool is loaded and both wallets are loaded.
    pub fn restart(&self) {
        assert!(
            !self.is_running(),
            "restart(): litecoind is still running; stop() or kill() it first"
        );
        self.process_guard().take();
        self.spawn();
        if let Err(e) = self.wait_ready() {
            panic!("litecoind did not come back after restart: {e}");
        }
        if !self.config.wallets {
            return;
        }
        // Both wallets were created with load_on_startup, so they normally are loaded already.
        let loaded = self
            .node
            .call("listwallets", json!([]))
            .unwrap_or_else(|e| panic!("listwallets: {e}"));
        for w in [MAIN_WALLET, MWEB_WALLET] {
            if loaded.as_array().is_some_and(|a| a.iter().any(|x| x == w)) {
                continue;
            }
            match self.node.call("loadwallet", json!([w])) {
                Ok(_) => {}
                Err(e) if e.code() == Some(-35) || e.to_string().contains("already loaded") => {}
                Err(e) => panic!("loadwallet {w} after restart: {e}"),
            }
        }
    }

    /// Make the daemon write its block index and chainstate to disk (`gettxoutsetinfo none`
    /// forces a flush). Without it a [`kill`](Self::kill) can roll the tip back to the last
    /// periodic flush: the blocks mined since are gone after the restart.
    pub fn flush(&self) {
        self.call("gettxoutsetinfo", json!(["none"]));
    }

    /// Graceful stop, then a start with `once` added to the arguments for this run only (e.g.
    /// `-reindex`); waits until RPC answers. Wallets are not reloaded.
    pub fn stop_and_restart_with(&self, once: &[&str]) {
        self.stop();
        self.process_guard().take();
        self.spawn_with(once);
        if let Err(e) = self.wait_ready() {
            panic!("litecoind did not come back after restart with {once:?}: {e}");
        }
    }

    /// Graceful stop followed by restart.
    pub fn stop_and_restart(&self) {
        self.stop();
        self.restart();
    }

    /// What the process printed (stdout and stderr), over every restart.
    fn output_log(&self) -> PathBuf {
        self.datadir.path().join("output.log")
    }

    /// The last `n` lines of the daemon's debug.log (for failure messages).
    pub fn debug_log_tail(&self, n: usize) -> String {
        let p = self.datadir.path().join("regtest").join("debug.log");
        let text = std::fs::read_to_string(p).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    fn process_guard(&self) -> MutexGuard<'_, Option<Proc>> {
        self.process.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn args(&self) -> Vec<String> {
        let mut a: Vec<String> = vec![
            "-regtest".into(),
            format!("-datadir={}", self.datadir.path().display()),
            "-txindex=1".into(),
            "-server=1".into(),
            "-listen=0".into(),
            "-connect=0".into(),
            "-dnsseed=0".into(),
            "-listenonion=0".into(),
            "-upnp=0".into(),
            "-discover=0".into(),
            "-rpcbind=127.0.0.1".into(),
            "-rpcallowip=127.0.0.1".into(),
            format!("-rpcport={}", self.rpc_port),
            format!("-port={}", self.p2p_port),
            format!("-rpcuser={RPC_USER}"),
            format!("-rpcpassword={RPC_PASS}"),
            "-rpcthreads=8".into(),
            "-rpcworkqueue=256".into(),
            "-rest=1".into(),
            "-fallbackfee=0.0001".into(),
            "-keypool=100".into(),
            "-printtoconsole=0".into(),
            "-shrinkdebugfile=0".into(),
        ];
        a.extend(self.config.extra_args.iter().cloned());
        a
    }

    fn spawn(&self) {
        self.spawn_with(&[]);
    }

    fn spawn_with(&self, once: &[&str]) {
        let mut cmd = Command::new(&self.config.binary);
        cmd.args(self.args());
        cmd.args(once);
        match Proc::try_spawn_appending("litecoind", cmd, self.output_log()) {
            Ok(p) => *self.process_guard() = Some(p),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
                "litecoind not found ({}): the integration tests need a real Litecoin Core daemon. \
                 Install it with `apt-get install litecoind` (or set LITECOIND=/path/to/litecoind).",
                self.config.binary.display()
            ),
            Err(e) => panic!("cannot run {}: {e}", self.config.binary.display()),
        }
    }

    /// Poll until RPC answers and the mempool is loaded. Err when the process died or timed out.
    fn wait_ready(&self) -> Result<(), String> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            {
                let mut g = self.process_guard();
                match g.as_mut().map(|p| p.child.try_wait()) {
                    Some(Ok(Some(status))) => {
                        g.take();
                        let output = std::fs::read_to_string(self.output_log()).unwrap_or_default();
                        return Err(format!(
                            "litecoind exited with {status} before answering RPC.\noutput:\n{output}\ndebug.log:\n{}",
                            self.debug_log_tail(30)
                        ));
                    }
                    None => return Err("litecoind is not running".into()),
                    _ => {}
                }
            }
            match self.node.call("getmempoolinfo", json!([])) {
                Ok(v) if v.get("loaded").and_then(Value::as_bool).unwrap_or(true) => return Ok(()),
                Ok(_) => {} // mempool.dat still loading
                Err(e) if e.is_io() || e.code() == Some(-28) => {} // not listening yet / warming up
                Err(RpcError::Http { status: 503, .. }) => {}
                Err(e) => return Err(format!("unexpected RPC error while waiting: {e}")),
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "litecoind did not answer RPC within {READY_TIMEOUT:?}\n{}",
                    self.debug_log_tail(30)
                ));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    fn create_wallets(&self) {
        for w in [MAIN_WALLET, MWEB_WALLET] {
            // name, disable_private_keys, blank, passphrase, avoid_reuse, descriptors, load_on_startup
            self.node
                .call(
                    "createwallet",
                    json!([w, false, false, "", false, false, true]),
                )
                .unwrap_or_else(|e| panic!("createwallet {w}: {e}"));
        }
        let miner = self.call("getnewaddress", json!(["miner", "bech32"]));
        self.state.lock().unwrap().miner_address = miner.as_str().unwrap().to_string();
    }
}

impl Drop for Litecoind {
    fn drop(&mut self) {
        match self.datadir {
            Datadir::Kept(_) => self.stop(),
            Datadir::Temporary(_) => self.kill(),
        }
    }
}

/// A loopback port that is free now, outside the kernel's ephemeral range (so a client socket of
/// some other connection cannot be sitting on it when the daemon is restarted), never handed out
/// twice by this process.
pub fn free_port() -> u16 {
    static USED: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let used = USED.get_or_init(|| Mutex::new(HashSet::new()));
    let seed = std::process::id() as u64
        ^ (std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0));
    for _ in 0..2000 {
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        // xorshift-ish mix of seed and counter → 20000..32000
        let mut x = seed.wrapping_add(n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        x ^= x >> 31;
        x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x ^= x >> 29;
        let port = 20000 + (x % 12000) as u16;
        let mut u = used.lock().unwrap();
        if u.contains(&port) {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            u.insert(port);
            return port;
        }
    }
    // Fall back to the kernel's choice.
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let port = l.local_addr().unwrap().port();
    used.lock().unwrap().insert(port);
    port
}
