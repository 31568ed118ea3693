//! Local-to-local behaviour, differential against rsync: the same flags on the same trees must
//! give the same exit code and the same destination, down to nanoseconds and hard-link groups.
//! Also what rsync cannot be compared on directly: dry runs, no-op reruns and crash safety.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::util::*;

// ---------------------------------------------------------------------------------------------
// The harness proves itself on rsync, so that a passing differential test means something.
// ---------------------------------------------------------------------------------------------

/// `rsync -aH src/ dst/` reproduces the awkward tree exactly, symlink times included: the
/// fixture is what we think it is and the comparer has no false positives.
#[test]
fn harness_rsync_copy_equals_source() {
    if !have_rsync(this_test!()) {
        return;
    }
    let dir = test_dir();
    let (src, dst) = (dir.path().join("src"), dir.path().join("dst"));
    awkward(&src);
    let out = run(rsync()
        .expect("checked")
        .args(["-aH"])
        .arg(slash(&src))
        .arg(slash(&dst)));
    assert_eq!(code(&out), 0, "rsync -aH failed: {}", stderr(&out));
    let diffs = diff_trees(&src, &dst, &Compare::default());
    assert!(
        diffs.is_empty(),
        "rsync -aH copy differs from source:\n{diffs:#?}"
    );

    // The fixture really is awkward.
    let tree = scan(&src, false);
    let groups = hard_link_groups(&tree);
    assert_eq!(groups.len(), 1, "one hard-link group: {groups:?}");
    assert_eq!(groups.iter().next().map(Vec::len), Some(3));
    assert!(tree.contains_key(&deep_path().join("leaf.txt")));
    assert!(tree.contains_key(&Path::new("names").join(non_utf8_name())));
    assert!(tree.keys().any(|k| k.as_os_str().len() > 240));
    assert!(tree.values().any(|m| m.kind == Kind::Fifo));
    assert!(
        tree.values()
            .any(|m| m.mode & 0o7777 == 0o2755 && m.kind == Kind::File)
    );
    let link = &tree[Path::new("links/rel")];
    assert_ne!(link.mtime.1, 0, "symlink has an explicit nanosecond mtime");
    if is_root() {
        assert!(tree.values().any(|m| m.uid == 1234 && m.gid == 5678));
    }
}

/// Two rsync runs on the same case agree with each other, so every path the runner exempts
/// from time comparison (and only those) is one whose time legitimately varies.
#[test]
fn harness_rsync_agrees_with_itself() {
    if !have_rsync(this_test!()) {
        return;
    }
    let cases = [
        simple_case(&["-a", "--delete"], true, Fixture::over_older_copy()),
        simple_case(&["-a", "--delete"], false, Fixture::over_older_copy()),
        simple_case(
            &["-a", "--ignore-existing"],
            true,
            Fixture::over_older_copy(),
        ),
        simple_case(&["-r"], true, Fixture::awkward()),
        simple_case(&["-aH"], false, Fixture::awkward()),
        several_sources_case(),
        max_delete_case(true),
        max_delete_case(false),
        file_to_new_name_case("dst/newname"),
        mkpath_case(true),
        mkpath_case(false),
    ];
    for case in &cases {
        // A pause so that "now" differs between the two runs.
        std::thread::sleep(Duration::from_millis(20));
        let (out, diffs) = run_pair(case, Tool::Rsync, Tool::Rsync);
        assert!(diffs.is_empty(), "{}", report(case, &out, &diffs));
        let want = if case.flags.contains(&"--max-delete=1") {
            25
        } else {
            0
        };
        assert_eq!(code(&out.a), want, "{}", stderr(&out.a));
    }
}

/// The comparer notices each kind of difference on its own: mode, setgid, file, directory and
/// symlink mtimes, symlink target, same-size content, kind, a missing entry, a broken or
/// extended hard-link group, owner and device number.
#[test]
fn harness_comparer_detects_every_kind_of_difference() {
    if !have_rsync(this_test!()) {
        return;
    }
    let dir = test_dir();
    let src = dir.path().join("src");
    awkward(&src);
    type Mutation = (&'static str, &'static str, fn(&TestTree));
    let mut mutations: Vec<Mutation> = vec![
        ("mode", "mode", |t| {
            t.chmod("modes/r0600", 0o640);
        }),
        ("setgid bit", "mode", |t| {
            t.chmod("modes/sgid2755", 0o755);
        }),
        ("file mtime nanoseconds", "mtime", |t| {
            let (s, ns) = stamp_time(Path::new("top.txt"));
            t.set_mtime("top.txt", s, ns + 1);
        }),
        ("directory mtime", "mtime", |t| {
            t.set_mtime("a/b/empty_leaf", 1, 0);
        }),
        ("symlink mtime", "mtime", |t| {
            t.set_mtime("links/dangling", 1, 1);
        }),
        ("symlink target", "symlink target", |t| {
            t.remove("links/dangling")
                .symlink("links/dangling", "elsewhere");
            let (s, ns) = stamp_time(Path::new("links/dangling"));
            t.set_mtime("links/dangling", s, ns);
        }),
        ("same-size content", "content differs", |t| {
            let (s, ns) = stamp_time(Path::new("samesize.bin"));
            t.file("samesize.bin", b"CCCCCCCCCCCCCCCC")
                .set_mtime("samesize.bin", s, ns);
        }),
        ("kind", "kind", |t| {
            t.remove("top.txt").symlink("top.txt", "x");
        }),
        ("missing empty directory", "only in A", |t| {
            t.remove("a/b/empty_leaf");
        }),
        ("extra file", "only in B", |t| {
            t.file("txt/new", b"");
        }),
        ("broken hard-link group", "hard-link group", |t| {
            t.remove("hard/h2").random_file("hard/h2", 42, 5000);
        }),
        ("new hard-link group", "hard-link group", |t| {
            t.remove("txt/b.txt").hardlink("txt/a.txt", "txt/b.txt");
        }),
    ];
    if is_root() {
        mutations.push(("owner", "owner", |t| {
            t.chown("txt/a.txt", 1, 1).expect("chown as root");
        }));
        mutations.push(("symlink owner", "owner", |t| {
            t.chown("links/abs", 7, 7).expect("lchown as root");
        }));
        if src.join("special/null").exists() {
            mutations.push(("device number", "device", |t| {
                t.remove("special/null");
                t.chardev("special/null", 1, 5).expect("mknod as root");
            }));
        } else {
            skip(
                "harness device comparison",
                "no character device in the fixture",
            );
        }
    } else {
        skip(this_test!(), "owner and device checks need root");
    }
    for (i, (what, needle, mutate)) in mutations.into_iter().enumerate() {
        let copy = dir.path().join(format!("m{i}"));
        let out = run(rsync()
            .expect("checked")
            .arg("-aH")
            .arg(slash(&src))
            .arg(slash(&copy)));
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        mutate(&TestTree::at(&copy));
        let diffs = diff_trees(&src, &copy, &Compare::default());
        assert!(
            diffs.iter().any(|d| d.contains(needle)),
            "comparer missed a {what} change (wanted a line with {needle:?}), got {diffs:#?}"
        );
        if what == "symlink mtime" {
            let lax = Compare {
                symlink_times: false,
                ..Compare::default()
            };
            let diffs = diff_trees(&src, &copy, &lax);
            assert!(diffs.is_empty(), "symlink_times=false still saw {diffs:#?}");
        }
    }
}

/// Snapshots see a file rewritten with identical bytes and restored mtime (new ctime), and
/// rsync itself passes the "second run rewrites nothing" check used on xsync below.
#[test]
fn harness_snapshot_detects_rewrites_and_rsync_rerun_is_clean() {
    if !have_rsync(this_test!()) {
        return;
    }
    let dir = test_dir();
    let (src, dst) = (dir.path().join("src"), dir.path().join("dst"));
    awkward(&src);
    for flags in ["-a", "-aH"] {
        let sync = || {
            let out = run(rsync()
                .expect("checked")
                .arg(flags)
                .arg(slash(&src))
                .arg(slash(&dst)));
            assert_eq!(code(&out), 0, "{}", stderr(&out));
        };
        sync();
        let before = snapshot(&dst);
        sync();
        let after = snapshot(&dst);
        let diffs = diff_snapshots(&before, &after);
        assert!(diffs.is_empty(), "rsync {flags} rerun rewrote: {diffs:#?}");
    }

    let before = snapshot(&dst);
    std::thread::sleep(Duration::from_millis(20));
    let (s, ns) = stamp_time(Path::new("txt/a.txt"));
    TestTree::at(&dst)
        .file("txt/a.txt", b"alpha\n")
        .set_mtime("txt/a.txt", s, ns);
    let diffs = diff_snapshots(&before, &snapshot(&dst));
    assert!(
        diffs.iter().any(|d| d.contains("txt/a.txt")),
        "snapshot missed a rewrite: {diffs:#?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Differential suite: each case with `src/ dst/` and with `src dst/`.
// ---------------------------------------------------------------------------------------------

macro_rules! differential_tests {
    ($( $(#[doc = $doc:literal])* $name:ident: $flags:expr, $fixture:expr; )*) => {$(
        $(#[doc = $doc])*
        mod $name {
            use super::*;

            #[test]
            fn src_with_trailing_slash() {
                differential(concat!(stringify!($name), " (src/)"), $flags, true, $fixture);
            }

            #[test]
            fn src_without_trailing_slash() {
                differential(concat!(stringify!($name), " (src)"), $flags, false, $fixture);
            }
        }
    )*};
}

differential_tests! {
    /// -a: everything but hard links, with all metadata.
    archive_copies_everything: &["-a"], Fixture::awkward();
    /// -aH: hard-link groups are reproduced.
    archive_with_hard_links_keeps_link_groups: &["-aH"], Fixture::awkward();
    /// -r: files and directories only; no symlinks, specials, times, owners or modes kept.
    recursive_copies_files_and_dirs_only: &["-r"], Fixture::awkward();
    /// -rlt: symlinks and times, but not permissions or owners.
    rlt_copies_symlinks_and_times: &["-rlt"], Fixture::awkward();
    /// -a over an older copy: changed files updated, kinds replaced, extras kept.
    archive_updates_an_older_copy: &["-a"], Fixture::over_older_copy();
    /// -aH over an older copy whose hard-link group was broken.
    archive_with_hard_links_repairs_link_groups: &["-aH"], Fixture::over_older_copy();
    /// --delete removes what the source lacks.
    delete_removes_extraneous_files: &["-a", "--delete"], Fixture::over_older_copy();
    /// Excluded files are neither copied nor deleted.
    delete_keeps_excluded_files: &["-a", "--delete", "--exclude", "*.log"], Fixture::over_older_copy();
    /// --delete-excluded deletes excluded files on the receiver too.
    delete_excluded_removes_excluded_files:
        &["-a", "--delete", "--exclude", "*.log", "--delete-excluded"], Fixture::over_older_copy();
    /// First matching rule wins: all directories, *.txt, nothing else.
    ordered_include_exclude_selects_txt_files:
        &["-a", "--include", "*/", "--include", "*.txt", "--exclude", "*"], Fixture::awkward();
    /// The same rules over an older copy with --delete.
    ordered_include_exclude_with_delete:
        &["-a", "--delete", "--include", "*/", "--include", "*.txt", "--exclude", "*"],
        Fixture::over_older_copy();
    /// --max-delete without --delete changes nothing about the copy.
    max_delete_without_delete_is_harmless: &["-a", "--max-delete=1"], Fixture::over_older_copy();
    /// --existing updates only what the receiver already has.
    existing_updates_only_present_files: &["-a", "--existing"], Fixture::over_older_copy();
    /// --ignore-existing creates only what the receiver lacks.
    ignore_existing_skips_present_files: &["-a", "--ignore-existing"], Fixture::over_older_copy();
    /// -u leaves files that are newer on the receiver alone.
    update_keeps_newer_receiver_files: &["-a", "-u"], Fixture::over_older_copy();
    /// --size-only skips files of equal size whatever their time.
    size_only_skips_same_size_files: &["-a", "--size-only"], Fixture::over_older_copy();
    /// -c decides by content, not size and time.
    checksum_compares_content: &["-ac"], Fixture::over_older_copy();
    /// -W (whole files) gives the same tree over an older copy.
    whole_file_updates_an_older_copy: &["-aW"], Fixture::over_older_copy();
    /// -rlptD: permissions and times but not owners.
    perms_and_times_without_owners: &["-rlptD"], Fixture::awkward();
    /// -rlgoD: owners but not permissions (new files get the umask rule, setgid dropped).
    owners_without_perms: &["-rlgoD"], Fixture::awkward();
    /// -rp over an older copy: permissions fixed on existing files, times left alone.
    perms_only_over_older_copy: &["-rp"], Fixture::over_older_copy();
    /// --numeric-ids keeps numbers (the foreign owners have no names).
    numeric_ids_keep_owner_numbers: &["-a", "--numeric-ids"], Fixture::awkward();
    /// --delete-before: the same deletions, all done before the first transfer.
    delete_before_removes_extraneous_files: &["-a", "--delete-before"], Fixture::over_older_copy();
    /// --delete-during (rsync's default for --delete) and its short --del.
    delete_during_removes_extraneous_files: &["-a", "--del"], Fixture::over_older_copy();
    /// --delete-delay: found during, deleted after the transfers.
    delete_delay_removes_extraneous_files: &["-a", "--delete-delay"], Fixture::over_older_copy();
    /// --delete-after with --max-delete: the same budget, spent after the transfers.
    delete_after_respects_max_delete:
        &["-a", "--delete-after", "--max-delete=100", "--exclude", "*.log"],
        Fixture::over_older_copy();
    /// Two --delete-WHEN options: refused (exit 1) before anything changes.
    delete_when_options_do_not_combine:
        &["-a", "--delete-before", "--delete-after"], Fixture::over_older_copy();
    /// -O: directory times are neither compared nor set; symlinks' are.
    omit_dir_times_keeps_directory_times: &["-aO"], Fixture::retimed_dirs_and_links();
    /// -J: symlink times are neither compared nor set; directories' are.
    omit_link_times_keeps_symlink_times: &["-aJ"], Fixture::retimed_dirs_and_links();
    /// -O over the awkward older copy: everything else is updated as with -a.
    omit_dir_times_updates_files: &["-aOJ", "--delete"], Fixture::retimed_dirs_and_links();
    /// -I: files equal in size and time are sent all the same.
    ignore_times_sends_every_file: &["-aI"], Fixture::over_older_copy();
    /// --size-only decides before -I does (rsync's quick check order).
    ignore_times_yields_to_size_only: &["-aI", "--size-only"], Fixture::over_older_copy();
    /// --min-size/--max-size: only files within the range (the fixture has sizes on either
    /// side of 4096 and 65536) are transferred or updated.
    min_max_size_select_files_around_the_limits:
        &["-a", "--min-size=4k", "--max-size=64k"], Fixture::over_older_copy();
    /// Files outside the range are not deleted either: a transfer rule, not an exclude.
    max_size_keeps_larger_files_under_delete:
        &["-a", "--delete", "--max-size=4kb"], Fixture::over_older_copy();
    /// The +1/-1 forms, just past each limit.
    min_size_with_offset: &["-a", "--min-size=4K+1", "--max-size=64KiB-1"], Fixture::awkward();
    /// rsync's default quick check counts whole seconds: a file of the same size and second
    /// but other nanoseconds is left alone (a copy on a file system with coarser times is not
    /// sent again on every run).
    whole_seconds_decide_by_default: &["-a"], Fixture::close_times();
    /// --modify-window=-1: nanoseconds count too.
    negative_modify_window_compares_nanoseconds: &["-a", "--modify-window=-1"], Fixture::close_times();
    /// --modify-window=1: times a second apart are the same, five seconds apart are not.
    modify_window_allows_seconds_apart: &["-a", "--modify-window=1"], Fixture::close_times();
    /// -u with a window: newer only by more than the window.
    update_with_modify_window: &["-a", "-u", "-@", "1"], Fixture::close_times();
    /// -u: a receiver's file newer by a second is kept.
    update_by_whole_seconds: &["-a", "-u"], Fixture::close_times();
    /// --chown by name: every entry gets this machine's ids for the names.
    chown_by_name: &["-a", "--chown=nobody:nogroup"], Fixture::awkward();
    /// --chown by number, over an older copy; only the group given: -g is implied, -o kept.
    chown_by_number_over_an_older_copy: &["-a", "--chown=65534:65534"], Fixture::over_older_copy();
    /// --chown=:GROUP without -a: only the group is implied and mapped.
    chown_group_only_without_archive: &["-rt", "--chown=:nogroup"], Fixture::over_older_copy();
    /// --chown with an unknown user: rsync warns, maps nothing for it, and succeeds.
    chown_unknown_user_maps_nothing: &["-a", "--chown=no-such-user-xsync:nogroup"], Fixture::awkward();
    /// --chmod with octal modes per kind, as deploy scripts give it.
    chmod_octal_per_kind: &["-a", "--chmod=D755,F644"], Fixture::awkward();
    /// --chmod symbolic, several items and options, over an older copy.
    chmod_symbolic_over_an_older_copy:
        &["-a", "--chmod=Dg+s,ug+w,Fo-w,+X", "--chmod=o=u"], Fixture::over_older_copy();
    /// --chmod without -p: only new files take the tweaked mode (less the umask).
    chmod_without_perms_touches_only_new_files: &["-r", "--chmod=F777"], Fixture::over_older_copy();
    /// --safe-links --delete: the receiver skips the unsafe links, so what the destination
    /// has at their names is kept (the names are not extraneous), as rsync does.
    safe_links_with_delete_keeps_what_is_at_a_skipped_name:
        &["-a", "--delete", "--safe-links"], Fixture::unsafe_link_names();
    /// -m: directories with no file below them are not created.
    prune_empty_dirs_alone: &["-am"], Fixture::awkward();
    /// -m with rsync's "only these files" idiom: only directories on the way to a .txt.
    prune_empty_dirs_with_include_patterns:
        &["-am", "--include=*/", "--include=*.txt", "--exclude=*"], Fixture::awkward();
    /// -m --delete-excluded: the pruned directories go from the receiver, whatever they hold.
    prune_empty_dirs_with_delete_excluded:
        &["-am", "--delete-excluded", "--include=*/", "--include=*.txt", "--exclude=*"],
        Fixture::over_older_copy();
    /// Options given twice, as scripts that add to `$OPTS` do: the same run as given once.
    repeated_options_act_once:
        &["-a", "-av", "--delete", "--delete", "--exclude", "*.log", "--exclude", "*.log"],
        Fixture::over_older_copy();
    /// -L: every link becomes its referent, a directory link a walked directory.
    copy_links_replaces_every_link_by_its_referent: &["-rtL"], Fixture::with_src(symlink_zoo);
    /// -aL: with all metadata (the referents' modes and times).
    archive_copy_links_keeps_the_referents_metadata: &["-aL"], Fixture::with_src(symlink_zoo);
    /// -L on a link to nothing: `symlink has no referent`, the rest copied, exit 23.
    copy_links_reports_a_dangling_link: &["-rtL"], Fixture::with_src(symlink_zoo_dangling);
    /// --copy-unsafe-links alone: links out of the tree become files, safe ones are skipped.
    copy_unsafe_links_follows_only_links_out_of_the_tree:
        &["-rt", "--copy-unsafe-links"], Fixture::with_src(symlink_zoo);
    /// -l --copy-unsafe-links: unsafe links followed, safe ones (dangling too) kept as links;
    /// an unsafe one to nothing is an error.
    links_with_copy_unsafe_links_keeps_safe_links:
        &["-rtl", "--copy-unsafe-links"], Fixture::with_src(symlink_zoo_dangling);
    /// -l --safe-links: links out of the tree are left out, the rest kept as links.
    safe_links_skips_links_out_of_the_tree: &["-rtl", "--safe-links"], Fixture::with_src(symlink_zoo_dangling);
    /// --copy-unsafe-links wins over --safe-links.
    copy_unsafe_links_wins_over_safe_links:
        &["-rtl", "--safe-links", "--copy-unsafe-links"], Fixture::with_src(symlink_zoo);
    /// -k without -l: directory links walked, every other link skipped.
    copy_dirlinks_walks_links_to_directories: &["-rtk"], Fixture::with_src(symlink_zoo_dangling);
    /// -lk: directory links walked, the other links kept as links.
    links_with_copy_dirlinks_keeps_file_links: &["-rtlk"], Fixture::with_src(symlink_zoo_dangling);
}

/// -m --delete: a pruned directory is extraneous on the receiver; one that holds excluded
/// (protected) files stays, with the time its deletions gave it in both tools.
#[test]
fn prune_empty_dirs_with_delete() {
    const FLAGS: &[&str] = &[
        "-am",
        "--delete",
        "--include=*/",
        "--include=*.txt",
        "--exclude=*",
    ];
    for slash in [true, false] {
        let case = Case {
            time_exempt: if slash {
                &["dst/owners"]
            } else {
                &["dst", "dst/src/owners"]
            },
            ..simple_case(FLAGS, slash, Fixture::over_older_copy())
        };
        run_case(
            &format!("prune_empty_dirs_with_delete (slash {slash})"),
            &case,
        );
    }
}

fn max_delete_case(trailing_slash: bool) -> Case<'static> {
    Case {
        // The one deletion rsync makes is inside this extraneous directory, which then keeps
        // the time of the run.
        time_exempt: if trailing_slash {
            &["dst/extra_dir/sub"]
        } else {
            &["dst", "dst/src/extra_dir/sub"]
        },
        ..simple_case(
            &["-a", "--delete", "--max-delete=1"],
            trailing_slash,
            Fixture::over_older_copy(),
        )
    }
}

/// --max-delete=1 deletes the same one entry as rsync (rsync goes through a directory's
/// extraneous entries in reverse name order, into a directory before deleting it) and exits 25.
#[test]
fn max_delete_stops_after_limit() {
    run_case(
        "max_delete_stops_after_limit (src/)",
        &max_delete_case(true),
    );
    run_case(
        "max_delete_stops_after_limit (src)",
        &max_delete_case(false),
    );
}

fn several_sources_case() -> Case<'static> {
    Case {
        // `dst` is not the copy of any one source, so its time is the time of the run.
        time_exempt: &["dst"],
        ..Case::new(&["-a"], &["src/sizes", "src/txt/", "src/top.txt"], "dst/")
    }
}

/// `rsync -a a b/ file dst/`: a directory, a directory's contents and a file.
#[test]
fn several_sources_land_side_by_side() {
    run_case(this_test!(), &several_sources_case());
}

fn file_to_new_name_case(dest: &str) -> Case<'_> {
    Case {
        time_exempt: &["dst"],
        ..Case::new(&["-a"], &["src/txt/a.txt"], dest)
    }
}

/// `file dst/newname` copies the file under a new name inside `dst`.
#[test]
fn single_file_to_new_name_in_existing_dir() {
    run_case(this_test!(), &file_to_new_name_case("dst/newname"));
}

/// `file newname`: the destination does not exist and has no trailing slash.
#[test]
fn single_file_to_new_name() {
    run_case(this_test!(), &file_to_new_name_case("newname"));
}

/// `file dst/`: into an existing directory under its own name.
#[test]
fn single_file_into_existing_dir() {
    run_case(this_test!(), &file_to_new_name_case("dst/"));
}

/// A single file whose name holds a newline.
#[test]
fn single_file_with_newline_in_name() {
    run_case(
        this_test!(),
        &Case {
            time_exempt: &["dst"],
            ..Case::new(&["-a"], &["src/names/new\nline"], "dst/")
        },
    );
}

fn mkpath_case(trailing_slash: bool) -> Case<'static> {
    Case {
        fixture: Fixture {
            dst_exists: false,
            ..Fixture::awkward()
        },
        // The created parents get the time of the run; the last level is the copy of `src/`.
        time_exempt: if trailing_slash {
            &["m1", "m1/m2"]
        } else {
            &["m1", "m1/m2", "m1/m2/m3"]
        },
        ..Case::new(
            &["-a", "--mkpath"],
            if trailing_slash { &["src/"] } else { &["src"] },
            "m1/m2/m3/",
        )
    }
}

/// --mkpath creates a 3-level missing destination path.
#[test]
fn mkpath_creates_missing_destination_levels() {
    run_case(
        "mkpath_creates_missing_destination_levels (src/)",
        &mkpath_case(true),
    );
    run_case(
        "mkpath_creates_missing_destination_levels (src)",
        &mkpath_case(false),
    );
}

/// `src/ dst` where `dst` does not exist: rsync creates one missing level.
#[test]
fn missing_last_destination_level_is_created() {
    let case = Case {
        fixture: Fixture {
            dst_exists: false,
            ..Fixture::awkward()
        },
        ..Case::new(&["-a"], &["src/"], "dst")
    };
    run_case(this_test!(), &case);
}

/// A directory in the receiver where the source has a file (and the reverse), with --delete.
#[test]
fn delete_replaces_directory_with_file() {
    fn src(root: &Path) {
        TestTree::at(root)
            .file("was_dir", b"now a file\n")
            .dir("was_file")
            .file("was_file/inside", b"x\n")
            .stamp(false);
    }
    fn older(root: &Path) {
        TestTree::at(root)
            .file("was_dir/inside/deeper", b"old\n")
            .file("was_file", b"old file\n")
            .stamp(false);
    }
    for slash in [true, false] {
        let fixture = Fixture {
            older: Some(older),
            ..Fixture::with_src(src)
        };
        differential(this_test!(), &["-a", "--delete"], slash, fixture);
    }
}

// ---------------------------------------------------------------------------------------------
// Sparse files
// ---------------------------------------------------------------------------------------------

const SPARSE_SIZE: u64 = 8 << 20;

/// The awkward tree plus an 8 MiB file that is mostly zeros, written densely.
fn awkward_with_sparse(root: &Path) {
    awkward(root);
    let path = root.join("sparse.bin");
    let mut f = fs::File::create(&path).expect("create sparse.bin");
    let data = pseudo_random(77, 4096);
    let zeros = vec![0u8; 1 << 20];
    let mut written = 0u64;
    for (at, chunk) in [
        (0, &data[..]),
        (4 << 20, &data[..]),
        (SPARSE_SIZE - 4096, &data[..]),
    ] {
        while written < at {
            let n = (at - written).min(zeros.len() as u64) as usize;
            f.write_all(&zeros[..n]).expect("write zeros");
            written += n as u64;
        }
        f.write_all(chunk).expect("write data");
        written += chunk.len() as u64;
    }
    drop(f);
    let (s, ns) = stamp_time(Path::new("sparse.bin"));
    set_mtime(&path, s, ns);
    // Adding the file changed the root's time; put it back.
    let (s, ns) = stamp_time(Path::new(""));
    set_mtime(root, s, ns);
}

fn sparse_case(trailing_slash: bool) {
    let test = if trailing_slash {
        "sparse_file_stays_sparse (src/)"
    } else {
        "sparse_file_stays_sparse (src)"
    };
    let Some(out) = differential(
        test,
        &["-aS"],
        trailing_slash,
        Fixture::with_src(awkward_with_sparse),
    ) else {
        return;
    };
    let rel = if trailing_slash {
        "dst/sparse.bin"
    } else {
        "dst/src/sparse.bin"
    };
    let used = |side: PathBuf| {
        let m = fs::metadata(side.join(rel)).expect("copied sparse.bin");
        assert_eq!(m.len(), SPARSE_SIZE);
        m.blocks() * 512
    };
    let src_used = fs::metadata(out.src().join("sparse.bin"))
        .expect("source")
        .blocks()
        * 512;
    let (r, x) = (used(out.side_a()), used(out.side_b()));
    eprintln!("{test}: bytes allocated: source {src_used}, rsync {r}, xsync {x}");
    if r >= SPARSE_SIZE / 4 {
        skip(test, "rsync's copy is not sparse on this file system");
        return;
    }
    assert!(
        x < SPARSE_SIZE / 4,
        "xsync -S wrote {x} bytes of blocks for an 8 MiB file with 12 KiB of data (rsync: {r})"
    );
}

/// -S: holes come back as holes (st_blocks far below the size), like rsync's copy.
#[test]
fn sparse_file_stays_sparse_src_with_trailing_slash() {
    sparse_case(true);
}

#[test]
fn sparse_file_stays_sparse_src_without_trailing_slash() {
    sparse_case(false);
}

/// An older, dense `sparse.bin` (random bytes where the new one has holes).
fn dense_old_sparse_bin(dst: &Path) {
    fs::create_dir_all(dst).expect("mkdir dst");
    let path = dst.join("sparse.bin");
    fs::write(&path, pseudo_random(78, SPARSE_SIZE as usize)).expect("write sparse.bin");
    set_mtime(&path, 1_000_000_000, 0);
}

/// -S --inplace over a dense older copy: the zero runs are punched out of the file (rsync
/// 3.5 does the same), not left as the old bytes and not written as zeros.
#[test]
fn sparse_inplace_punches_holes_in_the_old_file_as_rsync_does() {
    let test = this_test!();
    let Some(out) = differential(
        test,
        &["-aS", "--inplace"],
        true,
        Fixture {
            older: Some(dense_old_sparse_bin),
            ..Fixture::with_src(awkward_with_sparse)
        },
    ) else {
        return;
    };
    let used = |side: PathBuf| {
        let m = fs::metadata(side.join("dst/sparse.bin")).expect("updated sparse.bin");
        assert_eq!(m.len(), SPARSE_SIZE);
        m.blocks() * 512
    };
    let (r, x) = (used(out.side_a()), used(out.side_b()));
    if r >= SPARSE_SIZE / 4 {
        skip(
            test,
            "rsync's in-place update is not sparse on this file system",
        );
        return;
    }
    assert!(
        x < SPARSE_SIZE / 4,
        "xsync -S --inplace left {x} bytes of blocks for 12 KiB of data (rsync: {r})"
    );
}

// ---------------------------------------------------------------------------------------------
// -c, -n, reruns
// ---------------------------------------------------------------------------------------------

/// A file with equal size and mtime but other bytes is sent with -c or -I and left alone
/// without.
#[test]
fn checksum_sends_same_size_same_mtime_file_with_other_content() {
    let test = this_test!();
    for (flags, expect) in [
        (&["-a", "-c"][..], &b"AAAAAAAAAAAAAAAA"[..]),
        (&["-a"][..], &b"BBBBBBBBBBBBBBBB"[..]),
        (&["-a", "-I"][..], &b"AAAAAAAAAAAAAAAA"[..]),
    ] {
        let Some(out) = differential(test, flags, true, Fixture::over_older_copy()) else {
            return;
        };
        for side in [out.side_a(), out.side_b()] {
            let got = fs::read(side.join("dst/samesize.bin")).expect("samesize.bin");
            assert_eq!(
                got,
                expect,
                "{flags:?}: dst/samesize.bin in {side:?} holds {:?}",
                String::from_utf8_lossy(&got)
            );
        }
    }
}

/// `xsync -n -v`: nothing changes (not even `dst` appears), the would-be transfer of `listed`
/// is reported on stdout as rsync reports it, and the exit code is rsync's.
fn dry_run_case(test: &str, older: bool, flags: &[&str], listed: &str) {
    let dir = test_dir();
    let root = dir.path();
    awkward(&root.join("src"));
    if older {
        awkward_older_copy(&root.join("dst"));
    }
    let dry_run = |mut cmd: std::process::Command| {
        run(cmd
            .args(["-n", "-v"])
            .args(flags)
            .arg(arg_path(root, "src/"))
            .arg(arg_path(root, "dst/")))
    };
    let before = snapshot(root);
    let out = dry_run(xsync());
    let diffs = diff_snapshots(&before, &snapshot(root));
    assert!(diffs.is_empty(), "{test}: xsync -n changed: {diffs:#?}");
    if !older {
        assert!(!root.join("dst").exists(), "{test}: -n created dst");
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.lines().any(|l| l == listed),
        "{test}: xsync -n -v does not list {listed:?}; stdout:\n{stdout}\nstderr:\n{}",
        stderr(&out)
    );
    let Some(rsync) = rsync() else {
        skip(test, "rsync not installed (exit code not compared)");
        assert_eq!(code(&out), 0, "{test}: {}", stderr(&out));
        return;
    };
    let rout = dry_run(rsync);
    assert!(
        String::from_utf8_lossy(&rout.stdout)
            .lines()
            .any(|l| l == listed),
        "{test}: the test is wrong: rsync -n -v does not list {listed:?}"
    );
    assert_eq!(
        code(&rout),
        code(&out),
        "{test}: exit codes differ; xsync stderr: {}",
        stderr(&out)
    );
}

/// `-n` into a missing destination creates nothing.
#[test]
fn dry_run_creates_nothing() {
    dry_run_case(this_test!(), false, &["-a"], "top.txt");
}

/// `-n` over an older copy, with --delete, changes nothing at all.
#[test]
fn dry_run_changes_nothing_over_older_copy() {
    dry_run_case(this_test!(), true, &["-aH", "--delete"], "sizes/s4097");
}

/// Runs `xsync FLAGS src/ dst/` twice: the first run must produce a faithful copy, the second
/// must not touch it (same inode, mtime, ctime, mode and size for every entry).
fn rerun_case(test: &str, flags: &str) {
    let dir = test_dir();
    let (src, dst) = (dir.path().join("src"), dir.path().join("dst"));
    awkward(&src);
    let sync = || {
        let out = run(xsync().arg(flags).arg(slash(&src)).arg(slash(&dst)));
        assert_eq!(code(&out), 0, "{test}: xsync {flags}: {}", stderr(&out));
    };
    sync();
    let copy_diffs: Vec<String> = diff_trees(&src, &dst, &Compare::default())
        .into_iter()
        // Without -H the group is legitimately broken up.
        .filter(|d| flags.contains('H') || !d.starts_with("hard-link group"))
        .collect();
    assert!(
        copy_diffs.is_empty(),
        "{test}: the first xsync {flags} run did not copy faithfully:\n{copy_diffs:#?}"
    );
    let before = snapshot(&dst);
    std::thread::sleep(Duration::from_millis(20));
    sync();
    let diffs = diff_snapshots(&before, &snapshot(&dst));
    assert!(
        diffs.is_empty(),
        "{test}: second identical xsync {flags} run touched the destination:\n{diffs:#?}"
    );
}

/// A second identical `xsync -a` run rewrites, renames, touches and chmods nothing.
#[test]
fn second_run_rewrites_nothing() {
    rerun_case(this_test!(), "-a");
}

#[test]
fn second_run_with_hard_links_rewrites_nothing() {
    rerun_case(this_test!(), "-aH");
}

// ---------------------------------------------------------------------------------------------
// Crash safety
// ---------------------------------------------------------------------------------------------

const BIG_BLOCK: usize = 1 << 20;
const BIG_SIZE: u64 = 1536 << 20;
const OLD_BIG_SIZE: u64 = BIG_SIZE - (3 << 20);

/// Block `i` of the big file for `seed`: a shared pseudo-random block stamped with its index,
/// so every block differs and the file can be checked without holding it in memory.
fn big_block(base: &[u8], seed: u64, i: u64, out: &mut [u8]) {
    out.copy_from_slice(base);
    out[..8].copy_from_slice(&(i ^ seed).to_le_bytes());
}

fn write_big(path: &Path, seed: u64, size: u64) {
    let base = pseudo_random(seed, BIG_BLOCK);
    let mut block = vec![0u8; BIG_BLOCK];
    let mut f = std::io::BufWriter::with_capacity(
        BIG_BLOCK,
        fs::File::create(path).expect("create big file"),
    );
    for i in 0..size / BIG_BLOCK as u64 {
        big_block(&base, seed, i, &mut block);
        f.write_all(&block).expect("write big file");
    }
    f.flush().expect("flush big file");
}

/// True when `path` holds exactly what `write_big(seed, size)` wrote.
fn is_big(path: &Path, seed: u64, size: u64) -> bool {
    let Ok(mut f) = fs::File::open(path) else {
        return false;
    };
    if f.metadata().map(|m| m.len()).ok() != Some(size) {
        return false;
    }
    let base = pseudo_random(seed, BIG_BLOCK);
    let (mut want, mut got) = (vec![0u8; BIG_BLOCK], vec![0u8; BIG_BLOCK]);
    for i in 0..size / BIG_BLOCK as u64 {
        big_block(&base, seed, i, &mut want);
        if f.read_exact(&mut got).is_err() || got != want {
            return false;
        }
    }
    true
}

/// Bytes free for an unprivileged writer on the file system holding `dir`.
fn free_bytes(dir: &Path) -> u64 {
    rustix::fs::statvfs(dir)
        .map(|v| v.f_bavail.saturating_mul(v.f_frsize))
        .unwrap_or(0)
}

/// Where to put the big files (source, old copy and a temporary: 4.5 GiB): memory if it has
/// room, else the temp dir; `None` when neither has.
fn big_scratch() -> Option<tempfile::TempDir> {
    const NEED: u64 = 5 << 30;
    let shm = Path::new("/dev/shm");
    if shm.is_dir()
        && free_bytes(shm) >= NEED
        && let Ok(d) = tempfile::Builder::new()
            .prefix("xsync-it-big-")
            .tempdir_in(shm)
    {
        return Some(d);
    }
    let d = test_dir();
    (free_bytes(d.path()) >= NEED).then_some(d)
}

/// `kill -9` in the middle of copying a large file leaves the destination file either as it
/// was or complete; a rerun finishes the job and cleans up the temporary file.
#[test]
fn kill_during_large_copy_leaves_old_or_new_file() {
    const NEW: u64 = 0x5eed_0001;
    const OLD: u64 = 0x5eed_0002;
    let test = this_test!();
    let Some(scratch) = big_scratch() else {
        skip(test, "no file system with 5 GiB free for the big files");
        return;
    };
    let (src, dst) = (scratch.path().join("src"), scratch.path().join("dst"));
    fs::create_dir_all(&src).expect("mkdir src");
    fs::create_dir_all(&dst).expect("mkdir dst");
    write_big(&src.join("big"), NEW, BIG_SIZE);
    set_mtime(&src.join("big"), 1_700_000_000, 123_456_789);
    write_big(&dst.join("big"), OLD, OLD_BIG_SIZE);
    set_mtime(&dst.join("big"), 1_600_000_000, 987_654_321);

    let start = Instant::now();
    let mut child = xsync()
        .args(["-a", "--whole-file"])
        .arg(src.join("big"))
        .arg(slash(&dst))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn xsync");
    let mut seen_temp: Option<(Instant, PathBuf)> = None;
    let finished_early = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break Some(status);
        }
        if seen_temp.is_none()
            && let Some(t) = find_named(&dst, ".xsync-tmp.").into_iter().next()
        {
            seen_temp = Some((Instant::now(), t));
        }
        let kill_now = match &seen_temp {
            // Well into the copy: a quarter written, or 200 ms after the temp file appeared.
            Some((at, rel)) => {
                let len = fs::metadata(dst.join(rel)).map(|m| m.len()).unwrap_or(0);
                len >= BIG_SIZE / 4 || at.elapsed() > Duration::from_millis(200)
            }
            // No temp file visible (O_TMPFILE?): kill after a while anyway.
            None => start.elapsed() > Duration::from_secs(3),
        };
        if kill_now {
            child.kill().expect("SIGKILL xsync");
            child.wait().expect("reap xsync");
            break None;
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    match (&finished_early, &seen_temp) {
        (Some(status), _) => note(&format!(
            "NOTE: {test}: xsync finished ({status}) before it could be killed; \
             only the end state is checked"
        )),
        (None, Some((_, rel))) => eprintln!("{test}: killed xsync while {rel:?} was being written"),
        (None, None) => note(&format!(
            "NOTE: {test}: killed xsync after 3 s without seeing a temp file"
        )),
    }

    let target = dst.join("big");
    let old_intact = is_big(&target, OLD, OLD_BIG_SIZE);
    let new_complete = !old_intact && is_big(&target, NEW, BIG_SIZE);
    assert!(
        old_intact || new_complete,
        "{test}: after SIGKILL dst/big is neither the old nor the new file (len {:?})",
        fs::metadata(&target).map(|m| m.len())
    );

    let out = run(xsync()
        .args(["-a", "--whole-file"])
        .arg(src.join("big"))
        .arg(slash(&dst)));
    assert_eq!(code(&out), 0, "{test}: rerun failed: {}", stderr(&out));
    assert!(
        is_big(&target, NEW, BIG_SIZE),
        "{test}: rerun left dst/big wrong"
    );
    let m = fs::symlink_metadata(&target).expect("dst/big");
    assert_eq!((m.mtime(), m.mtime_nsec()), (1_700_000_000, 123_456_789));
    let left = find_named(&dst, ".xsync-tmp.");
    assert!(
        left.is_empty(),
        "{test}: temporaries left after the rerun: {left:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Reporting
// ---------------------------------------------------------------------------------------------

/// `-i` itemizes the same changes as rsync, line for line in an order rsync gives (its
/// transferred files' lines can fall anywhere among its deletions: `listing::same_order`;
/// seen once in CI).
fn itemize_case(test: &str, flags: &[&str], fixture: Fixture) {
    let Some(out) = differential(test, flags, true, fixture) else {
        return;
    };
    let lines = |o: &std::process::Output| {
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(str::to_owned)
            .collect::<Vec<String>>()
    };
    let (r, x) = (lines(&out.a), lines(&out.b));
    assert!(
        crate::listing::same_order(&r, &x),
        "{test}: itemized output differs for {flags:?}\nrsync:\n{}\nxsync:\n{}",
        r.join("\n"),
        x.join("\n")
    );
}

/// --delete-before lists (and makes) every deletion before the first transfer; --delete-after
/// and --delete-delay after the last; rsync's output and xsync's both show it.
#[test]
fn delete_when_orders_deletions_like_rsync() {
    let test = this_test!();
    for (when, first) in [
        ("--delete-before", true),
        ("--delete-after", false),
        ("--delete-delay", false),
    ] {
        let flags = ["-ai", when];
        let Some(out) = differential(test, &flags, true, Fixture::over_older_copy()) else {
            return;
        };
        for (name, o) in [("rsync", &out.a), ("xsync", &out.b)] {
            let text = String::from_utf8_lossy(&o.stdout);
            let is_del: Vec<bool> = text.lines().map(|l| l.starts_with("*deleting")).collect();
            let n = is_del.iter().filter(|d| **d).count();
            assert!(n > 0 && n < is_del.len(), "{test}: {name} {when}:\n{text}");
            let grouped = if first {
                is_del[..n].iter().all(|d| *d)
            } else {
                is_del[is_del.len() - n..].iter().all(|d| *d)
            };
            assert!(
                grouped,
                "{test}: {name} {when} did not list its deletions {}:\n{text}",
                if first { "first" } else { "last" }
            );
        }
    }
}

#[test]
fn itemize_reports_a_fresh_copy_like_rsync() {
    itemize_case(this_test!(), &["-ai"], Fixture::awkward());
}

#[test]
fn itemize_reports_updates_and_deletions_like_rsync() {
    itemize_case(
        this_test!(),
        &["-ai", "--delete"],
        Fixture::over_older_copy(),
    );
}

/// -I: every file is itemized as sent, unchanged ones too.
#[test]
fn itemize_reports_every_file_under_ignore_times() {
    itemize_case(this_test!(), &["-aiI"], Fixture::over_older_copy());
}

/// A second run has nothing to report.
#[test]
fn itemize_reports_nothing_for_an_up_to_date_copy() {
    let test = this_test!();
    let dir = test_dir();
    let (src, dst) = (dir.path().join("src"), dir.path().join("dst"));
    awkward(&src);
    for round in 0..2 {
        let out = run(xsync().arg("-aHi").arg(slash(&src)).arg(slash(&dst)));
        assert_eq!(code(&out), 0, "{test}: {}", stderr(&out));
        if round == 1 {
            assert!(
                out.stdout.is_empty(),
                "{test}: second run itemized:\n{}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
    }
}

/// The parts of `-v` output that scripts and log readers rely on, as rsync prints them: the
/// header line, the names listed (in rsync's order), a blank line, then
/// the `sent …` and `total size …` lines in rsync's number formats. (The numbers differ.)
pub fn verbose_shape(test: &str, rsync: &std::process::Output, xsync: &std::process::Output) {
    let text = |o: &std::process::Output| String::from_utf8_lossy(&o.stdout).into_owned();
    let (r, x) = (text(rsync), text(xsync));
    let parts = |t: &str| {
        let lines: Vec<String> = t.lines().map(str::to_owned).collect();
        let blank = lines.iter().rposition(|l| l.is_empty());
        let (names, tail) = match blank {
            Some(b) => (lines[1..b].to_vec(), lines[b + 1..].to_vec()),
            None => (Vec::new(), lines.clone()),
        };
        // (Each side's `created directory` names its own path: checked by the caller.)
        let names: Vec<String> = names
            .into_iter()
            .filter(|l| !l.starts_with("created directory "))
            .collect();
        (lines.first().cloned().unwrap_or_default(), names, tail)
    };
    let ((rh, rn, rt), (xh, xn, xt)) = (parts(&r), parts(&x));
    assert_eq!(xh, rh, "{test}: header line\nrsync:\n{r}\nxsync:\n{x}");
    assert_eq!(xn, rn, "{test}: listed names\nrsync:\n{r}\nxsync:\n{x}");
    assert_eq!(rt.len(), 2, "{test}: rsync's tail:\n{r}");
    assert_eq!(
        xt.len(),
        2,
        "{test}: xsync's tail after the blank line:\n{x}"
    );
    let sent = |l: &str| {
        let w: Vec<&str> = l.split(' ').collect();
        let n = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit() || c == ',');
        w.len() == 9
            && w[0] == "sent"
            && n(w[1])
            && w[2] == "bytes"
            && w[3].is_empty()
            && w[4] == "received"
            && n(w[5])
            && w[6] == "bytes"
            && w[7].is_empty()
            && w[8]
                .split_once('.')
                .is_some_and(|(i, d)| n(i) && d.len() == 2 && d.chars().all(|c| c.is_ascii_digit()))
    };
    // "sent N bytes  received N bytes  N.NN bytes/sec" has two double spaces.
    let sent_line = |l: &str| l.strip_suffix(" bytes/sec").is_some_and(sent);
    assert!(
        sent_line(&rt[0]),
        "{test}: rsync's sent line {:?} (the check itself is wrong)",
        rt[0]
    );
    assert!(
        sent_line(&xt[0]),
        "{test}: xsync's sent line {:?} is not rsync's shape",
        xt[0]
    );
    assert!(
        xt[1].starts_with("total size is ") && xt[1].contains("  speedup is "),
        "{test}: {:?}",
        xt[1]
    );
}

/// `-av` into a new directory: rsync's header, the same names, rsync's summary shape.
#[test]
fn verbose_listing_has_rsyncs_shape() {
    let test = this_test!();
    let case = Case {
        fixture: Fixture {
            dst_exists: false,
            ..Fixture::awkward()
        },
        ..Case::new(&["-av"], &["src/"], "dst/")
    };
    let Some(out) = run_case(test, &case) else {
        return;
    };
    verbose_shape(test, &out.a, &out.b);
    assert!(
        String::from_utf8_lossy(&out.b.stdout).lines().any(|l| l
            == "created directory ".to_string()
                + out.side_b().join("dst").to_str().expect("utf-8")),
        "{test}: rsync's `created directory` line:\n{}",
        String::from_utf8_lossy(&out.b.stdout)
    );
}

/// `-q` wins over `-v` and `--stats`: rsync prints nothing at all on stdout, and so must xsync.
#[test]
fn quiet_silences_the_listing_and_the_summary() {
    let test = this_test!();
    let Some(out) = run_case(
        test,
        &Case::new(&["-a", "-q", "-v", "--stats"], &["src/"], "dst/"),
    ) else {
        return;
    };
    assert!(
        out.a.stdout.is_empty(),
        "{test}: rsync printed (the check is wrong): {}",
        String::from_utf8_lossy(&out.a.stdout)
    );
    assert!(
        out.b.stdout.is_empty(),
        "{test}: xsync printed under -q:\n{}",
        String::from_utf8_lossy(&out.b.stdout)
    );
}

/// Which header lines come with which output options, as rsync prints them: `-P` and `-v`
/// open with the file-list line and `created directory`, `--info=name1` only names the
/// directory, `--info=progress2` and `--info=name0 -v` do not name it.
#[test]
fn header_lines_follow_the_output_options_like_rsync() {
    let test = this_test!();
    for flags in [
        &["-aP"][..],
        &["-av"],
        &["-a", "--info=name1"],
        &["-a", "--info=progress2"],
        &["-av", "--info=name0"],
    ] {
        let case = Case {
            fixture: Fixture {
                dst_exists: false,
                ..Fixture::awkward()
            },
            ..Case::new(flags, &["src/"], "dst/")
        };
        let Some(out) = run_case(test, &case) else {
            return;
        };
        let head = |o: &std::process::Output, side: &std::path::Path| -> Vec<String> {
            let side = side.to_str().expect("utf-8").to_string();
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .take_while(|l| l.ends_with("file list") || l.starts_with("created directory"))
                .map(|l| l.replace(&side, "SIDE"))
                .collect()
        };
        assert_eq!(
            head(&out.b, &out.side_b()),
            head(&out.a, &out.side_a()),
            "{test}: {flags:?}\nrsync:\n{}\nxsync:\n{}",
            String::from_utf8_lossy(&out.a.stdout),
            String::from_utf8_lossy(&out.b.stdout)
        );
    }
}

/// `--fsync`: each file xsync writes is synced before its rename (strace shows the calls,
/// `-y` the temporary each `fsync` was on), and nothing is synced without the option; the
/// tree is rsync's either way.
#[test]
fn fsync_syncs_every_written_file() {
    let test = this_test!();
    let Some(out) = run_case(test, &Case::new(&["-a", "--fsync"], &["src/"], "dst/")) else {
        return;
    };
    let Some(strace) = crate::sshd::which("strace") else {
        skip(
            test,
            "strace not installed (the fsync calls were not checked)",
        );
        return;
    };
    for (flag, with) in [(Some("--fsync"), true), (None, false)] {
        let dst = out.dir.path().join(format!("count-{with}"));
        let log = out.dir.path().join(format!("strace-{with}"));
        let mut cmd = std::process::Command::new(&strace);
        cmd.args(["-f", "-y", "-e", "trace=fsync", "-o"])
            .arg(&log)
            .arg(env!("CARGO_BIN_EXE_xsync"))
            .arg("-a");
        if let Some(f) = flag {
            cmd.arg(f);
        }
        let o = run(cmd.arg(slash(&out.src())).arg(slash(&dst)));
        assert_eq!(code(&o), 0, "{test}: {}", stderr(&o));
        let text = fs::read_to_string(&log).unwrap_or_default();
        // (strace splits a call another thread interrupts into "unfinished" and "resumed"
        // lines, so results are not matched; a failed fsync fails the run.)
        let synced: std::collections::BTreeSet<String> = text
            .lines()
            .filter(|l| l.contains("fsync("))
            .filter_map(|l| {
                l.find(".xsync-tmp.").map(|i| {
                    l[i..]
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '.' || *c == '-')
                        .collect::<String>()
                })
            })
            .collect();
        // Every regular file of the new destination was written through a temporary.
        let files = scan(&dst, false)
            .values()
            .filter(|m| m.kind == Kind::File)
            .count();
        assert!(files > 10, "{test}: only {files} files written");
        if with {
            assert!(
                synced.len() >= files,
                "{test}: {} temporaries synced for {files} files written\n{text}",
                synced.len()
            );
        } else {
            assert!(
                synced.is_empty(),
                "{test}: fsync without --fsync: {synced:?}"
            );
        }
    }
}

/// -L on `a/loop -> ..`: rsync walks the loop until the kernel's 40-link limit and fails
/// there (ELOOP, exit 23); xsync walks through handles, which never meet that limit, so it
/// stops at the loop's first turn with the same error and exit code, and a finite tree.
#[test]
fn copy_links_stops_at_a_directory_loop() {
    let test = this_test!();
    if !have_rsync(test) {
        return;
    }
    for flags in [&["-rL"][..], &["-rk"][..]] {
        let case = Case {
            fixture: Fixture::with_src(symlink_loop),
            ..Case::new(flags, &["src/"], "dst/")
        };
        let (out, _) = run_pair(&case, Tool::Rsync, Tool::Xsync);
        assert_eq!(
            (code(&out.a), code(&out.b)),
            (23, 23),
            "{flags:?}: {}",
            stderr(&out.b)
        );
        for o in [&out.a, &out.b] {
            assert!(
                stderr(o).contains("Too many levels of symbolic links"),
                "{}",
                stderr(o)
            );
        }
        let dst = out.side_b().join("dst");
        assert_eq!(fs::read(dst.join("a/f")).ok().as_deref(), Some(&b"f\n"[..]));
        let under_loop: Vec<_> = fs::read_dir(dst.join("a/loop"))
            .expect("a/loop is a directory")
            .collect();
        assert!(under_loop.is_empty(), "{flags:?}: the loop was walked");
    }
}

/// -L on a dangling link names it as rsync does, and goes on with the rest.
#[test]
fn copy_links_names_a_dangling_link_as_rsync_does() {
    let test = this_test!();
    let Some(out) = differential(
        test,
        &["-rL"],
        true,
        Fixture::with_src(symlink_zoo_dangling),
    ) else {
        return;
    };
    assert!(stderr(&out.a).contains("symlink has no referent: \""));
    assert!(stderr(&out.a).contains("/src/dangling\""));
    let e = stderr(&out.b);
    assert!(e.contains("symlink has no referent: \"dangling\""), "{e}");
    assert!(
        e.contains("symlink has no referent: \"dir/dangling_out\""),
        "{e}"
    );
}

/// With -v, the followed and the skipped unsafe links are named as rsync names them.
#[test]
fn unsafe_links_are_named_with_verbose() {
    for (flags, word) in [
        (&["-rtv", "--copy-unsafe-links"][..], "copying"),
        (&["-rtlv", "--safe-links"][..], "ignoring"),
    ] {
        let Some(out) = differential(word, flags, true, Fixture::with_src(symlink_zoo)) else {
            return;
        };
        let lines = |o: &std::process::Output| -> std::collections::BTreeSet<String> {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter(|l| l.contains("unsafe symlink"))
                .map(str::to_string)
                .collect()
        };
        let (a, b) = (lines(&out.a), lines(&out.b));
        assert!(
            a.iter()
                .any(|l| l.starts_with(&format!("{word} unsafe symlink \"abs\" -> \"")))
        );
        assert_eq!(a, b, "{flags:?}");
    }
}
