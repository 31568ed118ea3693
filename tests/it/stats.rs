//! `--stats` and `-v`'s closing lines against rsync 3.5's, locally, pushed and pulled, on
//! every re-run ([`crate::util::rounds`]): the same fields in the same order and words, the
//! blank lines where rsync puts them, and the numbers equal wherever they describe the
//! trees (files by kind, created and deleted files by kind, files transferred, sizes, the
//! literal data of a whole-file copy). The numbers that describe each tool's own protocol
//! (bytes on the connection, the file list's size, the rate, the speedup, the times) can
//! only have rsync's shape: xsync's are its own real counts.

use std::process::Output;

use crate::listing::{EVERYWHERE, Over, outputs};
use crate::util::{Case, Fixture, RUNS, simple_case};

/// The numbers of a line, each as `#`: what is left is the line's shape.
fn shape(line: &str) -> String {
    let mut out = String::new();
    let mut in_number = false;
    for c in line.chars() {
        let digit = c.is_ascii_digit() || (in_number && (c == ',' || c == '.'));
        if digit && !in_number {
            out.push('#');
        }
        if !digit {
            out.push(c);
        }
        in_number = digit;
    }
    out
}

/// Whether a line's numbers are each tool's own (compared by shape only). Literal and
/// matched data depend on the delta algorithm, whose blocks differ, wherever a file can be
/// updated by delta: over a wire, once the destination has a copy.
fn protocol_specific(line: &str, delta_possible: bool) -> bool {
    let own = [
        "Total bytes sent: ",
        "Total bytes received: ",
        "File list size: ",
        "File list generation time: ",
        "File list transfer time: ",
        "sent ",
    ];
    own.iter().any(|p| line.starts_with(p))
        || (delta_possible
            && (line.starts_with("Literal data: ") || line.starts_with("Matched data: ")))
}

/// The summary at the end of stdout (from the blank line before `Number of files`, or
/// before `sent`), each line as compared: exact, or its shape where the number is each
/// tool's own; `total size is N  speedup is S` keeps N.
fn summary(out: &Output, delta_possible: bool) -> Vec<String> {
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.starts_with("Number of files: "))
        .or_else(|| lines.iter().rposition(|l| l.starts_with("sent ")))
        .map_or(lines.len(), |i| i.saturating_sub(1));
    lines[start..]
        .iter()
        .map(|l| {
            if protocol_specific(l, delta_possible) {
                shape(l)
            } else if let Some((size, speedup)) = l.split_once("  speedup is ") {
                format!("{size}  speedup is {}", shape(speedup))
            } else {
                l.to_string()
            }
        })
        .collect()
}

/// `case` everywhere, and after every run the same summary as rsync's.
fn same_summary(test: &str, case: &Case) {
    for over in EVERYWHERE {
        let Some(runs) = outputs(test, case, over) else {
            return;
        };
        for (round, [r, x]) in runs.iter().enumerate() {
            let delta = !matches!(over, Over::Local) && round > 0;
            let (rs, xs) = (summary(r, delta), summary(x, delta));
            assert!(
                rs.len() > 2,
                "{test}: rsync printed no summary (the check is wrong):\n{}",
                String::from_utf8_lossy(&r.stdout)
            );
            assert_eq!(
                xs,
                rs,
                "{test} ({over:?}, flags {:?}): {} summarises otherwise than rsync\n--- rsync:\n{}\n--- xsync:\n{}",
                case.flags,
                RUNS[round],
                String::from_utf8_lossy(&r.stdout),
                String::from_utf8_lossy(&x.stdout)
            );
        }
    }
}

/// A fresh copy of every kind of entry, then the re-runs: the counts by kind, the sizes,
/// the literal data; `--stats` opens with a blank line, as rsync's does.
#[test]
fn stats_count_every_kind_like_rsync() {
    same_summary(
        this_test!(),
        &simple_case(&["-a", "--stats"], true, Fixture::awkward()),
    );
}

/// A destination the run creates is among rsync's created directories.
#[test]
fn stats_count_the_destination_the_run_creates() {
    same_summary(
        this_test!(),
        &simple_case(
            &["-a", "--stats"],
            true,
            Fixture {
                dst_exists: false,
                ..Fixture::awkward()
            },
        ),
    );
}

/// Deletions are counted one by one, every entry below a deleted directory too, by kind;
/// a type change's removal is not a deletion.
#[test]
fn stats_count_deletions_by_kind_like_rsync() {
    same_summary(
        this_test!(),
        &simple_case(
            &["-a", "--stats", "--delete"],
            true,
            Fixture::over_older_copy(),
        ),
    );
}

/// A dry run counts what it would create, transfer and delete, and says `(DRY RUN)`.
#[test]
fn a_dry_runs_stats_count_what_it_would_do() {
    let test = this_test!();
    same_summary(
        test,
        &simple_case(
            &["-a", "--stats", "-n", "--delete"],
            true,
            Fixture::over_older_copy(),
        ),
    );
    same_summary(
        test,
        &simple_case(
            &["-a", "--stats", "-n"],
            true,
            Fixture {
                dst_exists: false,
                ..Fixture::awkward()
            },
        ),
    );
}

/// Under `-H` the followers are created (as links), not transferred.
#[test]
fn hard_linked_files_are_counted_like_rsync() {
    same_summary(
        this_test!(),
        &simple_case(&["-aH", "--stats"], true, Fixture::over_older_copy()),
    );
}

/// What the run leaves out still counts among the files, as in rsync's file list: the
/// kinds it does not carry (`-rlt` skips the fifo and the device) and `-m`'s pruned
/// directories. (With `-t`: without it, which files a re-run sends depends on the second
/// each tool's previous run wrote them in.)
#[test]
fn the_file_count_has_what_the_run_leaves_out() {
    let test = this_test!();
    same_summary(
        test,
        &simple_case(&["-rlt", "--stats"], true, Fixture::awkward()),
    );
    same_summary(
        test,
        &simple_case(&["-am", "--stats"], true, Fixture::awkward()),
    );
}

/// `-v` alone: the blank line, `sent … received … bytes/sec`, `total size is … speedup
/// is …`, and under `-n` the `(DRY RUN)` mark.
#[test]
fn verbose_closing_lines_have_rsyncs_shape() {
    let test = this_test!();
    same_summary(
        test,
        &simple_case(&["-av"], true, Fixture::over_older_copy()),
    );
    same_summary(
        test,
        &simple_case(&["-avn", "--delete"], true, Fixture::over_older_copy()),
    );
}

#[test]
fn shapes_hide_only_the_numbers() {
    assert_eq!(
        shape("sent 1,234 bytes  received 56 bytes  2,580.00 bytes/sec"),
        "sent # bytes  received # bytes  # bytes/sec"
    );
    assert_eq!(
        shape("File list generation time: 0.001 seconds"),
        "File list generation time: # seconds"
    );
    assert_eq!(shape("Total bytes sent: 1.23K"), "Total bytes sent: #K");
}
