//! rsync's include/exclude/filter rules, matched the way rsync 3.x matches them.
//!
//! A [`Filters`] is an ordered list of rules; the first rule whose pattern matches a
//! path decides (`include` keeps it, `exclude` drops it) and a path no rule matches
//! is kept. The pattern language is rsync's, not a shell glob:
//!
//! - a leading `/` anchors the pattern at the transfer root, a trailing `/` makes it
//!   match directories only;
//! - a pattern without any `/` (ignoring a trailing one) and without `**` is matched
//!   against the last path component only; one with an inner `/` is matched against
//!   as many trailing components as it has; one with `**` is matched against the
//!   whole path, retried after every `/` unless it starts with `**`;
//! - `*` and `?` never cross a `/`, `**` does, `[...]` never matches `/`, and
//!   `dir/***` matches `dir` itself as well as everything below it;
//! - a pattern with none of `*?[` is compared literally, so a `\` in it is a plain
//!   character there (rsync's quirk), while in a wildcard pattern `\` escapes.
//!
//! Each rule applies to one or both ends: the sender hides entries from the
//! transfer, the receiver protects entries from `--delete`. Plain include/exclude
//! rules apply to both ends unless `--delete-excluded` is given, in which case they
//! become sender-only so that excluded files on the receiver get deleted.
//!
//! The matcher follows rsync's `exclude.c` (`rule_matches`) and `wildmatch.c`
//! (`dowild`) closely, including their return codes, because the differences
//! between "no match here" and "no match anywhere" are what make `*` stop at `/`
//! and `**` retry after each slash; a cleaner-looking glob engine would differ in
//! corner cases that users' filter files depend on.

use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// Which end asks: the sender hides entries from the transfer; the receiver protects
/// entries from `--delete`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Sender,
    Receiver,
}

/// The default kind for `--include` / `--exclude` / `--include-from` / `--exclude-from`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuleKind {
    Include,
    Exclude,
}

#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    /// A valid rsync rule this implementation does not support (merge files, CVS
    /// mode, xattr or absolute-path rules). rsync would accept it, so silently
    /// ignoring it could transfer or delete the wrong files.
    #[error("unsupported filter rule `{rule}`: {what} not supported")]
    Unsupported { rule: String, what: &'static str },
    /// A rule rsync itself would reject (rsync exits with status 1).
    #[error("invalid filter rule `{rule}`: {reason}")]
    Syntax { rule: String, reason: String },
    /// An `--include-from` / `--exclude-from` file could not be read.
    #[error("cannot read filter file `{}`: {error}", path.display())]
    Io { path: PathBuf, error: io::Error },
}

/// Which ends a rule applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sides {
    /// A plain include/exclude: both ends, but sender-only under `--delete-excluded`.
    Default,
    Sender,
    Receiver,
    /// Both `s` and `r` modifiers: both ends even under `--delete-excluded`.
    Both,
}

#[derive(Clone, Debug)]
struct Rule {
    /// The pattern without its directory-only trailing slash; a leading `/` is kept
    /// (it marks the rule anchored).
    pattern: Vec<u8>,
    include: bool,
    sides: Sides,
    negate: bool,
    dir_only: bool,
    /// Number of `/` in `pattern`, counting a leading one: decides how many trailing
    /// path components an unanchored pattern is matched against.
    slash_cnt: usize,
    /// Contains one of `*?[`; otherwise the pattern is compared literally.
    wild: bool,
    /// Contains `**`.
    wild2: bool,
    /// Starts with `**`: matched against "/" + path, from the start only.
    wild2_prefix: bool,
    /// Ends with `***`: a directory is also matched as "path/" so `dir/***` hits `dir`.
    wild3_suffix: bool,
}

/// An ordered rule list; first match wins. Cheap to share between threads: matching
/// never allocates and takes `&self`.
#[derive(Clone, Debug, Default)]
pub struct Filters {
    rules: Vec<Rule>,
    /// Every line added, as given, so the rules can be replayed on the far end of a
    /// connection (`--exclude-from` files are read on the client, as rsync does).
    log: Vec<(Option<RuleKind>, Vec<u8>)>,
}

/// How a rule line is read: `-f` rules name their kind; `--include`/`--exclude`
/// patterns have a default kind that a leading "+ " or "- " overrides.
#[derive(Clone, Copy)]
enum Syntax {
    Filter,
    OldPrefixes(RuleKind),
}

impl Filters {
    pub fn new() -> Self {
        Self::default()
    }

    /// `--include PAT` / `--exclude PAT`: `pattern` is one pattern; like rsync, a
    /// leading "+ " or "- " overrides the kind and a lone "!" clears the list.
    pub fn add_pattern(&mut self, pattern: &str, kind: RuleKind) -> Result<(), FilterError> {
        self.add_bytes(pattern.as_bytes(), Syntax::OldPrefixes(kind))
    }

    /// `-f`/`--filter RULE`, e.g. `- *.o`, `+ */`, `exclude,s tmp/`, `P keep/`, `-! */`,
    /// `!`. Merge rules are refused with [`FilterError::Unsupported`].
    pub fn add_rule(&mut self, rule: &str) -> Result<(), FilterError> {
        self.add_bytes(rule.as_bytes(), Syntax::Filter)
    }

    /// `--include-from FILE` / `--exclude-from FILE` (`-` = stdin): one pattern per
    /// line (CR or LF ends a line); empty lines and lines starting with `;` or `#`
    /// are skipped. Lines are bytes, so patterns need not be UTF-8.
    /// `from0` (rsync's `--from0`): rules are NUL-separated.
    pub fn add_from_file(
        &mut self,
        path: &Path,
        kind: RuleKind,
        from0: bool,
    ) -> Result<(), FilterError> {
        let io_err = |error| FilterError::Io {
            path: path.to_path_buf(),
            error,
        };
        let mut data = Vec::new();
        if path.as_os_str() == "-" {
            io::stdin().lock().read_to_end(&mut data).map_err(io_err)?;
        } else {
            data = std::fs::read(path).map_err(io_err)?;
        }
        let lines: Vec<&[u8]> = if from0 {
            data.split(|&b| b == 0).collect()
        } else {
            data.split(|&b| b == b'\n' || b == b'\r').collect()
        };
        for line in lines {
            if line.is_empty() || line[0] == b';' || line[0] == b'#' {
                continue;
            }
            self.add_bytes(line, Syntax::OldPrefixes(kind))?;
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Whether any rule can apply on `side`; lets a caller skip filter checks (and
    /// the receiver skip its protection pass) when none can.
    pub fn applies_to(&self, side: Side, delete_excluded: bool) -> bool {
        self.rules
            .iter()
            .any(|r| r.applies_to(side, delete_excluded))
    }

    /// Is this entry excluded for `side`? `rel_path` is relative to the transfer
    /// root, `/`-separated, without leading or trailing slash. The caller does not
    /// descend into excluded directories, so parents are not re-checked here.
    pub fn excluded(
        &self,
        side: Side,
        rel_path: &[u8],
        is_dir: bool,
        delete_excluded: bool,
    ) -> bool {
        self.rules
            .iter()
            .filter(|r| r.applies_to(side, delete_excluded))
            .find(|r| r.matches(rel_path, is_dir))
            .is_some_and(|r| !r.include)
    }

    /// The rule lines added so far: `(None, rule)` for `-f` syntax, `(Some(kind),
    /// pattern)` for `--include`/`--exclude` patterns.
    pub fn lines(&self) -> &[(Option<RuleKind>, Vec<u8>)] {
        &self.log
    }

    /// Replays one line from [`lines`](Self::lines) (received from the peer).
    pub fn add_line(&mut self, kind: Option<RuleKind>, text: &[u8]) -> Result<(), FilterError> {
        match kind {
            None => self.add_bytes(text, Syntax::Filter),
            Some(k) => self.add_bytes(text, Syntax::OldPrefixes(k)),
        }
    }

    fn add_bytes(&mut self, text: &[u8], syntax: Syntax) -> Result<(), FilterError> {
        self.log.push((
            match syntax {
                Syntax::Filter => None,
                Syntax::OldPrefixes(k) => Some(k),
            },
            text.to_vec(),
        ));
        // C strings end at NUL; a pattern cannot contain one.
        let text = text.split(|&b| b == 0).next().unwrap_or_default();
        match parse_rule(text, syntax)? {
            Parsed::Nothing => {}
            Parsed::Clear => self.rules.clear(),
            Parsed::Rule(rule) => self.rules.push(rule),
        }
        Ok(())
    }
}

enum Parsed {
    Nothing,
    Clear,
    Rule(Rule),
}

fn syntax_err(text: &[u8], reason: impl Into<String>) -> FilterError {
    FilterError::Syntax {
        rule: String::from_utf8_lossy(text).into_owned(),
        reason: reason.into(),
    }
}

fn unsupported(text: &[u8], what: &'static str) -> FilterError {
    FilterError::Unsupported {
        rule: String::from_utf8_lossy(text).into_owned(),
        what,
    }
}

/// Kind and modifiers of a rule, before its pattern is analysed.
struct Head {
    include: bool,
    sides: Sides,
    negate: bool,
    clear: bool,
}

/// Parses one rule the way rsync's `parse_rule_tok` does: a kind (letter or word),
/// optional modifiers (after an optional `,`), then exactly one space or `_`, then
/// the pattern verbatim (trailing whitespace included).
fn parse_rule(text: &[u8], syntax: Syntax) -> Result<Parsed, FilterError> {
    if text.is_empty() {
        return Ok(Parsed::Nothing);
    }
    let (head, pat) = match syntax {
        Syntax::OldPrefixes(kind) => {
            let mut head = Head {
                include: kind == RuleKind::Include,
                sides: Sides::Default,
                negate: false,
                clear: false,
            };
            let pat = match text {
                [b'-', b' ', rest @ ..] => {
                    head.include = false;
                    rest
                }
                [b'+', b' ', rest @ ..] => {
                    head.include = true;
                    rest
                }
                // A lone "!" clears; "!foo" is an ordinary pattern.
                [b'!'] => {
                    head.clear = true;
                    &[][..]
                }
                _ => text,
            };
            (head, pat)
        }
        Syntax::Filter => parse_filter_head(text)?,
    };
    if head.clear {
        if !pat.is_empty() {
            return Err(syntax_err(text, "'!' rule has trailing characters"));
        }
        return Ok(Parsed::Clear);
    }
    if pat.is_empty() {
        return Err(syntax_err(text, "unexpected end of filter rule"));
    }
    Ok(Parsed::Rule(Rule::new(pat, head)))
}

fn parse_filter_head(text: &[u8]) -> Result<(Head, &[u8]), FilterError> {
    const WORDS: &[(&[u8], u8)] = &[
        (b"clear", b'!'),
        (b"dir-merge", b':'),
        (b"exclude", b'-'),
        (b"hide", b'H'),
        (b"include", b'+'),
        (b"merge", b'.'),
        (b"protect", b'P'),
        (b"risk", b'R'),
        (b"show", b'S'),
    ];
    // `i` indexes the last byte of the kind (or the `,` after it); modifiers follow.
    let (kind, mut i) = match WORDS.iter().find(|(w, _)| w[0] == text[0]) {
        Some(&(word, ch)) => {
            let after = text.get(word.len()).copied();
            if !text.starts_with(word) {
                return Err(syntax_err(text, "unknown filter rule"));
            }
            match after {
                None | Some(b'_') => (ch, word.len() - 1),
                Some(c) if c.is_ascii_whitespace() => (ch, word.len() - 1),
                Some(b',') => (ch, word.len()),
                Some(_) => return Err(syntax_err(text, "unknown filter rule")),
            }
        }
        None => (text[0], usize::from(text.get(1) == Some(&b','))),
    };
    let mut head = Head {
        include: false,
        sides: Sides::Default,
        negate: false,
        clear: false,
    };
    let mut side_in_kind = false;
    match kind {
        b'.' | b':' => return Err(unsupported(text, "merge and dir-merge rules are")),
        b'+' => head.include = true,
        b'-' => {}
        b'S' | b'H' => {
            head.include = kind == b'S';
            head.sides = Sides::Sender;
            side_in_kind = true;
        }
        b'R' | b'P' => {
            head.include = kind == b'R';
            head.sides = Sides::Receiver;
            side_in_kind = true;
        }
        b'!' => head.clear = true,
        _ => return Err(syntax_err(text, "unknown filter rule")),
    }
    if !head.clear {
        loop {
            i += 1;
            let Some(&m) = text.get(i) else { break };
            if m == b' ' || m == b'_' {
                break;
            }
            let invalid = || {
                syntax_err(
                    text,
                    format!("invalid modifier '{}' at position {i}", m as char),
                )
            };
            match m {
                b'!' => head.negate = true,
                b's' | b'r' if side_in_kind => return Err(invalid()),
                b's' | b'r' => {
                    let new = if m == b's' {
                        Sides::Sender
                    } else {
                        Sides::Receiver
                    };
                    head.sides = match head.sides {
                        Sides::Default => new,
                        s if s == new => s,
                        _ => Sides::Both,
                    };
                }
                b'/' => return Err(unsupported(text, "the '/' (absolute path) modifier is")),
                b'p' => return Err(unsupported(text, "the 'p' (perishable) modifier is")),
                b'x' => return Err(unsupported(text, "the 'x' (xattr) modifier is")),
                b'C' if !side_in_kind => {
                    return Err(unsupported(text, "the 'C' (CVS) modifier is"));
                }
                // 'e', 'n', 'w', '+', '-' are only valid on merge rules.
                _ => return Err(invalid()),
            }
        }
    }
    // Skip the single separator after the kind and modifiers.
    let start = (i + 1).min(text.len());
    Ok((head, &text[start..]))
}

impl Rule {
    fn new(pat: &[u8], head: Head) -> Rule {
        let mut pattern = pat.to_vec();
        let mut dir_only = false;
        // rsync: only a pattern longer than "/" can be directory-only.
        if pattern.len() > 1 && pattern.last() == Some(&b'/') {
            pattern.pop();
            dir_only = true;
        }
        let slash_cnt = pattern.iter().filter(|&&b| b == b'/').count();
        let wild = pattern.iter().any(|b| matches!(b, b'*' | b'?' | b'['));
        let star2 = pattern.windows(2).position(|w| w == b"**");
        Rule {
            include: head.include,
            sides: head.sides,
            negate: head.negate,
            dir_only,
            slash_cnt,
            wild,
            wild2: wild && star2.is_some(),
            wild2_prefix: wild && star2 == Some(0),
            wild3_suffix: wild && star2.is_some() && pattern.ends_with(b"***"),
            pattern,
        }
    }

    fn applies_to(&self, side: Side, delete_excluded: bool) -> bool {
        match (self.sides, side) {
            (Sides::Both, _)
            | (Sides::Sender, Side::Sender)
            | (Sides::Receiver, Side::Receiver) => true,
            (Sides::Default, Side::Sender) => true,
            (Sides::Default, Side::Receiver) => !delete_excluded,
            _ => false,
        }
    }

    /// rsync's `rule_matches`: true when the rule fires (negation included).
    fn matches(&self, path: &[u8], is_dir: bool) -> bool {
        if path.is_empty() {
            return false;
        }
        let hit = !self.negate;
        // rsync decides directory-only before looking at the pattern, so a negated
        // directory-only rule fires on every non-directory.
        if self.dir_only && !is_dir {
            return !hit;
        }
        let mut name = path;
        let mut prefix: &[u8] = b"";
        if self.slash_cnt == 0 && !self.wild2 {
            if let Some(p) = name.iter().rposition(|&b| b == b'/') {
                name = &name[p + 1..];
            }
        } else if self.wild2_prefix {
            // Lets "**/foo" match "foo" at the root.
            prefix = b"/";
        }
        let suffix: &[u8] = if is_dir && self.wild3_suffix {
            b"/"
        } else {
            b""
        };
        let (anchored, pattern) = match self.pattern.split_first() {
            Some((b'/', rest)) => (true, rest),
            _ => (false, &self.pattern[..]),
        };
        let matched = if self.wild {
            let text = Joined([prefix, name, suffix]);
            let where_ = if !anchored && self.slash_cnt > 0 && !self.wild2 {
                Where::Trailing(self.slash_cnt + 1)
            } else if !anchored && !self.wild2_prefix && self.wild2 {
                Where::AfterAnySlash
            } else {
                Where::Start
            };
            wildmatch_at(pattern, &text, where_)
        } else if anchored {
            name == pattern
        } else {
            name.ends_with(pattern)
                && (name.len() == pattern.len() || name[name.len() - pattern.len() - 1] == b'/')
        };
        if matched { hit } else { !hit }
    }
}

/// A string made of up to three pieces, matched as if concatenated, so matching a
/// path as "/" + path + "/" does not allocate.
struct Joined<'a>([&'a [u8]; 3]);

impl Joined<'_> {
    fn len(&self) -> usize {
        self.0.iter().map(|p| p.len()).sum()
    }

    fn at(&self, mut i: usize) -> u8 {
        for part in &self.0 {
            if i < part.len() {
                return part[i];
            }
            i -= part.len();
        }
        0
    }

    fn has_slash_from(&self, i: usize) -> bool {
        (i..self.len()).any(|j| self.at(j) == b'/')
    }
}

/// Where a pattern may start matching (rsync's `slash_handling`).
enum Where {
    /// At the start of the text only.
    Start,
    /// At the start of the last N `/`-separated components (no match if fewer).
    Trailing(usize),
    /// At the start or right after any `/`.
    AfterAnySlash,
}

/// Outcome of one matching attempt; the two aborts tell callers that retrying at a
/// later position cannot help (`AbortAll`), or can only help a `**` (`AbortToStarStar`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum M {
    False,
    True,
    AbortAll,
    AbortToStarStar,
}

/// Whether one file name matches a shell-style pattern (`*`, `?`, `[...]`), with the same
/// matcher as the filter rules: for the remote shell's wildcards in rsync's remote sources.
pub fn name_matches(pattern: &[u8], name: &[u8]) -> bool {
    wildmatch_at(pattern, &Joined([name, b"", b""]), Where::Start)
}

fn wildmatch_at(pattern: &[u8], text: &Joined, where_: Where) -> bool {
    let start = match where_ {
        Where::Trailing(n) => match trailing_components(text, n) {
            Some(s) => s,
            None => return false,
        },
        _ => 0,
    };
    let mut m = dowild(pattern, 0, text, start);
    if m != M::True && matches!(where_, Where::AfterAnySlash) && m != M::AbortAll {
        m = M::False;
        for t in start..text.len() {
            if text.at(t) == b'/' {
                let r = dowild(pattern, 0, text, t + 1);
                if r != M::False && r != M::AbortToStarStar {
                    m = r;
                    break;
                }
            }
        }
    }
    m == M::True
}

/// Start index of the last `n` components, or None when there are fewer.
fn trailing_components(text: &Joined, mut n: usize) -> Option<usize> {
    for i in (0..text.len()).rev() {
        if text.at(i) == b'/' {
            n -= 1;
            if n == 0 {
                return Some(i + 1);
            }
        }
    }
    (n == 1).then_some(0)
}

/// rsync's `dowild`: match `p[pi..]` against `t[ti..]`. Long because it is wildmatch's
/// one loop over the pattern (`*`, `**`, `?`, `[...]` classes, escapes, the joined
/// path's segments) and its backtracking needs all of it in one frame.
fn dowild(p: &[u8], mut pi: usize, t: &Joined, mut ti: usize) -> M {
    let pat = |i: usize| p.get(i).copied().unwrap_or(0);
    let tlen = t.len();
    while pi < p.len() {
        let mut p_ch = p[pi];
        if ti >= tlen && p_ch != b'*' {
            return M::AbortAll;
        }
        let t_ch = t.at(ti);
        match p_ch {
            b'?' => {
                if t_ch == b'/' {
                    return M::False;
                }
            }
            b'*' => {
                pi += 1;
                let special = pat(pi) == b'*';
                while pat(pi) == b'*' {
                    pi += 1;
                }
                if pi >= p.len() {
                    // Trailing "**" matches everything, trailing "*" only what has no '/'.
                    return if !special && t.has_slash_from(ti) {
                        M::False
                    } else {
                        M::True
                    };
                }
                while ti < tlen {
                    let m = dowild(p, pi, t, ti);
                    if m != M::False {
                        if !special || m != M::AbortToStarStar {
                            return m;
                        }
                    } else if !special && t.at(ti) == b'/' {
                        return M::AbortToStarStar;
                    }
                    ti += 1;
                }
                return M::AbortAll;
            }
            b'[' => {
                pi += 1;
                p_ch = pat(pi);
                if p_ch == b'^' {
                    p_ch = b'!';
                }
                let negated = p_ch == b'!';
                if negated {
                    pi += 1;
                    p_ch = pat(pi);
                }
                let mut prev: u8 = 0;
                let mut matched = false;
                loop {
                    if p_ch == 0 {
                        return M::AbortAll;
                    }
                    if p_ch == b'\\' {
                        pi += 1;
                        p_ch = pat(pi);
                        if p_ch == 0 {
                            return M::AbortAll;
                        }
                        matched |= t_ch == p_ch;
                    } else if p_ch == b'-' && prev != 0 && pat(pi + 1) != 0 && pat(pi + 1) != b']' {
                        pi += 1;
                        p_ch = pat(pi);
                        if p_ch == b'\\' {
                            pi += 1;
                            p_ch = pat(pi);
                            if p_ch == 0 {
                                return M::AbortAll;
                            }
                        }
                        matched |= t_ch <= p_ch && t_ch >= prev;
                        p_ch = 0; // a range end cannot start another range
                    } else if p_ch == b'[' && pat(pi + 1) == b':' {
                        let s = pi + 2;
                        let mut e = s;
                        while pat(e) != 0 && pat(e) != b']' {
                            e += 1;
                        }
                        if pat(e) == 0 {
                            return M::AbortAll;
                        }
                        if e == s || pat(e - 1) != b':' {
                            // No ":]": the '[' is an ordinary member.
                            matched |= t_ch == b'[';
                        } else {
                            match char_class(&p[s..e - 1], t_ch) {
                                Some(m) => matched |= m,
                                None => return M::AbortAll,
                            }
                            pi = e;
                            p_ch = 0;
                        }
                    } else {
                        matched |= t_ch == p_ch;
                    }
                    prev = p_ch;
                    pi += 1;
                    p_ch = pat(pi);
                    if p_ch == b']' {
                        break;
                    }
                }
                if matched == negated || t_ch == b'/' {
                    return M::False;
                }
            }
            _ => {
                if p_ch == b'\\' {
                    pi += 1;
                    p_ch = pat(pi);
                }
                // A trailing '\' compares NUL, which no text byte equals.
                if t_ch != p_ch || pi >= p.len() {
                    return M::False;
                }
            }
        }
        pi += 1;
        ti += 1;
    }
    if ti < tlen { M::False } else { M::True }
}

/// `[:name:]` classes in the C locale (rsync is 8-bit clean, bytes >= 0x80 are in no
/// class). None for an unknown class name, which rsync treats as a failed match.
fn char_class(name: &[u8], c: u8) -> Option<bool> {
    Some(match name {
        b"alnum" => c.is_ascii_alphanumeric(),
        b"alpha" => c.is_ascii_alphabetic(),
        b"blank" => c == b' ' || c == b'\t',
        b"cntrl" => c.is_ascii_control(),
        b"digit" => c.is_ascii_digit(),
        b"graph" => c.is_ascii_graphic(),
        b"lower" => c.is_ascii_lowercase(),
        b"print" => c.is_ascii_graphic() || c == b' ',
        b"punct" => c.is_ascii_punctuation(),
        b"space" => matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r'),
        b"upper" => c.is_ascii_uppercase(),
        b"xdigit" => c.is_ascii_hexdigit(),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filters(rules: &[&str]) -> Filters {
        let mut f = Filters::new();
        for r in rules {
            f.add_rule(r).unwrap_or_else(|e| panic!("{r}: {e}"));
        }
        f
    }

    fn ex(f: &Filters, path: &str, is_dir: bool) -> bool {
        f.excluded(Side::Sender, path.as_bytes(), is_dir, false)
    }

    fn wm(pattern: &str, text: &str) -> bool {
        wildmatch_at(
            pattern.as_bytes(),
            &Joined([b"", text.as_bytes(), b""]),
            Where::Start,
        )
    }

    #[test]
    fn star_does_not_cross_slash_but_double_star_does() {
        assert!(wm("*.c", "main.c"));
        assert!(!wm("*.c", "src/main.c"));
        assert!(wm("**.c", "src/main.c"));
        assert!(wm("src/*", "src/a"));
        assert!(!wm("src/*", "src/a/b"));
        assert!(wm("src/**", "src/a/b"));
        assert!(wm("a*b*c", "aXbYc"));
        assert!(!wm("a*b*c", "aX/bYc"));
    }

    #[test]
    fn question_mark_matches_one_non_slash_byte() {
        assert!(wm("?.c", "a.c"));
        assert!(!wm("?.c", "ab.c"));
        assert!(!wm("a?b", "a/b"));
    }

    #[test]
    fn bracket_classes_ranges_negation_and_named_classes() {
        assert!(wm("[abc]x", "bx"));
        assert!(!wm("[abc]x", "dx"));
        assert!(wm("[a-c]x", "cx"));
        assert!(wm("[!a-c]x", "dx"));
        assert!(wm("[^a-c]x", "dx"));
        assert!(!wm("[^a-c]x", "ax"));
        assert!(wm("[]]", "]"));
        assert!(wm("[a-]", "-"));
        assert!(wm("[[:digit:]]*", "9lives"));
        assert!(!wm("[[:digit:]]*", "lives"));
        assert!(wm("[[:upper:][:digit:]]", "Q"));
        assert!(wm("[[:alpha]", "["), "no closing ':]' makes '[' a member");
        assert!(wm("[[:alpha]", "h"));
        assert!(
            !wm("[[:alpha:]", "a"),
            "class closes the member, set is unterminated"
        );
        assert!(!wm("[[:bogus:]]", "b"));
        assert!(!wm("[/]", "/"), "a class never matches '/'");
        assert!(!wm("[!a]", "/"));
        assert!(!wm("[abc", "a"), "unterminated class fails");
    }

    #[test]
    fn backslash_escapes_in_wild_patterns() {
        assert!(wm("x\\?y*", "x?yz"));
        assert!(!wm("x\\?y*", "xzyz"));
        assert!(wm("\\[a]*", "[a]b"));
        assert!(!wm("a*\\", "ab"), "trailing backslash never matches");
    }

    #[test]
    fn pattern_without_slash_matches_last_component() {
        let f = filters(&["- *.o"]);
        assert!(ex(&f, "a.o", false));
        assert!(ex(&f, "src/lib/a.o", false));
        assert!(!ex(&f, "a.o.c", false));
        let f = filters(&["- core"]);
        assert!(ex(&f, "src/core", true));
        assert!(!ex(&f, "src/score", false));
        assert!(!ex(&f, "core/x", false));
    }

    #[test]
    fn leading_slash_anchors_at_root() {
        let f = filters(&["- /build"]);
        assert!(ex(&f, "build", true));
        assert!(!ex(&f, "src/build", true));
        let f = filters(&["- /src/*.c"]);
        assert!(ex(&f, "src/a.c", false));
        assert!(!ex(&f, "x/src/a.c", false));
    }

    #[test]
    fn inner_slash_matches_that_many_trailing_components() {
        let f = filters(&["- lib/deep.c"]);
        assert!(ex(&f, "lib/deep.c", false));
        assert!(ex(&f, "src/lib/deep.c", false));
        assert!(!ex(&f, "src/xlib/deep.c", false));
        let f = filters(&["- */lib/*"]);
        assert!(ex(&f, "src/lib/deep.c", false));
        assert!(ex(&f, "a/src/lib/deep.c", false));
        assert!(!ex(&f, "lib/deep.c", false), "needs three components");
    }

    #[test]
    fn trailing_slash_matches_directories_only() {
        let f = filters(&["- cache/"]);
        assert!(ex(&f, "cache", true));
        assert!(ex(&f, "x/cache", true));
        assert!(!ex(&f, "cache", false));
    }

    #[test]
    fn negated_directory_rule_fires_on_every_file() {
        let f = filters(&["-! */"]);
        assert!(ex(&f, "a.c", false));
        assert!(ex(&f, "d/a.c", false));
        assert!(!ex(&f, "d", true));
        let f = filters(&["-! *.c"]);
        assert!(ex(&f, "a.h", false));
        assert!(!ex(&f, "a.c", false));
    }

    #[test]
    fn double_star_prefix_matches_at_root_too() {
        let f = filters(&["- **/core"]);
        assert!(ex(&f, "core", false));
        assert!(ex(&f, "a/b/core", false));
        assert!(!ex(&f, "a/b/core2", false));
    }

    #[test]
    fn unanchored_double_star_is_tried_after_each_slash() {
        let f = filters(&["- lib/**"]);
        assert!(ex(&f, "lib/x", false));
        assert!(ex(&f, "src/lib/x/y", false));
        assert!(!ex(&f, "src/lib", true));
        let f = filters(&["- /src/**/*.c"]);
        assert!(ex(&f, "src/lib/deep.c", false));
        assert!(!ex(&f, "src/main.c", false));
    }

    #[test]
    fn triple_star_matches_the_directory_itself_and_below() {
        let f = filters(&["- /src/***"]);
        assert!(ex(&f, "src", true));
        assert!(ex(&f, "src/a/b", false));
        assert!(
            !ex(&f, "src", false),
            "a file named src is not the directory"
        );
        assert!(!ex(&f, "srcx", true));
    }

    #[test]
    fn literal_pattern_keeps_backslash_as_a_character() {
        let f = filters(&["- back\\slash"]);
        assert!(ex(&f, "back\\slash", false));
        assert!(!ex(&f, "backslash", false));
    }

    #[test]
    fn first_matching_rule_wins() {
        let f = filters(&["+ */", "+ *.c", "- *"]);
        assert!(!ex(&f, "src", true));
        assert!(!ex(&f, "src/a.c", false));
        assert!(ex(&f, "src/a.h", false));
        assert!(!ex(&f, "unmatched", true));
        assert!(!Filters::new().excluded(Side::Sender, b"x", false, false));
    }

    #[test]
    fn non_utf8_names_match() {
        let f = filters(&["- *.o"]);
        assert!(f.excluded(Side::Sender, b"\xff\xfe.o", false, false));
        assert!(!f.excluded(Side::Sender, b"\xff\xfe.c", false, false));
    }

    #[test]
    fn sides_and_delete_excluded() {
        let f = filters(&[
            "H *.h",
            "P *.keep",
            "-,s *.s",
            "+,r keep.r",
            "-,r *.r",
            "- *.o",
            "-sr *.b",
        ]);
        let s = |p: &str, de| f.excluded(Side::Sender, p.as_bytes(), false, de);
        let r = |p: &str, de| f.excluded(Side::Receiver, p.as_bytes(), false, de);
        assert!(s("a.h", false) && !r("a.h", false));
        assert!(!s("a.keep", false) && r("a.keep", false) && r("a.keep", true));
        assert!(s("a.s", false) && !r("a.s", false));
        assert!(!s("x.r", false) && r("x.r", false) && !r("keep.r", false));
        assert!(s("a.o", false) && r("a.o", false));
        assert!(
            s("a.o", true) && !r("a.o", true),
            "--delete-excluded exposes plain excludes"
        );
        assert!(r("a.b", true), "explicit sides survive --delete-excluded");
        assert!(f.applies_to(Side::Receiver, true));
        assert!(!filters(&["- *.o"]).applies_to(Side::Receiver, true));
    }

    #[test]
    fn old_style_patterns_honour_plus_minus_prefix_and_bang() {
        let mut f = Filters::new();
        f.add_pattern("+ *.c", RuleKind::Exclude).unwrap();
        f.add_pattern("- *.h", RuleKind::Include).unwrap();
        f.add_pattern("*", RuleKind::Exclude).unwrap();
        assert!(!ex(&f, "a.c", false));
        assert!(ex(&f, "a.h", false));
        assert!(ex(&f, "a.x", false));
        f.add_pattern("!", RuleKind::Exclude).unwrap();
        assert!(f.is_empty());
        // Only "+ "/"- " with the space are prefixes; "-x" is the pattern itself.
        f.add_pattern("-x", RuleKind::Include).unwrap();
        f.add_pattern("!x", RuleKind::Exclude).unwrap();
        assert!(!ex(&f, "-x", false));
        assert!(ex(&f, "!x", false));
        f.add_pattern("", RuleKind::Exclude).unwrap();
        assert!(matches!(
            f.add_pattern("+ ", RuleKind::Exclude),
            Err(FilterError::Syntax { .. })
        ));
    }

    #[test]
    fn filter_rule_spellings() {
        for rule in [
            "- a",
            "exclude a",
            "exclude_a",
            "-_a",
            "-,s a",
            "exclude,s a",
            "hide a",
            "H a",
            "protect a",
        ] {
            let mut f = Filters::new();
            f.add_rule(rule).unwrap();
            assert!(
                f.excluded(Side::Sender, b"a", false, false)
                    || f.excluded(Side::Receiver, b"a", false, false),
                "{rule}"
            );
        }
        let mut f = filters(&["+ a", "include b", "S c", "show d", "R e", "risk f", "- *"]);
        for p in ["a", "b", "c", "d"] {
            assert!(!ex(&f, p, false), "{p}");
        }
        assert!(
            ex(&f, "e", false) && ex(&f, "f", false),
            "risk is receiver-only"
        );
        f.add_rule("clear").unwrap();
        assert!(f.is_empty());
        f.add_rule("- x").unwrap();
        f.add_rule("!").unwrap();
        assert!(f.is_empty());
        // The pattern is everything after one separator, spaces included.
        let f = filters(&["-  a"]);
        assert!(ex(&f, " a", false) && !ex(&f, "a", false));
    }

    #[test]
    fn bad_filter_rules_are_syntax_errors() {
        for rule in [
            "-",
            "- ",
            "+q",
            "excludex a",
            "? a",
            "! x",
            "P,s a",
            "H,r a",
            "-e a",
            "-n a",
            "-w a",
        ] {
            let err = Filters::new().add_rule(rule).unwrap_err();
            assert!(matches!(err, FilterError::Syntax { .. }), "{rule}: {err}");
            assert!(err.to_string().contains(rule), "{err}");
        }
    }

    #[test]
    fn merge_and_exotic_rules_are_refused_by_name() {
        for rule in [
            ". file",
            ": .rsync-filter",
            "merge file",
            "dir-merge .f",
            "-C",
            ":C",
            "-/ /abs",
            "-p x",
            "-x user.*",
        ] {
            let err = Filters::new().add_rule(rule).unwrap_err();
            assert!(
                matches!(err, FilterError::Unsupported { .. }),
                "{rule}: {err}"
            );
            assert!(err.to_string().contains(rule), "{err}");
        }
    }

    #[test]
    fn from_file_skips_comments_and_honours_prefixes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rules");
        std::fs::write(&path, b"# comment\n; also\n\n*.o\r\n+ keep.o\n- \xff*\n").unwrap();
        let mut f = Filters::new();
        f.add_from_file(&path, RuleKind::Exclude, false).unwrap();
        assert!(ex(&f, "a.o", false));
        assert!(ex(&f, "keep.o", false), "first match *.o wins");
        assert!(f.excluded(Side::Sender, b"\xffz", false, false));
        assert!(!ex(&f, "# comment", false));
    }

    #[test]
    fn unreadable_file_error_names_the_path() {
        let err = Filters::new()
            .add_from_file(Path::new("/nonexistent/rules"), RuleKind::Include, false)
            .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("`/nonexistent/rules`") && msg.contains("No such file"),
            "{msg}"
        );
    }

    #[test]
    fn filters_are_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Filters>();
    }
}
