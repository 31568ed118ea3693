//! `--link-dest`, `--compare-dest`, `--copy-dest` against rsync: the snapshot-backup chain
//! (day 1 full, day 2 into a new directory beside it, unchanged files hard links to day 1's),
//! locally and pushed over ssh, with the trees, the `-i` lines, the exit codes and — what the
//! tree comparison alone cannot see — which DIR each file shares its inode with.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::delta::{counted, remote_dir};
use crate::remote::{rsync_over, xsync_over};
use crate::sshd::Sshd;
use crate::util::{
    Compare, TestTree, code, diff_trees, have_rsync, rsync, run, scan, set_mtime, stderr, test_dir,
    xsync,
};

/// Day 1's source: plain files, a subdirectory, an empty one, a symlink, a hard-linked pair,
/// and a 2 MiB file (big enough that its delta basis shows on the wire).
fn day1_src(root: &Path) {
    let t = TestTree::at(root);
    t.file("a", b"a\n")
        .file("c", b"c\n")
        .file("p", b"p\n")
        .file("s", b"s\n")
        .file("gone", b"gone\n")
        .file("sub/b", b"bb\n")
        .file("sub/deep/d", b"ddd\n")
        .dir("empty")
        .symlink("lnk", "a")
        .file("h1", b"linked\n")
        .hardlink("h1", "h2")
        .random_file("big", 11, 2 << 20);
    for rel in [
        "a",
        "c",
        "p",
        "s",
        "gone",
        "sub/b",
        "sub/deep/d",
        "h1",
        "big",
    ] {
        set_mtime(&t.path(rel), 1_600_000_000, 123_456_789);
    }
}

/// What changes between day 1 and day 2: content, mode only, mtime only, a new file, a
/// removed one, and a small edit inside the big file.
fn day2_changes(root: &Path) {
    let t = TestTree::at(root);
    t.file("c", b"c changed\n")
        .chmod("p", 0o600)
        .file("new", b"new\n")
        .remove("gone");
    set_mtime(&t.path("s"), 1_700_000_000, 0);
    let mut big = fs::read(t.path("big")).expect("read big");
    big[1 << 20] ^= 0xff;
    fs::write(t.path("big"), &big).expect("write big");
    set_mtime(&t.path("big"), 1_600_000_100, 0);
}

/// One side of a run: `<side>/bk/day1` (made by rsync, the same on both sides), and the
/// tool's run into `<side>/bk/day2/`.
struct Run<'s> {
    _dir: tempfile::TempDir,
    root: PathBuf,
    rsync: Output,
    xsync: Output,
    flags: Vec<String>,
    over: Option<&'s Sshd>,
}

impl Run<'_> {
    fn side(&self, tool: &str) -> PathBuf {
        self.root
            .join(if tool == "rsync" { "a" } else { "b" })
            .join("bk")
    }
    fn out(&self, tool: &str) -> &Output {
        if tool == "rsync" {
            &self.rsync
        } else {
            &self.xsync
        }
    }
}

/// Builds the source and day 1 on both sides, applies day 2's changes (and `prefill` to
/// each side's day 2, when given), then runs rsync and xsync with `flags` (where `@BK@`
/// stands for the side's `bk` directory) from the test directory.
fn alt_run<'s>(
    test: &str,
    flags: &[&str],
    prefill: Option<fn(&Path)>,
    over: Option<&'s Sshd>,
) -> Option<Run<'s>> {
    if !have_rsync(test) {
        return None;
    }
    let dir = test_dir();
    let root = dir.path().to_path_buf();
    let src = root.join("src");
    day1_src(&src);
    {
        let bk = root.join("a").join("bk");
        fs::create_dir_all(&bk).expect("mkdir bk");
        let mut r = rsync().expect("rsync checked");
        r.args(["-aH", "src/"])
            .arg(bk.join("day1"))
            .current_dir(&root);
        let o = run(&mut r);
        assert_eq!(code(&o), 0, "{test}: day 1: {}", stderr(&o));
        // An older day beside it, holding `a` as day 1 has it and `c` as day 2 will.
        let mut r = rsync().expect("rsync checked");
        r.args(["-a", "src/a", "src/c"])
            .arg(bk.join("day0"))
            .current_dir(&root);
        assert_eq!(code(&run(&mut r)), 0);
    }
    // The same day 1 on both sides, symlink times and all.
    let mut cp = Command::new("cp");
    cp.args(["-a", "a", "b"]).current_dir(&root);
    assert_eq!(code(&run(&mut cp)), 0, "cp -a");
    day2_changes(&src);
    for side in ["a", "b"] {
        let bk = root.join(side).join("bk");
        fs::copy(src.join("c"), bk.join("day0/c")).expect("copy c");
        let m = fs::metadata(src.join("c")).expect("stat c");
        set_mtime(&bk.join("day0/c"), m.mtime(), m.mtime_nsec());
        if let Some(f) = prefill {
            f(&bk.join("day2"));
        }
    }
    let flags: Vec<String> = flags.iter().map(|f| f.to_string()).collect();
    let (rsync_out, xsync_out) = both_tools(&root, &flags, over);
    Some(Run {
        _dir: dir,
        root,
        rsync: rsync_out,
        xsync: xsync_out,
        flags,
        over,
    })
}

/// rsync into `root/a/bk/day2/`, then xsync into `root/b/bk/day2/`, from `root`.
fn both_tools(root: &Path, flags: &[String], over: Option<&Sshd>) -> (Output, Output) {
    let mut outs = Vec::new();
    for (tool, side) in [("rsync", "a"), ("xsync", "b")] {
        let bk = root.join(side).join("bk");
        let mut cmd: Command = match (tool, over) {
            ("rsync", None) => rsync().expect("rsync checked"),
            ("rsync", Some(s)) => rsync_over(s),
            (_, None) => xsync(),
            (_, Some(s)) => xsync_over(s),
        };
        let bk_s = bk.display().to_string();
        cmd.args(flags.iter().map(|f| f.replace("@BK@", &bk_s)));
        cmd.arg("src/");
        match over {
            None => cmd.arg(bk.join("day2/")),
            Some(_) => cmd.arg(remote_dir(&bk.join("day2"))),
        };
        cmd.current_dir(root);
        outs.push(run(&mut cmd));
    }
    let xsync_out = outs.pop().expect("two runs");
    let rsync_out = outs.pop().expect("two runs");
    (rsync_out, xsync_out)
}

/// For each non-directory of `day2`, which sibling day (`day0`, `day1`) it shares its inode
/// with, if any.
fn linked_to(bk: &Path) -> BTreeMap<PathBuf, Option<String>> {
    let ino = |p: &Path| fs::symlink_metadata(p).ok().map(|m| (m.dev(), m.ino()));
    let mut out = BTreeMap::new();
    for (rel, m) in scan(&bk.join("day2"), false) {
        if m.kind == crate::util::Kind::Dir {
            continue;
        }
        let mine = ino(&bk.join("day2").join(&rel));
        let day = ["day0", "day1"]
            .into_iter()
            .find(|d| ino(&bk.join(d).join(&rel)) == mine)
            .map(str::to_string);
        out.insert(rel, day);
    }
    out
}

/// The listing as sorted lines (the order of a parallel run is not rsync's), each side's
/// own path in `created directory` made the same.
fn sorted_lines(o: &Output) -> Vec<String> {
    let mut v: Vec<String> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| l.replace("/a/bk/", "/b/bk/"))
        .collect();
    v.sort();
    v
}

/// Equal exit codes (0), equal day-2 trees, equal links into the DIRs, equal `-i` lines;
/// then the same again for the re-runs ([`reruns_like_rsync`]). Returns the first run's
/// links.
fn assert_like_rsync(test: &str, r: &Run) -> BTreeMap<PathBuf, Option<String>> {
    let links = one_like_rsync(test, &r.root, r.out("rsync"), r.out("xsync"));
    reruns_like_rsync(test, r);
    links
}

/// The re-runs of the differential rule (util::rounds), in a copy of the test directory so
/// the caller's checks still see the first run: again with nothing changed, again after
/// one change in the source, and once more; after each, as [`one_like_rsync`].
fn reruns_like_rsync(test: &str, r: &Run) {
    let copy = test_dir();
    let status = Command::new("cp")
        .arg("-a")
        .arg(r.root.join("."))
        .arg(copy.path())
        .status()
        .expect("cp -a");
    assert!(status.success(), "{test}: cp -a of the test directory");
    let root = copy.path();
    // (The flags name each side's own directories.)
    let flags: Vec<String> = r
        .flags
        .iter()
        .map(|f| f.replace(&r.root.display().to_string(), &root.display().to_string()))
        .collect();
    for (round, what) in crate::util::RUNS.iter().enumerate().skip(1) {
        if round == 2 {
            crate::util::one_change(&root.join("src"));
        }
        let (ra, xa) = both_tools(root, &flags, r.over);
        one_like_rsync(&format!("{test}, {what}"), root, &ra, &xa);
    }
}

fn one_like_rsync(
    test: &str,
    root: &Path,
    ra: &Output,
    xa: &Output,
) -> BTreeMap<PathBuf, Option<String>> {
    let side = |tool: &str| {
        root.join(if tool == "rsync" { "a" } else { "b" })
            .join("bk")
    };
    assert_eq!(
        (code(ra), code(xa)),
        (0, 0),
        "{test}: exit codes\nrsync: {}\nxsync: {}",
        stderr(ra),
        stderr(xa)
    );
    // Directory (and a copied symlink's) times are not compared: rsync leaves a new one
    // that matches DIR's with the time of its creation (it compares the times with DIR's,
    // finds them equal, and never sets them); xsync gives it the source's, as -t asks.
    let dirs = scan(&root.join("src"), false)
        .into_iter()
        .filter(|(_, m)| matches!(m.kind, crate::util::Kind::Dir | crate::util::Kind::Symlink))
        .map(|(rel, _)| rel);
    let diffs = diff_trees(
        &side("rsync").join("day2"),
        &side("xsync").join("day2"),
        &Compare::for_flags(&["-a"]).ignoring_times_of(dirs),
    );
    assert!(diffs.is_empty(), "{test}: day 2 differs:\n{diffs:#?}");
    let (la, lb) = (linked_to(&side("rsync")), linked_to(&side("xsync")));
    assert_eq!(
        la, lb,
        "{test}: which DIR each file is linked to (rsync, xsync)"
    );
    assert_eq!(
        sorted_lines(ra),
        sorted_lines(xa),
        "{test}: -i lines (rsync, xsync)"
    );
    lb
}

fn day(s: &str) -> Option<String> {
    Some(s.to_string())
}

#[test]
fn link_dest_snapshot_links_unchanged_files_to_the_previous_day_like_rsync() {
    let test = this_test!();
    let flags = ["-a", "-i", "--delete", "--link-dest=../day1"];
    let Some(r) = alt_run(test, &flags, None, None) else {
        return;
    };
    let links = assert_like_rsync(test, &r);
    // Checked directly too: unchanged files share day 1's inode, changed ones do not.
    for (rel, want) in [
        ("a", day("day1")),
        ("sub/b", day("day1")),
        ("sub/deep/d", day("day1")),
        ("lnk", day("day1")),
        ("c", None),
        ("p", None),
        ("s", None),
        ("new", None),
        ("big", None),
    ] {
        assert_eq!(links.get(Path::new(rel)), Some(&want), "{test}: {rel}");
    }
}

#[test]
fn link_dest_takes_the_first_exact_match_of_several_dirs_and_skips_a_missing_one() {
    let test = this_test!();
    let flags = [
        "-a",
        "-i",
        "--link-dest=../nope",
        "--link-dest=../day0",
        "--link-dest=@BK@/day1",
    ];
    let Some(r) = alt_run(test, &flags, None, None) else {
        return;
    };
    let links = assert_like_rsync(test, &r);
    // day0 comes first: `a` and the changed `c` (as day 2 has it) come from there.
    assert_eq!(links.get(Path::new("a")), Some(&day("day0")));
    assert_eq!(links.get(Path::new("c")), Some(&day("day0")));
    assert_eq!(links.get(Path::new("sub/b")), Some(&day("day1")));
    // rsync's warning, for the missing relative DIR named from the destination.
    for tool in ["rsync", "xsync"] {
        let want = format!(
            "--link-dest arg does not exist: {}/day2/../nope",
            r.side(tool).display()
        );
        let err = stderr(r.out(tool));
        assert!(
            err.lines().any(|l| l == want),
            "{test}: {tool} stderr lacks {want:?}:\n{err}"
        );
    }
}

#[test]
fn link_dest_with_hard_links_links_the_whole_group_to_the_previous_day() {
    let test = this_test!();
    let flags = ["-aH", "-i", "--link-dest=../day1"];
    let Some(r) = alt_run(test, &flags, None, None) else {
        return;
    };
    let links = assert_like_rsync(test, &r);
    assert_eq!(links.get(Path::new("h1")), Some(&day("day1")));
    assert_eq!(links.get(Path::new("h2")), Some(&day("day1")));
}

#[test]
fn a_missing_link_dest_warns_and_copies_everything_like_rsync() {
    let test = this_test!();
    let Some(r) = alt_run(
        test,
        &["-a", "-i", "--link-dest=/nonexistent/day1"],
        None,
        None,
    ) else {
        return;
    };
    let links = assert_like_rsync(test, &r);
    assert!(links.values().all(Option::is_none), "{test}: {links:?}");
    for tool in ["rsync", "xsync"] {
        let err = stderr(r.out(tool));
        assert!(
            err.contains("--link-dest arg does not exist: /nonexistent/day1"),
            "{test}: {tool}: {err}"
        );
    }
}

#[test]
fn compare_dest_lands_only_the_files_that_differ_like_rsync() {
    let test = this_test!();
    let Some(r) = alt_run(test, &["-a", "-i", "--compare-dest=../day1"], None, None) else {
        return;
    };
    let links = assert_like_rsync(test, &r);
    assert!(links.values().all(Option::is_none), "{test}: {links:?}");
    let day2 = r.side("xsync").join("day2");
    for absent in ["a", "sub/b", "lnk", "h1"] {
        assert!(!day2.join(absent).exists(), "{test}: {absent} was copied");
    }
    for present in ["c", "p", "s", "new", "big"] {
        assert!(day2.join(present).exists(), "{test}: {present} missing");
    }
}

/// rsync removes a destination file that an exact match in DIR stands in for, and
/// `--delete` still removes what the source does not have.
#[test]
fn compare_dest_over_an_existing_destination_with_delete_like_rsync() {
    let test = this_test!();
    fn prefill(day2: &Path) {
        let t = TestTree::at(day2);
        t.file("a", b"a\n")
            .file("extra", b"x\n")
            .file("c", b"old\n");
        set_mtime(&t.path("a"), 1_600_000_000, 123_456_789);
    }
    let flags = ["-a", "-i", "--delete", "--compare-dest=../day1"];
    let Some(r) = alt_run(test, &flags, Some(prefill), None) else {
        return;
    };
    assert_like_rsync(test, &r);
    let day2 = r.side("xsync").join("day2");
    assert!(!day2.join("a").exists() && !day2.join("extra").exists());
}

#[test]
fn copy_dest_copies_unchanged_files_from_the_dir_like_rsync() {
    let test = this_test!();
    let Some(r) = alt_run(test, &["-a", "-i", "--copy-dest=../day1"], None, None) else {
        return;
    };
    let links = assert_like_rsync(test, &r);
    assert!(links.values().all(Option::is_none), "{test}: {links:?}");
    let day2 = r.side("xsync").join("day2");
    assert_eq!(
        fs::read(day2.join("sub/b")).ok().as_deref(),
        Some(&b"bb\n"[..])
    );
}

#[test]
fn mixing_alternate_dest_kinds_or_giving_21_dirs_is_refused_like_rsync() {
    let mut many: Vec<String> = (0..21).map(|i| format!("--link-dest=d{i}")).collect();
    many.extend(["s/".to_string(), "d/".to_string()]);
    let out = run(xsync().args(&many));
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(stderr(&out).contains("at most 20 --link-dest args may be specified"));
    let out = run(xsync().args(["--link-dest=a", "--compare-dest=b", "s/", "d/"]));
    assert_eq!(code(&out), 1);
    assert!(
        stderr(&out).contains("the --compare-dest option conflicts with the --link-dest option"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn link_dest_pushed_over_ssh_links_like_rsync() {
    let test = this_test!();
    if !have_rsync(test) {
        return;
    }
    let Some(sshd) = Sshd::start(test) else {
        return;
    };
    let flags = ["-a", "-i", "--delete", "--link-dest=../day1"];
    let Some(r) = alt_run(test, &flags, None, Some(&sshd)) else {
        return;
    };
    let links = assert_like_rsync(test, &r);
    assert_eq!(links.get(Path::new("a")), Some(&day("day1")));
    assert_eq!(links.get(Path::new("c")), Some(&None));
}

/// Files linked from DIR cost nothing on the wire, and a changed file's delta uses DIR's
/// copy as its basis: day 2 of a tree holding two 2 MiB files, one unchanged and one with a
/// one-byte edit, costs far less than one of them.
#[test]
fn link_dest_over_ssh_sends_no_data_for_linked_files_and_deltas_against_dir() {
    let test = this_test!();
    let Some(sshd) = Sshd::start(test) else {
        return;
    };
    let dir = test_dir();
    let root = dir.path();
    let t = TestTree::at(&root.join("src"));
    t.random_file("same", 1, 2 << 20)
        .random_file("edited", 2, 2 << 20);
    let bk = root.join("bk");
    fs::create_dir_all(&bk).expect("mkdir bk");
    let mut day1 = xsync();
    day1.args(["-a", "src/"])
        .arg(bk.join("day1"))
        .current_dir(root);
    assert_eq!(code(&run(&mut day1)), 0);
    let mut edited = fs::read(t.path("edited")).expect("read");
    edited[1 << 20] ^= 1;
    fs::write(t.path("edited"), &edited).expect("write");
    set_mtime(&t.path("edited"), 1_700_000_000, 0);

    let mut x = xsync();
    x.args(["-a", "--link-dest=../day1", "--xsync-path"])
        .arg(env!("CARGO_BIN_EXE_xsync"))
        .arg("src/")
        .arg(remote_dir(&bk.join("day2")))
        .current_dir(root);
    let (rc, err, bytes) = counted(x, &sshd, root, "x");
    assert_eq!(rc, 0, "{test}: {err}");
    let ino = |p: PathBuf| fs::metadata(p).map(|m| m.ino()).ok();
    assert_eq!(ino(bk.join("day2/same")), ino(bk.join("day1/same")));
    assert_ne!(ino(bk.join("day2/edited")), ino(bk.join("day1/edited")));
    assert_eq!(fs::read(bk.join("day2/edited")).ok(), Some(edited));
    crate::util::note(&format!(
        "NOTE: {test}: 4 MiB tree, one file linked, one delta'd: {bytes} bytes on the wire"
    ));
    assert!(bytes > 0, "byte counter saw nothing");
    assert!(
        bytes < 256 << 10,
        "{test}: {bytes} bytes: the linked file or the basis was not used"
    );
}
