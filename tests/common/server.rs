//! Sextant under test: the binary as a child process ([`Proc::sextant`]), its admin client, and
//! [`InProcess`], a whole Sextant built in the test's own process by the composition root
//! (`sextant::app`), peers and admin included.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::litecoind::Litecoind;
use super::process::{base_command, Proc};

impl Proc {
    /// `sextant` on `d`'s chain with its database in `dir/db`, the harness's defaults (see
    /// [`sextant_env`]) and `env` on top.
    pub fn sextant(d: &Litecoind, dir: &Path, env: &[(&str, String)]) -> Proc {
        let mut cmd = sextant_command();
        cmd.envs(sextant_env(d, &dir.join("db")));
        cmd.envs(env.iter().map(|(k, v)| (*k, v)));
        Proc::spawn("Sextant", cmd, dir.join("sextant.log"))
    }
}

/// The `sextant` binary this build made, with a clean environment. `SEXTANT_BIN` names another
/// copy: where several worktrees share one target directory, another's build can replace the
/// binary between this build and the test's run, so a test run can use a copy taken at build.
pub fn sextant_command() -> Command {
    let bin = std::env::var_os("SEXTANT_BIN")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_BIN_EXE_sextant")).to_path_buf());
    base_command(&bin)
}

/// What every harness-started Sextant gets on `d`'s chain: Litecoin regtest, the database in
/// `db`, and blocks and mempool polled every 100 ms.
pub fn sextant_env(d: &Litecoind, db: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("COIN", "Litecoin".into()),
        ("NET", "regtest".into()),
        ("DB_DIRECTORY", db.display().to_string()),
        ("DAEMON_URL", d.rpc_url()),
        ("DAEMON_POLL_INTERVAL_BLOCKS", "100".into()),
        ("DAEMON_POLL_INTERVAL_MEMPOOL", "100".into()),
        ("LOG_LEVEL", "info".into()),
    ]
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

/// A whole Sextant in this process, built by `sextant::app` from the harness's environment
/// ([`sextant_env`]) plus `env`, on its own runtime; stopped (and its index flushed) by
/// [`InProcess::stop`] or on drop.
pub struct InProcess {
    runtime: tokio::runtime::Runtime,
    stop: Arc<watch::Sender<bool>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    _dir: tempfile::TempDir,
}

impl InProcess {
    pub fn start(d: &Litecoind, env: &[(&'static str, String)]) -> InProcess {
        let dir = tempfile::tempdir().unwrap();
        let vars: HashMap<&str, String> = sextant_env(d, &dir.path().join("db"))
            .into_iter()
            .chain(env.iter().cloned())
            .collect();
        let config = sextant::config::Config::from_env(&vars).expect("a valid configuration");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let stop = Arc::new(watch::Sender::new(false));
        let task = runtime.spawn(sextant::app::run(config, stop.clone()));
        InProcess {
            runtime,
            stop,
            task: Some(task),
            _dir: dir,
        }
    }

    /// Stops the server as SIGTERM would and checks it ended cleanly.
    pub fn stop(mut self) {
        let _ = self.stop.send(true);
        let task = self.task.take().expect("running");
        self.runtime
            .block_on(task)
            .expect("the server task")
            .expect("a clean stop");
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = self
                .runtime
                .block_on(async { tokio::time::timeout(Duration::from_secs(30), task).await });
        }
    }
}
