//! Puts `memory.x` where the linker script `link.x` of cortex-m-rt finds it, and the update key into
//! `OUT_DIR/update-key.bin`: the 32 bytes of the Ed25519 public key in the file `RACKWATCH_UPDATE_KEY`
//! names (the `.pub` file of `rackwatch firmware keygen`: 64 hex digits), or nothing when it is unset
//! (the image then answers updates `unsupported`, src/ota.rs).

use std::{env, fs, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = PathBuf::from(env::var_os("OUT_DIR").ok_or("cargo sets OUT_DIR")?);
    fs::write(out.join("memory.x"), include_bytes!("memory.x"))?;
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rerun-if-changed=memory.x");
    println!("cargo:rerun-if-changed=build.rs");

    println!("cargo:rerun-if-env-changed=RACKWATCH_UPDATE_KEY");
    let key = match env::var_os("RACKWATCH_UPDATE_KEY") {
        Some(path) => {
            println!("cargo:rerun-if-changed={}", PathBuf::from(&path).display());
            let text = fs::read_to_string(&path)
                .map_err(|e| format!("RACKWATCH_UPDATE_KEY={}: {e}", PathBuf::from(&path).display()))?;
            decode_key(text.trim())
                .ok_or("RACKWATCH_UPDATE_KEY: not 64 hex digits (a `rackwatch firmware keygen` .pub file)")?
        }
        None => Vec::new(),
    };
    fs::write(out.join("update-key.bin"), key)?;
    Ok(())
}

fn decode_key(hex: &str) -> Option<Vec<u8>> {
    if hex.len() != 64 || !hex.is_ascii() {
        return None;
    }
    (0..32)
        .map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}
