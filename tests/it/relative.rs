//! `-R`/`--relative` and `--files-from` (with `--from0`), differential against rsync: the kept
//! paths, the implied directories with the source's attributes, what `--delete` may touch,
//! the list's comments, NULs and missing names, locally and pushed and pulled over ssh.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::remote::{Direction, remote_case};
use crate::util::*;

/// A tree whose implied directories have attributes worth keeping (an odd mode, old
/// times), and the lists the `--files-from` tests read (in `src/lists`, so they are read
/// relative to the test directory, where both tools run).
fn rel_src(root: &Path) {
    TestTree::at(root)
        .file("a/b/c/f", b"deep")
        .file("a/b/g", b"g")
        .file("a/b/c/d/e", b"e")
        .file("x/h", b"h")
        .file("x/y/z", b"z")
        .file(
            "lists/plain",
            b"a/b/g\n# a comment\n; another\n\nx\n/a/b/c/d/e\n",
        )
        .file("lists/wire", b"a/b/g\nx\n/a/b/c/d/e\n")
        .file("lists/wire0", b"a/b/g\0x/y\0\0a/b/c\0")
        .file("lists/nul", b"a/b/g\0x/y\0#skipped\0\0a/b/c\0")
        .file("lists/missing", b"a/b/g\nnope\n")
        .file("lists/dots", b"../../x/h\na/../a/b/g\nx/./y/z\n")
        .stamp(false)
        .chmod("a", 0o750)
        .chmod("a/b", 0o705);
}

/// An older destination with extraneous entries at every level of the kept paths.
fn rel_older(dst: &Path) {
    TestTree::at(dst)
        .file("a/old", b"1")
        .file("a/b/old", b"2")
        .file("a/b/c/old", b"3")
        .file("a/b/c/d/old", b"4")
        .file("x/old", b"5")
        .file("top", b"6")
        .stamp(false);
}

fn rel_fixture() -> Fixture {
    Fixture::with_src(rel_src)
}

fn case<'a>(flags: &'a [&'a str], sources: &'a [&'a str]) -> Case<'a> {
    Case {
        fixture: rel_fixture(),
        // `dst` receives the kept paths, so its own time is the time of the run.
        time_exempt: &["dst"],
        ..Case::new(flags, sources, "dst/")
    }
}

fn with_older(c: Case<'_>) -> Case<'_> {
    Case {
        fixture: Fixture {
            older: Some(rel_older),
            ..rel_fixture()
        },
        ..c
    }
}

#[test]
fn relative_keeps_the_path_after_dot_slash() {
    run_case(this_test!(), &case(&["-aR"], &["src/./a/b/c"]));
}

/// Both tools with `args` run in a fresh test directory holding the fixture in `src`, each
/// into its own `a/dst/` or `b/dst/`; returns the directory after comparing exit codes and
/// trees (dst's own time aside).
fn both_in_test_dir(test: &str, args: &[&str]) -> Option<tempfile::TempDir> {
    if !have_rsync(test) {
        return None;
    }
    let dir = test_dir();
    rel_src(&dir.path().join("src"));
    let mut codes = Vec::new();
    for (tool, side) in [(rsync().expect("checked"), "a"), (xsync(), "b")] {
        fs::create_dir_all(dir.path().join(side).join("dst")).expect("mkdir");
        let mut cmd: Command = tool;
        let out = run(cmd
            .args(args)
            .arg(format!("{side}/dst/"))
            .current_dir(dir.path()));
        codes.push((code(&out), stderr(&out)));
    }
    assert_eq!(codes[0].0, codes[1].0, "{test}: {codes:?}");
    let diffs = diff_trees(
        &dir.path().join("a"),
        &dir.path().join("b"),
        &Compare::for_flags(args).ignoring_times_of(["", "dst"]),
    );
    assert!(diffs.is_empty(), "{test}: {diffs:#?}");
    Some(dir)
}

#[test]
fn relative_without_dot_slash_keeps_the_whole_path() {
    let test = this_test!();
    if let Some(dir) = both_in_test_dir(test, &["-aR", "src/a/b/", "src/x/h"]) {
        let b = dir.path().join("b/dst/src");
        assert!(b.join("a/b/c/f").is_file() && b.join("x/h").is_file());
        let mode = |p: &Path| {
            fs::metadata(p)
                .map(|m| m.permissions().mode() & 0o7777)
                .ok()
        };
        // The implied directories carry the source's attributes.
        assert_eq!(mode(&b.join("a")), Some(0o750));
    }
}

#[test]
fn relative_merges_several_sources_and_their_implied_dirs() {
    run_case(
        this_test!(),
        &case(
            &["-aR"],
            &["src/./a/b/c", "src/./x/h", "src/./a/b/g", "src/./a"],
        ),
    );
}

#[test]
fn relative_without_recursion_skips_directories_but_keeps_files() {
    let out = run_case(
        this_test!(),
        &case(&["-lptR"], &["src/./a/b", "src/./a/b/g"]),
    );
    if let Some(out) = out {
        assert!(
            stderr(&out.b).contains("skipping directory a/b") || {
                let o = String::from_utf8_lossy(&out.b.stdout).into_owned();
                o.contains("skipping directory a/b")
            }
        );
    }
}

#[test]
fn relative_refuses_dot_dot_in_the_kept_path() {
    let out = run_case(this_test!(), &case(&["-aR"], &["src/./a/../x"]));
    if let Some(out) = out {
        assert_eq!(code(&out.b), 1);
        assert!(
            stderr(&out.b).contains("found \"..\" dir in relative path"),
            "{}",
            stderr(&out.b)
        );
    }
}

#[test]
fn relative_delete_only_in_the_directories_sent() {
    for sources in [&["src/./a/b/c"][..], &["src/./a/b/c", "src/./x"]] {
        run_case(
            this_test!(),
            &with_older(case(&["-aR", "--delete"], sources)),
        );
    }
}

#[test]
fn files_from_sends_the_listed_names_without_descending() {
    run_case(
        this_test!(),
        &case(&["-a", "--files-from=src/lists/plain"], &["src"]),
    );
}

#[test]
fn files_from_descends_with_an_explicit_r() {
    run_case(
        this_test!(),
        &case(&["-ar", "--files-from=src/lists/plain"], &["src/"]),
    );
}

#[test]
fn files_from0_reads_nul_separated_names() {
    for flags in [
        &["-a", "--from0", "--files-from=src/lists/nul"][..],
        &["-a0r", "--files-from=src/lists/nul"],
    ] {
        run_case(this_test!(), &case(flags, &["src"]));
    }
}

#[test]
fn files_from_keeps_dot_dot_names_inside_the_source() {
    run_case(
        this_test!(),
        &case(&["-a", "--files-from=src/lists/dots"], &["src"]),
    );
}

#[test]
fn files_from_with_a_missing_name_sends_the_rest_and_exits_23() {
    let out = run_case(
        this_test!(),
        &case(&["-a", "--files-from=src/lists/missing"], &["src"]),
    );
    if let Some(out) = out {
        assert_eq!(code(&out.b), 23);
        assert!(stderr(&out.b).contains("nope"), "{}", stderr(&out.b));
        assert!(out.side_b().join("dst/a/b/g").is_file());
    }
}

/// --ignore-missing-args: the listed name that is not there is left out without an error
/// (exit 0, as rsync), the rest is sent.
#[test]
fn files_from_with_ignore_missing_args_skips_the_missing_name() {
    let out = run_case(
        this_test!(),
        &case(
            &[
                "-a",
                "--ignore-missing-args",
                "--files-from=src/lists/missing",
            ],
            &["src"],
        ),
    );
    if let Some(out) = out {
        assert_eq!(code(&out.b), 0, "{}", stderr(&out.b));
        assert!(out.side_b().join("dst/a/b/g").is_file());
    }
}

#[test]
fn files_from_delete_as_rsync_deletes() {
    for flags in [
        &["-a", "--delete", "--files-from=src/lists/plain"][..],
        &["-ar", "--delete", "--files-from=src/lists/plain"],
    ] {
        run_case(this_test!(), &with_older(case(flags, &["src"])));
    }
}

/// rsync's usage errors: more than one source, a list that cannot be read, a remote list.
#[test]
fn files_from_usage_errors_exit_1() {
    let dir = test_dir();
    rel_src(&dir.path().join("src"));
    for (args, says) in [
        (
            &["-a", "--files-from=src/lists/plain", "src", "src", "dst/"][..],
            "exactly one source",
        ),
        (
            &["-a", "--files-from=src/lists/none", "src", "dst/"],
            "open files-from file",
        ),
        (
            &["-a", "--files-from=host:list", "src", "dst/"],
            "remote list",
        ),
    ] {
        let out = run(xsync().args(args).current_dir(dir.path()));
        assert_eq!(code(&out), 1, "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(says), "{args:?}: {}", stderr(&out));
        assert!(!dir.path().join("dst").exists(), "{args:?}");
    }
}

/// `find … -print0 | rsync -a --from0 --files-from=- src/ dst/`: the list on stdin.
#[test]
fn files_from_stdin() {
    if !have_rsync(this_test!()) {
        return;
    }
    let dir = test_dir();
    rel_src(&dir.path().join("src"));
    for (tool, side) in [(rsync().expect("checked"), "a"), (xsync(), "b")] {
        fs::create_dir_all(dir.path().join(side)).expect("mkdir");
        let mut cmd: Command = tool;
        let mut child = cmd
            .args(["-a", "--from0", "--files-from=-", "src/"])
            .arg(dir.path().join(side).join("dst/"))
            .current_dir(dir.path())
            .stdin(Stdio::piped())
            .spawn()
            .expect("spawn");
        child
            .stdin
            .take()
            .expect("piped")
            .write_all(b"a/b/c/f\0x/h\0")
            .expect("write list");
        let st = child.wait().expect("wait");
        assert!(st.success(), "{side}: {st}");
    }
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let diffs = diff_trees(&a, &b, &Compare::default().ignoring_times_of(["", "dst"]));
    assert!(diffs.is_empty(), "{diffs:#?}");
    assert!(b.join("dst/a/b/c/f").is_file() && b.join("dst/x/h").is_file());
    assert!(!b.join("dst/a/b/g").exists());
    let _ = fs::remove_dir_all(dir.path().join("a"));
}

fn over_ssh(test: &str, flags: &[&str], sources: &[&str], older: bool) {
    for direction in [Direction::Push, Direction::Pull] {
        let c = case(flags, sources);
        let c = if older { with_older(c) } else { c };
        remote_case(&format!("{test} ({direction:?})"), &c, direction);
    }
}

#[test]
fn relative_over_ssh() {
    over_ssh(this_test!(), &["-aR"], &["src/./a/b/c", "src/./x/h"], false);
}

#[test]
fn relative_delete_over_ssh() {
    over_ssh(this_test!(), &["-aR", "--delete"], &["src/./a/b/c"], true);
}

#[test]
fn files_from_over_ssh() {
    over_ssh(
        this_test!(),
        // (Without comments: rsync 3.5 sends a pull's list to the server with them, which
        // then looks them up as names; xsync skips them everywhere.)
        &["-a", "--files-from=src/lists/wire"],
        &["src"],
        false,
    );
    over_ssh(
        "files_from_over_ssh (-r, --from0)",
        &["-ar", "--from0", "--files-from=src/lists/wire0"],
        &["src/"],
        true,
    );
}

/// A source whose kept path goes through a symlink to a directory (`link -> real`).
fn linked_parent_src(root: &Path) {
    TestTree::at(root)
        .file("real/sub/file", b"under a linked parent\n")
        .symlink("link", "real")
        .stamp(false);
}

fn linked_parent_case<'a>(sources: &'a [&'a str]) -> Case<'a> {
    Case {
        fixture: Fixture::with_src(linked_parent_src),
        ..case(&["-aR"], sources)
    }
}

/// A symlink on the user's own path to a source is followed, as rsync follows it: the
/// implied directory `link` arrives as the directory it leads to (not as the link, and not
/// as an error), locally and over ssh both ways.
#[test]
fn relative_follows_a_symlink_in_the_kept_path_as_rsync_does() {
    let test = this_test!();
    // (Kept after /./: the harness passes absolute source paths.)
    for sources in [&["src/./link/sub/file"][..], &["src/./link/sub"]] {
        let c = linked_parent_case(sources);
        if let Some(out) = run_case(test, &c) {
            let got = out.side_b().join("dst/link");
            assert!(
                fs::symlink_metadata(&got).is_ok_and(|m| m.is_dir()),
                "{test}: {got:?} is not a directory"
            );
        }
        for direction in [Direction::Push, Direction::Pull] {
            remote_case(&format!("{test} ({direction:?})"), &c, direction);
        }
    }
}
