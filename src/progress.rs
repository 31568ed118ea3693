//! rsync's `--progress` (`--info=progress1`) and `--info=progress2`, in rsync's line format.
//!
//! The engine only reports: a [`Ticket`] when a file starts (registered here, with an
//! atomic position the data paths move forward as bytes are written or sent), an atomic
//! add and a channel send when it finishes. One printer (a ticker thread, at most ten times
//! a second, and the end of the run) turns that into lines on stdout through [`Report`], so
//! progress never interleaves with the listing or errors mid-line, and runs without
//! progress pay nothing (the engine sees `None`).
//!
//! Per-file progress shows one file in flight at a time, as rsync does: a file that has
//! been moving for a tick gets its name line and a live `\r` line (bytes, percent, rate,
//! time left) until it ends with rsync's `100% … (xfr#N, to-chk=R/T)` line. Files that end
//! meanwhile (in parallel, out of list order) are held and listed after it, so every file
//! still gets exactly its name and one closing line.
//!
//! Files finish in parallel and out of list order, so `to-chk=R/T` counts what is left of
//! this run: R is the number of planned transfers not yet shown, T (as rsync's) the number
//! of entries in the transfer. The last file's line therefore ends with `to-chk=0/T`.
//!
//! `--info=progress2` counts the bytes of finished files and the positions of those in
//! flight against the total from the scan, and never shows fewer files or bytes than it
//! showed before (a file that fails half-way takes its bytes with it).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

/// How often the ticker prints at most.
pub const TICK: Duration = Duration::from_millis(100);

/// A finished file, as the printer needs it.
struct Done {
    /// The [`Flight`] it was.
    id: u64,
    line: Option<String>,
    size: u64,
    elapsed: Duration,
}

/// A file in flight, as the printer sees it.
struct Flight {
    id: u64,
    line: Option<String>,
    /// The file's name, for the bar (empty without one).
    name: String,
    /// The file's size, where known when it starts (else set by [`Ticket::sized`]).
    size: AtomicU64,
    started: Instant,
    /// Bytes of the file written or sent so far.
    pos: AtomicU64,
    /// Finished, failed or dropped: no longer in flight.
    gone: AtomicBool,
}

/// A started file's handle: the data paths report its position through it, and
/// [`Progress::done`] ends it. Dropped without that (the file failed), it leaves the
/// display.
pub struct Ticket(Arc<Flight>);

impl Ticket {
    /// The file's data has reached `pos` bytes (never moves back).
    pub fn at(&self, pos: u64) {
        self.0.pos.fetch_max(pos, Ordering::Relaxed);
    }

    /// The file's size, once known (a sender learns it when it opens the file).
    pub fn sized(&self, size: u64) {
        self.0.size.store(size, Ordering::Relaxed);
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.0.gone.store(true, Ordering::Relaxed);
    }
}

thread_local! {
    /// The ticket of the file this thread is copying, for the one data path that has no
    /// handle of its own to carry it: the local copy's `copy_file_range` loop (see
    /// [`copying`]).
    static HERE: std::cell::RefCell<Option<Arc<Flight>>> = const { std::cell::RefCell::new(None) };
}

/// Runs `f` (a local file copy) with `ticket` as this thread's file in flight: its data
/// loop reports through [`moved_here`] and copies in steps small enough to be seen.
pub fn copying<T>(ticket: Option<&Ticket>, f: impl FnOnce() -> T) -> T {
    let Some(t) = ticket else { return f() };
    HERE.with(|h| *h.borrow_mut() = Some(t.0.clone()));
    let out = f();
    HERE.with(|h| *h.borrow_mut() = None);
    out
}

/// The local copy's data has reached `pos`; returns whether anyone is watching (the copy
/// then moves at most [`STEP`] at a time).
pub fn moved_here(pos: u64) -> bool {
    HERE.with(|h| match &*h.borrow() {
        Some(f) => {
            f.pos.fetch_max(pos, Ordering::Relaxed);
            true
        }
        None => false,
    })
}

/// How much a watched local copy moves per system call: ten updates a second of a file
/// copied at 1.6 GB/s.
pub const STEP: u64 = 16 << 20;

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
    /// Files in flight (pruned by the printer once gone).
    flights: Mutex<Vec<Arc<Flight>>>,
    next_id: AtomicU64,
    printer: Mutex<Printer>,
    /// progress2 on a terminal: an indicatif bar in place of rsync's line.
    bar: Option<indicatif::ProgressBar>,
    bar_done: AtomicBool,
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
    /// progress1: the file whose name and live line are on the screen.
    showing: Option<Arc<Flight>>,
    /// progress1: files that ended while another was showing, in the order they ended.
    held: Vec<Done>,
}

impl Progress {
    /// `bar`: draw progress2 as a bar, where stdout is a terminal (elsewhere rsync's line).
    pub fn new(level: u8, human: u8, bar: bool) -> Option<Progress> {
        if level == 0 {
            return None;
        }
        let bar = (bar && level == 2).then(new_bar).flatten();
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
            flights: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(0),
            printer: Mutex::new(Printer {
                rx,
                shown_files: 0,
                last: None,
                width: 0,
                ended: false,
                showing: None,
                held: Vec::new(),
            }),
            bar,
            bar_done: AtomicBool::new(false),
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

    /// A file of `size` bytes, listed as `line`, starts moving; `name` is asked for only
    /// when a bar shows it.
    pub fn begin(&self, line: Option<String>, name: impl FnOnce() -> String, size: u64) -> Ticket {
        let f = Arc::new(Flight {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            line,
            name: if self.bar.is_some() {
                name()
            } else {
                String::new()
            },
            size: AtomicU64::new(size),
            started: Instant::now(),
            pos: AtomicU64::new(0),
            gone: AtomicBool::new(false),
        });
        lock(&self.flights).push(f.clone());
        Ticket(f)
    }

    /// A file is complete: `size` bytes (what its line shows).
    pub fn done(&self, ticket: Ticket, size: u64) {
        let f = ticket.0.clone();
        // Out of flight before its bytes count as done: progress2 may briefly see
        // neither, never both.
        drop(ticket);
        self.files.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(size, Ordering::Relaxed);
        if self.level == 1 {
            // The receiver lives as long as this Progress, so a send cannot fail.
            let _ = self.tx.send(Done {
                id: f.id,
                line: f.line.clone(),
                size,
                elapsed: f.started.elapsed(),
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

    /// Runs `f` (which writes other output) with the bar, if any, off the screen.
    pub fn hold<T>(&self, f: impl FnOnce() -> T) -> T {
        match &self.bar {
            Some(b) => b.suspend(f),
            None => f(),
        }
    }

    /// Whether a bar is drawn (other output must then go through [`Self::hold`]).
    pub fn has_bar(&self) -> bool {
        self.bar.is_some() && !self.bar_done.load(Ordering::Relaxed)
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
            // Other output ended the showing file's live line: its name is shown again, so
            // that the line before its closing line still names it.
            let interrupted = p.showing.is_some() && !report.mid_line();
            self.print_files(&mut p, entries, end, interrupted, &mut text);
            if !text.is_empty() {
                let open = p.showing.is_some();
                report.progress_text(&text, open);
            }
            return;
        }
        let (last_files, last_bytes) = p.last.unwrap_or((0, 0));
        let files = self.files.load(Ordering::Relaxed).max(last_files);
        let (moving, oldest) = {
            let mut flights = lock(&self.flights);
            flights.retain(|f| !f.gone.load(Ordering::Relaxed));
            let moving: u64 = flights
                .iter()
                .map(|f| {
                    f.pos
                        .load(Ordering::Relaxed)
                        .min(f.size.load(Ordering::Relaxed))
                })
                .sum();
            let oldest = flights
                .iter()
                .min_by_key(|f| f.started)
                .map(|f| f.name.clone());
            (moving, oldest)
        };
        let total = self.total_size.load(Ordering::Relaxed);
        let mut bytes = self.bytes.load(Ordering::Relaxed) + if end { 0 } else { moving };
        if !end {
            // Never past the total before the end.
            bytes = bytes.min(total);
        }
        let bytes = bytes.max(last_bytes);
        if let Some(b) = &self.bar {
            p.last = Some((files, bytes));
            let planned = self.planned.load(Ordering::Relaxed);
            b.set_length(total.max(bytes));
            b.set_position(bytes);
            b.set_prefix(format!("{files}/{planned} files"));
            b.set_message(match oldest {
                Some(name) if !end => name,
                _ => String::new(),
            });
            if end {
                // Left on the screen as rsync leaves its last line; what follows (the
                // summary) starts below it and no longer moves it.
                b.finish();
                self.bar_done.store(true, Ordering::Relaxed);
            }
            return;
        }
        // The end repeats the last line only if nothing was shown yet (a no-op run).
        if p.last == Some((files, bytes)) {
            return;
        }
        p.last = Some((files, bytes));
        let pct = if bytes >= total {
            100
        } else {
            (100.0 * bytes as f64 / total as f64) as u64
        };
        let ms = self.started.elapsed().as_millis() as u64;
        let left = self.planned.load(Ordering::Relaxed).saturating_sub(files);
        // rsync's time field is the time left while the transfer runs, the time taken at
        // its end.
        let time = if end || bytes >= total {
            hms(ms)
        } else {
            eta(bytes, total - bytes, ms)
        };
        let mut line = format!(
            "\r{:>15} {pct:>3}% {} {time} (xfr#{files}, to-chk={left}/{entries})",
            num(bytes, self.human),
            rate(bytes, ms),
        );
        p.width = p.width.max(line.len());
        while line.len() < p.width {
            line.push(' ');
        }
        report.progress_text(&line, true);
    }
}

impl Progress {
    /// Per-file progress: the showing file's live line or its end, then the files that
    /// ended meanwhile, then the next file that has been in flight for a tick. At the
    /// end of the run everything left is listed.
    fn print_files(
        &self,
        p: &mut Printer,
        entries: u64,
        end: bool,
        interrupted: bool,
        text: &mut String,
    ) {
        while let Ok(d) = p.rx.try_recv() {
            p.held.push(d);
        }
        if let (true, Some(l)) = (
            interrupted,
            p.showing.as_ref().and_then(|f| f.line.as_ref()),
        ) {
            text.push_str(l);
            text.push('\n');
        }
        loop {
            if let Some(f) = p.showing.clone() {
                if let Some(i) = p.held.iter().position(|d| d.id == f.id) {
                    let d = p.held.remove(i);
                    self.closing_line(p, &d, entries, text);
                    p.showing = None;
                } else if f.gone.load(Ordering::Relaxed) || end {
                    // Failed (its error says so): the live line is left as it was.
                    text.push('\n');
                    p.showing = None;
                } else {
                    let size = f.size.load(Ordering::Relaxed);
                    let pos = f.pos.load(Ordering::Relaxed).min(size);
                    if size > 0 && pos == size {
                        // All of it is written and the file is being checked and renamed:
                        // its 100% is the closing line's, with the xfr# that says it is done.
                        return;
                    }
                    let ms = f.started.elapsed().as_millis() as u64;
                    let pct = (pos * 100).checked_div(size).unwrap_or(0);
                    text.push_str(&format!(
                        "\r{:>15} {pct:>3}% {} {}",
                        num(pos, self.human),
                        rate(pos, ms),
                        eta(pos, size - pos, ms),
                    ));
                    return;
                }
            }
            for d in std::mem::take(&mut p.held) {
                if let Some(l) = &d.line {
                    text.push_str(l);
                    text.push('\n');
                }
                self.closing_line(p, &d, entries, text);
            }
            if end {
                return;
            }
            let next = {
                let mut flights = lock(&self.flights);
                flights.retain(|f| !f.gone.load(Ordering::Relaxed));
                flights
                    .iter()
                    .filter(|f| f.started.elapsed() >= TICK)
                    .min_by_key(|f| f.started)
                    .cloned()
            };
            let Some(f) = next else { return };
            if let Some(l) = &f.line {
                text.push_str(l);
                text.push('\n');
            }
            p.showing = Some(f);
        }
    }

    /// rsync's line for a finished file.
    fn closing_line(&self, p: &mut Printer, d: &Done, entries: u64, text: &mut String) {
        p.shown_files += 1;
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
}

/// The bar, or None where stdout is not a terminal (indicatif hides it there).
fn new_bar() -> Option<indicatif::ProgressBar> {
    let target = indicatif::ProgressDrawTarget::stdout_with_hz(10);
    if target.is_hidden() {
        return None;
    }
    let bar = indicatif::ProgressBar::with_draw_target(Some(0), target);
    let style = indicatif::ProgressStyle::with_template(
        "{elapsed_precise} [{bar:20}] {bytes}/{total_bytes} {prefix} {bytes_per_sec} ETA {eta} {wide_msg}",
    )
    .ok()?
    .progress_chars("=> ");
    bar.set_style(style);
    Some(bar)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// rsync's estimate of the time left: the rest at the rate so far (`0:00:00` before any
/// byte moved).
fn eta(done: u64, left: u64, ms: u64) -> String {
    if done == 0 {
        return hms(0);
    }
    hms((left as f64 * ms as f64 / done as f64) as u64)
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
    /// Whether the last progress text's open line is still the last thing on the screen.
    fn mid_line(&self) -> bool;
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
            let p = Progress::new(1, 0, false).expect("on");
            p.totals(&[6, 0, 0, 0, 0, 0, 3_000_010]);
            p.planned(2);
            let report = Report::new(&mut out, &mut err, false).with_progress(Some(p));
            let p = report.progress.as_ref().expect("on");
            let big = p.begin(Some("big".into()), String::new, 3_000_000);
            let b = p.begin(Some("sub/b".into()), String::new, 6);
            p.done(big, 3_000_000);
            p.done(b, 6);
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
