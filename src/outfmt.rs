//! rsync's `%` escapes for `--out-format` and `--log-file-format`: a format parsed once,
//! then rendered for each listed item.
//!
//! The escapes and modifiers are rsync's (`%[']*[-][WIDTH][']*X`: a width pads on the left,
//! `-` on the right, one `'` groups digits of `%l`/`%b`/`%c` with commas, two give units of
//! 1000, three of 1024). What rsync knows only as a daemon (`%a %h %P %u`) stays in the
//! line as written, as rsync prints it without a daemon, and `%m` is empty. An unknown
//! letter stays as written too.
//!
//! `%b`/`%c` are a file's bytes, known only once it is transferred: [`Format::render`]
//! leaves them as placeholders that [`fill`] replaces when the file is done (rsync prints
//! such lines after the transfer, the others before). The placeholders are NUL-delimited:
//! no name (escaped for the terminal) and no command-line format can hold a NUL.

use crate::tree::{Kind, Meta};

/// One parsed format.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Format {
    /// As the user gave it (sent to a server as is).
    pub text: String,
    pieces: Vec<Piece>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Lit(String),
    Esc(Esc),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Esc {
    letter: char,
    left: bool,
    width: usize,
    humanize: u8,
}

/// What a line is about: the fields the escapes show.
pub struct Fields<'a> {
    /// The `-i` code (`>f+++++++++`), or `*deleting  ` for a deletion.
    pub flags: &'a str,
    /// `%n`: the name as shown (escaped), a directory's with its `/`.
    pub name: &'a str,
    /// `%L`'s arrow and target: `(" -> ", target)` for a symlink, `(" => ", leader)` for a
    /// hard link.
    pub link: Option<(&'a str, &'a str)>,
    /// `%o`: `send`, `recv` or `del.`.
    pub op: &'a str,
    /// The entry's attributes (None for a deletion, which rsync shows as zeros).
    pub meta: Option<&'a Meta>,
    /// `%B`'s kind and permission bits (none, all dashes, for a deletion rsync's client
    /// only hears of).
    pub perms: Option<(Kind, u32)>,
    /// `%U`/`%G`: whether owners and groups are kept (`%U` is 0, `%G` `DEFAULT` if not).
    pub owner: bool,
    pub group: bool,
    /// The item is a transfer: its `%b`/`%c` wait for [`fill`]; for others they are 0.
    pub transfer: bool,
}

impl Format {
    pub fn parse(text: &str) -> Format {
        let mut pieces = Vec::new();
        let mut lit = String::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            if c != '%' {
                lit.push(c);
                continue;
            }
            let mut spec = String::from("%");
            let mut esc = Esc {
                letter: '%',
                left: false,
                width: 0,
                humanize: 0,
            };
            quotes(&mut chars, &mut spec, &mut esc);
            if chars.peek() == Some(&'-') {
                chars.next();
                spec.push('-');
                esc.left = true;
            }
            // (rsync keeps at most a few digits of width; more would not fit its buffer.)
            while let Some(d) = chars.peek().and_then(|c| c.to_digit(10)) {
                chars.next();
                spec.push(char::from_digit(d, 10).unwrap_or('0'));
                esc.width = (esc.width * 10 + d as usize).min(4096);
            }
            quotes(&mut chars, &mut spec, &mut esc);
            match chars.next() {
                // A `%` at the end stays as written.
                None => {
                    lit.push_str(&spec);
                    break;
                }
                Some(letter) if "nfilLbcoptMBUGCm%".contains(letter) => {
                    esc.letter = letter;
                    if !lit.is_empty() {
                        pieces.push(Piece::Lit(std::mem::take(&mut lit)));
                    }
                    pieces.push(Piece::Esc(esc));
                }
                // Daemon-only and unknown escapes are printed as written.
                Some(other) => {
                    lit.push_str(&spec);
                    lit.push(other);
                }
            }
        }
        if !lit.is_empty() {
            pieces.push(Piece::Lit(lit));
        }
        Format {
            text: text.to_string(),
            pieces,
        }
    }

    /// Whether the format has the escape (rsync's `log_format_has`): `%i` makes the
    /// listing `-i`'s (attribute-only changes too), `%i` or `%o` shows deletions in the
    /// format rather than as `deleting NAME`.
    pub fn has(&self, letter: char) -> bool {
        self.pieces
            .iter()
            .any(|p| matches!(p, Piece::Esc(e) if e.letter == letter))
    }

    pub fn render(&self, f: &Fields<'_>) -> String {
        let mut out = String::new();
        for p in &self.pieces {
            match p {
                Piece::Lit(s) => out.push_str(s),
                Piece::Esc(e) => e.render(f, &mut out),
            }
        }
        out
    }
}

/// A run of `'` (each one more step of `%l`'s grouping), before or after the width.
fn quotes(chars: &mut std::iter::Peekable<std::str::Chars<'_>>, spec: &mut String, esc: &mut Esc) {
    while chars.peek() == Some(&'\'') {
        chars.next();
        spec.push('\'');
        esc.humanize = esc.humanize.saturating_add(1);
    }
}

impl Esc {
    fn pad(&self, s: &str, out: &mut String) {
        let n = s.chars().count();
        let fill = self.width.saturating_sub(n);
        if !self.left {
            out.extend(std::iter::repeat_n(' ', fill));
        }
        out.push_str(s);
        if self.left {
            out.extend(std::iter::repeat_n(' ', fill));
        }
    }

    fn render(&self, f: &Fields<'_>, out: &mut String) {
        let meta = f.meta;
        let zero = zero_meta();
        let m = meta.unwrap_or(&zero);
        match self.letter {
            'n' => self.pad(f.name, out),
            'f' => {
                let p = f.name.trim_end_matches('/');
                self.pad(if p.is_empty() { "." } else { p }, out)
            }
            'i' => self.pad(f.flags, out),
            'o' => self.pad(f.op, out),
            'l' => self.pad(&big_num(m.size, self.humanize), out),
            'L' => match f.link {
                Some((arrow, target)) => {
                    out.push_str(arrow);
                    self.pad(target, out);
                }
                // rsync pads an absent target only when a width asks for it.
                None if self.width > 0 => {
                    out.push_str("    ");
                    self.pad("", out);
                }
                None => {}
            },
            'b' | 'c' if f.transfer => {
                out.push('\0');
                out.push(self.letter);
                out.push(if self.left { '-' } else { '+' });
                out.push_str(&self.width.to_string());
                out.push(':');
                out.push_str(&self.humanize.to_string());
                out.push('\0');
            }
            'b' | 'c' => self.pad(&big_num(0, self.humanize), out),
            'p' => self.pad(&std::process::id().to_string(), out),
            't' => self.pad(&timestring(now()), out),
            'M' => self.pad(&timestring(m.mtime).replace(' ', "-"), out),
            'B' => self.pad(&permstring(f.perms), out),
            'U' => self.pad(&(if f.owner { m.uid } else { 0 }).to_string(), out),
            'G' => {
                if f.group {
                    self.pad(&m.gid.to_string(), out)
                } else {
                    self.pad("DEFAULT", out)
                }
            }
            // xsync's digests are not rsync's checksums: shown as rsync shows a file with
            // none (blank, as wide as its 128-bit sums).
            'C' => self.pad(&" ".repeat(32), out),
            'm' => self.pad("", out),
            _ => self.pad("%", out),
        }
    }
}

/// Replaces a line's `%b`/`%c` placeholders with a transferred file's bytes: `sent` by
/// the sender, `checksums` (the size of the basis's block checksums) it received.
pub fn fill(line: &str, sent: u64, checksums: u64) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(start) = rest.find('\0') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let Some(end) = after.find('\0') else {
            rest = after;
            break;
        };
        let spec = &after[..end];
        rest = &after[end + 1..];
        let mut chars = spec.chars();
        let letter = chars.next();
        let left = chars.next() == Some('-');
        let tail: String = chars.collect();
        let (width, humanize) = tail.split_once(':').unwrap_or(("0", "0"));
        let esc = Esc {
            letter: letter.unwrap_or('b'),
            left,
            width: width.parse().unwrap_or(0),
            humanize: humanize.parse().unwrap_or(0),
        };
        let n = if esc.letter == 'c' { checksums } else { sent };
        esc.pad(&big_num(n, esc.humanize), &mut out);
    }
    out.push_str(rest);
    out
}

/// Whether a rendered line still waits for its bytes ([`fill`]).
pub fn waits(line: &str) -> bool {
    line.contains('\0')
}

/// One line of the listing: what stdout shows and what the log file gets, either `None`
/// where that one lists nothing for the item.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Line {
    pub out: Option<String>,
    pub log: Option<String>,
}

impl Line {
    /// A message rather than an item: printed, and logged as rsync logs its messages.
    pub fn message(text: String) -> Line {
        Line {
            log: Some(text.clone()),
            out: Some(text),
        }
    }

    /// Whether it waits for its file's bytes ([`fill`]).
    pub fn waits(&self) -> bool {
        [&self.out, &self.log]
            .into_iter()
            .any(|l| l.as_deref().is_some_and(waits))
    }

    /// The line once its file is done.
    pub fn filled(&self, sent: u64, checksums: u64) -> Line {
        let f = |l: &Option<String>| l.as_deref().map(|l| fill(l, sent, checksums));
        Line {
            out: f(&self.out),
            log: f(&self.log),
        }
    }
}

/// rsync's `do_big_num`: digits, with one `'` grouped by commas, with two or more in
/// units of 1000 or (three) 1024.
fn big_num(n: u64, humanize: u8) -> String {
    match humanize {
        0 => n.to_string(),
        h => crate::progress::num(n, h - 1),
    }
}

/// `ls -l`'s permission letters, without the type (rsync's `%B`); a deletion's all dashes.
fn permstring(m: Option<(Kind, u32)>) -> String {
    let Some((kind, mode)) = m else {
        return "---------".to_string();
    };
    // (A symlink's own mode is 0777 on Linux whatever lstat reports elsewhere.)
    let mode = if kind == Kind::Symlink { 0o777 } else { mode };
    let mut s: Vec<char> = "rwxrwxrwx"
        .chars()
        .enumerate()
        .map(|(i, c)| if mode & (0o400 >> i) != 0 { c } else { '-' })
        .collect();
    for (bit, at, on, off) in [
        (0o4000, 2, 's', 'S'),
        (0o2000, 5, 's', 'S'),
        (0o1000, 8, 't', 'T'),
    ] {
        if mode & bit != 0 {
            s[at] = if s[at] == 'x' { on } else { off };
        }
    }
    s.into_iter().collect()
}

/// What rsync shows for a deletion's attributes: its record of the name has none.
fn zero_meta() -> Meta {
    Meta {
        kind: Kind::File,
        mode: 0,
        size: 0,
        mtime: 0,
        mtime_nsec: 0,
        uid: 0,
        gid: 0,
        rdev: 0,
        dev: 0,
        ino: 0,
        nlink: 0,
    }
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// rsync's `timestring`: `YYYY/MM/DD HH:MM:SS` in local time (the log's prefix, `%t`, and
/// `%M` with the blank as `-`).
pub fn timestring(t: i64) -> String {
    let (y, mo, d, h, mi, s) = local_time(t);
    format!("{y:04}/{mo:02}/{d:02} {h:02}:{mi:02}:{s:02}")
}

/// The broken-down local time, from the C library (which knows the zone: `TZ` or
/// /etc/localtime), as rsync gets it.
fn local_time(t: i64) -> (i32, i32, i32, i32, i32, i32) {
    use nix::libc;
    let time: libc::time_t = t as libc::time_t;
    // SAFETY: localtime_r reads `time` and writes only into `tm`, which lives for the call;
    // a zeroed `tm` is a valid value of the plain C struct.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    let ok = unsafe { !libc::localtime_r(&time, &mut tm).is_null() };
    if !ok {
        return (1970, 1, 1, 0, 0, 0);
    }
    (
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file() -> Meta {
        Meta {
            kind: Kind::File,
            mode: 0o644,
            size: 1234567,
            uid: 1000,
            gid: 100,
            ..zero_meta()
        }
    }

    fn fields<'a>(m: &'a Meta, transfer: bool) -> Fields<'a> {
        Fields {
            flags: ">f+++++++++",
            name: "d/a",
            link: None,
            op: "send",
            meta: Some(m),
            perms: Some((m.kind, m.mode)),
            owner: true,
            group: false,
            transfer,
        }
    }

    #[test]
    fn escapes_are_rsyncs() {
        let m = file();
        let f = fields(&m, false);
        let r = |s: &str| Format::parse(s).render(&f);
        assert_eq!(r("%i %n%L"), ">f+++++++++ d/a");
        assert_eq!(
            r("%o|%f|%l|%'l|%''l|%'''l"),
            "send|d/a|1234567|1,234,567|1.23M|1.18M"
        );
        assert_eq!(r("[%10n][%-6n][%3n]"), "[       d/a][d/a   ][d/a]");
        assert_eq!(r("%U:%G:%B"), "1000:DEFAULT:rw-r--r--");
        assert_eq!(r("%b %c %%"), "0 0 %");
        // Daemon-only and unknown escapes, and a lone % at the end, stay as written.
        assert_eq!(r("%h %a %P %u %z %5q [%m] %"), "%h %a %P %u %z %5q [] %");
        assert_eq!(r("%L|%5L|"), "|         |");
    }

    #[test]
    fn links_show_their_arrow() {
        let m = file();
        let mut f = fields(&m, false);
        f.link = Some((" -> ", "target"));
        assert_eq!(Format::parse("%n%L").render(&f), "d/a -> target");
        assert_eq!(Format::parse("%n%8L").render(&f), "d/a ->   target");
    }

    #[test]
    fn bytes_wait_for_the_transfer() {
        let m = file();
        let f = fields(&m, true);
        let fmt = Format::parse("%n %b %-6c| %''b");
        let line = fmt.render(&f);
        assert!(waits(&line));
        assert_eq!(fill(&line, 2_000_000, 16), "d/a 2000000 16    | 2.00M");
        assert!(!waits(&Format::parse("%i %n%L").render(&f)));
    }

    #[test]
    fn permissions_as_ls_shows_them() {
        assert_eq!(permstring(Some((Kind::File, 0o4755))), "rwsr-xr-x");
        assert_eq!(permstring(Some((Kind::Dir, 0o1777))), "rwxrwxrwt");
        assert_eq!(permstring(Some((Kind::File, 0o2644))), "rw-r-Sr--");
        assert_eq!(permstring(None), "---------");
    }

    #[test]
    fn which_escapes_a_format_has() {
        let f = Format::parse("%%i %'-5o");
        assert!(!f.has('i'));
        assert!(f.has('o'));
    }
}
