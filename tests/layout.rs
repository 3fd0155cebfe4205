//! The crate's layout rules that a compiler does not check: every place
//! that allows `unsafe_code` is listed in the crate documentation (and
//! nothing else is), and no test hook is public (but the fuzz targets'
//! entry points, behind the `fuzzing` feature).

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every `.rs` file under `dir`, skipping build output.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n == "target") {
                continue;
            }
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Whether `line` is an attribute that lets `unsafe_code` through:
/// `allow`, `expect` or `warn`, alone or in a list, outer or inner.
fn allows_unsafe_code(line: &str) -> bool {
    let line = line.trim();
    let lint = ["unsafe", "_code"].concat();
    (line.starts_with("#[") || line.starts_with("#!["))
        && ["allow(", "expect(", "warn("].iter().any(|a| line.contains(a))
        && line.contains(&lint)
}

/// The places `src/lib.rs` lists as allowing `unsafe_code`.
fn listed() -> Vec<String> {
    let lib = std::fs::read_to_string(root().join("src/lib.rs")).unwrap();
    let start = lib.find("<!-- unsafe-allowed:start -->").expect("the list's start marker");
    let end = lib.find("<!-- unsafe-allowed:end -->").expect("the list's end marker");
    let mut places: Vec<String> = lib[start..end]
        .lines()
        .filter_map(|l| l.trim_start_matches("//!").trim().strip_prefix("- `"))
        .map(|l| l.split('`').next().unwrap().to_owned())
        .collect();
    places.sort();
    places
}

#[test]
fn every_allow_unsafe_code_is_listed_in_the_crate_docs() {
    let mut files = Vec::new();
    for dir in ["src", "tests", "benches", "examples", "fuzz"] {
        rust_files(&root().join(dir), &mut files);
    }
    files.extend([root().join("build.rs")].into_iter().filter(|f| f.exists()));
    let mut found: Vec<String> = files
        .iter()
        .filter(|f| std::fs::read_to_string(f).unwrap().lines().any(allows_unsafe_code))
        .map(|f| f.strip_prefix(root()).unwrap().to_string_lossy().into_owned())
        // A folder that allows it at its top allows it for every file in it.
        .map(|f| if f.ends_with("/mod.rs") { f.trim_end_matches("mod.rs").to_owned() } else { f })
        .collect();
    found.sort();
    assert_eq!(found, listed(), "the files that allow unsafe_code, against the list in src/lib.rs's docs");
}

#[test]
fn test_hooks_are_not_public() {
    let mut files = Vec::new();
    rust_files(&root().join("src"), &mut files);
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let lines: Vec<&str> = text.lines().map(str::trim).collect();
        for (i, line) in lines.iter().enumerate() {
            // The item a `#[doc(hidden)]` is on: the next line that is not
            // another attribute or a comment.
            let item = || lines[i + 1..].iter().find(|l| !l.starts_with('#') && !l.starts_with("//"));
            // The fuzz targets' entry points (`fuzz/`, another crate) are the
            // one exception: they cannot be `#[cfg(test)]`, so they are
            // behind the non-default `fuzzing` feature, hidden.
            let before = lines[..i].iter().rev().take_while(|l| l.starts_with('#') || l.starts_with("//"));
            let after = lines[i..].iter().take_while(|l| l.starts_with('#'));
            let for_fuzzing = before.chain(after).any(|l| *l == "#[cfg(feature = \"fuzzing\")]");
            let hidden_pub =
                line.starts_with("#[doc(hidden") && !for_fuzzing && item().is_some_and(|l| l.starts_with("pub "));
            let dunder = ["pub fn __", "pub unsafe fn __", "pub mod __", "pub struct __", "pub static __"];
            assert!(
                !(dunder.iter().any(|d| line.starts_with(d)) || hidden_pub),
                "{}:{}: a hidden public item (test hooks belong in #[cfg(test)] code): {line}",
                f.display(),
                i + 1
            );
        }
    }
}

/// `docs/reliability.md`'s campaign table names, for each part, the command
/// that runs it: each `--test X` names a test binary that exists, an
/// ignored one (`--ignored`) is run by `.ci/run` as written, and a script
/// it names is called by `.ci/run` too. (The others run in `cargo test`.)
#[test]
fn the_reliability_campaign_names_commands_that_ci_runs() {
    let doc = std::fs::read_to_string(root().join("docs/reliability.md")).unwrap();
    let ci = std::fs::read_to_string(root().join(".ci/run")).unwrap();
    let (start, end) = ("<!-- campaign:start -->", "<!-- campaign:end -->");
    let table = &doc[doc.find(start).expect("the campaign table")..doc.find(end).expect("its end")];
    let mut commands = 0;
    for row in table.lines().skip(3) {
        let Some(command) = row.split('|').nth(3).and_then(|c| c.trim().strip_prefix('`')?.strip_suffix('`')) else {
            continue;
        };
        commands += 1;
        let words: Vec<&str> = command.split_whitespace().collect();
        for pair in words.windows(2).filter(|w| w[0] == "--test") {
            let file = root().join("tests").join(format!("{}.rs", pair[1]));
            assert!(file.exists(), "{command}: {} does not exist", file.display());
            if command.contains("--ignored") {
                assert!(ci.contains(&format!("--test {} -- --ignored", pair[1])), "{command}: .ci/run does not run it");
            }
        }
        if !command.starts_with("cargo") {
            assert!(root().join(words[0]).exists() && ci.contains(words[0]), "{command}: .ci/run does not call it");
        }
    }
    assert!(commands >= 6, "only {commands} commands in the campaign table");
}
