//! Starting and stopping a `litecoind -regtest -txindex=1` on a given datadir, loopback only.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::rpc::Client;

pub const USER: &str = "bench";
pub const PASS: &str = "bench";

pub struct Litecoind {
    child: Option<Child>,
    pub rpc_port: u16,
    datadir: PathBuf,
}

pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().unwrap().port()
}

/// The arguments the benchmarks start litecoind with (also used by bench/sync.sh).
pub fn args(datadir: &Path, rpc_port: u16, p2p_port: u16) -> Vec<String> {
    vec![
        "-regtest".into(),
        format!("-datadir={}", datadir.display()),
        "-txindex=1".into(),
        "-server=1".into(),
        "-rest=1".into(),
        "-listen=0".into(),
        "-connect=0".into(),
        "-dnsseed=0".into(),
        "-listenonion=0".into(),
        "-upnp=0".into(),
        "-discover=0".into(),
        "-rpcbind=127.0.0.1".into(),
        "-rpcallowip=127.0.0.1".into(),
        format!("-rpcport={rpc_port}"),
        format!("-port={p2p_port}"),
        format!("-rpcuser={USER}"),
        format!("-rpcpassword={PASS}"),
        "-rpcthreads=8".into(),
        "-rpcworkqueue=512".into(),
        "-fallbackfee=0.0001".into(),
        "-maxmempool=1000".into(),
        "-printtoconsole=0".into(),
    ]
}

impl Litecoind {
    pub fn start(datadir: &Path) -> Result<Litecoind, String> {
        std::fs::create_dir_all(datadir).map_err(|e| format!("{}: {e}", datadir.display()))?;
        let binary = std::env::var("LITECOIND").unwrap_or_else(|_| "litecoind".into());
        let (rpc_port, p2p_port) = (free_port(), free_port());
        let log = std::fs::File::create(datadir.join("stderr.log")).map_err(|e| e.to_string())?;
        let child = Command::new(&binary)
            .args(args(datadir, rpc_port, p2p_port))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot run {binary}: {e} (apt-get install litecoind)"))?;
        let mut d = Litecoind {
            child: Some(child),
            rpc_port,
            datadir: datadir.to_path_buf(),
        };
        d.wait_ready()?;
        Ok(d)
    }

    pub fn client(&self) -> Client {
        let addr: SocketAddr = ([127, 0, 0, 1], self.rpc_port).into();
        Client::new(addr, "/", USER, PASS)
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(300);
        let mut c = self.client();
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().ok().flatten() {
                let err =
                    std::fs::read_to_string(self.datadir.join("stderr.log")).unwrap_or_default();
                return Err(format!("litecoind exited with {status}: {err}"));
            }
            match c.call("getblockchaininfo", json!([])) {
                Ok(_) => return Ok(()),
                Err(e) if Instant::now() > deadline => {
                    return Err(format!("litecoind not ready: {e}"))
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// Graceful stop (flushes the chainstate), waiting for the process to exit.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = self.client().call("stop", json!([]));
        let deadline = Instant::now() + Duration::from_secs(300);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Litecoind {
    fn drop(&mut self) {
        self.stop();
    }
}
