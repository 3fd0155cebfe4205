//! Writes the seed corpora of every fuzz target, made by multiproc's own
//! encoders (`multiproc::fuzzing::seeds`), into `corpus/<target>/`:
//!
//! ```text
//! cargo run --manifest-path fuzz/Cargo.toml --example seeds
//! ```
//!
//! A path after `--` writes them there instead.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = match std::env::args_os().nth(1) {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("corpus"),
    };
    // One seed's task panics on purpose, for a result that reports a panic.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !info.to_string().contains("a fuzz seed's task panics") {
            hook(info);
        }
    }));
    let seeds = multiproc::fuzzing::seeds()?;
    for seed in &seeds {
        let dir = root.join(seed.target);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join(seed.name), &seed.bytes)?;
    }
    println!("{} seeds written under {}", seeds.len(), root.display());
    Ok(())
}
