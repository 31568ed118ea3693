//! rsync's `--progress` (`--info=progress1`) and `--info=progress2`, in rsync's line format.
//!
//! The engine only reports: an atomic add per finished file and, for per-file progress, one
//! channel send carrying the file's listing line. One printer (a ticker thread, at most ten
//! times a second, and the end of the run) turns that into lines on stdout through
//! [`Report`], so progress never interleaves with the listing or errors mid-line, and runs
//! without progress pay nothing (the engine sees `None`).
//!
//! Files finish in parallel and out of list order, so `to-chk=R/T` counts what is left of
//! this run: R is the number of planned transfers not yet shown, T (as rsync's) the number
//! of entries in the transfer. The last file's line therefore ends with `to-chk=0/T`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, mpsc};
use std::time::{Duration, Instant};

/// How often the ticker prints at most.
pub const TICK: Duration = Duration::from_millis(100);

/// A finished file, as the printer needs it.
struct Done {
    line: Option<String>,
    size: u64,
    elapsed: Duration,
}

pub struct Progress {
    /// 1: a line per file; 2: one line for the whole transfer.
    level: u8,
    human: u8,
    started: Instant,
    entries: AtomicU64,
    total_size: AtomicU64,
    planned: AtomicU64,
    files: AtomicU64,
    bytes: AtomicU64,
    stop: AtomicBool,
    tx: mpsc::Sender<Done>,
    printer: Mutex<Printer>,
}

/// What only the printer touches.
struct Printer {
    rx: mpsc::Receiver<Done>,
    shown_files: u64,
    /// progress2: what the last line showed, so an unchanged line is not printed again.
    last: Option<(u64, u64)>,
    /// progress2: the longest line so far, to pad shorter ones over it (as rsync does).
    width: usize,
    ended: bool,
}

impl Progress {
    pub fn new(level: u8, human: u8) -> Option<Progress> {
        if level == 0 {
            return None;
        }
        let (tx, rx) = mpsc::channel();
        Some(Progress {
            level,
            human,
            started: Instant::now(),
            entries: AtomicU64::new(0),
            total_size: AtomicU64::new(0),
            planned: AtomicU64::new(0),
            files: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            tx,
            printer: Mutex::new(Printer {
                rx,
                shown_files: 0,
                last: None,
                width: 0,
                ended: false,
            }),
        })
    }

    /// The transfer's entries (rsync's T) and total size (progress2's 100%), from
    /// [`crate::report::tree_counts`].
    pub fn totals(&self, counts: &[u64; 7]) {
        self.entries.store(counts[0], Ordering::Relaxed);
        self.total_size.store(counts[6], Ordering::Relaxed);
    }

    /// Adds files the receiver decided to transfer.
    pub fn planned(&self, files: u64) {
        self.planned.fetch_add(files, Ordering::Relaxed);
    }

    /// A file is complete: `size` bytes, started at `started`, listed as `line`.
    pub fn done(&self, line: Option<String>, size: u64, started: Option<Instant>) {
        self.files.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(size, Ordering::Relaxed);
        if self.level == 1 {
            let elapsed = started.map(|t| t.elapsed()).unwrap_or_default();
            // The receiver lives as long as this Progress, so a send cannot fail.
            let _ = self.tx.send(Done {
                line,
                size,
                elapsed,
            });
        }
    }

    /// The ticker thread's body: prints what is new every [`TICK`] until [`Self::stop`].
    pub fn tick(&self, report: &dyn Out) {
        while !self.stop.load(Ordering::Relaxed) {
            std::thread::park_timeout(TICK);
            self.print(report, false);
        }
    }

    /// Ends the ticker's loop (the caller unparks it).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Prints everything that finished and, at the end, progress2's closing line. Once the
    /// end was printed nothing more is (the summary follows it).
    pub fn print(&self, report: &dyn Out, end: bool) {
        let mut p = self.printer.lock().unwrap_or_else(|e| e.into_inner());
        if p.ended {
            return;
        }
        p.ended = end;
        let entries = self.entries.load(Ordering::Relaxed);
        let mut text = String::new();
        if self.level == 1 {
            while let Ok(d) = p.rx.try_recv() {
                p.shown_files += 1;
                if let Some(l) = &d.line {
                    text.push_str(l);
                    text.push('\n');
                }
                let left = self
                    .planned
                    .load(Ordering::Relaxed)
                    .saturating_sub(p.shown_files);
                let ms = d.elapsed.as_millis() as u64;
                text.push_str(&format!(
                    "\r{:>15} 100% {} {} (xfr#{}, to-chk={left}/{entries})\n",
                    num(d.size, self.human),
                    rate(d.size, ms),
                    hms(ms),
                    p.shown_files,
                ));
            }
            if !text.is_empty() {
                report.progress_text(&text, false);
            }
            return;
        }
        let files = self.files.load(Ordering::Relaxed);
        let bytes = self.bytes.load(Ordering::Relaxed);
        // The end repeats the last line only if nothing was shown yet (a no-op run).
        if p.last == Some((files, bytes)) {
            return;
        }
        p.last = Some((files, bytes));
        let total = self.total_size.load(Ordering::Relaxed);
        let pct = if bytes >= total {
            100
        } else {
            (100.0 * bytes as f64 / total as f64) as u64
        };
        let ms = self.started.elapsed().as_millis() as u64;
        let left = self.planned.load(Ordering::Relaxed).saturating_sub(files);
        let mut line = format!(
            "\r{:>15} {pct:>3}% {} {} (xfr#{files}, to-chk={left}/{entries})",
            num(bytes, self.human),
            rate(bytes, ms),
            hms(ms),
        );
        p.width = p.width.max(line.len());
        while line.len() < p.width {
            line.push(' ');
        }
        report.progress_text(&line, true);
    }
}

/// rsync's rate field: `%7.2f` in kB/s, MB/s or GB/s (of 1024), over at least 1 ms.
fn rate(bytes: u64, ms: u64) -> String {
    let mut r = bytes as f64 * 1000.0 / ms.max(1) as f64 / 1024.0;
    let units = if r > 1024.0 * 1024.0 {
        r /= 1024.0 * 1024.0;
        "GB/s"
    } else if r > 1024.0 {
        r /= 1024.0;
        "MB/s"
    } else {
        "kB/s"
    };
    format!("{r:7.2}{units}")
}

/// rsync's time field: `%4d:%02d:%02d`.
fn hms(ms: u64) -> String {
    let s = ms / 1000;
    format!("{:4}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// Where progress lines go: the report, which keeps them apart from the listing and the
/// errors (a trait, so this module does not depend on the one that holds it).
pub trait Out {
    /// `mid_line` when the text ends in a line that a `\r` will overwrite.
    fn progress_text(&self, text: &str, mid_line: bool);
}

/// Formats a byte count as rsync does: `1,234,567` by default, `1.23M` with `-h` (units
/// of 1000, as rsync's), units of 1024 with `-hh`.
pub fn num(n: u64, human: u8) -> String {
    let mult = if human >= 2 { 1024.0 } else { 1000.0 };
    if human > 0 && n as f64 >= mult {
        let units = ["K", "M", "G", "T", "P"];
        let mut v = n as f64;
        let mut u = 0;
        v /= mult;
        while v >= mult && u + 1 < units.len() {
            v /= mult;
            u += 1;
        }
        return format!("{v:.2}{}", units[u]);
    }
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Report;

    #[test]
    fn fields_have_rsyncs_widths() {
        assert_eq!(rate(3_000_000, 4), " 715.26MB/s");
        assert_eq!(rate(6, 4), "   1.46kB/s");
        assert_eq!(rate(3 << 30, 1000), "   3.00GB/s");
        assert_eq!(hms(0), "   0:00:00");
        assert_eq!(hms(3_723_000), "   1:02:03");
    }

    #[test]
    fn a_finished_file_prints_its_name_then_rsyncs_line() {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        {
            let p = Progress::new(1, 0).expect("on");
            p.totals(&[6, 0, 0, 0, 0, 0, 3_000_010]);
            p.planned(2);
            let report = Report::new(&mut out, &mut err, false).with_progress(Some(p));
            let p = report.progress.as_ref().expect("on");
            p.done(Some("big".into()), 3_000_000, None);
            p.done(Some("sub/b".into()), 6, None);
            p.print(&report, true);
        }
        let text = String::from_utf8(out).expect("utf-8");
        assert_eq!(
            text,
            "big\n\r      3,000,000 100%    2.79GB/s    0:00:00 (xfr#1, to-chk=1/6)\n\
             sub/b\n\r              6 100%    5.86kB/s    0:00:00 (xfr#2, to-chk=0/6)\n"
        );
    }
}
