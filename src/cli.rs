//! The command line. Sextant is configured by environment variables, as ElectrumX is, so the
//! only arguments are `--help` and `--version`; any other is refused, since an operator who
//! typed `sextant --coin=…` would otherwise get a server on the defaults.
//!
//! A few lines over `std::env::args_os` rather than clap: two flags and no options do not
//! earn a parser and its dependencies, and the help is about environment variables, which
//! clap does not describe.

use std::ffi::OsString;
use std::process::ExitCode;

use crate::protocol::version::{server_max, server_min};

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Invocation {
    /// No arguments: run the server.
    Serve,
    Help,
    Version,
    /// Anything else; says what was wrong.
    Invalid(String),
}

impl Invocation {
    /// Reads the arguments after the program's name.
    pub(crate) fn from_args(args: impl IntoIterator<Item = OsString>) -> Invocation {
        let args: Vec<OsString> = args.into_iter().collect();
        match args.as_slice() {
            [] => Invocation::Serve,
            [one] => match one.to_str() {
                Some("--help" | "-h") => Invocation::Help,
                Some("--version" | "-V") => Invocation::Version,
                _ => Invocation::Invalid(format!("unknown argument {one:?}")),
            },
            _ => Invocation::Invalid(format!(
                "{} arguments given, at most one (--help or --version) is taken",
                args.len()
            )),
        }
    }
}

/// Answers `--help` and `--version` on stdout and a wrong argument on stderr, returning the
/// exit status; `None` when the server is to run.
pub fn answer(args: impl IntoIterator<Item = OsString>) -> Option<ExitCode> {
    match Invocation::from_args(args) {
        Invocation::Serve => None,
        Invocation::Help => {
            print!("{}", help());
            Some(ExitCode::SUCCESS)
        }
        Invocation::Version => {
            print!("{}", version());
            Some(ExitCode::SUCCESS)
        }
        Invocation::Invalid(why) => {
            eprintln!("sextant: {why}; it is configured by environment variables (sextant --help)");
            // As a configuration error: a restart cannot fix it.
            Some(ExitCode::from(2))
        }
    }
}

/// Sextant's version, the RocksDB it is linked with, the Electrum protocol versions it speaks.
pub(crate) fn version() -> String {
    format!(
        "Sextant {}\nRocksDB {}\nElectrum protocol {} to {}\n",
        env!("CARGO_PKG_VERSION"),
        env!("SEXTANT_ROCKSDB_VERSION"),
        server_min(),
        server_max(),
    )
}

/// The variables an operator sets first; README.md's table has them all.
const MAIN_VARIABLES: &[(&str, &str)] = &[
    ("COIN", "coin name from a coin file (default Bitcoin)"),
    ("NET", "mainnet, testnet, regtest, … (default mainnet)"),
    ("DB_DIRECTORY", "the index directory (required)"),
    (
        "DAEMON_URL",
        "http://user:password@host:port/ of a txindex=1 node (required)",
    ),
    (
        "SERVICES",
        "listeners, e.g. tcp://:50001,ssl://:50002,rpc://127.0.0.1:8000",
    ),
    (
        "SSL_CERTFILE",
        "PEM certificate chain for ssl:// and wss://",
    ),
    ("SSL_KEYFILE", "its PEM private key"),
    (
        "SSL_SELF_SIGNED",
        "without them, a self-signed certificate kept in DB_DIRECTORY",
    ),
    ("REPORT_SERVICES", "the services announced to peers"),
    ("CACHE_MB", "memory budget in MB (default 1200)"),
    (
        "LOG_LEVEL",
        "error, warn, info, debug or trace (default info)",
    ),
    (
        "METRICS_LISTEN",
        "host:port for Prometheus metrics (default off)",
    ),
];

pub(crate) fn help() -> String {
    let mut text = format!(
        "Sextant {}: an Electrum protocol server, a drop-in replacement for ElectrumX.\n\n\
         Usage: sextant              run the server\n       \
         sextant --help       this text\n       \
         sextant --version    the Sextant, RocksDB and Electrum protocol versions\n\n\
         Sextant is configured by environment variables, with ElectrumX's names. The main \
         ones:\n",
        env!("CARGO_PKG_VERSION")
    );
    for (name, what) in MAIN_VARIABLES {
        text.push_str(&format!("  {name:<17} {what}\n"));
    }
    text.push_str(
        "\nREADME.md's \"Environment variables\" table documents every variable.\n\
         SIGTERM or Ctrl-C flushes the index and exits; SIGHUP reloads the TLS certificate.\n",
    );
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Invocation {
        Invocation::from_args(args.iter().map(OsString::from))
    }

    #[test]
    fn two_flags_and_nothing_else() {
        assert_eq!(parse(&[]), Invocation::Serve);
        assert_eq!(parse(&["--help"]), Invocation::Help);
        assert_eq!(parse(&["-h"]), Invocation::Help);
        assert_eq!(parse(&["--version"]), Invocation::Version);
        assert_eq!(parse(&["-V"]), Invocation::Version);
        for bad in [
            &["--coin=LTC"][..],
            &["help"],
            &["-v"],
            &["--help", "--version"],
        ] {
            assert!(matches!(parse(bad), Invocation::Invalid(_)), "{bad:?}");
        }
        let Invocation::Invalid(why) = parse(&["--coin=LTC"]) else {
            unreachable!()
        };
        assert!(why.contains("--coin=LTC"), "{why}");
    }

    #[test]
    fn version_names_all_three() {
        let v = version();
        assert!(v.starts_with(&format!("Sextant {}\n", env!("CARGO_PKG_VERSION"))));
        assert!(v.contains("\nRocksDB ") && !v.contains("unknown"), "{v}");
        assert!(
            v.contains(&format!("{} to {}", server_min(), server_max())),
            "{v}"
        );
    }
}
