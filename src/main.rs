//! `sextant`: configured entirely by ElectrumX's environment variables; the only arguments are
//! `--help` and `--version`.

use std::process::ExitCode;
use std::sync::Arc;

use tokio::sync::watch;
use tracing::{error, info};

use sextant::config::{Config, ProcessEnv};
use sextant::{app, cli};

fn main() -> ExitCode {
    if let Some(status) = cli::answer(std::env::args_os().skip(1)) {
        return status;
    }
    let config = match Config::from_env(&ProcessEnv) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sextant: {e}");
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(format!(
            "{},rocksdb=warn,jsonrpsee=warn,hyper=warn",
            config.log_level
        )))
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let stop = Arc::new(watch::Sender::new(false));
    let result = runtime.block_on(async {
        tokio::spawn(stop_on_signal(stop.clone()));
        app::run(config, stop).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn stop_on_signal(stop: Arc<watch::Sender<bool>>) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => info!("SIGTERM received"),
        _ = int.recv() => info!("SIGINT received"),
    }
    let _ = stop.send(true);
}

/// jemalloc, for every allocation of the process (RocksDB's C++ included: the crate's unprefixed
/// `malloc` replaces glibc's). With glibc, even at two arenas, RocksDB's and the initial sync's
/// allocations of every size and lifetime fragmented the heap: at 30M transactions ~900 MB was
/// resident beyond what RocksDB and the writer held, and peak RSS passed CACHE_MB + 500 MB.
/// A static because that is how Rust takes a global allocator; it holds no state of ours.
#[cfg(target_os = "linux")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read once at its start (an operator's `MALLOC_CONF` is applied after
/// them): freed pages go back to the kernel within a second, by jemalloc's own thread, so the
/// sync's short-lived batches don't stay resident.
#[cfg(target_os = "linux")]
#[allow(non_upper_case_globals)]
#[export_name = "malloc_conf"]
pub static malloc_conf: &[u8; 43] = b"background_thread:true,dirty_decay_ms:1000\0";
