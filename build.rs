//! Embeds every coin file of `coins/` into the binary, so a new coin file in the tree needs no
//! code change and an operator's `COINS_DIR` can add more at run time.

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
}
