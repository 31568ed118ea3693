//! `-b`, `--backup-dir`, `--suffix` against rsync: what is replaced or deleted is kept (as
//! NAME~ beside it, under another suffix, or below a DIR inside or outside the destination),
//! with the kind changes, hard links and `--inplace` of the older-copy fixture, `--delete`
//! and its protect rule over the re-runs, locally, pushed and pulled; and two promises of our
//! own: a symlink planted below DIR is not followed, and backups survive a `--delete` re-run.

use std::fs;
use std::path::Path;

use crate::remote::{Direction, remote_case};
use crate::util::*;

/// The older-copy fixture (changed files, kind changes, a broken hard link, extraneous
/// files and directories) into `dst/`, with `flags`.
fn case(flags: &'static [&'static str]) -> Case<'static> {
    simple_case(flags, true, Fixture::over_older_copy())
}

#[test]
fn backups_beside_the_files_match_rsync() {
    run_case(this_test!(), &case(&["-a", "-b"]));
}

#[test]
fn backups_with_delete_are_protected_and_keep_their_directories() {
    let test = this_test!();
    let Some(out) = run_case(test, &case(&["-a", "-b", "--delete"])) else {
        return;
    };
    // (After all four runs: the re-runs with --delete left the backups alone.)
    let dst = out.side_b().join("dst");
    assert_eq!(
        fs::read(dst.join("extra0.dat~")).ok().as_deref(),
        Some(&b"extra 0\n"[..]),
        "{test}: the deleted file's backup"
    );
    assert!(
        dst.join("extra_dir/sub/file~").exists(),
        "{test}: a deleted directory keeps the backups made in it"
    );
    assert!(
        dst.join("sizes/s1~").exists(),
        "{test}: the replaced file's backup"
    );
}

#[test]
fn backups_with_delete_excluded_are_deleted_on_the_rerun_as_in_rsync() {
    run_case(
        this_test!(),
        &case(&[
            "-a",
            "-b",
            "--delete",
            "--delete-excluded",
            "--exclude=*.log",
        ]),
    );
}

#[test]
fn another_suffix_and_delete_after_match_rsync() {
    run_case(
        this_test!(),
        &case(&["-a", "-b", "--suffix=.old", "--delete-after"]),
    );
}

#[test]
fn a_backup_dir_beside_the_destination_matches_rsync() {
    run_case(
        this_test!(),
        &case(&["-a", "--backup-dir=../bak", "--delete"]),
    );
}

#[test]
fn a_backup_dir_inside_the_destination_with_a_suffix_matches_rsync() {
    run_case(
        this_test!(),
        &case(&["-a", "--backup-dir=bak", "--suffix=.b"]),
    );
}

/// (rsync 3.5 fails on `--inplace` with a DIR that has `..` in it: it cannot stat the copy
/// it made there, and leaves it with a new mtime and mode 0600, exit 23. xsync's copy keeps
/// the old file's, as a DIR inside the destination shows.)
#[test]
fn inplace_backs_up_a_copy_first_as_rsync() {
    run_case(this_test!(), &case(&["-a", "-b", "--inplace"]));
    run_case(
        this_test!(),
        &case(&["-a", "--inplace", "--backup-dir=bak"]),
    );
}

#[test]
fn hard_links_and_deltas_back_up_as_rsync() {
    run_case(this_test!(), &case(&["-aH", "-b", "--delete"]));
    run_case(this_test!(), &case(&["-a", "-b", "--no-whole-file"]));
}

#[test]
fn backups_over_ssh_match_rsync() {
    let test = this_test!();
    for flags in [
        &["-a", "-b", "--delete"][..],
        &["-a", "--backup-dir=../bak", "--delete"][..],
        &["-a", "-b", "--inplace", "--suffix=.old"][..],
    ] {
        for direction in [Direction::Push, Direction::Pull] {
            let c = simple_case(flags, true, Fixture::over_older_copy());
            remote_case(&format!("{test} {flags:?} ({direction:?})"), &c, direction);
        }
    }
}

/// Each side gets `bak/sizes` as a symlink to a directory beside it, where the backups of
/// `sizes/` would land if the link were followed.
fn plant_link_in_backup_dir(side: &Path) {
    fs::create_dir_all(side.join("bak")).expect("mkdir bak");
    fs::create_dir_all(side.join("outside")).expect("mkdir outside");
    std::os::unix::fs::symlink("../outside", side.join("bak/sizes")).expect("plant symlink");
}

#[test]
fn a_symlink_planted_in_the_backup_dir_is_not_followed() {
    let test = this_test!();
    let c = simple_case(
        &["-a", "--backup-dir=../bak"],
        true,
        Fixture {
            side: Some(plant_link_in_backup_dir),
            ..Fixture::over_older_copy()
        },
    );
    let Some(out) = run_case(test, &c) else {
        return;
    };
    let side = out.side_b();
    assert_eq!(
        fs::read_dir(side.join("outside")).expect("outside").count(),
        0,
        "{test}: a backup went through the planted link"
    );
    let bak = fs::symlink_metadata(side.join("bak/sizes")).expect("bak/sizes");
    assert!(bak.is_dir(), "{test}: the link is replaced by a directory");
    assert!(side.join("bak/sizes/s1").is_file(), "{test}: s1's backup");
}

/// rsync's lines, in rsync's order, for a `--delete` that keeps directories: a directory
/// holding backups (or, on the re-run, protected ones) is "cannot delete non-empty
/// directory", not "deleting"; a directory's deletions come before its entries.
#[test]
fn kept_directories_are_reported_as_rsync_reports_them() {
    let test = this_test!();
    if !have_rsync(test) {
        return;
    }
    let dir = test_dir();
    let root = dir.path();
    let mut lines = Vec::new();
    for side in ["a", "b"] {
        let src_dir = root.join(format!("src-{side}"));
        let src = TestTree::at(&src_dir);
        src.file("t/a", b"new a\n").file("t/z", b"z\n");
        let dst = TestTree::at(&root.join(side));
        dst.file("t/a", b"old\n")
            .file("t/olddir/f", b"f\n")
            .file("t/olddir/sub/g", b"g\n")
            .file("t/olddir/empty/.keep~", b"")
            .dir("t/olddir/bare")
            .file("t/gone", b"gone\n");
        set_mtime(&dst.path("t/a"), 1_500_000_000, 0);
        let mut out = Vec::new();
        for round in 0..2 {
            if round == 1 {
                src.file("t/a", b"newer a\n");
                set_mtime(&src.path("t/a"), 1_600_000_000, 0);
            }
            let mut cmd = if side == "a" {
                rsync().expect("rsync checked")
            } else {
                xsync()
            };
            cmd.args(["-ai", "-b", "--delete"])
                .arg(slash(&src_dir))
                .arg(slash(&root.join(side)));
            let o = run(&mut cmd);
            assert_eq!(code(&o), 0, "{test}: {side}: {}", stderr(&o));
            out.push(stdout(&o).lines().map(str::to_string).collect::<Vec<_>>());
        }
        lines.push(out);
    }
    assert_eq!(lines[0], lines[1], "{test}: rsync's lines, then xsync's");
    assert!(
        lines[1][1].contains(&"cannot delete non-empty directory: t/olddir".to_string()),
        "{test}: {:?}",
        lines[1]
    );
}
