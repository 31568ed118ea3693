//! The project's layout rules, checked over src/ (see docs/ARCHITECTURE.md).

use std::path::Path;

/// The non-test code of a source file (a module's `#[cfg(test)]` tail left out).
fn code_of(text: &str) -> &str {
    match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    }
}

/// Every module of src/ by name, with its text: `name.rs`, or all the files of `name/`.
fn modules() -> std::collections::BTreeMap<String, String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = std::collections::BTreeMap::new();
    for e in std::fs::read_dir(&src).unwrap() {
        let path = e.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if let Some(m) = name.strip_suffix(".rs") {
            out.insert(m.to_string(), std::fs::read_to_string(&path).unwrap());
        } else if path.is_dir() {
            let mut text = String::new();
            for f in std::fs::read_dir(&path).unwrap() {
                let f = f.unwrap().path();
                if f.extension().is_some_and(|x| x == "rs") {
                    // (Each file's own test tail is cut by code_of.)
                    text.push_str(code_of(&std::fs::read_to_string(&f).unwrap()));
                    text.push('\n');
                }
            }
            out.insert(name, text);
        }
    }
    out
}

#[test]
fn nothing_below_the_face_knows_the_command_line() {
    // Only main.rs, lib.rs (the entry point and --server dispatch) and cli.rs itself know
    // clap and cli.rs: the engine takes a config::Options.
    let mut offenders = Vec::new();
    let mut checked = 0;
    for (name, text) in modules() {
        if ["main", "lib", "cli"].contains(&name.as_str()) {
            continue;
        }
        checked += 1;
        for (n, line) in code_of(&text).lines().enumerate() {
            let l = line.trim_start();
            if l.starts_with("//") {
                continue;
            }
            if l.contains("crate::cli") || l.contains("clap::") || l.contains(" cli::") {
                offenders.push(format!("{name}:{}: {}", n + 1, line.trim()));
            }
        }
    }
    assert!(checked > 20, "only {checked} modules found");
    assert!(
        offenders.is_empty(),
        "below the face:\n{}",
        offenders.join("\n")
    );
}

/// Which modules each module of src/ names (`crate::NAME` in its non-test code, comments
/// left out).
fn module_graph() -> std::collections::BTreeMap<String, std::collections::BTreeSet<String>> {
    let texts = modules();
    let mut graph = std::collections::BTreeMap::new();
    for (m, text) in &texts {
        let mut names = std::collections::BTreeSet::new();
        let code: String = code_of(text)
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        // `crate::name`, and the names inside `use crate::{a, b::c}`.
        let mut rest = code.as_str();
        while let Some(i) = rest.find("crate::") {
            rest = &rest[i + 7..];
            if let Some(group) = rest.strip_prefix('{') {
                let end = group.find('}').unwrap_or(group.len());
                for part in group[..end].split(',') {
                    let n: String = part
                        .trim()
                        .chars()
                        .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                        .collect();
                    names.insert(n);
                }
            } else {
                let n: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                    .collect();
                names.insert(n);
            }
        }
        names.retain(|n| n != m && texts.contains_key(n));
        graph.insert(m.clone(), names);
    }
    graph
}

#[test]
fn no_module_reaches_back_to_one_that_uses_it() {
    // (None is allowed; a documented exception would be listed here.)
    let allowed: &[&[&str]] = &[];
    let graph = module_graph();
    assert!(graph.len() > 20, "{} modules", graph.len());
    let reach = |from: &str| {
        let mut seen = std::collections::BTreeSet::new();
        let mut todo = vec![from.to_string()];
        while let Some(m) = todo.pop() {
            for n in &graph[&m] {
                if seen.insert(n.clone()) {
                    todo.push(n.clone());
                }
            }
        }
        seen
    };
    let mut cycles = std::collections::BTreeSet::new();
    for m in graph.keys() {
        let mine = reach(m);
        let group: Vec<String> = graph
            .keys()
            .filter(|n| *n == m || (mine.contains(*n) && reach(n).contains(m)))
            .cloned()
            .collect();
        if group.len() > 1 {
            cycles.insert(group);
        }
    }
    let unexpected: Vec<_> = cycles
        .iter()
        .filter(|c| {
            !allowed
                .iter()
                .any(|a| c.iter().map(String::as_str).eq(a.iter().copied()))
        })
        .collect();
    assert!(unexpected.is_empty(), "import cycles: {unexpected:?}");
}

#[test]
fn a_test_knows_its_own_name() {
    assert_eq!(this_test!(), "a_test_knows_its_own_name");
    // Inside a closure too (the differential helpers take some).
    let from_closure = || this_test!();
    assert_eq!(from_closure(), "a_test_knows_its_own_name");
}

#[test]
fn the_arrows_that_must_never_exist_do_not() {
    // (docs/ARCHITECTURE.md, "The arrows".)
    let graph = module_graph();
    let mut found = Vec::new();
    for (m, names) in &graph {
        if !["main", "lib", "cli", "endpoint"].contains(&m.as_str()) && names.contains("endpoint") {
            found.push(format!("{m} -> endpoint"));
        }
    }
    for (from, to) in [
        ("delta", "write"),
        ("delta", "exec"),
        ("tree", "write"),
        ("tree", "exec"),
        ("tree", "fs"),
        ("protocol", "write"),
        ("protocol", "exec"),
        ("protocol", "fs"),
        ("summary", "write"),
        ("summary", "exec"),
        ("summary", "fs"),
    ] {
        assert!(
            graph.contains_key(from) && graph.contains_key(to),
            "{from}, {to}"
        );
        if graph[from].contains(to) {
            found.push(format!("{from} -> {to}"));
        }
    }
    assert!(
        graph["cli"].contains("endpoint"),
        "the check sees real arrows"
    );
    assert!(found.is_empty(), "forbidden arrows: {found:?}");
}
