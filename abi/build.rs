//! Turns include/nfkv.h into Rust, exactly as the module's Kbuild rule does,
//! so the client and the module can never disagree on the ABI.
use std::{env, path::PathBuf};

fn main() {
    let header = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap()).join("../include/nfkv.h");
    println!("cargo:rerun-if-changed={}", header.display());
    let out = PathBuf::from(env::var("OUT_DIR").unwrap()).join("nfkv_uapi.rs");
    bindgen::Builder::default()
        .header(header.to_str().unwrap())
        .use_core()
        .ctypes_prefix("core::ffi")
        .allowlist_item("nfkv.*|NFKV.*")
        .derive_default(true)
        // Their prefix array is too long for a derived Default, and the
        // impl bindgen writes instead is unsafe; the codec builds them.
        .no_default("nfkv_classifier.*")
        .layout_tests(false)
        .generate()
        .expect("bindgen failed on include/nfkv.h (is libclang-dev installed? run scripts/setup)")
        .write_to_file(out)
        .unwrap();
}
