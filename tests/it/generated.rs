//! What is generated from clap's definitions (`xsync::cli::command()`): the man page
//! (`man/xsync.1`, clap_mangen over `man/xsync.1.in`'s prose) and the bash, zsh and fish
//! completions (`completions/`, clap_complete). The files are committed, so that a checkout
//! or a `cargo install` user has them without building anything; these tests build them again
//! in memory and fail when a committed one differs. The generators are dev-dependencies, so
//! the release binary carries none of them.
//!
//! `XSYNC_REGENERATE=1 cargo test --test it generated` writes the files instead.
//!
//! Also here: `--help` keeps rsync's order inside each of its groups.

use crate::util::*;
use clap_complete::Shell;
use clap_mangen::roff::{Roff, bold, italic, roman};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The command that rewrites the generated files, named in every failure.
const REGENERATE: &str = "XSYNC_REGENERATE=1 cargo test --test it generated";

/// The line of `man/xsync.1.in` that the OPTIONS section replaces.
const OPTIONS_MARKER: &str = r#".\" @OPTIONS@"#;

/// Hidden options that are words the client sends the server, not the user's: not documented.
const INTERNAL: &[&str] = &[
    "files-from-wire",
    "xattrs-user-only",
    "client-names",
    "log-relay-format",
];

/// The completion files and the shell each is for.
const COMPLETIONS: &[(Shell, &str)] = &[
    (Shell::Bash, "completions/xsync.bash"),
    (Shell::Zsh, "completions/_xsync"),
    (Shell::Fish, "completions/xsync.fish"),
];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn regenerating() -> bool {
    std::env::var_os("XSYNC_REGENERATE").is_some_and(|v| !v.is_empty() && v != "0")
}

/// The committed `path` must be `want`; under `XSYNC_REGENERATE=1` it is made so.
fn check_generated(path: &str, want: &str) {
    let file: PathBuf = root().join(path);
    if regenerating() {
        if let Some(dir) = file.parent() {
            fs::create_dir_all(dir).expect("create the directory");
        }
        fs::write(&file, want).expect("write the generated file");
        note(&format!("NOTE: {}: wrote `{path}`", this_test!()));
        return;
    }
    let have = fs::read_to_string(&file).unwrap_or_default();
    if have != want {
        let line = have
            .lines()
            .zip(want.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| have.lines().count().min(want.lines().count()));
        panic!(
            "`{path}` is not what src/cli.rs (and man/xsync.1.in) generate: first difference at \
             line {}\n  committed: {:?}\n  generated: {:?}\nRun `{REGENERATE}` and commit the result.",
            line + 1,
            have.lines().nth(line).unwrap_or("(end of file)"),
            want.lines().nth(line).unwrap_or("(end of file)"),
        );
    }
}

/// Roff as the roff crate renders it, without the apostrophe preamble it puts before each
/// piece (the page has it once, at the top).
fn without_preamble(rendered: Vec<u8>) -> String {
    let text = String::from_utf8(rendered).expect("roff is UTF-8");
    let preamble = Roff::new().render();
    text.strip_prefix(&preamble)
        .map(str::to_owned)
        .unwrap_or(text)
}

/// The hidden `--no-X` forms, each with its aliases: `--no-recursive (--no-r)`.
fn negations(cmd: &clap::Command) -> Vec<String> {
    cmd.get_arguments()
        .filter(|a| a.is_hide_set())
        .filter_map(|a| {
            let long = a.get_long()?;
            long.starts_with("no-").then(|| {
                let mut s = format!("--{long}");
                let aliases: Vec<String> = a
                    .get_all_aliases()
                    .unwrap_or_default()
                    .iter()
                    .map(|al| format!("--{al}"))
                    .collect();
                if !aliases.is_empty() {
                    s += &format!(" ({})", aliases.join(", "));
                }
                s
            })
        })
        .collect()
}

/// rsync's `--no-OPTION` entry, with the forms xsync takes (clap hides each of them, so that
/// `--help` and the completions stay as short as rsync's).
fn no_option_entry(cmd: &clap::Command) -> String {
    let mut roff = Roff::new();
    roff.control("TP", []);
    roff.text([bold("--no-"), italic("OPTION")]);
    roff.text([roman(format!(
        "Turn off OPTION, also where another option implies it: -a --no-o is -a without -o. \
         These forms are taken: {}.",
        negations(cmd).join(", ")
    ))]);
    without_preamble(roff.render().into_bytes())
}

/// clap_mangen's options, one `.SH` per help heading, as subsections of one OPTIONS section,
/// with the `--no-OPTION` entry at the end of the group of `-a` (rsync's `--help` lists it
/// after `-a`).
fn options_section(man: &clap_mangen::Man, cmd: &clap::Command) -> String {
    let mut rendered = Vec::new();
    man.render_options_section(&mut rendered)
        .expect("render the options");
    let rendered = without_preamble(rendered);
    let heading_of = |id: &str| {
        cmd.get_arguments()
            .find(|a| a.get_id() == id)
            .and_then(|a| a.get_help_heading())
            .expect("-a has a heading")
    };
    let archive = heading_of("archive");
    let quoted = |s: &str| {
        if s.contains(' ') {
            format!("\"{s}\"")
        } else {
            s.to_owned()
        }
    };
    let mut headings: Vec<&str> = Vec::new();
    for a in cmd.get_arguments().filter(|a| !a.is_hide_set()) {
        if let Some(h) = a.get_help_heading()
            && !headings.contains(&h)
        {
            headings.push(h);
        }
    }
    let mut out = String::from(".SH OPTIONS\n");
    let mut in_archive = false;
    for line in rendered.lines() {
        if let Some(upper) = line.strip_prefix(".SH ") {
            let heading = headings
                .iter()
                .find(|h| quoted(&h.to_uppercase()) == upper)
                .unwrap_or_else(|| {
                    let bare: Vec<String> = cmd
                        .get_arguments()
                        .filter(|a| !a.is_hide_set() && !a.is_positional())
                        .filter(|a| a.get_help_heading().is_none())
                        .map(|a| a.get_id().to_string())
                        .collect();
                    panic!(
                        "options without a help_heading in src/cli.rs (give each its --help \
                         group): {bare:?} (clap_mangen's section {upper})"
                    )
                });
            if in_archive {
                out += &no_option_entry(cmd);
            }
            in_archive = *heading == archive;
            out += &format!(".SS {}\n", quoted(heading));
        } else {
            out += line;
            out += "\n";
        }
    }
    if in_archive {
        out += &no_option_entry(cmd);
    }
    out
}

/// `man/xsync.1`: clap_mangen's title, NAME, SYNOPSIS and options, and the prose of
/// `man/xsync.1.in` around them.
fn man_page() -> String {
    let cmd = xsync::cli::command()
        // NAME's line (the help's first line names the program in front).
        .about("fast, atomic, rsync-compatible file replication, local or over SSH")
        // SYNOPSIS and DESCRIPTION say what the paths are.
        .mut_arg("paths", |a| a.hide(true));
    let man = clap_mangen::Man::new(cmd.clone())
        .title("XSYNC")
        .section("1")
        // No date: it would be stale the day after; an empty argument must be written `""`,
        // or `.TH` reads the next one as the date.
        .date("\"\"")
        .source(format!("xsync {}", env!("CARGO_PKG_VERSION")))
        .manual("User Commands");
    let template = fs::read_to_string(root().join("man/xsync.1.in")).expect("read man/xsync.1.in");
    let mut page = format!(
        ".\\\" Generated from clap's definitions (src/cli.rs) and man/xsync.1.in: edit those, then\n\
         .\\\" run `{REGENERATE}`.\n"
    );
    page += &Roff::new().render();
    type Part = fn(&clap_mangen::Man, &mut dyn std::io::Write) -> std::io::Result<()>;
    let parts: [Part; 3] = [
        clap_mangen::Man::render_title,
        clap_mangen::Man::render_name_section,
        clap_mangen::Man::render_synopsis_section,
    ];
    for part in parts {
        let mut buf = Vec::new();
        part(&man, &mut buf).expect("render");
        page += &without_preamble(buf);
    }
    // The template's own opening comment is about the template.
    let mut marked = false;
    for line in template.lines().skip_while(|l| l.starts_with(r#".\""#)) {
        if line == OPTIONS_MARKER {
            page += &options_section(&man, &cmd);
            marked = true;
        } else {
            page += line;
            page += "\n";
        }
    }
    assert!(marked, "man/xsync.1.in has no `{OPTIONS_MARKER}` line");
    page
}

/// The completions of the options `--help` lists. clap_complete offers hidden arguments too
/// (the `--no-X` forms, the words for the server), so they are left out of the command it is
/// given; with them go the overrides that name them, which only parsing needs.
fn completion(shell: Shell) -> String {
    let full = xsync::cli::command();
    let mut cmd = clap::Command::new("xsync")
        .disable_help_flag(true)
        .disable_version_flag(true)
        .args(
            full.get_arguments()
                .filter(|a| !a.is_hide_set())
                .map(|a| a.clone().overrides_with(clap::builder::Resettable::Reset)),
        );
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut cmd, "xsync", &mut buf);
    String::from_utf8(buf).expect("completions are UTF-8")
}

/// Whether `text` has `word` not followed by more of an option name (`--del` is not in
/// `--delete`).
fn mentions(text: &str, word: &str) -> bool {
    text.match_indices(word).any(|(i, _)| {
        !text[i + word.len()..]
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '-')
    })
}

/// The man page's roff spelling of an option: `--no-perms` is `\-\-no\-perms`.
fn in_roff(option: &str) -> String {
    option.replace('-', r"\-")
}

#[test]
fn man_page_is_generated_from_the_definitions() {
    check_generated("man/xsync.1", &man_page());
}

#[test]
fn completions_are_generated_from_the_definitions() {
    for (shell, path) in COMPLETIONS {
        check_generated(path, &completion(*shell));
    }
}

/// The man page has every option clap hides from `--help` but the internal ones: the
/// `--no-X` forms in its `--no-OPTION` entry, the rest (`-K`, refused) in its prose.
#[test]
fn hidden_options_are_still_in_the_man_page() {
    let page = man_page();
    for arg in xsync::cli::command().get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        if !arg.is_hide_set() || INTERNAL.contains(&long) {
            continue;
        }
        let mut names = vec![long.to_string()];
        names.extend(
            arg.get_all_aliases()
                .unwrap_or_default()
                .iter()
                .map(|a| a.to_string()),
        );
        if !long.starts_with("no-") {
            names.truncate(1);
        }
        for name in names {
            assert!(
                mentions(&page, &in_roff(&format!("--{name}"))),
                "the man page does not mention the hidden --{name}: list it in man/xsync.1.in's \
                 prose, then run `{REGENERATE}`"
            );
        }
    }
}

/// A completion offers what `--help` lists: no hidden option, no hidden alias.
#[test]
fn completions_offer_no_hidden_option() {
    let cmd = xsync::cli::command();
    let mut hidden: Vec<String> = Vec::new();
    for arg in cmd.get_arguments() {
        if arg.is_hide_set()
            && let Some(long) = arg.get_long()
        {
            hidden.push(long.to_string());
        }
        hidden.extend(
            arg.get_aliases()
                .unwrap_or_default()
                .iter()
                .map(|a| a.to_string()),
        );
    }
    // A visible alias would be listed; clap's `alias` is a hidden one.
    assert!(
        hidden.iter().any(|h| h == "del"),
        "--del is an alias: {hidden:?}"
    );
    for (shell, path) in COMPLETIONS {
        let script = completion(*shell);
        for name in &hidden {
            // fish names a long option without its dashes: `-l no-perms`.
            let offered = mentions(&script, &format!("--{name}"))
                || (*shell == Shell::Fish && mentions(&script, &format!("-l {name}")));
            assert!(!offered, "{path} offers the hidden --{name}");
        }
        assert!(mentions(&script, "delete"), "{path} lacks --delete");
    }
}

/// groff reads the generated page without a warning (a stray roff request, a bad font
/// escape), so `man -l man/xsync.1` shows what the sources say.
#[test]
fn man_page_renders_without_warnings() {
    if Command::new("groff").arg("--version").output().is_err() {
        skip(
            this_test!(),
            "groff not installed (the page was not typeset)",
        );
        return;
    }
    let mut child = Command::new("groff")
        .args(["-man", "-Tutf8", "-ww", "-z"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start groff");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("groff's stdin");
        stdin
            .write_all(man_page().as_bytes())
            .expect("write to groff");
    }
    let out = child.wait_with_output().expect("groff ran");
    let warnings = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && warnings.trim().is_empty(),
        "groff: {warnings}"
    );
}

/// The first option word of a help line: `--verbose` of `  -v, --verbose...  increase…`,
/// `-D` of `  -D  same as…`, `--info` of `--info=FLAGS  fine-grained…`.
fn option_word(line: &str) -> Option<String> {
    let words: Vec<&str> = line
        .split("  ")
        .map(str::trim)
        .find(|w| !w.is_empty())?
        .split([',', ' '])
        .filter(|w| w.starts_with('-'))
        .collect();
    let word = words
        .iter()
        .find(|w| w.starts_with("--"))
        .or(words.first())?;
    let word = word.split(['=', '<', '[']).next()?.trim_end_matches("...");
    Some(word.to_string())
}

/// `--help` is grouped, and inside each group the options rsync also has come in the order of
/// `rsync --help`, so a reader who knows rsync's list finds them where they expect.
#[test]
fn help_keeps_rsyncs_order_inside_each_group() {
    let help = stdout(&run(xsync().arg("--help")));
    let mut groups: Vec<(String, Vec<String>)> = Vec::new();
    for line in help.lines() {
        if !line.starts_with(' ') && line.ends_with(':') && !line.starts_with("Usage") {
            groups.push((line.trim_end_matches(':').to_string(), Vec::new()));
        } else if line.starts_with("  ")
            && line.trim_start().starts_with('-')
            && let (Some((_, options)), Some(word)) = (groups.last_mut(), option_word(line))
        {
            options.push(word);
        }
    }
    let names: Vec<&str> = groups.iter().map(|(g, _)| g.as_str()).collect();
    assert!(names.len() >= 8, "--help is not grouped: {names:?}\n{help}");
    assert_eq!(names.first(), Some(&"Arguments"), "{names:?}");
    assert_eq!(
        names.get(1),
        Some(&"Output"),
        "rsync lists -v first: {names:?}"
    );
    assert_eq!(
        names.last(),
        Some(&"Help"),
        "rsync lists --help last: {names:?}"
    );
    let Some(mut r) = rsync() else {
        skip(
            this_test!(),
            "rsync not installed (the order was not compared)",
        );
        return;
    };
    let rsync_help = stdout(&run(r.arg("--help")));
    let order: Vec<String> = rsync_help
        .lines()
        .filter(|l| l.starts_with('-'))
        .filter_map(option_word)
        .collect();
    assert!(order.len() > 100, "rsync --help: {rsync_help}");
    let mut compared = 0;
    for (group, options) in &groups {
        let at: Vec<(usize, &String)> = options
            .iter()
            .filter_map(|o| order.iter().position(|r| r == o).map(|i| (i, o)))
            .collect();
        for pair in at.windows(2) {
            assert!(
                pair[0].0 < pair[1].0,
                "{group}: rsync --help lists {} before {}",
                pair[1].1,
                pair[0].1
            );
        }
        compared += at.len();
    }
    assert!(
        compared > 60,
        "only {compared} options compared with rsync's"
    );
}
