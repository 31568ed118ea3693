//! The sending side's options against rsync: `--list-only` (and the listing mode of one
//! source and no destination), `--remove-source-files`, `--delete-missing-args` and
//! `--no-implied-dirs`, locally, pushed and pulled over ssh, and re-run. Both tools run on
//! identical copies of one setup (the source changes under `--remove-source-files`, so the
//! usual one-source harness does not fit); exit codes, stdout and both whole sides (source
//! and destination) must be equal. A hostile receiver's confirmations are checked against
//! the real `xsync --server` sender.

use crate::peer::Peer;
use crate::remote::{rsync_over, xsync_over};
use crate::sshd::Sshd;
use crate::util::*;
use std::ffi::OsString;
use std::fs;
use std::path::Path;
use std::process::Output;
use xsync::protocol::{ListDir, Msg, Role};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Where {
    Local,
    Push,
    Pull,
}

const EVERYWHERE: [Where; 3] = [Where::Local, Where::Push, Where::Pull];

/// One setup run by both tools: `build` makes it in each side's root (`a` for rsync, `b`
/// for xsync); paths in `args` starting with `src` are sources (remote on a pull), one
/// starting with `dst` the destination (remote on a push).
struct Pair {
    dir: tempfile::TempDir,
    sshd: Option<Sshd>,
}

struct Ran {
    a: Output,
    b: Output,
}

impl Pair {
    fn new(test: &str, at: Where, build: fn(&Path)) -> Option<Pair> {
        if !have_rsync(test) {
            return None;
        }
        let sshd = match at {
            Where::Local => None,
            _ => Some(Sshd::start(test)?),
        };
        let dir = test_dir();
        for side in ["a", "b"] {
            let root = dir.path().join(side);
            fs::create_dir(&root).expect("mkdir side");
            build(&root);
        }
        Some(Pair { dir, sshd })
    }

    fn side(&self, s: &str) -> std::path::PathBuf {
        self.dir.path().join(s)
    }

    /// Runs both tools with `flags` and `args` (see [`Pair`]), with `TZ` set to `tz`.
    fn run(&self, at: Where, flags: &[&str], args: &[&str], tz: &str) -> Ran {
        let one = |side: &str, rsync_side: bool| -> Output {
            let root = self.side(side);
            let mut cmd = match (&self.sshd, rsync_side) {
                (Some(s), true) => rsync_over(s),
                (Some(s), false) => xsync_over(s),
                (None, true) => rsync().expect("checked"),
                (None, false) => xsync(),
            };
            cmd.current_dir(&root).env("TZ", tz).args(flags);
            for a in args {
                let remote = (a.starts_with("src") && at == Where::Pull)
                    || (a.starts_with("dst") && at == Where::Push);
                // (Through `/./`, so that -R keeps the same path on both sides.)
                let abs = arg_path(&root, &format!("./{a}"));
                cmd.arg(if remote {
                    crate::sshd::remote(&abs)
                } else {
                    OsString::from(*a)
                });
            }
            run(&mut cmd)
        };
        Ran {
            a: one("a", true),
            b: one("b", false),
        }
    }

    /// Both sides' trees, equal but for the mtimes of `exempt` (relative to a side).
    fn assert_same_trees(&self, test: &str, what: &str, flags: &[&str], exempt: &[&str]) {
        // (Each side's own root is made by the harness, not by a tool.)
        let cmp = Compare::for_flags(flags)
            .ignoring_times_of(exempt.iter().copied())
            .ignoring_times_of([""]);
        let diffs = diff_trees(&self.side("a"), &self.side("b"), &cmp);
        assert!(
            diffs.is_empty(),
            "{test}: {what}: the sides differ (A rsync, B xsync):\n{}",
            diffs.join("\n")
        );
    }
}

fn show_both(r: &Ran) -> String {
    format!(
        "rsync exit {}\nstdout:\n{}stderr:\n{}\nxsync exit {}\nstdout:\n{}stderr:\n{}",
        code(&r.a),
        stdout(&r.a),
        stderr(&r.a),
        code(&r.b),
        stdout(&r.b),
        stderr(&r.b)
    )
}

fn assert_same_outcome(test: &str, what: &str, r: &Ran) {
    assert_eq!(
        code(&r.a),
        code(&r.b),
        "{test}: {what}: exit codes\n{}",
        show_both(r)
    );
    assert_eq!(
        stdout(&r.a),
        stdout(&r.b),
        "{test}: {what}: stdout\n{}",
        show_both(r)
    );
}

// ---------------------------------------------------------------------------------------
// --list-only
// ---------------------------------------------------------------------------------------

/// Sizes across rsync's digit groups and `-h` units, a symlink, a fifo, odd modes, a
/// subdirectory with its own, fixed times (some before 1970 and in summer time).
fn listing_tree(root: &Path) {
    let t = TestTree::at(&root.join("src"));
    t.dir("")
        .file("small", b"x")
        .random_file("thousands", 1, 12_345)
        .random_file("megabytes", 2, 1_234_567)
        .file("setuid", b"run me")
        .chmod("setuid", 0o4755)
        .file("sub/inner", b"inner file\n")
        .file("sub/deeper/leaf", b"leaf")
        .dir("sub.d")
        .dir("sticky")
        .chmod("sticky", 0o1777)
        .symlink("link", "small");
    t.fifo("pipe").expect("mkfifo");
    t.dir("").file("a b", b"space in the name");
    for (i, rel) in [
        "small",
        "thousands",
        "megabytes",
        "setuid",
        "sub/inner",
        "sub/deeper/leaf",
        "sub/deeper",
        "sub.d",
        "sticky",
        "pipe",
        "a b",
        "sub",
    ]
    .iter()
    .enumerate()
    {
        t.set_mtime(rel, 1_688_169_600 + i as i64 * 86_400 * 40, 0);
    }
    t.set_mtime("link", -86_400 * 400, 0);
    t.set_mtime("", 1_000_000_000, 0);
    fs::create_dir(root.join("dst")).expect("mkdir dst");
    set_mtime(&root.join("dst"), 1_400_000_000, 0);
}

#[test]
fn list_only_lines_match_rsync_byte_for_byte() {
    let test = this_test!();
    let cases: &[(&[&str], &[&str])] = &[
        (&["--list-only", "-a"], &["src/", "dst/"]),
        (&["-a"], &["src/"]),
        (&["-r"], &["src/"]),
        (&[], &["src/"]),
        (&[], &["src"]),
        (&["-a"], &["src"]),
        (&["-ah"], &["src/"]),
        (&["-ahh"], &["src/"]),
        (&["-a"], &["src/sub/inner"]),
        (&["--list-only", "-l"], &["src/link", "src/small", "dst/"]),
        (&["-a", "--exclude=sub"], &["src/"]),
        (&["-aR"], &["src/sub/deeper/leaf"]),
        (&["-aR", "--no-implied-dirs"], &["src/sub/deeper/leaf"]),
    ];
    for at in EVERYWHERE {
        let Some(pair) = Pair::new(test, at, listing_tree) else {
            return;
        };
        for (flags, args) in cases {
            if at == Where::Push && !args.iter().any(|a| a.starts_with("dst")) {
                continue;
            }
            // (A push's listing is the remote's, in its own zone, under rsync.)
            let zones: &[&str] = if at == Where::Push {
                &["UTC"]
            } else {
                &["UTC", "Europe/Berlin"]
            };
            for &tz in zones {
                let r = pair.run(at, flags, args, tz);
                let what = format!("{at:?} {flags:?} {args:?} TZ={tz}");
                assert_same_outcome(test, &what, &r);
                assert_eq!(code(&r.b), 0, "{test}: {what}\n{}", show_both(&r));
                assert!(!stdout(&r.b).is_empty(), "{test}: {what}: nothing listed");
            }
        }
        // A listing writes nothing anywhere.
        pair.assert_same_trees(test, &format!("{at:?}"), &["-a"], &[]);
        assert_eq!(
            fs::read_dir(pair.side("b").join("dst"))
                .expect("dst")
                .count(),
            0,
            "{test}: {at:?}: the listing wrote into the destination"
        );
    }
}

#[test]
fn list_only_of_a_missing_source_fails_as_rsync() {
    let test = this_test!();
    for at in [Where::Local, Where::Pull] {
        let Some(pair) = Pair::new(test, at, listing_tree) else {
            return;
        };
        let r = pair.run(at, &["-a"], &["src/nonexistent"], "UTC");
        assert_eq!(code(&r.a), 23, "{test}: rsync itself\n{}", show_both(&r));
        assert_eq!(code(&r.b), code(&r.a), "{test}: {at:?}\n{}", show_both(&r));
    }
}

// ---------------------------------------------------------------------------------------
// --remove-source-files
// ---------------------------------------------------------------------------------------

/// A source whose destination already has some of it right, some of it older, and lacks
/// the rest; with a symlink and a fifo (rsync removes every non-directory it has in place).
fn removal_setup(root: &Path) {
    let src = TestTree::at(&root.join("src"));
    src.dir("")
        .file("same", b"already there\n")
        .file("older", b"new content\n")
        .file("new", b"not there yet\n")
        .file("sub/deep/file", b"deep\n")
        .file("sub/kept-too", b"kept\n")
        .symlink("link", "same");
    src.fifo("pipe").expect("mkfifo");
    let dst = TestTree::at(&root.join("dst"));
    dst.dir("")
        .file("same", b"already there\n")
        .file("older", b"old\n")
        .file("extra", b"only at the destination\n");
    for t in [&src, &dst] {
        t.stamp(false);
        t.set_mtime("same", 1_600_000_000, 0);
    }
    src.set_mtime("older", 1_600_000_100, 0);
    dst.set_mtime("older", 1_500_000_000, 0);
    src.stamp(true);
    dst.stamp(true);
}

/// The directories whose times the removals (or the new entries) move, at each tool's own
/// moment, and their copies.
const REMOVAL_EXEMPT: &[&str] = &[
    "src",
    "src/sub",
    "src/sub/deep",
    "dst",
    "dst/sub",
    "dst/sub/deep",
];

#[test]
fn remove_source_files_removes_what_the_destination_has_as_rsync() {
    let test = this_test!();
    let flags = ["-a", "--remove-source-files"];
    for at in EVERYWHERE {
        let Some(pair) = Pair::new(test, at, removal_setup) else {
            return;
        };
        let r = pair.run(at, &flags, &["src/", "dst/"], "UTC");
        assert_same_outcome(test, &format!("{at:?} run 1"), &r);
        assert_eq!(code(&r.b), 0, "{test}: {at:?}\n{}", show_both(&r));
        pair.assert_same_trees(test, &format!("{at:?} run 1"), &flags, REMOVAL_EXEMPT);
        let left: Vec<_> = scan(&pair.side("b").join("src"), false)
            .into_iter()
            .filter(|(_, m)| m.kind != Kind::Dir)
            .collect();
        assert!(
            left.is_empty(),
            "{test}: {at:?}: left in the source: {left:?}"
        );
        assert!(
            pair.side("b").join("src/sub/deep").is_dir(),
            "{test}: {at:?}: a directory was removed"
        );
        // Again with one new file: only it goes (and the rest is not looked for).
        for side in ["a", "b"] {
            let later = pair.side(side).join("src/sub/later");
            fs::write(&later, b"later\n").expect("write");
            set_mtime(&later, 1_700_000_000, 0);
        }
        let r = pair.run(at, &flags, &["src/", "dst/"], "UTC");
        assert_same_outcome(test, &format!("{at:?} run 2"), &r);
        pair.assert_same_trees(test, &format!("{at:?} run 2"), &flags, REMOVAL_EXEMPT);
        assert!(
            !pair.side("b").join("src/sub/later").exists(),
            "{test}: {at:?}"
        );
    }
}

#[test]
fn remove_source_files_keeps_what_the_run_leaves_alone() {
    let test = this_test!();
    // -u leaves `older` if the destination's is newer; --existing leaves `new`; -n all.
    for flags in [
        &["-a", "--remove-source-files", "--existing"][..],
        &["-a", "--remove-source-files", "--dry-run"],
        &["-a", "--remove-source-files", "--ignore-existing"],
    ] {
        for at in EVERYWHERE {
            let Some(pair) = Pair::new(test, at, removal_setup) else {
                return;
            };
            let r = pair.run(at, flags, &["src/", "dst/"], "UTC");
            let what = format!("{at:?} {flags:?}");
            assert_same_outcome(test, &what, &r);
            pair.assert_same_trees(test, &what, flags, REMOVAL_EXEMPT);
        }
    }
}

#[test]
fn remove_source_files_of_a_single_file_to_a_new_name() {
    let test = this_test!();
    let flags = ["-a", "--remove-source-files"];
    for at in EVERYWHERE {
        let Some(pair) = Pair::new(test, at, removal_setup) else {
            return;
        };
        let r = pair.run(at, &flags, &["src/new", "dst/renamed"], "UTC");
        assert_same_outcome(test, &format!("{at:?}"), &r);
        pair.assert_same_trees(test, &format!("{at:?}"), &flags, REMOVAL_EXEMPT);
        assert!(!pair.side("b").join("src/new").exists(), "{test}: {at:?}");
    }
}

/// The source as its own destination: rsync refuses to remove its regular files (23), and
/// xsync every entry (rsync 3.5 removes the symlink, its only copy: not copied here).
#[test]
fn remove_source_files_never_removes_the_destination_itself() {
    let test = this_test!();
    let Some(pair) = Pair::new(test, Where::Local, removal_setup) else {
        return;
    };
    let flags = ["-a", "--remove-source-files"];
    let before = scan(&pair.side("b").join("src"), true);
    let r = pair.run(Where::Local, &flags, &["src/", "src/"], "UTC");
    assert_eq!(code(&r.a), 23, "{test}: rsync itself\n{}", show_both(&r));
    assert_eq!(code(&r.b), code(&r.a), "{test}\n{}", show_both(&r));
    let after = scan(&pair.side("b").join("src"), true);
    let diffs = diff_scans(&before, &after, &Compare::for_flags(&flags));
    assert!(
        diffs.is_empty(),
        "{test}: the source changed:\n{}",
        diffs.join("\n")
    );
    assert!(
        stderr(&r.b).contains("ERROR: Skipping sender remove of destination file: same"),
        "{test}: {}",
        stderr(&r.b)
    );
}

/// A hostile receiver (the test, as the client of `xsync --server --sender`): a file
/// changed after it was listed is not removed (rsync's error, 23); an index the sender
/// never listed, and a directory, remove nothing; without the option nothing goes at all.
#[test]
fn a_receivers_confirmations_remove_only_unchanged_files_the_sender_listed() {
    let test = this_test!();
    for with_option in [true, false] {
        let dir = test_dir();
        let src = TestTree::at(&dir.path().join("src"));
        src.dir("")
            .file("a-changes", b"first\n")
            .file("b-stays-same", b"same\n")
            .file("sub/c", b"below\n");
        let (mut p, child) = Peer::spawn_server();
        let mut args = vec!["--recursive", "--links"];
        if with_option {
            args.push("--remove-source-files");
        }
        let path = arg_path(dir.path(), "src/");
        let path = path.as_encoded_bytes().to_vec();
        p.open(Role::Sender, &args, &[path.as_slice()])
            .expect("open");
        let mut entries = 0;
        loop {
            match p.recv().expect("sender's opening") {
                Msg::Sources { .. } => {}
                Msg::SourceRoot { .. } => break,
                other => panic!("{test}: unexpected {other:?}"),
            }
        }
        p.send(Msg::List {
            dirs: vec![ListDir {
                path: Default::default(),
                have: Default::default(),
            }],
        })
        .expect("list");
        if let Msg::Listing { dirs } = p.recv().expect("listing") {
            entries += dirs[0].new.len();
        }
        assert_eq!(entries, 3, "{test}: the root's listing");
        // The sender numbers its non-directories in walk order: a-changes, b-stays-same,
        // sub/c; 7 and beyond it never listed.
        std::thread::sleep(std::time::Duration::from_millis(20));
        fs::write(src.path("a-changes"), b"first, then more\n").expect("change");
        p.send(Msg::InPlace {
            ids: vec![0, 1, 7, 1_000_000, u32::MAX],
        })
        .expect("in place");
        p.send(Msg::Finish {
            code: 0,
            stats: Default::default(),
        })
        .expect("finish");
        let done = loop {
            match p.recv().expect("done") {
                Msg::Done { code, .. } => break code,
                Msg::Log { .. } => {}
                other => panic!("{test}: unexpected {other:?}"),
            }
        };
        drop(p);
        let out = child.wait_with_output().expect("server");
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            src.path("a-changes").exists(),
            "{test}: a changed file was removed"
        );
        assert!(
            src.path("sub/c").exists(),
            "{test}: a file never confirmed was removed"
        );
        assert!(src.path("sub").is_dir(), "{test}");
        if with_option {
            assert!(
                !src.path("b-stays-same").exists(),
                "{test}: a confirmed file stayed"
            );
            assert!(
                err.contains("ERROR: Skipping sender remove for changed file: a-changes"),
                "{test}: stderr: {err}"
            );
            assert_eq!(done, 23, "{test}: the sender's code; stderr: {err}");
        } else {
            assert!(
                src.path("b-stays-same").exists(),
                "{test}: removed without the option"
            );
            assert_eq!(done, 0, "{test}: stderr: {err}");
        }
    }
}

// ---------------------------------------------------------------------------------------
// --delete-missing-args
// ---------------------------------------------------------------------------------------

fn missing_setup(root: &Path) {
    let src = TestTree::at(&root.join("src"));
    src.dir("").file("keep", b"kept\n");
    let dst = TestTree::at(&root.join("dst"));
    dst.dir("")
        .file("gone", b"its source is missing\n")
        .symlink("gone-link", "nowhere")
        .dir("gone-empty")
        .file("gone-dir/x", b"x\n")
        .file("gone-dir/sub/y", b"y\n")
        .file("untouched", b"not named\n");
    src.stamp(false);
    dst.stamp(false);
}

#[test]
fn delete_missing_args_deletes_the_missing_names_at_the_destination_as_rsync() {
    let test = this_test!();
    let args = [
        "src/keep",
        "src/gone",
        "src/gone-link",
        "src/gone-empty",
        "src/gone-dir",
        "src/never-anywhere",
        "dst/",
    ];
    for flags in [
        &["-a", "--delete-missing-args"][..],
        &["-ai", "--delete-missing-args"],
        &["-av", "--delete-missing-args", "--force"],
        &["-ai", "--delete-missing-args", "--delete"],
    ] {
        for at in EVERYWHERE {
            let Some(pair) = Pair::new(test, at, missing_setup) else {
                return;
            };
            let what = format!("{at:?} {flags:?}");
            let r = pair.run(at, flags, &args, "UTC");
            assert_eq!(code(&r.a), code(&r.b), "{test}: {what}\n{}", show_both(&r));
            // (-v's summary lines hold byte counts of each tool's own protocol.)
            let lines = |o: &Output| -> Vec<String> {
                stdout(o)
                    .lines()
                    .filter(|l| !l.starts_with("sent ") && !l.starts_with("total size"))
                    .map(str::to_string)
                    .collect()
            };
            assert_eq!(
                lines(&r.a),
                lines(&r.b),
                "{test}: {what}\n{}",
                show_both(&r)
            );
            pair.assert_same_trees(test, &what, flags, &["dst"]);
            assert!(!pair.side("b").join("dst/gone").exists(), "{test}: {what}");
            assert!(
                pair.side("b").join("dst/untouched").exists(),
                "{test}: {what}"
            );
            // Nothing left to do the second time.
            let r = pair.run(at, flags, &args, "UTC");
            assert_eq!(
                code(&r.a),
                code(&r.b),
                "{test}: {what} again\n{}",
                show_both(&r)
            );
            pair.assert_same_trees(test, &format!("{what} again"), flags, &["dst"]);
        }
    }
}

// ---------------------------------------------------------------------------------------
// --no-implied-dirs
// ---------------------------------------------------------------------------------------

fn implied_setup(root: &Path) {
    let src = TestTree::at(&root.join("src"));
    src.dir("")
        .file("sub/deep/file", b"file\n")
        .file("sub/other", b"o\n");
    src.chmod("sub", 0o700).chmod("sub/deep", 0o750);
    src.stamp(false);
    fs::create_dir(root.join("dst")).expect("mkdir dst");
    set_mtime(&root.join("dst"), 1_400_000_000, 0);
}

/// The destination already has the implied directories, with other modes.
fn implied_existing(root: &Path) {
    implied_setup(root);
    let dst = TestTree::at(&root.join("dst"));
    dst.dir("src/sub/deep")
        .chmod("src/sub", 0o755)
        .chmod("src/sub/deep", 0o711);
    dst.stamp(false);
}

/// The destination has a symlink where an implied directory would be, leading outside it.
fn implied_symlinked(root: &Path) {
    implied_setup(root);
    fs::create_dir(root.join("outside")).expect("mkdir outside");
    let dst = TestTree::at(&root.join("dst"));
    dst.dir("src").symlink("src/sub", "../../outside");
}

#[test]
fn no_implied_dirs_leaves_implied_directories_to_the_destination_as_rsync() {
    let test = this_test!();
    let flags = ["-aRi", "--no-implied-dirs"];
    let args = ["src/sub/deep/file", "dst/"];
    for (setup, name) in [
        (implied_setup as fn(&Path), "fresh"),
        (implied_existing, "existing"),
    ] {
        for at in EVERYWHERE {
            let Some(pair) = Pair::new(test, at, setup) else {
                return;
            };
            let what = format!("{at:?} {name}");
            let r = pair.run(at, &flags, &args, "UTC");
            assert_same_outcome(test, &what, &r);
            assert_eq!(code(&r.b), 0, "{test}: {what}\n{}", show_both(&r));
            // (New implied directories have the time their entries were made.)
            let exempt = ["dst", "dst/src", "dst/src/sub", "dst/src/sub/deep"];
            pair.assert_same_trees(test, &what, &flags, &exempt);
            let r = pair.run(at, &flags, &args, "UTC");
            assert_same_outcome(test, &format!("{what} again"), &r);
        }
    }
}

#[test]
fn no_implied_dirs_never_follows_a_destination_symlink() {
    let test = this_test!();
    let flags = ["-aR", "--no-implied-dirs"];
    for at in EVERYWHERE {
        let Some(pair) = Pair::new(test, at, implied_symlinked) else {
            return;
        };
        let r = pair.run(at, &flags, &["src/sub/deep/file", "dst/"], "UTC");
        assert_eq!(
            code(&r.a),
            23,
            "{test}: rsync 3.5 itself\n{}",
            show_both(&r)
        );
        assert_eq!(code(&r.b), 23, "{test}: {at:?}\n{}", show_both(&r));
        let outside = pair.side("b").join("outside");
        assert_eq!(
            fs::read_dir(&outside).expect("outside").count(),
            0,
            "{test}: {at:?}: xsync wrote through the destination's symlink"
        );
        assert!(
            fs::symlink_metadata(pair.side("b").join("dst/src/sub"))
                .expect("link")
                .file_type()
                .is_symlink(),
            "{test}: {at:?}: the symlink was replaced"
        );
        assert!(
            stderr(&r.b).contains("--no-implied-dirs"),
            "{test}: {at:?}: the message names the rule: {}",
            stderr(&r.b)
        );
    }
}
