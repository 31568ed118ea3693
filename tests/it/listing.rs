//! The `-i` and `-v` listings on stdout, line for line and in rsync's order: rsync lists a
//! directory's line and its other entries, then descends into each subdirectory in turn;
//! `*deleting` lines come where rsync prints them (before their directory's line under
//! --delete, first or last under --delete-before/-after/-delay); under `-H` the name rsync
//! transfers is the one listed as sent and the others as `hf NAME => LEADER`. Locally,
//! pushed and pulled (where rsync's sending client lists a sent file as `<f`), and on every
//! re-run: nothing changed (nothing listed) and after one change. (Pulled, rsync's
//! deletions below the top directory interleave with the rest as its timing has it.)

use std::process::Output;

use crate::remote::{Direction, rsync_over, xsync_over};
use crate::sshd::{Sshd, remote};
use crate::util::{
    Case, Fixture, RUNS, arg_path, have_rsync, prepare_side, report, rounds, rsync, run,
    simple_case, test_dir, xsync,
};

/// Where both tools run: on this machine, or with one end through sshd.
#[derive(Clone, Copy, Debug)]
pub enum Over {
    Local,
    Ssh(Direction),
}

pub const EVERYWHERE: [Over; 3] = [
    Over::Local,
    Over::Ssh(Direction::Push),
    Over::Ssh(Direction::Pull),
];

/// A run's stdout as the comparison sees it: every line but the ones that name each side's
/// own destination (`created directory …`) and the byte counts, which differ by design.
fn listing(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| {
            !l.starts_with("created ") && !l.starts_with("sent ") && !l.starts_with("total size ")
        })
        .map(str::to_owned)
        .collect()
}

/// rsync and xsync on identical setups, four runs each ([`rounds`]), locally or with one
/// end through sshd: equal trees and exit codes after every run (else the test fails), and
/// each run's outputs, rsync's first. None when the test cannot run here (no rsync, no
/// sshd).
pub fn outputs(test: &str, case: &Case, over: Over) -> Option<Vec<[Output; 2]>> {
    if !have_rsync(test) {
        return None;
    }
    let sshd = match over {
        Over::Local => None,
        Over::Ssh(_) => Some(Sshd::start(test)?),
    };
    let dir = test_dir();
    let root = dir.path().to_path_buf();
    (case.fixture.src)(&root.join("src"));
    for side in ["a", "b"] {
        prepare_side(&root.join(side), case);
    }
    let (pull, push) = (
        matches!(over, Over::Ssh(Direction::Pull)),
        matches!(over, Over::Ssh(Direction::Push)),
    );
    let mut runs: Vec<Vec<Output>> = vec![Vec::new(), Vec::new()];
    let (a, b, diffs) = rounds(&root, case, ["rsync", "xsync"], true, |i, side| {
        let mut cmd = match (&sshd, i) {
            (None, 0) => rsync().expect("rsync checked above"),
            (None, _) => xsync(),
            (Some(s), 0) => rsync_over(s),
            (Some(s), _) => xsync_over(s),
        };
        cmd.args(case.flags);
        for s in case.sources {
            let p = arg_path(&root, s);
            cmd.arg(if pull { remote(p) } else { p });
        }
        let d = arg_path(side, case.dest);
        cmd.arg(if push { remote(d) } else { d });
        cmd.current_dir(&root);
        let out = run(&mut cmd);
        runs[i].push(out.clone());
        out
    });
    let outcome = crate::util::Outcome {
        dir,
        a,
        b,
        a_name: "rsync",
        b_name: "xsync",
    };
    assert!(
        diffs.is_empty(),
        "{test} ({over:?}): {}",
        report(case, &outcome, &diffs)
    );
    let xs = runs.pop().expect("two tools");
    let rs = runs.pop().expect("two tools");
    Some(rs.into_iter().zip(xs).map(|(r, x)| [r, x]).collect())
}

/// [`outputs`], and in every run the same listing in the same order.
fn same_listing(test: &str, case: &Case, over: Over) {
    let Some(runs) = outputs(test, case, over) else {
        return;
    };
    let pull = matches!(over, Over::Ssh(Direction::Pull));
    // A pulling rsync lists as its receiver gets the data, so its deletions in directories
    // below the top may come out between any two of the other lines: there each kind is
    // compared in order on its own.
    for (round, [r, x]) in runs.iter().enumerate() {
        let (r, x) = (listing(r), listing(x));
        let same = if pull {
            split(&r) == split(&x)
        } else {
            same_order(&r, &x)
        };
        assert!(
            same,
            "{test} ({over:?}, flags {:?}): {} lists otherwise than rsync\n--- rsync:\n{}\n--- xsync:\n{}",
            case.flags,
            RUNS[round],
            r.join("\n"),
            x.join("\n")
        );
    }
}

/// A deletion's line: `deleting NAME`, `*deleting   NAME`, or `del.` where `%o` put it.
pub fn is_deletion(l: &str) -> bool {
    l.starts_with("*deleting ") || l.starts_with("deleting ") || l.starts_with("del.")
}

/// Deletions and the other lines, each in order.
pub fn split(l: &[String]) -> (Vec<String>, Vec<String>) {
    l.iter().cloned().partition(|l| is_deletion(l))
}

/// A line rsync prints when a file's data has arrived: `>f`/`<f` under `-i`; otherwise
/// (`-v`, `--out-format`) a line that names no directory (no word ends in `/`), no
/// symlink, no hard link, and is no deletion or header.
fn floats(l: &str) -> bool {
    if l.starts_with(">f") || l.starts_with("<f") {
        return true;
    }
    let itemized = l.len() > 12 && l.as_bytes()[11] == b' ' && !l[..11].contains(' ');
    !itemized
        && !l.is_empty()
        && !l.split(' ').any(|w| w.ends_with('/'))
        && !l.contains(" -> ")
        && !l.contains(" => ")
        && !is_deletion(l)
        && !l.starts_with("sending ")
        && !l.starts_with("receiving ")
        && !l.starts_with("building ")
}

/// Whether xsync's lines `x` come in an order rsync's `r` allows: the same, or the same
/// but for where transferred files' lines fall among deletions. rsync lists a transferred
/// file when its data is done, in another process than the one deleting, so under load a
/// file at the top comes out after the deletions in the directories below (seen: 1 run in
/// 20 with two busy cores); every other line keeps its place.
pub fn same_order(r: &[String], x: &[String]) -> bool {
    let fixed =
        |l: &[String]| -> Vec<String> { l.iter().filter(|l| !floats(l)).cloned().collect() };
    r == x || (split(r) == split(x) && fixed(r) == fixed(x))
}

fn everywhere(test: &str, flags: &[&str], fixture: fn() -> Fixture) {
    for over in EVERYWHERE {
        same_listing(test, &simple_case(flags, true, fixture()), over);
    }
}

#[test]
fn a_fresh_copy_is_itemized_in_rsyncs_order() {
    everywhere(this_test!(), &["-ai"], Fixture::awkward);
}

#[test]
fn updates_and_deletions_are_itemized_in_rsyncs_order() {
    everywhere(this_test!(), &["-ai", "--delete"], Fixture::over_older_copy);
}

/// --delete-after turns rsync's incremental recursion off; --delete-delay keeps it.
#[test]
fn late_deletions_are_itemized_after_the_rest() {
    let test = this_test!();
    for when in ["--delete-after", "--delete-delay"] {
        same_listing(
            test,
            &simple_case(&["-ai", when], true, Fixture::over_older_copy()),
            Over::Local,
        );
    }
    everywhere(test, &["-ai", "--delete-before"], Fixture::over_older_copy);
}

/// -m also turns the incremental recursion off (and prunes `a/b/empty_leaf`'s branch).
#[test]
fn pruned_copies_are_itemized_in_rsyncs_order() {
    everywhere(
        this_test!(),
        &["-aim", "--delete"],
        Fixture::over_older_copy,
    );
}

/// The hard-link group `hard/h1`, `hard/h2`, `other/h3`: copied fresh, rsync sends the last
/// name and links the others to it; over the older copy (h1 and h3 linked, h2 a separate
/// file) it keeps the first name that exists.
#[test]
fn hard_links_are_itemized_with_rsyncs_leader() {
    let test = this_test!();
    everywhere(test, &["-aiH"], Fixture::awkward);
    everywhere(test, &["-aiH", "--delete"], Fixture::over_older_copy);
}

/// `-R` with implied directories: each named path's entries in rsync's order, no `./`.
#[test]
fn relative_paths_are_itemized_in_rsyncs_order() {
    let test = this_test!();
    for over in EVERYWHERE {
        same_listing(
            test,
            &Case {
                fixture: Fixture::awkward(),
                // (Not a transfer directory under -R: its time is the run's.)
                time_exempt: &["dst"],
                ..Case::new(
                    &["-aiR"],
                    &["src/./txt", "src/./top.txt", "src/./links", "src/./a"],
                    "dst/",
                )
            },
            over,
        );
    }
}

/// `-v` without `-i`: the header, the names in rsync's order (`deleting …` where rsync puts
/// it), the blank line before the totals.
#[test]
fn verbose_names_are_listed_in_rsyncs_order() {
    let test = this_test!();
    everywhere(test, &["-av", "--delete"], Fixture::over_older_copy);
    // (Not incremental: rsync's header says the list was built.)
    same_listing(
        test,
        &simple_case(&["-av", "--delete-after"], true, Fixture::over_older_copy()),
        Over::Local,
    );
}

/// A file where the destination has a non-empty directory: xsync always makes way for it,
/// and under `--force` (as under `--delete`) lists what that removes, as rsync does.
#[test]
fn a_forced_type_change_lists_what_it_removes() {
    fn src(root: &std::path::Path) {
        crate::util::TestTree::at(root)
            .file("keep", b"keep\n")
            .file("x", b"now a file\n")
            .stamp(false);
    }
    fn older(root: &std::path::Path) {
        crate::util::TestTree::at(root)
            .file("x/inner", b"inner\n")
            .file("x/sub/deeper", b"deeper\n")
            .stamp(false);
    }
    let fixture = || Fixture {
        older: Some(older),
        ..Fixture::with_src(src)
    };
    everywhere(this_test!(), &["-ai", "--force"], fixture);
}
