//! rsync options that xsync once refused, against rsync: `-E` (executability without `-p`),
//! filter rules that start with a dash, `-B`, and the options accepted for rsync's sake
//! (`--protocol`, `--checksum-choice`, `--compress-choice`, `--no-i-r`, `--open-noatime`,
//! `--force`, the `--no-X` forms). Each locally and, where it crosses the wire, pushed and
//! pulled, with the re-runs of `util::rounds`.

use std::path::Path;

use crate::remote::{Direction, remote_case};
use crate::util::*;

/// rsync's itemized lines, without the `created directory` notice, sorted.
fn items(o: &std::process::Output) -> Vec<String> {
    let mut v: Vec<String> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter(|l| !l.starts_with("created directory"))
        .map(str::to_string)
        .collect();
    v.sort();
    v
}

/// Regular files whose executability differs from their older copies' in every way rsync's
/// rule tells apart, and a directory and a fifo, which `-E` leaves alone.
fn exec_modes(root: &Path) {
    let t = TestTree::at(root);
    for (name, mode) in [
        ("gains-x", 0o750),
        ("loses-x", 0o644),
        ("gains-x-wide", 0o711),
        ("unreadable-gains", 0o755),
        ("same-x", 0o700),
        ("new-x", 0o751),
        ("sub/changed", 0o755),
    ] {
        t.file(name, format!("{name}\n").as_bytes())
            .chmod(name, mode);
    }
    t.dir("dir-no-x").chmod("dir-no-x", 0o755);
    let _ = t.fifo("fifo");
    t.chmod("fifo", 0o711);
    t.stamp(false);
}

/// The same names with other modes (and `sub/changed` with other content).
fn exec_modes_older(root: &Path) {
    let t = TestTree::at(root);
    for (name, mode) in [
        ("gains-x", 0o604),
        ("loses-x", 0o755),
        ("gains-x-wide", 0o444),
        ("unreadable-gains", 0o200),
        ("same-x", 0o711),
    ] {
        t.file(name, format!("{name}\n").as_bytes())
            .chmod(name, mode);
    }
    t.file("sub/changed", b"older content\n")
        .chmod("sub/changed", 0o600);
    t.dir("dir-no-x").chmod("dir-no-x", 0o700);
    let _ = t.fifo("fifo");
    t.chmod("fifo", 0o600);
    t.stamp(false);
}

fn exec_fixture() -> Fixture {
    Fixture {
        src: exec_modes,
        older: Some(exec_modes_older),
        ..Fixture::awkward()
    }
}

#[test]
fn executability_without_perms_follows_rsyncs_rule_and_itemizes_p() {
    let test = this_test!();
    for flags in [&["-rtiE", "--specials"][..], &["-rtiEc", "--specials"]] {
        let Some(out) = differential(test, flags, true, exec_fixture()) else {
            return;
        };
        let (a, b) = (items(&out.a), items(&out.b));
        assert_eq!(a, b, "{test} {flags:?}: -i lines, rsync vs xsync");
        assert!(
            b.iter().any(|l| l == ".f...p..... gains-x"),
            "{test}: an executability change is itemized with p: {b:?}"
        );
    }
}

#[test]
fn executability_beside_perms_changes_nothing() {
    let test = this_test!();
    differential(test, &["-aE"], true, exec_fixture());
    differential(test, &["-aE"], false, Fixture::over_older_copy());
}

#[test]
fn executability_is_kept_by_the_remote_receiver_and_sender() {
    let test = this_test!();
    let case = simple_case(&["-rtE", "--specials"], true, exec_fixture());
    remote_case(test, &case, Direction::Push);
    remote_case(test, &case, Direction::Pull);
}

fn with_logs(root: &Path) {
    let t = TestTree::at(root);
    t.file("keep.txt", b"kept\n")
        .file("drop.log", b"dropped\n")
        .file("sub/deep.log", b"dropped too\n")
        .file("sub/-dash", b"a name with a dash\n")
        .file("sub/keep.c", b"int x;\n");
    t.stamp(false);
}

/// `-f '- *.log'` and `--exclude -dash`: a rule that starts with a dash is the option's
/// value, as rsync's parser takes it, not an unknown option.
#[test]
fn filter_rules_that_start_with_a_dash_are_values() {
    let test = this_test!();
    let fx = Fixture::with_src(with_logs);
    differential(test, &["-a", "-f", "- *.log"], true, fx);
    differential(test, &["-a", "--exclude", "-dash", "-f", "+ */"], true, fx);
    differential(
        test,
        &["-a", "-f", "+ */", "-f", "+ *.c", "-f", "- *"],
        false,
        fx,
    );
    let case = simple_case(&["-a", "-f", "- *.log"], true, fx);
    remote_case(test, &case, Direction::Push);
    remote_case(test, &case, Direction::Pull);
}

/// Options that name rsync's own machinery are accepted and copy what rsync copies.
#[test]
fn rsyncs_machinery_options_are_accepted_and_copy_as_rsync() {
    let test = this_test!();
    for flags in [
        // (Below 31, rsync's protocol has no nanoseconds in times; xsync's always has.)
        &["-a", "--protocol=31"][..],
        &["-a", "--protocol=32"],
        &["-a", "--checksum-choice=md5"],
        &["-a", "--cc=xxh128,xxh3"],
        &["-a", "-z", "--compress-choice=zlib"],
        &["-a", "--zc=zstd"],
        &["-a", "--no-inc-recursive"],
        &["-a", "--no-i-r", "--inc-recursive"],
        &["-a", "--open-noatime"],
        &["-a", "--force"],
        &["-a", "--no-force"],
        &["-a", "--iconv=-"],
        &["-avh", "--no-v", "--no-h", "--no-H", "--no-x", "--no-S"],
        &[
            "-a",
            "--no-c",
            "--no-i",
            "--no-z",
            "--no-inplace",
            "--no-numeric-ids",
        ],
        &[
            "-a",
            "--no-partial",
            "--no-timeout",
            "--no-bwlimit",
            "--no-mkpath",
        ],
    ] {
        differential(test, flags, true, Fixture::over_older_copy());
    }
}

#[test]
fn rsyncs_machinery_options_cross_the_wire() {
    let test = this_test!();
    for flags in [
        &["-a", "--protocol=31", "--cc=md5", "--no-i-r"][..],
        &["-a", "-z", "--zc=lz4", "--open-noatime"],
    ] {
        let case = simple_case(flags, true, Fixture::over_older_copy());
        remote_case(test, &case, Direction::Push);
        remote_case(test, &case, Direction::Pull);
    }
}

/// Refused as rsync refuses them, with rsync's exit codes.
#[test]
fn unknown_algorithm_names_and_protocols_are_refused_as_rsync_refuses_them() {
    let test = this_test!();
    if !have_rsync(test) {
        return;
    }
    let dir = test_dir();
    TestTree::at(&dir.path().join("src")).file("f", b"x\n");
    for flags in [
        &["-a", "--checksum-choice=nosuch"][..],
        &["-a", "--cc=md5,nosuch"],
        &["-a", "--compress-choice=nosuch"],
        &["-a", "--protocol=33"],
        &["-a", "-B", "200000"],
        &["-a", "--block-size=-1"],
    ] {
        let src = slash(&dir.path().join("src"));
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        let r = run(rsync().expect("rsync").args(flags).arg(&src).arg(&a));
        let x = run(xsync().args(flags).arg(&src).arg(&b));
        assert_eq!(code(&r), code(&x), "{test} {flags:?}: {}", stderr(&x));
        assert_ne!(code(&x), 0, "{test} {flags:?}");
        assert!(!b.exists(), "{test} {flags:?}: nothing is copied");
    }
}

fn big_files(root: &Path) {
    let t = TestTree::at(root);
    t.random_file("a.bin", 1, 300_000)
        .random_file("sub/b.bin", 2, 2_000_000);
    t.stamp(false);
}

/// A big file changed in the middle, so that the delta has blocks to match.
fn big_files_older(root: &Path) {
    let t = TestTree::at(root);
    let mut a = pseudo_random(1, 300_000);
    a[150_000..150_100].fill(0);
    let mut b = pseudo_random(2, 2_000_000);
    b[1_000_000..1_000_010].fill(7);
    t.file("a.bin", &a).file("sub/b.bin", &b);
    t.set_mtime("a.bin", 1_000_000_000, 0)
        .set_mtime("sub/b.bin", 1_000_000_000, 0);
}

/// `-B` over the wire: the receiver signs with the given block size, and the files come out
/// as rsync's, pushed and pulled.
#[test]
fn block_size_is_used_by_the_remote_delta() {
    let test = this_test!();
    let fx = Fixture {
        src: big_files,
        older: Some(big_files_older),
        ..Fixture::awkward()
    };
    for flags in [&["-a", "-B", "1024"][..], &["-a", "--block-size=999"]] {
        differential(test, flags, true, fx);
        let case = simple_case(flags, true, fx);
        remote_case(test, &case, Direction::Push);
        remote_case(test, &case, Direction::Pull);
    }
}

/// `xsync -h` alone is the help, as `rsync -h` is; beside other words it is -h.
#[test]
fn dash_h_alone_prints_the_help() {
    let out = run(xsync().arg("-h"));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).contains("--executability"), "{}", stdout(&out));
}

fn dirlink_src(root: &Path) {
    let t = TestTree::at(root);
    t.file("dir/f1", b"new one\n")
        .file("dir/f2", b"new two\n")
        .file("dir/sub/f3", b"new three\n")
        .file("top.txt", b"top\n")
        .file("was-a-dir-link", b"a file now\n");
    t.stamp(false);
}

/// The destination reaches `dir` through a link to `realdir`, which holds an older file and
/// an extra one; `was-a-dir-link` is a link to a directory where the source has a file.
fn dirlink_dest(root: &Path) {
    let t = TestTree::at(root);
    t.file("realdir/f1", b"old\n")
        .file("realdir/extra", b"extra\n")
        .dir("other")
        .symlink("dir", "realdir")
        .symlink("was-a-dir-link", "other");
    t.set_mtime("realdir/f1", 1_000_000_000, 0)
        .set_mtime("realdir/extra", 1_000_000_000, 0)
        .set_mtime("realdir", 1_000_000_000, 0)
        .set_mtime("other", 1_000_000_000, 0);
}

/// [`dirlink_dest`] with `realdir` inside the source's `dir` too, so that nothing but the
/// link is extraneous.
fn dirlink_dest_kept(root: &Path) {
    dirlink_dest(root);
    TestTree::at(root).remove("other");
}

fn dirlink_fixture(older: fn(&Path)) -> Fixture {
    Fixture {
        src: dirlink_src,
        older: Some(older),
        ..Fixture::awkward()
    }
}

/// rsync compares the time of the directory a link leads to but sets the link's own (so it
/// lists `.d..t...... dir/` on every run); xsync sets the directory's. Both times are left
/// out of the comparison.
fn dirlink_case<'a>(flags: &'a [&'a str], older: fn(&Path)) -> Case<'a> {
    Case {
        time_exempt: &["dst/dir", "dst/realdir"],
        ..simple_case(flags, true, dirlink_fixture(older))
    }
}

/// `-K`: the files go through the destination's link, which stays a link; with `--delete`
/// the extraneous `realdir` goes first and the link that would dangle is replaced, as rsync
/// replaces it.
#[test]
fn keep_dirlinks_writes_through_a_destination_link_as_rsync() {
    let test = this_test!();
    for flags in [
        &["-aK"][..],
        &["-rlptK"],
        &["-aK", "--delete"],
        &["-aK", "--delete-before"],
        &["-aK", "--delete", "--exclude=/realdir"],
    ] {
        for older in [dirlink_dest, dirlink_dest_kept] {
            run_case(test, &dirlink_case(flags, older));
        }
    }
}

#[test]
fn keep_dirlinks_crosses_the_wire() {
    let test = this_test!();
    for flags in [&["-aK"][..], &["-aK", "--delete", "--exclude=/realdir"]] {
        let case = dirlink_case(flags, dirlink_dest);
        remote_case(test, &case, Direction::Push);
        remote_case(test, &case, Direction::Pull);
    }
}

/// A destination link that leads out of the destination is never followed under `-K`: it
/// is named, replaced by the source's directory, and what it points to is left as it was.
#[test]
fn keep_dirlinks_never_follows_a_link_out_of_the_destination() {
    let test = this_test!();
    let dir = test_dir();
    let root = dir.path();
    TestTree::at(&root.join("src"))
        .file("up/f", b"would escape\n")
        .file("abs/f", b"would escape too\n");
    let outside = TestTree::at(&root.join("outside"));
    outside.file("keep", b"untouched\n");
    let dst = TestTree::at(&root.join("dst"));
    dst.symlink("up", "../outside");
    dst.symlink("abs", root.join("outside"));
    let before = snapshot(&root.join("outside"));
    let out = run(xsync()
        .args(["-aK"])
        .arg(slash(&root.join("src")))
        .arg(slash(&root.join("dst"))));
    assert_eq!(code(&out), 0, "{test}: {}", stderr(&out));
    assert!(
        diff_snapshots(&before, &snapshot(&root.join("outside"))).is_empty(),
        "{test}: nothing outside the destination changed"
    );
    for name in ["up", "abs"] {
        let m = std::fs::symlink_metadata(root.join("dst").join(name)).expect("lstat");
        assert!(m.is_dir(), "{test}: {name} is the source's directory now");
        assert!(
            stdout(&out).contains(&format!("not following symlink \"{name}\"")),
            "{test}: {}",
            stdout(&out)
        );
    }
}

/// An absolute `--partial-dir`, inside the destination or beside it, is accepted; a run
/// that is not interrupted leaves the trees as rsync's (no rule protects an absolute DIR,
/// and nothing is kept in it), pushed and pulled too.
#[test]
fn absolute_partial_dir_is_accepted_as_rsync_accepts_it() {
    let test = this_test!();
    let scratch = test_dir();
    let outside = format!("--partial-dir={}", scratch.path().join("part").display());
    for flags in [
        &["-a", "--partial", &outside][..],
        &["-a", "--delete", &outside],
    ] {
        differential(test, flags, true, Fixture::over_older_copy());
        let case = simple_case(flags, true, Fixture::over_older_copy());
        remote_case(test, &case, Direction::Push);
        remote_case(test, &case, Direction::Pull);
    }
    assert!(
        !scratch.path().join("part").exists(),
        "{test}: nothing kept"
    );
}

/// `-d`: directories without recursion, as rsync sends them: a named directory without its
/// contents, a directory's contents one level deep; `--delete` in the directories sent.
#[test]
fn dirs_sends_directories_without_recursing_as_rsync() {
    let test = this_test!();
    for flags in [
        &["-dlpt"][..],
        &["-dlptgoD"],
        &["-dlpt", "--delete"],
        &["-a", "--no-r", "-d", "--delete"],
    ] {
        for slash in [true, false] {
            differential(test, flags, slash, Fixture::awkward());
            differential(test, flags, slash, Fixture::over_older_copy());
        }
    }
}

#[test]
fn dirs_crosses_the_wire() {
    let test = this_test!();
    for slash in [true, false] {
        let case = simple_case(&["-dlpt", "--delete"], slash, Fixture::over_older_copy());
        remote_case(test, &case, Direction::Push);
        remote_case(test, &case, Direction::Pull);
    }
}
