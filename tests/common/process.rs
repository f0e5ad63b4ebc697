//! The `sextant` binary as a child process, configured by environment variables, logging to a
//! file in its directory.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::litecoind::Litecoind;

/// `sextant` on `d`'s chain, with its database in `dir/db`.
pub struct Sextant {
    pub child: Child,
    log: PathBuf,
}

impl Sextant {
    pub fn start(d: &Litecoind, dir: &Path, env: &[(&str, String)]) -> Sextant {
        let log = dir.join("sextant.log");
        let f = std::fs::File::create(&log).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sextant"));
        cmd.env_clear()
            .env("COIN", "Litecoin")
            .env("NET", "regtest")
            .env("DB_DIRECTORY", dir.join("db"))
            .env("DAEMON_URL", d.rpc_url())
            .env("DAEMON_POLL_INTERVAL_BLOCKS", "100")
            .env("DAEMON_POLL_INTERVAL_MEMPOOL", "100")
            .env("LOG_LEVEL", "info");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd
            .stdout(Stdio::from(f.try_clone().unwrap()))
            .stderr(Stdio::from(f))
            .spawn()
            .expect("start sextant");
        Sextant { child, log }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn wait_listening(&mut self, port: u16) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(s)) = self.child.try_wait() {
                panic!("sextant exited ({s}):\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "sextant never listened:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig}");
    }
}

impl Sextant {
    /// Waits for the process to exit on its own.
    pub fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "sextant did not exit:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Runs `sextant-rpc -p PORT args…`; its stdout and exit status.
pub fn sextant_rpc(rpc_port: u16, args: &[&str]) -> (String, bool) {
    let out = Command::new(env!("CARGO_BIN_EXE_sextant-rpc"))
        .arg("-p")
        .arg(rpc_port.to_string())
        .args(args)
        .output()
        .expect("run sextant-rpc");
    (String::from_utf8(out.stdout).unwrap(), out.status.success())
}

/// `sextant-rpc`'s answer as JSON; panics on a failed command.
pub fn rpc_json(rpc_port: u16, args: &[&str]) -> serde_json::Value {
    let (out, ok) = sextant_rpc(rpc_port, args);
    assert!(ok, "sextant-rpc {args:?}: {out}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

impl Drop for Sextant {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
