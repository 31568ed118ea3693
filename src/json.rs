//! `--json`: the run as NDJSON on stdout, for CI jobs and scripts (docs/JSON.md has the
//! schema; its version is [`SCHEMA`]).
//!
//! One record per file transferred, deleted or failed, and always one final `summary`
//! record, also when the run is cut short: by a signal (written by the signal thread, see
//! [`interrupted`]) or by a lost connection (an ordinary error end). The log counts for
//! the summary from its own events, so the signal thread can write a true summary without
//! the engine's state; the tree's totals and the wire's bytes are handed to it as they
//! become known.
//!
//! On a push or a pull the far end's receiver or sender has the events: the server is
//! given `--json`, writes its records into the listing it relays, and the client counts
//! and prints them as its own ([`Log::relayed`]). The server writes no summary.

use serde::{Deserialize, Serialize};
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

/// The schema's version: every record carries it as `"v"`.
pub const SCHEMA: u32 = 1;

/// A per-file record.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FileEvent {
    pub v: u32,
    /// `"file"`
    #[serde(rename = "type")]
    pub kind: String,
    /// `created`, `updated`, `deleted` or `failed`.
    pub action: String,
    /// The path inside the transfer, as rsync's `-i` prints it (not escaped: JSON strings
    /// carry any name; invalid UTF-8 is replaced by U+FFFD).
    pub path: String,
    /// rsync's itemize code (`>f+++++++++`), where there is one.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub itemize: Option<String>,
    /// The file's size (transferred files).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub bytes: Option<u64>,
    /// Bytes sent as data (transferred files).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub literal: Option<u64>,
    /// Bytes rebuilt from the old version (transferred files).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub matched: Option<u64>,
    /// Why it failed (`failed`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<String>,
    /// rsync's exit code for the failure (`failed`): 23, 24 for a vanished file, 11 …
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub code: Option<i32>,
}

/// An error in the summary's list.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ErrorEntry {
    /// The path it concerns, where it concerns one.
    pub path: Option<String>,
    pub message: String,
    /// rsync's exit code for it.
    pub code: i32,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Counts {
    /// Entries of the source tree.
    pub scanned: u64,
    pub created: u64,
    pub updated: u64,
    pub deleted: u64,
    /// Source files neither created, updated nor failed.
    pub unchanged: u64,
    pub errors: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Bytes {
    /// The source tree's total size.
    pub total: u64,
    pub literal: u64,
    pub matched: u64,
    /// On the connection (0 for a local copy): sent and received by this end.
    pub sent: u64,
    pub received: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Durations {
    /// Walking the source tree (a local copy; 0 where the far end did it).
    pub scan: f64,
    /// Everything after the scan.
    pub transfer: f64,
    pub total: f64,
}

/// The final record.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Summary {
    pub v: u32,
    /// `"summary"`
    #[serde(rename = "type")]
    pub kind: String,
    pub exit_code: i32,
    /// The run was cut short by a signal.
    pub interrupted: bool,
    pub counts: Counts,
    pub bytes: Bytes,
    /// Seconds.
    pub durations: Durations,
    pub errors: Vec<ErrorEntry>,
}

/// The client's record of the run.
pub struct Log {
    out: Mutex<Box<dyn Write + Send>>,
    started: Instant,
    created: AtomicU64,
    updated: AtomicU64,
    deleted: AtomicU64,
    failed: AtomicU64,
    literal: AtomicU64,
    matched: AtomicU64,
    scanned: AtomicU64,
    source_files: AtomicU64,
    total: AtomicU64,
    sent: AtomicU64,
    received: AtomicU64,
    scan_ms: AtomicU64,
    errors: Mutex<Vec<ErrorEntry>>,
    ended: AtomicBool,
}

static LOG: OnceLock<Log> = OnceLock::new();

/// Starts the client's log, writing to `out` (stdout). Once per process.
pub fn start(out: Box<dyn Write + Send>) -> &'static Log {
    LOG.get_or_init(|| Log {
        out: Mutex::new(out),
        started: Instant::now(),
        created: AtomicU64::new(0),
        updated: AtomicU64::new(0),
        deleted: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        literal: AtomicU64::new(0),
        matched: AtomicU64::new(0),
        scanned: AtomicU64::new(0),
        source_files: AtomicU64::new(0),
        total: AtomicU64::new(0),
        sent: AtomicU64::new(0),
        received: AtomicU64::new(0),
        scan_ms: AtomicU64::new(0),
        errors: Mutex::new(Vec::new()),
        ended: AtomicBool::new(false),
    })
}

/// A signal ends the run: the summary, marked interrupted, if a log was started and has
/// not ended.
pub fn interrupted(code: i32) {
    if let Some(log) = LOG.get() {
        log.finish(code, true);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl FileEvent {
    pub fn new(action: &str, path: String) -> FileEvent {
        FileEvent {
            v: SCHEMA,
            kind: "file".into(),
            action: action.into(),
            path,
            itemize: None,
            bytes: None,
            literal: None,
            matched: None,
            error: None,
            code: None,
        }
    }

    pub fn to_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

impl Log {
    fn write(&self, line: &str) {
        if self.ended.load(Relaxed) {
            return;
        }
        let mut o = lock(&self.out);
        let _ = writeln!(o, "{line}");
    }

    /// A file event of this end (or relayed from the far end): counted and printed.
    pub fn event(&self, e: &FileEvent) {
        match e.action.as_str() {
            "created" => self.created.fetch_add(1, Relaxed),
            "updated" => self.updated.fetch_add(1, Relaxed),
            "deleted" => self.deleted.fetch_add(1, Relaxed),
            "failed" => self.failed.fetch_add(1, Relaxed),
            _ => 0,
        };
        self.literal.fetch_add(e.literal.unwrap_or(0), Relaxed);
        self.matched.fetch_add(e.matched.unwrap_or(0), Relaxed);
        if e.action == "failed" {
            lock(&self.errors).push(ErrorEntry {
                path: Some(e.path.clone()),
                message: e.error.clone().unwrap_or_default(),
                code: e.code.unwrap_or(23),
            });
        }
        self.write(&e.to_line());
    }

    /// An error that is not one file's failure (it has no event of its own).
    pub fn error(&self, path: Option<String>, message: &str, code: i32) {
        lock(&self.errors).push(ErrorEntry {
            path,
            message: message.to_string(),
            code,
        });
    }

    /// Text the far end relayed: its records, counted as this end's.
    pub fn relayed(&self, text: &str) {
        for line in text.lines() {
            // Lines that are no record (a server not given --json would send listing
            // text; this client always gives it) are dropped.
            if let Ok(e) = serde_json::from_str::<FileEvent>(line) {
                self.event(&e);
            }
        }
    }

    /// The source tree's entries, files and size, once scanned (or described by the far
    /// end's totals).
    pub fn scanned(&self, entries: u64, files: u64, size: u64, scan_secs: f64) {
        self.scanned.store(entries, Relaxed);
        self.source_files.store(files, Relaxed);
        self.total.store(size, Relaxed);
        self.scan_ms.store((scan_secs * 1000.0) as u64, Relaxed);
    }

    /// The connection's bytes, at its end.
    pub fn wire(&self, sent: u64, received: u64) {
        self.sent.store(sent, Relaxed);
        self.received.store(received, Relaxed);
    }

    /// The summary, once: from the normal end (`interrupted` false) or a signal.
    pub fn finish(&self, exit_code: i32, interrupted: bool) {
        let mut o = lock(&self.out);
        if self.ended.swap(true, Relaxed) {
            return;
        }
        let g = |a: &AtomicU64| a.load(Relaxed);
        let errors = lock(&self.errors).clone();
        let total_s = self.started.elapsed().as_secs_f64();
        let scan_s = g(&self.scan_ms) as f64 / 1000.0;
        let changed = g(&self.created) + g(&self.updated) + g(&self.failed);
        let s = Summary {
            v: SCHEMA,
            kind: "summary".into(),
            exit_code,
            interrupted,
            counts: Counts {
                scanned: g(&self.scanned),
                created: g(&self.created),
                updated: g(&self.updated),
                deleted: g(&self.deleted),
                unchanged: g(&self.source_files).saturating_sub(changed),
                errors: errors.len() as u64,
            },
            bytes: Bytes {
                total: g(&self.total),
                literal: g(&self.literal),
                matched: g(&self.matched),
                sent: g(&self.sent),
                received: g(&self.received),
            },
            durations: Durations {
                scan: scan_s,
                transfer: (total_s - scan_s).max(0.0),
                total: total_s,
            },
            errors,
        };
        let _ = writeln!(o, "{}", serde_json::to_string(&s).unwrap_or_default());
        let _ = o.flush();
    }
}
