//! Embeds every coin file of `coins/` into the binary, so a new coin file in the tree needs no
//! code change and an operator's `COINS_DIR` can add more at run time; and names the RocksDB
//! version linked in, for `sextant --version`.

use std::{env, fs, path::Path};

fn main() {
    // Read at run time: a build script compiled for one checkout may be reused by another that
    // shares the target directory.
    let manifest_dir = env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let dir = Path::new(&manifest_dir).join("coins");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut names: Vec<String> = fs::read_dir(&dir)
        .expect("coins/ directory")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".toml"))
        .collect();
    names.sort();
    let mut out = String::from("/// Coin files embedded from `coins/` at build time.\n");
    out.push_str("pub const EMBEDDED_COINS: &[(&str, &str)] = &[\n");
    for name in &names {
        let path = dir.join(name);
        println!("cargo:rerun-if-changed={}", path.display());
        out.push_str(&format!(
            "    ({name:?}, include_str!({:?})),\n",
            path.display().to_string()
        ));
    }
    out.push_str("];\n");
    let dest = Path::new(&env::var("OUT_DIR").unwrap()).join("embedded_coins.rs");
    fs::write(dest, out).expect("write embedded_coins.rs");
    println!(
        "cargo:rustc-env=SEXTANT_ROCKSDB_VERSION={}",
        rocksdb_version(Path::new(&manifest_dir))
    );
}

/// The RocksDB linked in, for `sextant --version`. librocksdb-sys builds the RocksDB it bundles
/// and names its version in its own version's build metadata (`0.17.3+10.4.2`); RocksDB's C API
/// has no version call. The lock file says which librocksdb-sys this build uses.
fn rocksdb_version(manifest_dir: &Path) -> String {
    println!("cargo:rerun-if-env-changed=ROCKSDB_LIB_DIR");
    if env::var_os("ROCKSDB_LIB_DIR").is_some() {
        return "(the system's library, from ROCKSDB_LIB_DIR)".into();
    }
    let lock = manifest_dir.join("Cargo.lock");
    println!("cargo:rerun-if-changed={}", lock.display());
    let text = fs::read_to_string(&lock).unwrap_or_default();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if line.trim() == "name = \"librocksdb-sys\"" {
            let version = lines
                .next()
                .and_then(|l| l.trim().strip_prefix("version = \""))
                .and_then(|v| v.strip_suffix('"'));
            if let Some((_, bundled)) = version.and_then(|v| v.split_once('+')) {
                return bundled.to_string();
            }
        }
    }
    "(unknown version)".into()
}
