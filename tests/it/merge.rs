//! Merge-file filter rules against rsync: `-F` (`dir-merge /.rsync-filter`, and `-FF`),
//! `-C` (the CVS list and per-directory `.cvsignore` files), `merge` and `dir-merge`
//! rules with their modifiers; locally, pushed and pulled, with the re-runs.

use crate::remote::{Direction, remote_case};
use crate::util::*;
use std::path::Path;

/// A source tree with per-directory rule files at two levels, CVS-ignored names and a
/// rule file in the directory that holds the source (read by `-F`'s parent scan, and by
/// a walk that names `src` rather than `src/`).
fn rule_files(src: &Path) {
    let t = TestTree::at(src);
    t.file(
        ".rsync-filter",
        b"- *.o\n- /top-only\n+ keep.tmp\n# a comment\n",
    )
    .file("a.c", b"a\n")
    .file("a.o", b"object\n")
    .file("top-only", b"anchored at src\n")
    .file("keep.tmp", b"kept by src's file\n")
    .file("x.tmp", b"excluded by the parent's file\n")
    .file(".cvsignore", b"*.log junk\n")
    .file("b.log", b"cvs-ignored here\n")
    .file("junk", b"cvs-ignored here\n")
    .file("core", b"in the default CVS list\n")
    .file("notes~", b"in the default CVS list\n")
    .file(".git/config", b"a .git directory\n")
    .file("rules.txt", b"- *.c\n+ a.o\n")
    .file("sub/.rsync-filter", b"+ sub.o\n- /deep\n")
    .file("sub/sub.o", b"included by sub's file\n")
    .file("sub/other.o", b"excluded by the inherited rule\n")
    .file("sub/top-only", b"not anchored here\n")
    .file("sub/deep/file", b"an anchored directory\n")
    .file("sub/c.log", b".cvsignore is not inherited\n")
    .file("sub/n/.excl", b"z\n")
    .file("sub/n/z", b"excluded by n's own file\n")
    .file("sub/n/deeper/z", b"not inherited with n\n");
    t.stamp(false);
    let parent = src.parent().expect("src has a parent");
    std::fs::write(parent.join(".rsync-filter"), b"- *.tmp\n").expect("write parent rules");
}

/// What a destination holds before the transfer: extraneous files, some of them
/// protected by the receiver's own `.rsync-filter` or by the CVS list, and a directory
/// that goes as a whole (with the perishable CVS names inside).
fn rule_files_older(dst: &Path) {
    let t = TestTree::at(dst);
    t.file(".rsync-filter", b"- *.keep\n")
        .file("stray.c", b"extraneous\n")
        .file("stray.keep", b"protected by the receiver's file\n")
        .file("z.o", b"extraneous object\n")
        .file("gone/x.o", b"perishable inside a deleted directory\n")
        .file("gone/y", b"extraneous\n")
        .file("gone/.git/HEAD", b"perishable directory\n")
        .file("sub/stray.log", b"extraneous\n")
        .file("sub/n/q", b"extraneous\n");
    t.stamp(false);
}

fn fixture() -> Fixture {
    Fixture {
        src: rule_files,
        ..Fixture::awkward()
    }
}

fn over_older() -> Fixture {
    Fixture {
        src: rule_files,
        older: Some(rule_files_older),
        ..Fixture::awkward()
    }
}

fn both_ways(test: &str, flags: &[&str], fixture: fn() -> Fixture) {
    for slash in [true, false] {
        differential(&format!("{test} (slash {slash})"), flags, slash, fixture());
    }
}

fn over_ssh(test: &str, flags: &[&str], fixture: fn() -> Fixture) {
    for direction in [Direction::Push, Direction::Pull] {
        for slash in [true, false] {
            let case = simple_case(flags, slash, fixture());
            remote_case(
                &format!("{test} ({direction:?}, slash {slash})"),
                &case,
                direction,
            );
        }
    }
}

#[test]
fn f_reads_rsync_filter_files_in_each_directory_and_above_as_rsync() {
    both_ways(this_test!(), &["-a", "-F"], fixture);
    both_ways(this_test!(), &["-a", "-FF"], fixture);
}

#[test]
fn f_with_delete_reads_the_receivers_own_files() {
    both_ways(this_test!(), &["-a", "-F", "--delete"], over_older);
    both_ways(this_test!(), &["-a", "-FF", "--delete"], over_older);
    both_ways(this_test!(), &["-a", "-F", "--delete-excluded"], over_older);
}

#[test]
fn cvs_exclude_leaves_out_what_cvs_ignores() {
    both_ways(this_test!(), &["-a", "-C"], fixture);
}

#[test]
fn cvs_exclude_with_delete_keeps_the_receivers_ignored_files_but_not_in_deleted_dirs() {
    both_ways(this_test!(), &["-a", "-C", "--delete"], over_older);
    both_ways(this_test!(), &["-a", "-C", "-F", "--delete"], over_older);
}

#[test]
fn merge_and_dir_merge_modifiers_match_rsync() {
    for rules in [
        &["--filter=merge src/rules.txt"][..],
        &["--filter=. src/rules.txt", "--filter=- *.log"],
        &["--filter=merge,- src/rules.txt"],
        &["--filter=:n- .excl"],
        &["--filter=:e .rsync-filter"],
        &["--filter=dir-merge,w .cvsignore"],
        &["--filter=:C", "--filter=-C"],
        &["--filter=: .rsync-filter", "--filter=- *.c"],
        &["--filter=- *.c", "--filter=dir-merge .rsync-filter"],
        &["--filter=:s .rsync-filter", "--delete"],
        &["--filter=:r .rsync-filter", "--delete"],
        &["--filter=merge /nonexistent/rules"],
    ] {
        let mut flags = vec!["-a"];
        flags.extend_from_slice(rules);
        let test = format!("{} {rules:?}", this_test!());
        if rules.contains(&"--delete") {
            both_ways(&test, &flags, over_older);
        } else {
            both_ways(&test, &flags, fixture);
        }
    }
}

#[test]
fn merge_rules_cross_the_wire_as_rsync() {
    over_ssh(this_test!(), &["-a", "-F", "--delete"], over_older);
    over_ssh(this_test!(), &["-a", "-C", "--delete"], over_older);
    over_ssh(
        this_test!(),
        &["-a", "--filter=merge src/rules.txt"],
        fixture,
    );
}

#[test]
fn a_bad_rule_in_a_per_directory_file_is_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("src");
    TestTree::at(&src)
        .file(".rules", b"-q x\n")
        .file("f", b"f\n");
    let out = run(xsync()
        .args(["-a", "--filter=: .rules"])
        .arg(slash(&src))
        .arg(dir.path().join("dst")));
    assert_ne!(code(&out), 0, "{}", stderr(&out));
    assert!(stderr(&out).contains("-q x"), "{}", stderr(&out));
}
