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
use crate::tree::{Entry, Kind, Tally};
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
    pub created: Tallies,
    pub deleted: Tallies,
    pub transferred: AtomicU64,
    pub total_size: AtomicU64,
    pub transferred_size: AtomicU64,
    pub literal: AtomicU64,
    pub matched: AtomicU64,
    /// The bytes of the source tree's description that crossed the connection (the
    /// summary and the listings the receiver asked for; none locally).
    pub flist_size: AtomicU64,
    /// How long the sender's scan took, and the receiver's exchange of listings, in ms.
    pub flist_build_ms: AtomicU64,
    pub flist_xfer_ms: AtomicU64,
}

/// A [`Tally`] that many threads add to.
#[derive(Default)]
pub struct Tallies([AtomicU64; 6]);

impl Tallies {
    pub fn add(&self, t: Tally) {
        for (c, v) in self.0.iter().zip(t.0) {
            if v > 0 {
                c.fetch_add(v, Ordering::Relaxed);
            }
        }
    }

    pub fn get(&self) -> Tally {
        Tally(std::array::from_fn(|i| self.0[i].load(Ordering::Relaxed)))
    }
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

    /// The time since `start` as `--stats`' milliseconds.
    pub fn set_ms(c: &AtomicU64, start: std::time::Instant) {
        c.store(start.elapsed().as_millis() as u64, Ordering::Relaxed);
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

/// rsync's `output_itemized_counts`: the total, then the kinds that have any.
fn kinds(t: Tally) -> String {
    let parts: Vec<String> = ["reg", "dir", "link", "dev", "special"]
        .iter()
        .zip(&t.0[1..])
        .filter(|(_, n)| **n > 0)
        .map(|(label, n)| format!("{label}: {}", num(*n, 0)))
        .collect();
    if parts.is_empty() {
        num(t.total(), 0)
    } else {
        format!("{} ({})", num(t.total(), 0), parts.join(", "))
    }
}

/// rsync's `comma_dnum`: `decimals` places, and from 1,000 on the whole part grouped by
/// commas (its whole part truncated, its fraction as printf rounded it, as rsync does).
pub fn dnum(x: f64, decimals: usize) -> String {
    let s = format!("{x:.decimals$}");
    if !x.is_finite() || x.abs() < 1000.0 {
        return s;
    }
    let fract = s.find('.').map_or("", |i| &s[i..]);
    format!("{}{fract}", num(x as u64, 0))
}

/// rsync's `human_dnum` for the rate: with `-h`, units from the multiple on.
fn rate_text(rate: f64, h: u8) -> String {
    let mult = if h >= 2 { 1024.0 } else { 1000.0 };
    if h > 0 && rate >= mult {
        num(rate as u64, h)
    } else {
        dnum(rate, 2)
    }
}

/// The closing summary: `--stats`' block and `-v`'s two lines, in rsync 3.5's words and
/// number formats. `wire` is the connection's (sent, received); a local copy has none, and
/// counts the literal data as sent. `total_secs` is the run's duration, of which rsync's
/// rate counts whole seconds of the clock (its `time()` at start and end) plus a half.
pub fn print_summary(
    opts: &crate::config::Options,
    report: &Report<'_>,
    total_secs: f64,
    wire: Option<(u64, u64)>,
) {
    let s = &report.stats;
    let g = Stats::get;
    let h = opts.human_readable;
    let literal = g(&s.literal);
    let total = g(&s.total_size);
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
    // rsync's protocol always moves some bytes; a local copy with nothing to copy moves
    // none, and its speedup is then the total size over one byte rather than a division
    // by zero.
    let speedup = total as f64 / (sent + received).max(1) as f64;
    let secs = |ms: u64| dnum(ms as f64 / 1000.0, 3);
    if opts.stats {
        let lines = [
            String::new(),
            format!(
                "Number of files: {}",
                kinds(Tally([
                    g(&s.files),
                    g(&s.reg_files),
                    g(&s.dirs),
                    g(&s.links),
                    g(&s.devices),
                    g(&s.specials),
                ]))
            ),
            format!("Number of created files: {}", kinds(s.created.get())),
            format!("Number of deleted files: {}", kinds(s.deleted.get())),
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
            format!("File list size: {}", num(g(&s.flist_size), h)),
            // (rsync's build time is at least a millisecond, so both lines always show.)
            format!(
                "File list generation time: {} seconds",
                secs(g(&s.flist_build_ms).max(1))
            ),
            format!(
                "File list transfer time: {} seconds",
                secs(g(&s.flist_xfer_ms))
            ),
            format!("Total bytes sent: {}", num(sent, h)),
            format!("Total bytes received: {}", num(received, h)),
        ];
        for l in lines {
            emit(l);
        }
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let whole_secs = now.floor() - (now - total_secs).floor();
    let rate = (sent + received) as f64 / (0.5 + whole_secs.max(0.0));
    emit(String::new());
    emit(format!(
        "sent {} bytes  received {} bytes  {} bytes/sec",
        num(sent, h),
        num(received, h),
        rate_text(rate, h),
    ));
    emit(format!(
        "total size is {}  speedup is {}{}",
        num(total, h),
        dnum(speedup, 2),
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
    use super::{LOG_MARK, LogFile, Report, Tally, dnum, kinds, num, rate_text};
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

    #[test]
    fn decimals_are_grouped_like_rsyncs_comma_dnum() {
        assert_eq!(dnum(0.0, 2), "0.00");
        assert_eq!(dnum(0.001, 3), "0.001");
        assert_eq!(dnum(999.5, 2), "999.50");
        assert_eq!(dnum(1234.5678, 2), "1,234.57");
        assert_eq!(dnum(200952.0, 2), "200,952.00");
        // rsync keeps printf's rounded fraction beside the truncated whole part.
        assert_eq!(dnum(1999.999, 2), "1,999.00");
    }

    #[test]
    fn the_rate_has_units_only_under_h() {
        assert_eq!(rate_text(578.0, 0), "578.00");
        assert_eq!(rate_text(200952.0, 0), "200,952.00");
        assert_eq!(rate_text(200930.0, 1), "200.93K");
        assert_eq!(rate_text(999.0, 1), "999.00");
        assert_eq!(rate_text(1010.0, 2), "1,010.00");
    }

    #[test]
    fn counts_by_kind_name_only_the_kinds_there_are() {
        assert_eq!(kinds(Tally::default()), "0");
        assert_eq!(
            kinds(Tally([8, 3, 3, 1, 0, 1])),
            "8 (reg: 3, dir: 3, link: 1, special: 1)"
        );
        assert_eq!(kinds(Tally([2, 0, 2, 0, 0, 0])), "2 (dir: 2)");
        assert_eq!(kinds(Tally([1234, 1234, 0, 0, 0, 0])), "1,234 (reg: 1,234)");
    }
}
