//! What the user sees: per-file errors on stderr as they happen, the `-v`/`-i` listing and
//! `--stats` on stdout, and the exit code decided once at the end from what was recorded.
//!
//! The engine runs on many threads, so output goes through one lock per stream and the
//! worst exit code is kept with [`ExitCode::worst`].
//!
//! `--log-file` is here too ([`LogFile`]): the client's log gets rsync's lines (each with
//! the time and pid), the listing's items in the log's own format (`outfmt::Line::log`),
//! and every message, warning and error the run prints. A receiving server makes the
//! items' log lines and relays them in its listing, each as one line behind a record
//! separator (`\x1e`, which an escaped name never holds), and the client routes them to
//! its log.

use crate::exit::ExitCode;
use crate::outfmt::Line;
use crate::tree::{Entry, Kind};
use std::io::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

pub type Sink<'a> = &'a mut (dyn Write + Send);

pub struct Report<'a> {
    out: Mutex<Sink<'a>>,
    err: Mutex<Sink<'a>>,
    code: Mutex<ExitCode>,
    quiet: bool,
    /// stdout ends in a progress line updated with `\r`: the next line starts a new one.
    mid_line: AtomicBool,
    pub stats: Stats,
    /// `--progress`/`--info=progress2` on the side that shows it (never on a server).
    pub progress: Option<crate::progress::Progress>,
    /// `--json` on the client: the records go to the log, the listing nowhere.
    json: Option<&'static crate::json::Log>,
    /// `--json` on a server: the records go into the relayed listing, in its place.
    json_relay: AtomicBool,
    /// `--log-file` on the client.
    log: Option<LogFile>,
    /// A server whose client keeps a log: the items' log lines go into the listing.
    log_relay: AtomicBool,
}

/// Marks a relayed line that is the client's log's, not its stdout's.
const LOG_MARK: char = '\x1e';

/// The client's `--log-file`: opened for appending (created 0644 less the umask), each
/// line behind rsync's prefix (`YYYY/MM/DD HH:MM:SS [PID] `), written through at once.
pub struct LogFile {
    file: Mutex<std::fs::File>,
}

impl LogFile {
    /// The user's own path (a plain open, as rsync's client makes it).
    pub fn open(path: &std::path::Path) -> std::io::Result<LogFile> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o644)
            .open(path)?;
        Ok(LogFile {
            file: Mutex::new(file),
        })
    }

    /// One message; control characters (but the tab) as `\#ooo`, as rsync's log writes
    /// them, so a name cannot break a line of the log.
    pub fn write(&self, msg: &str) {
        let mut line = format!(
            "{} [{}] ",
            crate::outfmt::timestring(crate::outfmt::now()),
            std::process::id()
        );
        for c in msg.trim_end_matches('\n').chars() {
            if c < ' ' && c != '\t' {
                line.push_str(&format!("\\#{:03o}", c as u32));
            } else {
                line.push(c);
            }
        }
        line.push('\n');
        let mut f = self.file.lock().unwrap_or_else(|p| p.into_inner());
        let _ = f.write_all(line.as_bytes());
    }
}

/// Counters for `--stats` and the closing summary; updated from many threads.
#[derive(Default)]
pub struct Stats {
    pub files: AtomicU64,
    pub reg_files: AtomicU64,
    pub dirs: AtomicU64,
    pub links: AtomicU64,
    pub devices: AtomicU64,
    pub specials: AtomicU64,
    pub created: AtomicU64,
    pub created_reg: AtomicU64,
    pub created_dir: AtomicU64,
    pub created_link: AtomicU64,
    pub created_dev: AtomicU64,
    pub created_special: AtomicU64,
    pub deleted: AtomicU64,
    pub transferred: AtomicU64,
    pub total_size: AtomicU64,
    pub transferred_size: AtomicU64,
    pub literal: AtomicU64,
    pub matched: AtomicU64,
}

impl Stats {
    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    /// Adds a tree's totals from [`tree_counts`].
    pub fn add_counts(&self, c: [u64; 7]) {
        let fields = [
            &self.files,
            &self.reg_files,
            &self.dirs,
            &self.links,
            &self.devices,
            &self.specials,
            &self.total_size,
        ];
        for (f, v) in fields.into_iter().zip(c) {
            Stats::add(f, v);
        }
    }
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}

impl<'a> Report<'a> {
    pub fn new(out: Sink<'a>, err: Sink<'a>, quiet: bool) -> Report<'a> {
        Report {
            out: Mutex::new(out),
            err: Mutex::new(err),
            code: Mutex::new(ExitCode::Ok),
            quiet,
            mid_line: AtomicBool::new(false),
            stats: Stats::default(),
            progress: None,
            json: None,
            json_relay: AtomicBool::new(false),
            log: None,
            log_relay: AtomicBool::new(false),
        }
    }

    /// The client's `--log-file`, already open.
    pub fn with_log(mut self, log: Option<LogFile>) -> Self {
        self.log = log;
        self
    }

    /// A server whose client keeps a log (`--log-relay-format`): the items' log lines are
    /// relayed with the listing (set once the client's options are known).
    pub fn relay_log(&self) {
        self.log_relay.store(true, Ordering::Relaxed);
    }

    /// A line for the client's log: written there, or (on a server) relayed to it.
    pub fn log(&self, msg: impl AsRef<str>) {
        if let Some(log) = &self.log {
            log.write(msg.as_ref());
        } else if self.log_relay.load(Ordering::Relaxed) {
            // One write, so that the line lands whole in the relayed buffer.
            let line = format!("{LOG_MARK}{}\n", msg.as_ref().replace('\n', " "));
            let mut o = self.out.lock().unwrap_or_else(|p| p.into_inner());
            let _ = o.write_all(line.as_bytes());
        }
    }

    /// A line of the listing: its stdout text (under the caller's verbosity) and its log
    /// text.
    pub fn listed(&self, l: &Line) {
        if let Some(out) = &l.out {
            self.line(out);
        }
        if let Some(log) = &l.log {
            self.log(log);
        }
    }

    /// The client's `--json` log.
    pub fn with_json(mut self, log: Option<&'static crate::json::Log>) -> Self {
        self.json = log;
        self
    }

    /// A server under `--json`: its records replace its listing (set once the client's
    /// options are known).
    pub fn relay_json(&self) {
        self.json_relay.store(true, Ordering::Relaxed);
    }

    fn json_mode(&self) -> bool {
        self.json.is_some() || self.json_relay.load(Ordering::Relaxed)
    }

    /// A file's record under `--json` (nothing otherwise).
    pub fn file_event(&self, e: impl FnOnce() -> crate::json::FileEvent) {
        if let Some(log) = self.json {
            log.event(&e());
        } else if self.json_relay.load(Ordering::Relaxed) {
            let mut o = self.out.lock().unwrap_or_else(|p| p.into_inner());
            let _ = writeln!(o, "{}", e().to_line());
        }
    }

    /// The tree's totals and the connection's bytes, for `--json`'s summary.
    pub fn note_totals(&self, scan_secs: f64, wire: Option<(u64, u64)>) {
        if let Some(log) = self.json {
            let s = &self.stats;
            log.scanned(
                Stats::get(&s.files),
                Stats::get(&s.reg_files),
                Stats::get(&s.total_size),
                scan_secs,
            );
            if let Some((sent, received)) = wire {
                log.wire(sent, received);
            }
        }
    }

    pub fn with_progress(mut self, progress: Option<crate::progress::Progress>) -> Self {
        self.progress = progress;
        self
    }

    /// Progress output: written and flushed at once (a terminal shows it as it happens);
    /// `mid_line` when it ends in a line that a `\r` will overwrite.
    pub fn progress_text(&self, text: &str, mid_line: bool) {
        let mut o = self.out.lock().unwrap_or_else(|p| p.into_inner());
        let _ = o.write_all(text.as_bytes());
        let _ = o.flush();
        self.mid_line.store(mid_line, Ordering::Relaxed);
    }

    /// Prints what progress has not shown yet, and progress2's last line; before the
    /// closing summary.
    pub fn progress_end(&self) {
        if let Some(p) = &self.progress {
            p.print(self, true);
        }
    }

    /// Ends a progress line left open, before other output (rsync does the same).
    fn end_line(&self, o: &mut Sink<'a>) {
        if self.mid_line.swap(false, Ordering::Relaxed) {
            let _ = o.write_all(b"\n");
            let _ = o.flush();
        }
    }

    /// Writes other output than progress: with a progress bar on the terminal, the bar
    /// is taken off the screen for it and the output flushed at once (a line left in the
    /// buffer would be drawn over).
    fn around_bar(&self, write: impl FnOnce()) {
        match self.progress.as_ref().filter(|p| p.has_bar()) {
            Some(p) => p.hold(|| {
                write();
                self.flush();
            }),
            None => write(),
        }
    }

    /// A per-file problem: printed now, the run goes on, `code` counts at the end.
    pub fn error(&self, code: ExitCode, msg: impl AsRef<str>) {
        if let Some(log) = self.json {
            log.error(None, msg.as_ref(), code.code());
        }
        self.record(code);
        self.warn(msg);
    }

    /// One file's failure: the error line, and under `--json` the file's `failed` record
    /// (which the summary's error list takes its entry from).
    pub fn file_error(&self, code: ExitCode, rel: &[u8], msg: impl AsRef<str>) {
        self.record(code);
        self.file_event(|| {
            let mut e = crate::json::FileEvent::new("failed", String::from_utf8_lossy(rel).into());
            e.error = Some(msg.as_ref().to_string());
            e.code = Some(code.code());
            e
        });
        self.warn(msg);
    }

    /// A warning that does not change the exit code.
    pub fn warn(&self, msg: impl AsRef<str>) {
        self.warn_bare(format!("xsync: {}", msg.as_ref()));
    }

    /// A warning in a shape rsync prints without its program-name prefix (the
    /// `--link-dest arg does not exist: …` line); scripts that grep for it find it.
    pub fn warn_bare(&self, msg: impl AsRef<str>) {
        self.log(msg.as_ref());
        self.around_bar(|| {
            self.end_line_before_stderr();
            let mut e = self.err.lock().unwrap_or_else(|p| p.into_inner());
            let _ = writeln!(e, "{}", msg.as_ref());
        });
    }

    fn end_line_before_stderr(&self) {
        if self.mid_line.load(Ordering::Relaxed) {
            let mut o = self.out.lock().unwrap_or_else(|p| p.into_inner());
            self.end_line(&mut o);
        }
    }

    pub fn record(&self, code: ExitCode) {
        let mut c = self.code.lock().unwrap_or_else(|p| p.into_inner());
        *c = c.worst(code);
    }

    /// An informational line for the terminal only (rsync's `FCLIENT`): not logged.
    pub fn note(&self, msg: impl AsRef<str>) {
        if !self.quiet && !self.json_mode() {
            self.line(msg);
        }
    }

    /// Informational line on stdout (suppressed by -q), like rsync's FINFO messages;
    /// logged also under -q, as rsync logs its messages.
    pub fn info(&self, msg: impl AsRef<str>) {
        self.log(msg.as_ref());
        if !self.quiet && !self.json_mode() {
            self.line(msg);
        }
    }

    /// A listing line on stdout (`-v`, `-i`), already filtered by the caller's verbosity.
    pub fn line(&self, msg: impl AsRef<str>) {
        if self.json_mode() {
            return;
        }
        self.around_bar(|| {
            let mut o = self.out.lock().unwrap_or_else(|p| p.into_inner());
            self.end_line(&mut o);
            let _ = writeln!(o, "{}", msg.as_ref());
        });
    }

    /// Text relayed from the peer's listing, written as is; its log lines to the log.
    pub fn raw(&self, text: &str) {
        if text.contains(LOG_MARK) {
            let mut rest = String::new();
            for seg in text.split_inclusive('\n') {
                match seg.strip_prefix(LOG_MARK) {
                    Some(l) if seg.ends_with('\n') => {
                        if let Some(log) = &self.log {
                            log.write(l);
                        }
                    }
                    _ => rest.push_str(seg),
                }
            }
            if !rest.is_empty() {
                self.raw_text(&rest);
            }
            return;
        }
        self.raw_text(text);
    }

    fn raw_text(&self, text: &str) {
        if let Some(log) = self.json {
            // The far end's records (it was given --json).
            log.relayed(text);
            return;
        }
        self.around_bar(|| {
            let mut o = self.out.lock().unwrap_or_else(|p| p.into_inner());
            self.end_line(&mut o);
            let _ = o.write_all(text.as_bytes());
        });
    }

    pub fn code(&self) -> ExitCode {
        *self.code.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn flush(&self) {
        let _ = self.out.lock().unwrap_or_else(|p| p.into_inner()).flush();
        let _ = self.err.lock().unwrap_or_else(|p| p.into_inner()).flush();
    }

    /// The closing `xsync error: … (code N)` line rsync prints for a non-zero exit.
    pub fn finish(&self) -> ExitCode {
        self.progress_end();
        {
            let mut o = self.out.lock().unwrap_or_else(|p| p.into_inner());
            self.end_line(&mut o);
        }
        let code = self.code();
        if let Some(log) = self.json {
            log.finish(code.code(), false);
        }
        if code != ExitCode::Ok {
            // As rsync: vanished files are only a warning, everything else an error.
            let kind = if code == ExitCode::Vanished {
                "warning"
            } else {
                "error"
            };
            let msg = format!("xsync {kind}: {} (code {})", code.describe(), code.code());
            if let Some(log) = &self.log {
                log.write(&msg);
            }
            let mut e = self.err.lock().unwrap_or_else(|p| p.into_inner());
            let _ = writeln!(e, "{msg}");
        }
        self.flush();
        code
    }
}

/// Totals of the source tree for `--stats` (files, reg, dir, link, dev, special, size).
pub fn tree_counts(root: &Entry, with_root: bool) -> [u64; 7] {
    let mut c = [0u64; 7];
    let mut add = |e: &Entry| {
        c[0] += 1;
        match e.meta.kind {
            Kind::File => {
                c[1] += 1;
                c[6] += e.meta.size;
            }
            Kind::Dir => c[2] += 1,
            Kind::Symlink => {
                c[3] += 1;
                c[6] += e.target.as_ref().map(|t| t.len() as u64).unwrap_or(0);
            }
            Kind::CharDev | Kind::BlockDev => c[4] += 1,
            _ => c[5] += 1,
        }
    };
    if with_root {
        add(root);
    }
    root.walk(b"", &mut |_, e| add(e));
    c
}

pub use crate::progress::num;

fn kinds(reg: u64, dir: u64, link: u64, dev: u64, special: u64) -> String {
    let mut parts = Vec::new();
    for (n, label) in [
        (reg, "reg"),
        (dir, "dir"),
        (link, "link"),
        (dev, "dev"),
        (special, "special"),
    ] {
        if n > 0 {
            parts.push(format!("{label}: {}", num(n, 0)));
        }
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!(" ({})", parts.join(", "))
    }
}

pub fn print_summary(
    opts: &crate::config::Options,
    report: &Report<'_>,
    scan_secs: f64,
    total_secs: f64,
    wire: Option<(u64, u64)>,
) {
    let s = &report.stats;
    let g = Stats::get;
    let h = opts.human_readable;
    let literal = g(&s.literal);
    let total = g(&s.total_size);
    // Locally nothing crosses a wire; rsync reports the literal data as sent then.
    let (sent, received) = wire.unwrap_or((literal, 0));
    if !(opts.stats || opts.verbose > 0) {
        // The log's closing line, where no summary is printed (rsync's).
        report.log(format!(
            "sent {sent} bytes  received {received} bytes  total size {total}"
        ));
        return;
    }
    report.progress_end();
    // rsync's -q silences the summary and --stats too; its log has them.
    let emit = |l: String| {
        if !opts.quiet {
            report.line(&l);
        }
        if !l.is_empty() {
            report.log(&l);
        }
    };
    let speedup = if sent + received > 0 {
        total as f64 / (sent + received) as f64
    } else {
        0.0
    };
    if opts.stats {
        let lines = [
            format!(
                "Number of files: {}{}",
                num(g(&s.files), 0),
                kinds(
                    g(&s.reg_files),
                    g(&s.dirs),
                    g(&s.links),
                    g(&s.devices),
                    g(&s.specials)
                )
            ),
            format!(
                "Number of created files: {}{}",
                num(g(&s.created), 0),
                kinds(
                    g(&s.created_reg),
                    g(&s.created_dir),
                    g(&s.created_link),
                    g(&s.created_dev),
                    g(&s.created_special)
                )
            ),
            format!("Number of deleted files: {}", num(g(&s.deleted), 0)),
            format!(
                "Number of regular files transferred: {}",
                num(g(&s.transferred), 0)
            ),
            format!("Total file size: {} bytes", num(total, h)),
            format!(
                "Total transferred file size: {} bytes",
                num(g(&s.transferred_size), h)
            ),
            format!("Literal data: {} bytes", num(literal, h)),
            format!("Matched data: {} bytes", num(g(&s.matched), h)),
            "File list size: 0".to_string(),
            format!("File list generation time: {scan_secs:.3} seconds"),
            "File list transfer time: 0.000 seconds".to_string(),
            format!("Total bytes sent: {}", num(sent, h)),
            format!("Total bytes received: {}", num(received, h)),
            String::new(),
        ];
        for l in lines {
            emit(l);
        }
    }
    let rate = if total_secs > 0.0 {
        (sent + received) as f64 / total_secs
    } else {
        0.0
    };
    // rsync's rate has two decimals (unless -h gives it a unit).
    let rate = if h > 0 && rate >= 1024.0 {
        num(rate as u64, h)
    } else {
        let cents = (rate * 100.0).round() as u64;
        format!("{}.{:02}", num(cents / 100, 0), cents % 100)
    };
    if !opts.stats {
        // (--stats ends its block with the blank line.)
        emit(String::new());
    }
    emit(format!(
        "sent {} bytes  received {} bytes  {rate} bytes/sec",
        num(sent, h),
        num(received, h),
    ));
    emit(format!(
        "total size is {}  speedup is {speedup:.2}{}",
        num(total, h),
        if opts.dry_run { " (DRY RUN)" } else { "" }
    ));
}

impl crate::progress::Out for Report<'_> {
    fn progress_text(&self, text: &str, mid_line: bool) {
        Report::progress_text(self, text, mid_line);
    }
    fn mid_line(&self) -> bool {
        self.mid_line.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::{LOG_MARK, LogFile, Report, num};
    use crate::outfmt::Line;

    /// A server's relayed log lines reach the client's log, never its stdout; a client
    /// without a log drops them; each logged line has rsync's prefix and no raw control
    /// character.
    #[test]
    fn relayed_log_lines_go_to_the_log_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("log");
        let (mut out, mut err) = (Vec::new(), Vec::new());
        {
            let log = LogFile::open(&path).expect("open the log");
            let r = Report::new(&mut out, &mut err, false).with_log(Some(log));
            r.raw(&format!("one\n{LOG_MARK}>f+++++++++ a\x07b\ntwo\n"));
            r.listed(&Line {
                out: Some("shown".into()),
                log: Some("logged".into()),
            });
        }
        assert_eq!(String::from_utf8_lossy(&out), "one\ntwo\nshown\n");
        let text = std::fs::read_to_string(&path).expect("read the log");
        let bodies: Vec<&str> = text
            .lines()
            .map(|l| l.split_once("] ").map(|(_, b)| b).unwrap_or(l))
            .collect();
        assert_eq!(bodies, [">f+++++++++ a\\#007b", "logged"]);
        assert!(
            text.lines()
                .all(|l| l.len() > 22 && &l[4..5] == "/" && &l[19..21] == " [")
        );
        let mut out = Vec::new();
        Report::new(&mut out, &mut err, false).raw(&format!("{LOG_MARK}secret\nshown\n"));
        assert_eq!(String::from_utf8_lossy(&out), "shown\n");
    }

    #[test]
    fn numbers_are_grouped_like_rsync() {
        assert_eq!(num(0, 0), "0");
        assert_eq!(num(999, 0), "999");
        assert_eq!(num(1234567, 0), "1,234,567");
        assert_eq!(num(1536, 1), "1.54K");
        assert_eq!(num(32768, 1), "32.77K");
        assert_eq!(num(3_000_000, 1), "3.00M");
        assert_eq!(num(1536, 2), "1.50K");
    }
}
