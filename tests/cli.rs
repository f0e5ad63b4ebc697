//! `sextant --version` and `sextant --help` answer without starting a server (no
//! `DB_DIRECTORY`, nothing else set), and any other argument is refused with status 2.

mod common;

use std::path::Path;
use std::process::Output;

use common::*;

/// The built binary with `args`, a clean environment, in an empty directory.
fn sextant(args: &[&str], cwd: &Path) -> Output {
    sextant_command()
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("run sextant")
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

/// The RocksDB version this build links, as RocksDB itself records it in a database's
/// OPTIONS file.
fn linked_rocksdb_version(dir: &Path) -> String {
    let path = dir.join("probe");
    drop(rocksdb::DB::open_default(&path).unwrap());
    let options = std::fs::read_dir(&path)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("OPTIONS-")
        })
        .expect("an OPTIONS file");
    std::fs::read_to_string(options)
        .unwrap()
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("rocksdb_version=")
                .map(str::to_string)
        })
        .expect("rocksdb_version in the OPTIONS file")
}

#[test]
fn version_names_sextant_the_linked_rocksdb_and_the_protocol_range() {
    let dir = tempfile::tempdir().unwrap();
    let out = sextant(&["--version"], dir.path());
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        [
            format!("Sextant {}", env!("CARGO_PKG_VERSION")).as_str(),
            format!("RocksDB {}", linked_rocksdb_version(dir.path())).as_str(),
            // server.features says the same (tests/electrum_protocol.rs).
            "Electrum protocol 1.4 to 1.7.0",
        ]
    );
    assert_eq!(stderr(&out), "");
    assert_eq!(sextant(&["-V"], dir.path()).stdout, out.stdout);
}

#[test]
fn help_lists_the_main_variables_each_documented_in_the_readme() {
    let dir = tempfile::tempdir().unwrap();
    let out = sextant(&["--help"], dir.path());
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    assert!(text.contains("environment variables"), "{text}");
    assert!(text.contains("README.md"), "{text}");
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let listed: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("  ")?.split_whitespace().next())
        .filter(|w| w.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
        .collect();
    for var in [
        "COIN",
        "DB_DIRECTORY",
        "DAEMON_URL",
        "SERVICES",
        "SSL_SELF_SIGNED",
    ] {
        assert!(listed.contains(&var), "{var} missing from --help:\n{text}");
    }
    for var in &listed {
        assert!(
            readme
                .lines()
                .any(|l| l.starts_with('|') && l.contains(&format!("`{var}`"))),
            "--help lists {var}, README.md's table does not"
        );
    }
    assert_eq!(sextant(&["-h"], dir.path()).stdout, out.stdout);
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "no server started"
    );
}

#[test]
fn any_other_argument_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["--coin=Litecoin"][..],
        &["serve"],
        &["-v"],
        &["--help", "--version"],
    ] {
        let out = sextant(args, dir.path());
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        assert_eq!(stdout(&out), "", "{args:?}");
        let err = stderr(&out);
        assert!(
            err.starts_with("sextant: ") && err.contains("--help") && err.lines().count() == 1,
            "{args:?}: {err}"
        );
        assert!(!err.contains("DB_DIRECTORY"), "did not try to start: {err}");
    }
    let err = stderr(&sextant(&["--coin=Litecoin"], dir.path()));
    assert!(err.contains("--coin=Litecoin"), "names the argument: {err}");
}
