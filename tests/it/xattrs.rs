//! `-X`: extended attributes against rsync: a fresh copy, an update that changes, adds and
//! removes attributes (attribute-only and with new content), the `x` of `-i`, the no-op
//! re-run, and a receiving file system without attributes.

use crate::util::*;

fn stdout_of(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// rsync's itemized lines, without the `created directory` notice and sorted (the two tools
/// may list a directory's entries in their own order only where rsync has no order).
fn items(o: &std::process::Output) -> Vec<String> {
    let mut v: Vec<String> = stdout_of(o)
        .lines()
        .filter(|l| !l.starts_with("created directory"))
        .map(str::to_string)
        .collect();
    v.sort();
    v
}

#[test]
fn xattrs_fresh_copy_matches_rsync() {
    for slash in [true, false] {
        differential(this_test!(), &["-aX"], slash, Fixture::xattrs());
    }
}

#[test]
fn xattrs_update_changes_adds_and_removes_as_rsync_and_itemizes_x() {
    let test = this_test!();
    for slash in [true, false] {
        let Some(out) = differential(test, &["-aXi"], slash, Fixture::xattrs_over_older()) else {
            return;
        };
        let (a, b) = (items(&out.a), items(&out.b));
        assert_eq!(a, b, "{test}: -i lines, rsync vs xsync");
        assert!(
            b.iter().any(|l| l.starts_with(".f........x ")),
            "{test}: an attribute-only change is itemized with x: {b:?}"
        );
    }
}

#[test]
fn xattrs_noop_rerun_prints_nothing_and_changes_nothing() {
    let test = this_test!();
    let Some(out) = differential(test, &["-aX"], true, Fixture::xattrs()) else {
        return;
    };
    assert_noop_rerun_is_silent(test, &out, &["-aXi"]);
}

#[test]
fn without_x_attributes_are_neither_copied_nor_removed() {
    let test = this_test!();
    let Some(out) = differential(test, &["-a"], true, Fixture::xattrs_over_older()) else {
        return;
    };
    // The older copy's attributes stay as they were on both sides.
    let x = xattrs_of(&out.side_b().join("dst/plain.txt"));
    assert!(x.iter().any(|(n, _)| n == b"user.extra"), "{test}: {x:?}");
    assert_eq!(x, xattrs_of(&out.side_a().join("dst/plain.txt")));
}

/// A tmpfs-like file system without attributes (ramfs): rsync still puts every file in
/// place, reports each attribute it cannot set, and exits 23.
#[test]
fn xattrs_on_a_receiver_without_them_still_copy_files_and_exit_23() {
    let test = this_test!();
    if !have_rsync(test) {
        return;
    }
    let dir = test_dir();
    let src = dir.path().join("src");
    xattr_tree(&src);
    let mnt = dir.path().join("ram");
    let Some(_ramfs) = Ramfs::mount(test, &mnt) else {
        return;
    };
    let a = run(rsync()
        .expect("checked")
        .arg("-aX")
        .arg(slash(&src))
        .arg(mnt.join("a")));
    let b = run(xsync().arg("-aX").arg(slash(&src)).arg(mnt.join("b")));
    assert_eq!(code(&a), 23, "rsync: {}", stderr(&a));
    assert_eq!(code(&b), 23, "{test}: xsync: {}", stderr(&b));
    assert!(
        stderr(&b).contains("Operation not supported"),
        "{test}: {}",
        stderr(&b)
    );
    let diffs = diff_trees(&mnt.join("a"), &mnt.join("b"), &Compare::for_flags(&["-a"]));
    assert!(diffs.is_empty(), "{test}: {diffs:?}");
    assert!(mnt.join("b/sub/changed.txt").exists());
}
