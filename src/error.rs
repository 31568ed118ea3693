//! Errors that carry what a user needs to act on them: the operation, the path, the OS error,
//! and the rsync exit code the failure maps to.
//!
//! Per-file problems are not returned up the stack: they are reported through
//! [`crate::report::Report`] and the run goes on (exit 23/24 at the end, as rsync). An
//! [`Error`] that reaches `run_with` ends the run with its code.

use crate::exit::ExitCode;
use std::fmt;
use std::io;

#[derive(Debug)]
pub struct Error {
    pub code: ExitCode,
    msg: String,
}

impl Error {
    pub fn new(code: ExitCode, msg: impl Into<String>) -> Error {
        Error {
            code,
            msg: msg.into(),
        }
    }

    pub fn usage(msg: impl Into<String>) -> Error {
        Error::new(ExitCode::Usage, msg)
    }

    /// `op` is a verb phrase ("open", "create directory"); `path` is shown quoted and escaped.
    pub fn io(code: ExitCode, op: &str, path: impl AsRef<[u8]>, err: &io::Error) -> Error {
        Error::new(code, io_message(op, path.as_ref(), err))
    }

    pub fn message(&self) -> &str {
        &self.msg
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.msg)
    }
}

impl std::error::Error for Error {}

/// The one message shape for a failed file-system call:
/// ``cannot open `dir/file`: Permission denied (os error 13)``.
pub fn io_message(op: &str, path: &[u8], err: &io::Error) -> String {
    format!("cannot {op} `{}`: {err}", show(path))
}

/// Renders a raw path for a terminal the way rsync does: printable UTF-8 as is, anything
/// else (newlines, control bytes but the tab, invalid UTF-8) as `\#ooo` octal escapes, so
/// one name is always one line and a hostile name cannot inject terminal control sequences.
pub fn show(path: &[u8]) -> String {
    let mut out = String::with_capacity(path.len());
    let utf8 = utf8_locale();
    for chunk in path.utf8_chunks() {
        for c in chunk.valid().chars() {
            if (c.is_control() && c != '\t') || (!utf8 && !c.is_ascii()) {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.push_str(&format!("\\#{b:03o}"));
                }
            } else {
                out.push(c);
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\#{b:03o}"));
        }
    }
    out
}

/// The client's answer to [`utf8_locale`], set on a server: its lines are printed by the
/// client, so names are escaped for the client's terminal, not the remote's locale (as
/// rsync's client escapes the names its server sends). 0: unset, 1: ASCII, 2: UTF-8.
static CLIENT_UTF8: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

/// Makes [`show`] escape for the client's locale (`utf8`: whether it shows UTF-8).
pub fn set_client_utf8(utf8: bool) {
    CLIENT_UTF8.store(1 + u8::from(utf8), std::sync::atomic::Ordering::Relaxed);
}

/// Whether the terminal's locale can show UTF-8 (rsync escapes every non-ASCII byte in
/// the C locale, as `isprint()` says there); on a server, the client's terminal's.
pub fn utf8_locale() -> bool {
    match CLIENT_UTF8.load(std::sync::atomic::Ordering::Relaxed) {
        1 => return false,
        2 => return true,
        _ => {}
    }
    static UTF8: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *UTF8.get_or_init(|| {
        let var = ["LC_ALL", "LC_CTYPE", "LANG"]
            .iter()
            .find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()))
            .unwrap_or_default()
            .to_ascii_lowercase();
        var.contains("utf-8") || var.contains("utf8")
    })
}

#[cfg(test)]
mod tests {
    use super::show;

    #[test]
    fn show_escapes_newlines_and_invalid_utf8_like_rsync() {
        assert_eq!(show(b"a\nb"), "a\\#012b");
        if super::utf8_locale() {
            assert_eq!(show(b"caf\xc3\xa9"), "café");
        } else {
            assert_eq!(show(b"caf\xc3\xa9"), "caf\\#303\\#251");
        }
        assert_eq!(show(b"x\xffy"), "x\\#377y");
    }
}
