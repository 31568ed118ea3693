//! The project's layout rules, checked over src/ (see docs/ARCHITECTURE.md).

use std::path::Path;

/// The non-test code of a source file (a module's `#[cfg(test)]` tail left out).
fn code_of(text: &str) -> &str {
    match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    }
}

#[test]
fn nothing_below_the_face_knows_the_command_line() {
    // Only main.rs, lib.rs (the entry point and --server dispatch) and cli.rs itself know
    // clap and cli.rs: the engine takes a config::Options.
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut offenders = Vec::new();
    let mut checked = 0;
    for e in std::fs::read_dir(&src).unwrap() {
        let path = e.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.ends_with(".rs") || ["main.rs", "lib.rs", "cli.rs"].contains(&name.as_str()) {
            continue;
        }
        checked += 1;
        let text = std::fs::read_to_string(&path).unwrap();
        for (n, line) in code_of(&text).lines().enumerate() {
            let l = line.trim_start();
            if l.starts_with("//") {
                continue;
            }
            if l.contains("crate::cli") || l.contains("clap::") || l.contains(" cli::") {
                offenders.push(format!("src/{name}:{}: {}", n + 1, line.trim()));
            }
        }
    }
    assert!(checked > 20, "only {checked} modules found under {src:?}");
    assert!(
        offenders.is_empty(),
        "below the face:\n{}",
        offenders.join("\n")
    );
}
