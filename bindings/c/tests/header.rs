//! `include/rodiff.h` is what cbindgen (the version pinned in Cargo.toml) makes of this crate with
//! `cbindgen.toml`: regenerate it and compare. `RODIFF_UPDATE_HEADER=1 cargo test -p rodiff-c
//! --test header` writes it instead.

use std::path::PathBuf;

#[test]
fn the_committed_header_is_current() {
    let crate_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let header = crate_dir.join("../../include/rodiff.h");
    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).expect("cbindgen.toml");
    let mut generated = Vec::new();
    cbindgen::Builder::new()
        .with_crate(&crate_dir)
        .with_config(config)
        .generate()
        .expect("cbindgen generates the header")
        .write(&mut generated);
    if std::env::var_os("RODIFF_UPDATE_HEADER").is_some() {
        std::fs::write(&header, &generated).expect("write include/rodiff.h");
        return;
    }
    let committed = std::fs::read(&header).unwrap_or_default();
    assert!(
        committed == generated,
        "include/rodiff.h is not what cbindgen makes of bindings/c: run `RODIFF_UPDATE_HEADER=1 cargo test -p rodiff-c --test header` and commit it"
    );
}

#[test]
fn the_version_macros_are_the_crate_version() {
    let version = |name: &str| env!("CARGO_PKG_VERSION").split('.').nth(["MAJOR", "MINOR", "PATCH"].iter().position(|n| *n == name).unwrap()).unwrap().parse::<u32>().unwrap();
    let header = std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../include/rodiff.h")).unwrap();
    for name in ["MAJOR", "MINOR", "PATCH"] {
        let line = format!("#define RODIFF_VERSION_{name} {}", version(name));
        assert!(header.contains(&line), "rodiff.h lacks `{line}`");
    }
}
