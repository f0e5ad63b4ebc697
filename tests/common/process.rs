//! [`Proc`]: the one wrapper of child processes (Sextant, ElectrumX, litecoind) in tests and
//! benchmarks: output to a log file, killed on drop.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A child process whose output goes to `log`.
pub struct Proc {
    pub name: &'static str,
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
    /// Starts `cmd` with its output in `log` (truncated).
    pub fn spawn(name: &'static str, cmd: Command, log: PathBuf) -> Proc {
        let f = File::create(&log).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
        Proc::spawn_into(name, cmd, f, log)
    }

    /// Starts `cmd` with its output appended to `log` (a daemon restarted on one datadir);
    /// the error is the spawn's (e.g. the program is not installed).
    pub fn try_spawn_appending(
        name: &'static str,
        cmd: Command,
        log: PathBuf,
    ) -> std::io::Result<Proc> {
        let f = File::options().create(true).append(true).open(&log)?;
        Proc::try_spawn_into(name, cmd, f, log)
    }

    fn spawn_into(name: &'static str, cmd: Command, f: File, log: PathBuf) -> Proc {
        let program = cmd.get_program().to_string_lossy().into_owned();
        Proc::try_spawn_into(name, cmd, f, log)
            .unwrap_or_else(|e| panic!("start {name} ({program}): {e}"))
    }

    fn try_spawn_into(
        name: &'static str,
        mut cmd: Command,
        f: File,
        log: PathBuf,
    ) -> std::io::Result<Proc> {
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::from(f.try_clone()?))
            .stderr(Stdio::from(f))
            .spawn()?;
        Ok(Proc { name, child, log })
    }

    /// Everything the process printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn log_tail(&self, n: usize) -> String {
        let text = self.log();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Panics with the log when the process has exited.
    pub fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("{} exited ({status}):\n{}", self.name, self.log_tail(40));
        }
    }

    /// Waits until the process accepts connections on `port`; panics with its log if it exits
    /// or never does.
    pub fn wait_listening(&mut self, port: u16) {
        let deadline = Instant::now() + Duration::from_secs(300);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            self.assert_running();
            assert!(
                Instant::now() < deadline,
                "{} never listened:\n{}",
                self.name,
                self.log_tail(30)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The first line of the log containing `what`, once there is one.
    pub fn wait_for_log(&self, what: &str, timeout: Duration) -> String {
        wait_until(timeout, what, || {
            self.log()
                .lines()
                .find(|l| l.contains(what))
                .map(str::to_string)
        })
    }

    /// Waits for the process to end; its exit status and everything it printed.
    pub fn wait(mut self) -> (ExitStatus, String) {
        let status = self.child.wait().unwrap();
        (status, self.log())
    }

    /// Sends `sig` (`-TERM`, `-HUP`, `-9`, …).
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig}");
    }

    /// Waits for the process to exit on its own.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not exit:\n{}",
                self.name,
                self.log_tail(40)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `program` with a clean environment (ElectrumX refuses to start when obsolete variables such
/// as `HOST` are set), keeping only what a program needs to run.
pub fn base_command(program: &Path) -> Command {
    let mut cmd = Command::new(program);
    cmd.env_clear();
    for var in ["PATH", "HOME", "LANG", "TMPDIR"] {
        if let Some(v) = std::env::var_os(var) {
            cmd.env(var, v);
        }
    }
    cmd
}

/// Poll `f` every 25 ms until it returns `Some`, or panic with `what` after `timeout`.
pub fn wait_until<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}
