//! The metadata options of issue 12 against rsync: `--usermap`/`--groupmap` (rules, their
//! order, ranges and wildcards, root, `--numeric-ids`, the refusals), `-U` (access times set,
//! the sender's left as they were, the `u` of `-i`, the silent re-run) and `--munge-links`
//! (which end munges, which unmunges). Local, pushed and pulled, with the re-runs.
//!
//! The ids are the system's own accounts (daemon 1, bin 2, sys 3, games 5, nobody and
//! nogroup 65534), which every Debian has, and a few that have no name at all.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Output;

use crate::remote::{Direction, XSYNC_BIN, remote_case};
use crate::util::*;

/// Entries owned by named and unnamed users and groups, root among them.
fn mixed_owners(root: &Path) {
    let t = TestTree::at(root);
    t.file("by-daemon", b"1\n")
        .file("by-bin", b"2\n")
        .file("by-4242", b"3\n")
        .file("by-5555", b"4\n")
        .file("by-root", b"5\n")
        .dir("sub")
        .file("sub/mixed", b"6\n")
        .symlink("sub/link", "../by-bin");
    for (rel, uid, gid) in [
        ("", 0, 0),
        ("by-daemon", 1, 1),
        ("by-bin", 2, 2),
        ("by-4242", 4242, 4242),
        ("by-5555", 5555, 5555),
        ("by-root", 0, 0),
        ("sub", 3, 2),
        ("sub/mixed", 1, 2),
        ("sub/link", 2, 1),
    ] {
        t.chown(rel, uid, gid)
            .unwrap_or_else(|e| panic!("chown {rel:?}: {e}"));
    }
    t.stamp(false);
}

/// Each map case: rules by name, by id and range, the empty name, and a wildcard that
/// catches root too; with and without the name mapping.
const MAPS: &[&[&str]] = &[
    &[
        "-a",
        "--usermap=daemon:sys,4000-4999:bin,:games,bin:5",
        "--groupmap=bin:daemon,4242:sys,1-3:nogroup",
    ],
    &["-a", "--usermap=*:nobody", "--groupmap=*:nogroup"],
    &["-a", "--numeric-ids", "--usermap=1:sys,:games,*:bin"],
    &["-o", "-r", "--usermap=b*:daemon"],
    &["-r", "--groupmap=d*:sys"],
];

fn need_root(test: &str) -> bool {
    if !is_root() {
        skip(test, "owners can only be given away as root");
    }
    is_root()
}

#[test]
fn usermap_and_groupmap_map_owners_as_rsync_locally() {
    let test = this_test!();
    if !need_root(test) {
        return;
    }
    for flags in MAPS {
        for slash in [true, false] {
            differential(test, flags, slash, Fixture::with_src(mixed_owners));
        }
    }
}

#[test]
fn usermap_and_groupmap_are_applied_by_the_receiver_pushed_and_pulled() {
    let test = this_test!();
    if !need_root(test) {
        return;
    }
    for flags in MAPS {
        for direction in [Direction::Push, Direction::Pull] {
            let case = simple_case(flags, true, Fixture::with_src(mixed_owners));
            remote_case(
                &format!("{test} {flags:?} ({direction:?})"),
                &case,
                direction,
            );
        }
    }
}

/// Over an older copy whose owners are already what the maps give, and over one whose
/// owners are the sender's own (what a run without the map leaves): an update changes the
/// owners only, as rsync's `-i` says.
#[test]
fn usermap_updates_owners_of_an_unchanged_tree_as_rsync_itemizes() {
    let test = this_test!();
    if !need_root(test) || !have_rsync(test) {
        return;
    }
    let dir = test_dir();
    let src = dir.path().join("src");
    mixed_owners(&src);
    let mut outs = Vec::new();
    for tool in ["rsync", "xsync"] {
        let dst = dir.path().join(tool);
        let mut first = match tool {
            "rsync" => rsync().expect("checked"),
            _ => xsync(),
        };
        let plain = run(first.arg("-a").arg(slash(&src)).arg(slash(&dst)));
        assert_eq!(code(&plain), 0, "{test} {tool}: {}", stderr(&plain));
        let mut again = match tool {
            "rsync" => rsync().expect("checked"),
            _ => xsync(),
        };
        let mapped = run(again
            .args(["-ai", "--usermap=daemon:sys,*:bin", "--groupmap=bin:daemon"])
            .arg(slash(&src))
            .arg(slash(&dst)));
        assert_eq!(code(&mapped), 0, "{test} {tool}: {}", stderr(&mapped));
        outs.push(stdout(&mapped));
    }
    assert_eq!(outs[1], outs[0], "{test}: -i lines, xsync (left) vs rsync");
    assert!(
        outs[0].contains(".o"),
        "{test}: owners changed: {}",
        outs[0]
    );
    let diffs = diff_trees(
        &dir.path().join("rsync"),
        &dir.path().join("xsync"),
        &Compare::default(),
    );
    assert!(diffs.is_empty(), "{test}: {diffs:#?}");
}

/// rsync's refusals, with its exit code and words: the syntax of a rule, a second map, and
/// a map beside a `--chown` for the same kind of id. An unknown TO is only reported.
#[test]
fn map_syntax_errors_and_conflicts_are_refused_as_rsync_refuses_them() {
    let test = this_test!();
    if !have_rsync(test) {
        return;
    }
    let dir = test_dir();
    let src = dir.path().join("src");
    TestTree::at(&src).file("f", b"f\n");
    for (flags, says) in [
        (&["--usermap=foo"][..], "No colon found in --usermap: foo"),
        (
            &["--groupmap=1:"][..],
            "No name found after colon --groupmap: 1:",
        ),
        (&["--usermap=1x:a"][..], "Invalid number in --usermap: 1x"),
        (&["--usermap=1-:a"][..], "Invalid number in --usermap: 1-"),
        (
            &["--chown=bin:", "--usermap=1:2"][..],
            "--usermap conflicts with prior --chown.",
        ),
        (
            &["--groupmap=1:2", "--chown=:bin"][..],
            "--chown conflicts with prior --groupmap.",
        ),
    ] {
        let mut codes = Vec::new();
        for tool in ["rsync", "xsync"] {
            let dst = dir.path().join(format!("dst-{tool}"));
            let mut cmd = match tool {
                "rsync" => rsync().expect("checked"),
                _ => xsync(),
            };
            let out = run(cmd.arg("-a").args(flags).arg(slash(&src)).arg(&dst));
            assert!(
                stderr(&out).contains(says),
                "{test} {tool} {flags:?}: {}",
                stderr(&out)
            );
            codes.push(code(&out));
        }
        assert_eq!(codes[1], codes[0], "{test} {flags:?}: exit codes");
        assert_eq!(codes[1], 1, "{test} {flags:?}");
    }
    // An unknown name on the receiver drops its rule and says so; the run succeeds.
    for tool in ["rsync", "xsync"] {
        let dst = dir.path().join(format!("unknown-{tool}"));
        let mut cmd = match tool {
            "rsync" => rsync().expect("checked"),
            _ => xsync(),
        };
        let out = run(cmd
            .args(["-a", "--usermap=*:no-such-user-xsync"])
            .arg(slash(&src))
            .arg(&dst));
        assert_eq!(code(&out), 0, "{test} {tool}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("Unknown --usermap name on receiver: no-such-user-xsync"),
            "{test} {tool}: {}",
            stderr(&out)
        );
    }
}

// ---------------------------------------------------------------------------------------------
// -U / --atimes
// ---------------------------------------------------------------------------------------------

/// An mtime, and an access time before it: a plain read moves such an access time (Linux's
/// relatime does whenever it is not after the mtime), so a run that reads the file without
/// O_NOATIME shows.
const MTIME: i64 = 1_600_000_000;
const ATIME: i64 = 1_500_000_000;

fn set_times(path: &Path, atime: i64, mtime: i64) {
    let ts = |s| rustix::fs::Timespec {
        tv_sec: s,
        tv_nsec: 0,
    };
    let times = rustix::fs::Timestamps {
        last_access: ts(atime),
        last_modification: ts(mtime),
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        path,
        &times,
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .unwrap_or_else(|e| panic!("utimensat {path:?}: {e}"));
}

/// Files (one big enough to be read in pieces, one empty), a directory, a symlink and a
/// fifo, each file with its own access time before its mtime.
fn atime_tree(root: &Path) {
    let t = TestTree::at(root);
    t.file("a.txt", b"a\n")
        .random_file("big.bin", 7, 3 << 20)
        .file("empty", b"")
        .file("d/b.txt", b"b\n")
        .symlink("d/link", "../a.txt");
    t.fifo("d/fifo").expect("mkfifo");
    // (The symlink's times in the past too: rsync leaves a new symlink's times alone when
    // they are in the second it was made.)
    t.stamp(false);
    for (i, rel) in ["a.txt", "big.bin", "empty", "d/b.txt", "d/fifo"]
        .iter()
        .enumerate()
    {
        set_times(&t.path(rel), ATIME + i as i64 * 1000, MTIME);
    }
    set_times(&t.path("d"), ATIME, MTIME);
    set_times(&t.path(""), ATIME, MTIME);
}

/// The access times of the non-directories below `root` (symlinks too: not compared by
/// rsync, but set by it when it makes them).
fn atimes(root: &Path) -> Vec<(PathBuf, i64)> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let m = fs::symlink_metadata(root.join(&rel)).unwrap_or_else(|e| panic!("{rel:?}: {e}"));
        if m.is_dir() {
            for e in fs::read_dir(root.join(&rel)).expect("read_dir") {
                stack.push(rel.join(e.expect("entry").file_name()));
            }
        } else if !m.file_type().is_symlink() {
            out.push((rel, m.atime()));
        }
    }
    out.sort();
    out
}

/// `how` is `local`, `push` or `pull` (the last two through a remote shell that runs the
/// other end here).
fn way_args(how: &str, src: &Path, dst: &Path) -> [String; 2] {
    let (s, d) = (format!("{}/", src.display()), format!("{}/", dst.display()));
    match how {
        "push" => [s, format!("h:{d}")],
        "pull" => [format!("h:{s}"), d],
        _ => [s, d],
    }
}

fn tool_run(tool: &str, rsh: &str, how: &str, flags: &[&str], src: &Path, dst: &Path) -> Output {
    let mut cmd = match tool {
        "rsync" => rsync().expect("checked"),
        _ => xsync(),
    };
    if how != "local" {
        cmd.args(["-e", rsh]);
        if tool == "xsync" {
            cmd.args(["--xsync-path", XSYNC_BIN]);
        }
    }
    run(cmd.args(flags).args(way_args(how, src, dst)))
}

/// For each of local, push and pull: both tools copy their own copy of the tree with
/// `-aUi`. The destinations' access times are the source's as they were before the run,
/// xsync leaves the source's as they were (rsync's reads move them), the `-i` lines are
/// rsync's, and xsync's re-run lists and changes nothing.
#[test]
fn atimes_are_set_as_rsync_sets_them_and_the_sources_left_alone() {
    let test = this_test!();
    if !have_rsync(test) {
        return;
    }
    let dir = test_dir();
    let rsh = local_rsh(dir.path(), RUN_HERE);
    for how in ["local", "push", "pull"] {
        let mut lines = Vec::new();
        for tool in ["rsync", "xsync"] {
            let src = dir.path().join(format!("{how}-{tool}-src"));
            let dst = dir.path().join(format!("{how}-{tool}-dst"));
            atime_tree(&src);
            let before = atimes(&src);
            let out = tool_run(tool, &rsh, how, &["-aUi"], &src, &dst);
            assert_eq!(code(&out), 0, "{test} {how} {tool}: {}", stderr(&out));
            lines.push(sorted_lines(&out));
            assert_eq!(
                atimes(&dst),
                before,
                "{test} {how} {tool}: the copy's atimes"
            );
            if tool == "xsync" {
                assert_eq!(atimes(&src), before, "{test} {how}: the source's atimes");
                let again = tool_run(tool, &rsh, how, &["-aUi"], &src, &dst);
                assert_eq!(code(&again), 0, "{test} {how}: {}", stderr(&again));
                assert_eq!(
                    stdout(&again),
                    "",
                    "{test} {how}: a no-op re-run lists nothing"
                );
                assert_eq!(atimes(&dst), before, "{test} {how}: re-run, the copy's");
                assert_eq!(atimes(&src), before, "{test} {how}: re-run, the source's");
            }
        }
        assert_eq!(
            lines[1], lines[0],
            "{test} {how}: -i lines, xsync (left) vs rsync"
        );
    }
}

/// A copy whose access times alone differ gets them back without a transfer, listed with
/// rsync's `u`; one whose mtime differs too is transferred, with `t` and `u`. Both tools
/// start from the same prepared copy.
#[test]
fn atime_only_changes_are_itemized_with_u_as_rsync() {
    let test = this_test!();
    if !have_rsync(test) {
        return;
    }
    let dir = test_dir();
    let rsh = local_rsh(dir.path(), RUN_HERE);
    for how in ["local", "push", "pull"] {
        let mut lines = Vec::new();
        for tool in ["rsync", "xsync"] {
            let src = dir.path().join(format!("{how}-{tool}-src"));
            let dst = dir.path().join(format!("{how}-{tool}-dst"));
            atime_tree(&src);
            let first = tool_run("xsync", &rsh, "local", &["-aU"], &src, &dst);
            assert_eq!(code(&first), 0, "{test}: {}", stderr(&first));
            set_times(&dst.join("a.txt"), ATIME + 77, MTIME);
            set_times(&dst.join("d/fifo"), ATIME + 77, MTIME);
            set_times(&dst.join("empty"), ATIME + 77, MTIME + 5);
            let want = atimes(&src);
            let out = tool_run(tool, &rsh, how, &["-aUi"], &src, &dst);
            assert_eq!(code(&out), 0, "{test} {how} {tool}: {}", stderr(&out));
            lines.push(sorted_lines(&out));
            assert_eq!(atimes(&dst), want, "{test} {how} {tool}");
        }
        assert_eq!(
            lines[1], lines[0],
            "{test} {how}: -i lines, xsync (left) vs rsync"
        );
        assert!(
            lines[0].iter().any(|l| l == ".f......u.. a.txt"),
            "{test} {how}: {:?}",
            lines[0]
        );
    }
}

/// `-U` over ssh, with rsync's tree after every round (the trees compare mtimes, owners
/// and content; the access times are the tests above's).
#[test]
fn atimes_trees_match_rsync_pushed_and_pulled() {
    let test = this_test!();
    for slash in [true, false] {
        differential(test, &["-aU"], slash, Fixture::with_src(atime_tree));
    }
    for direction in [Direction::Push, Direction::Pull] {
        let case = simple_case(&["-aU"], true, Fixture::with_src(atime_tree));
        remote_case(&format!("{test} ({direction:?})"), &case, direction);
    }
}

fn sorted_lines(out: &Output) -> Vec<String> {
    let mut v: Vec<String> = stdout(out)
        .lines()
        .filter(|l| !l.starts_with("created directory"))
        .map(str::to_string)
        .collect();
    v.sort();
    v
}

// ---------------------------------------------------------------------------------------------
// --munge-links
// ---------------------------------------------------------------------------------------------

/// Absolute, relative and dangling links, and one already munged.
fn links_to_munge(root: &Path) {
    TestTree::at(root)
        .file("f", b"f\n")
        .symlink("abs", "/etc/hostname")
        .symlink("rel", "f")
        .symlink("dangling", "no/such")
        .symlink("munged", "/rsyncd-munged/etc/hosts")
        .symlink("prefix-only", "/rsyncd-munged/")
        .stamp(false);
}

/// Local (the sender unmunges, nothing is munged), push (the client's sender unmunges) and
/// pull (the client's receiver munges every target): rsync's trees, every round.
#[test]
fn munge_links_munges_and_unmunges_at_rsyncs_ends() {
    let test = this_test!();
    for slash in [true, false] {
        differential(
            test,
            &["-a", "--munge-links"],
            slash,
            Fixture::with_src(links_to_munge),
        );
    }
    for direction in [Direction::Push, Direction::Pull] {
        let case = simple_case(
            &["-a", "--munge-links"],
            true,
            Fixture::with_src(links_to_munge),
        );
        remote_case(&format!("{test} ({direction:?})"), &case, direction);
    }
}

/// The pulled links are munged once, and a re-run lists nothing (the munged targets are
/// what the receiver compares with).
#[test]
fn pulled_munged_links_are_stable_on_a_rerun() {
    let test = this_test!();
    if !have_rsync(test) {
        return;
    }
    let dir = test_dir();
    let rsh = local_rsh(dir.path(), RUN_HERE);
    let src = dir.path().join("src");
    links_to_munge(&src);
    let dst = dir.path().join("dst");
    let flags = ["-ai", "--munge-links"];
    let out = tool_run("xsync", &rsh, "pull", &flags, &src, &dst);
    assert_eq!(code(&out), 0, "{test}: {}", stderr(&out));
    assert_eq!(
        fs::read_link(dst.join("abs")).expect("readlink"),
        Path::new("/rsyncd-munged//etc/hostname")
    );
    assert_eq!(
        fs::read_link(dst.join("munged")).expect("readlink"),
        Path::new("/rsyncd-munged//rsyncd-munged/etc/hosts")
    );
    let again = tool_run("xsync", &rsh, "pull", &flags, &src, &dst);
    assert_eq!(code(&again), 0, "{test}: {}", stderr(&again));
    assert_eq!(stdout(&again), "", "{test}: a no-op re-run lists nothing");
}

// ---------------------------------------------------------------------------------------------
// --fake-super
// ---------------------------------------------------------------------------------------------

/// What the super-user alone could make: owners, set-id bits, a device, a fifo, a symlink,
/// a directory of another owner, and a plain file that needs no attribute.
fn privileged(root: &Path) {
    let t = TestTree::at(root);
    t.file("setuid", b"s\n")
        .file("plain", b"p\n")
        .file("d/inner", b"i\n")
        .symlink("link", "plain")
        .chmod("setuid", 0o4755)
        .chmod("d", 0o750);
    t.fifo("fifo").expect("mkfifo");
    t.chardev("null", 1, 3).expect("mknod");
    for (rel, uid, gid) in [
        ("setuid", 1, 2),
        ("d", 3, 3),
        ("d/inner", 2, 0),
        ("fifo", 0, 5),
    ] {
        t.chown(rel, uid, gid)
            .unwrap_or_else(|e| panic!("chown {rel:?}: {e}"));
    }
    t.stamp(false);
}

/// A tree as rsync `--fake-super` leaves it: plain files and directories, with what they
/// stand for in `user.rsync.%stat` (written here by hand, in rsync's format).
fn faked(root: &Path) {
    let t = TestTree::at(root);
    t.file("owned", b"o\n")
        .file("dev", b"")
        .file("link", b"owned")
        .file("pipe", b"")
        .file("d/inner", b"i\n");
    for (rel, stat) in [
        ("owned", "104750 0,0 1:2"),
        ("dev", "20640 1,5 0:6"),
        ("link", "120777 0,0 2:2"),
        ("pipe", "10600 0,0 3:3"),
        ("d", "40700 0,0 1:1"),
    ] {
        set_xattr(&t.path(rel), "user.rsync.%stat", stat.as_bytes());
    }
    t.stamp(false);
}

/// Kind, mode bits, content or target, and every attribute but `system.*`: what rsync
/// and xsync leave on disk must be the same bytes.
fn on_disk(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let p = root.join(&rel);
        let m = fs::symlink_metadata(&p).unwrap_or_else(|e| panic!("{p:?}: {e}"));
        let what = if m.is_dir() {
            for e in fs::read_dir(&p).expect("read_dir") {
                stack.push(rel.join(e.expect("entry").file_name()));
            }
            String::new()
        } else if m.file_type().is_symlink() {
            format!("-> {:?}", fs::read_link(&p).expect("readlink"))
        } else if m.is_file() {
            format!("{:?}", fs::read(&p).expect("read"))
        } else {
            format!("rdev {}", m.rdev())
        };
        let attrs: Vec<String> = xattrs_of(&p)
            .into_iter()
            .map(|(n, v)| {
                format!(
                    "{}={}",
                    String::from_utf8_lossy(&n),
                    String::from_utf8_lossy(&v)
                )
            })
            .collect();
        out.push(format!(
            "{rel:?} {:o} {}:{} {what} {attrs:?}",
            m.mode(),
            m.uid(),
            m.gid()
        ));
    }
    out.sort();
    out
}

/// Receiving locally with --fake-super: nothing privileged is made, and the attributes are
/// rsync's, byte for byte; a re-run lists nothing; a change of mode and of owner at the
/// source is an attribute update of the stored values, as rsync makes it.
#[test]
fn fake_super_stores_privileged_attributes_as_rsync_does() {
    let test = this_test!();
    if !need_root(test) || !have_rsync(test) {
        return;
    }
    let dir = test_dir();
    let src = dir.path().join("src");
    privileged(&src);
    let rsh = local_rsh(dir.path(), RUN_HERE);
    for how in ["local", "pull"] {
        let mut trees = Vec::new();
        let mut lines = Vec::new();
        for tool in ["rsync", "xsync"] {
            let dst = dir.path().join(format!("{how}-{tool}"));
            let mut runs = Vec::new();
            for round in 0..3 {
                if round == 2 {
                    let t = TestTree::at(&src);
                    t.chmod("plain", 0o6711);
                    t.chown("d/inner", 4, 4).expect("chown");
                }
                let out = tool_run(tool, &rsh, how, &["-ai", "--fake-super"], &src, &dst);
                assert_eq!(code(&out), 0, "{test} {how} {tool}: {}", stderr(&out));
                runs.push(sorted_lines(&out));
            }
            // (Put back for the next tool.)
            let t = TestTree::at(&src);
            t.chmod("plain", 0o644);
            t.chown("d/inner", 2, 0).expect("chown");
            assert_eq!(
                runs[1],
                Vec::<String>::new(),
                "{test} {how} {tool}: a re-run"
            );
            lines.push(runs);
            trees.push(on_disk(&dst));
        }
        assert_eq!(
            trees[1], trees[0],
            "{test} {how}: on disk, xsync (left) vs rsync"
        );
        assert_eq!(
            lines[1], lines[0],
            "{test} {how}: -i lines, xsync (left) vs rsync"
        );
        assert!(
            trees[0]
                .iter()
                .any(|l| l.contains("user.rsync.%stat=20644 1,3 0:0")),
            "{test}: {:#?}",
            trees[0]
        );
    }
}

/// A tree rsync --fake-super wrote, read back by a sender with --fake-super: locally into
/// another fake tree, and pushed to a receiver that is the super-user for real, which makes
/// the owners, the device, the fifo and the symlink. rsync's trees every round.
#[test]
fn a_fake_super_tree_reads_back_as_rsync_reads_it() {
    let test = this_test!();
    if !need_root(test) {
        return;
    }
    for slash in [true, false] {
        differential(
            test,
            &["-a", "--fake-super"],
            slash,
            Fixture::with_src(faked),
        );
    }
    let case = simple_case(&["-a", "--fake-super"], true, Fixture::with_src(faked));
    remote_case(&format!("{test} (Push)"), &case, Direction::Push);
    // And from a real tree, pulled into a fake one.
    let case = simple_case(&["-a", "--fake-super"], true, Fixture::with_src(privileged));
    remote_case(&format!("{test} (Pull)"), &case, Direction::Pull);
}

#[test]
fn fake_super_with_acls_is_refused() {
    let test = this_test!();
    let dir = test_dir();
    let out = run(xsync()
        .args(["-aA", "--fake-super"])
        .arg(dir.path().join("a"))
        .arg(dir.path().join("b")));
    assert_eq!(code(&out), 1, "{test}: {}", stderr(&out));
    assert!(
        stderr(&out).contains("user.rsync.%aacl"),
        "{test}: {}",
        stderr(&out)
    );
}

/// A receiving file system without user attributes (ramfs): as rsync, every entry is still
/// put in place, each attribute that cannot be stored is reported, and the exit is 23.
#[test]
fn fake_super_without_user_attributes_still_puts_entries_in_place_and_exits_23() {
    let test = this_test!();
    if !have_rsync(test) {
        return;
    }
    let dir = test_dir();
    let src = dir.path().join("src");
    privileged(&src);
    let mnt = dir.path().join("ram");
    let Some(_ramfs) = Ramfs::mount(test, &mnt) else {
        return;
    };
    let mut names = Vec::new();
    for tool in ["rsync", "xsync"] {
        let dst = mnt.join(tool);
        let out = tool_run(tool, "", "local", &["-a", "--fake-super"], &src, &dst);
        assert_eq!(code(&out), 23, "{test} {tool}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("user.rsync.%stat"),
            "{test} {tool}: {}",
            stderr(&out)
        );
        let mut here: Vec<String> = on_disk(&dst)
            .into_iter()
            .map(|l| l.split(' ').next().unwrap_or_default().to_string())
            .collect();
        here.sort();
        names.push(here);
    }
    assert_eq!(
        names[1], names[0],
        "{test}: the entries, xsync (left) vs rsync"
    );
}
