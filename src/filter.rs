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
//! Merge files: a `merge` (`.`) rule reads its file when the rule is added and puts the
//! file's rules in its place (so only the expanded rules travel to the server). A
//! `dir-merge` (`:`) rule is a slot in the list that each side fills as it walks: the
//! walk calls [`Filters::enter`] for every directory whose contents it reads, which reads
//! that directory's file of the rule's name on *that* side (the sender's in the source,
//! the receiver's in the destination, as rsync's receiver does for `--delete`), and the
//! slot then holds that file's rules ahead of the ones inherited from above. A name with
//! a `/` in it whose directory holds the transfer (rsync's `-F` is `dir-merge
//! /.rsync-filter`) also reads the file in every directory from there down to the
//! transfer ([`Filters::outer`]). `-C` is rsync's CVS mode: a `-C` rule stands for the
//! default CVS ignore list (perishable: it does not keep a file whose directory is being
//! deleted), `$HOME/.cvsignore` and `$CVSIGNORE`, and `:C` reads `.cvsignore` files.
//!
//! The matcher follows rsync's `exclude.c` (`rule_matches`) and `wildmatch.c`
//! (`dowild`) closely, including their return codes, because the differences
//! between "no match here" and "no match anywhere" are what make `*` stop at `/`
//! and `**` retry after each slash; a cleaner-looking glob engine would differ in
//! corner cases that users' filter files depend on.

use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

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
    /// A valid rsync rule this implementation does not support (xattr rules, a
    /// dir-merge named inside a per-directory file). rsync would accept it, so
    /// silently ignoring it could transfer or delete the wrong files.
    #[error("unsupported filter rule `{rule}`: {what} not supported")]
    Unsupported { rule: String, what: &'static str },
    /// A rule rsync itself would reject (rsync exits with status 1).
    #[error("invalid filter rule `{rule}`: {reason}")]
    Syntax { rule: String, reason: String },
    /// An `--include-from` / `--exclude-from` / `merge` file could not be read.
    #[error("cannot read filter file `{}`: {error}", path.display())]
    Io { path: PathBuf, error: io::Error },
}

/// Which ends a rule applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
enum Sides {
    /// A plain include/exclude: both ends, but sender-only under `--delete-excluded`.
    #[default]
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
    /// The `/` modifier: matched against the absolute path (the walk's root path, then
    /// the entry's path below it).
    abs: bool,
    /// The `p` modifier: ignored for what is inside a directory being deleted.
    perishable: bool,
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

/// How a merge file's lines are read: the merge rule's modifiers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Template {
    /// `-` or `+`: every line is a pattern of this kind (`Some(include)`), no prefixes.
    kind: Option<bool>,
    /// `w`: words split on whitespace, not lines.
    word_split: bool,
    /// `n`: a directory's rules are not inherited by its subdirectories.
    no_inherit: bool,
    /// `C`: CVS mode (`-`, `w`, `n`, and a lone `!` clears).
    cvs: bool,
    /// `e`: the merge file's own name is excluded.
    exclude_self: bool,
    sides: Sides,
    abs: bool,
    perishable: bool,
}

/// One place in the list: a rule, a per-directory merge slot, or the CVS list.
#[derive(Clone, Debug)]
enum Item {
    Rule(Rule),
    /// A `dir-merge` rule: index into [`Filters::merges`].
    DirMerge(usize),
    /// A `-C` rule: the CVS ignore list ([`Filters::cvs`]) at this point.
    Cvs,
}

/// A `dir-merge` rule: the file name read in each directory and how to read it.
#[derive(Clone, Debug)]
struct DirMerge {
    /// The file's name (the last component of the rule's pattern).
    name: Vec<u8>,
    /// The directory part when the pattern had one: where the scan of the transfer's
    /// parent directories starts (rsync's `parent_dirscan`), when it holds the transfer.
    scan_from: Option<Vec<u8>>,
    tmpl: Template,
}

/// An ordered rule list; first match wins. Cheap to share between threads: matching
/// takes `&self`; the per-directory rules live in each walk's [`DirRules`].
#[derive(Clone, Debug, Default)]
pub struct Filters {
    items: Vec<Item>,
    merges: Vec<DirMerge>,
    /// The `-C` list, built once at the first `-C` rule.
    cvs: Option<Arc<[Rule]>>,
}

/// The rules of the `dir-merge` slots in one directory of a walk, and the walk's root
/// path for rules matched against absolute paths. A walk without such rules uses the
/// default, which costs nothing.
#[derive(Clone, Debug, Default)]
pub struct DirRules {
    /// Per slot of [`Filters`]' dir-merge rules: this directory's file's rules first,
    /// then those inherited from above.
    slots: Vec<Arc<[Rule]>>,
    /// The walk's root as an absolute path without its leading `/` (rsync's `curr_dir`).
    root: Option<Arc<[u8]>>,
}

/// How a rule line is read: `-f` rules name their kind; `--include`/`--exclude`
/// patterns have a default kind that a leading "+ " or "- " overrides; a merge file's
/// lines follow its rule's modifiers.
#[derive(Clone, Copy)]
enum Syntax<'t> {
    Filter,
    OldPrefixes(RuleKind),
    Merged(&'t Template),
}

/// rsync's default CVS ignore list (its `-C` documentation).
const DEFAULT_CVSIGNORE: &str = "RCS SCCS CVS CVS.adm RCSLOG cvslog.* tags TAGS .make.state \
     .nse_depinfo *~ #* .#* ,* _$* *$ *.old *.bak *.BAK *.orig *.rej .del-* *.a *.olb *.o \
     *.obj *.so *.exe *.Z *.elc *.ln core .svn/ .git/ .hg/ .bzr/";

/// Nested `merge` files deeper than this are refused (rsync's `MAX_MERGE_DEPTH`).
const MAX_MERGE_DEPTH: usize = 64;

/// What an entry's check found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// No exclude rule decided against it.
    Kept,
    /// Excluded.
    Excluded,
    /// Excluded by a perishable rule only: kept, except inside a directory being deleted.
    Perishable,
}

impl Filters {
    pub fn new() -> Self {
        Self::default()
    }

    /// `--include PAT` / `--exclude PAT`: `pattern` is one pattern; like rsync, a
    /// leading "+ " or "- " overrides the kind and a lone "!" clears the list.
    pub fn add_pattern(&mut self, pattern: &str, kind: RuleKind) -> Result<(), FilterError> {
        self.add_bytes(pattern.as_bytes(), Syntax::OldPrefixes(kind), 0)
    }

    /// `-f`/`--filter RULE`, e.g. `- *.o`, `+ */`, `exclude,s tmp/`, `P keep/`, `-! */`,
    /// `!`, `merge FILE`, `: .rsync-filter`, `-C`.
    pub fn add_rule(&mut self, rule: &str) -> Result<(), FilterError> {
        self.add_bytes(rule.as_bytes(), Syntax::Filter, 0)
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
        let data = read_rules_file(path)?;
        let lines: Vec<&[u8]> = if from0 {
            data.split(|&b| b == 0).collect()
        } else {
            data.split(|&b| b == b'\n' || b == b'\r').collect()
        };
        for line in lines {
            if line.is_empty() || line[0] == b';' || line[0] == b'#' {
                continue;
            }
            self.add_bytes(line, Syntax::OldPrefixes(kind), 0)?;
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Whether the walks must call [`enter`](Self::enter) and [`outer`](Self::outer):
    /// there are `dir-merge` rules or rules matched against absolute paths.
    pub fn per_dir(&self) -> bool {
        !self.merges.is_empty() || self.rules().any(|r| r.abs)
    }

    /// Whether any rule can apply on `side` (a per-directory or CVS rule can on either).
    pub fn applies_to(&self, side: Side, delete_excluded: bool) -> bool {
        self.items.iter().any(|i| match i {
            Item::Rule(r) => r.applies_to(side, delete_excluded),
            Item::DirMerge(_) | Item::Cvs => true,
        })
    }

    fn rules(&self) -> impl Iterator<Item = &Rule> {
        self.items.iter().filter_map(|i| match i {
            Item::Rule(r) => Some(r),
            _ => None,
        })
    }

    /// Is this entry excluded for `side`? `rel_path` is relative to the transfer
    /// root, `/`-separated, without leading or trailing slash. The caller does not
    /// descend into excluded directories, so parents are not re-checked here. Only the
    /// list itself: a walk with per-directory rules asks [`check`](Self::check).
    pub fn excluded(
        &self,
        side: Side,
        rel_path: &[u8],
        is_dir: bool,
        delete_excluded: bool,
    ) -> bool {
        self.check(
            &DirRules::default(),
            side,
            rel_path,
            is_dir,
            delete_excluded,
        ) != Verdict::Kept
    }

    /// The verdict for one entry of a walk, in the directory whose rules are `here`.
    pub fn check(
        &self,
        here: &DirRules,
        side: Side,
        rel_path: &[u8],
        is_dir: bool,
        delete_excluded: bool,
    ) -> Verdict {
        let m = Matcher {
            here,
            side,
            rel: rel_path,
            is_dir,
            delete_excluded,
        };
        match self.first(&m, false) {
            Some(r) if !r.include && r.perishable => {
                // rsync's `ignore_perishable`: without the perishable rules, would a
                // later one still exclude it?
                match self.first(&m, true) {
                    Some(r) if !r.include => Verdict::Excluded,
                    _ => Verdict::Perishable,
                }
            }
            Some(r) if !r.include => Verdict::Excluded,
            _ => Verdict::Kept,
        }
    }

    /// The first rule that fires (`check_filter`), perishable ones skipped on request.
    fn first<'s>(&'s self, m: &Matcher<'s>, skip_perishable: bool) -> Option<&'s Rule> {
        let fires = |r: &&Rule| {
            !(skip_perishable && r.perishable)
                && r.applies_to(m.side, m.delete_excluded)
                && r.matches_in(m.rel, m.is_dir, m.here.root.as_deref())
        };
        for item in &self.items {
            let found = match item {
                Item::Rule(r) => Some(r).filter(fires),
                Item::DirMerge(i) => m.here.slots.get(*i).and_then(|s| s.iter().find(fires)),
                Item::Cvs => self.cvs.as_deref().and_then(|c| c.iter().find(fires)),
            };
            if found.is_some() {
                return found;
            }
        }
        None
    }

    /// The rules as they travel to the server, in order, in `-f` syntax: `merge` files
    /// already read (their rules in their place), `dir-merge` and `-C` rules as rules,
    /// since each side reads its own per-directory files and CVS list.
    pub fn lines(&self) -> Vec<Vec<u8>> {
        self.items
            .iter()
            .map(|i| match i {
                Item::Rule(r) => r.text(),
                Item::DirMerge(i) => self.merges[*i].text(),
                Item::Cvs => b"-C".to_vec(),
            })
            .collect()
    }

    /// Replays one line from [`lines`](Self::lines) (received from the peer). A `merge`
    /// line is refused: [`lines`](Self::lines) never sends one (its file was read where
    /// it was given), and on this end it would read a file the peer names.
    pub fn add_line(&mut self, kind: Option<RuleKind>, text: &[u8]) -> Result<(), FilterError> {
        let head = text.split(|&b| b == 0).next().unwrap_or_default();
        if kind.is_none()
            && let Ok(Parsed::Merge { per_dir: false, .. }) = parse_rule(head, Syntax::Filter)
        {
            return Err(unsupported(text, "a merge rule from the peer is"));
        }
        match kind {
            None => self.add_bytes(text, Syntax::Filter, 0),
            Some(k) => self.add_bytes(text, Syntax::OldPrefixes(k), 0),
        }
    }

    fn add_bytes(&mut self, text: &[u8], syntax: Syntax, depth: usize) -> Result<(), FilterError> {
        // C strings end at NUL; a pattern cannot contain one.
        let text = text.split(|&b| b == 0).next().unwrap_or_default();
        match parse_rule(text, syntax)? {
            Parsed::Nothing => {}
            Parsed::Clear => {
                self.items.clear();
                self.merges.clear();
            }
            Parsed::Rule(rule) => self.items.push(Item::Rule(rule)),
            Parsed::Cvs(sides) => {
                if self.cvs.is_none() {
                    self.cvs = Some(cvs_list(sides)?.into());
                }
                self.items.push(Item::Cvs);
            }
            Parsed::Merge {
                per_dir,
                pattern,
                tmpl,
            } => {
                if tmpl.exclude_self {
                    self.items.push(Item::Rule(self_exclude(&pattern)));
                }
                if per_dir {
                    let m = DirMerge::new(&pattern, tmpl);
                    if !self.merges.iter().any(|x| x.name == m.name) {
                        self.items.push(Item::DirMerge(self.merges.len()));
                        self.merges.push(m);
                    }
                } else {
                    if depth >= MAX_MERGE_DEPTH {
                        return Err(syntax_err(text, "merge-file include depth limit exceeded"));
                    }
                    let path = PathBuf::from(
                        <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(&pattern),
                    );
                    let data = read_rules_file(&path)?;
                    for tok in tokens(&data, &tmpl) {
                        self.add_bytes(tok, Syntax::Merged(&tmpl), depth + 1)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// The rules a walk starts with at a root directory (`root`, open), before its own
    /// files are read: the root's path for absolute rules, and for a `dir-merge` name
    /// with a directory that holds the transfer, the files from there down. `contents`:
    /// the walk reads the root's entries (`src/`; it then calls [`enter`](Self::enter)
    /// for the root), else only a name in it (`src`: the root's own file is then one of
    /// the parents read here). Problems are returned as messages; the walk goes on.
    pub fn outer(&self, root: &Path, contents: bool) -> (DirRules, Vec<String>) {
        let mut errors = Vec::new();
        if !self.per_dir() {
            return (DirRules::default(), errors);
        }
        let root_bytes = root.as_os_str().as_encoded_bytes();
        let trimmed = root_bytes.strip_prefix(b"/").unwrap_or(root_bytes);
        let mut here = DirRules {
            slots: Vec::with_capacity(self.merges.len()),
            root: Some(Arc::from(trimmed)),
        };
        for m in &self.merges {
            let mut list: Vec<Rule> = Vec::new();
            if let Some(from) = &m.scan_from {
                let from = if from.starts_with(b"/") {
                    clean(from)
                } else {
                    clean(&[root_bytes, b"/", from].concat())
                };
                // The directories from `from` down to the transfer's first directory
                // (the root for `src/`, its child for `src`), that one excluded.
                let mut dirs: Vec<Vec<u8>> = Vec::new();
                let comps: Vec<&[u8]> = trimmed
                    .split(|&b| b == b'/')
                    .filter(|c| !c.is_empty())
                    .collect();
                let upto = if contents {
                    comps.len()
                } else {
                    comps.len() + 1
                };
                for n in 0..upto.min(comps.len() + 1) {
                    let d = [b"/".as_slice(), &comps[..n].join(&b'/')].concat();
                    if is_within(&d, &from) {
                        dirs.push(d);
                    }
                }
                for d in dirs {
                    let path = [d.as_slice(), if d == b"/" { b"" } else { b"/" }, &m.name].concat();
                    let data = match std::fs::read(
                        <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(&path),
                    ) {
                        Ok(data) => data,
                        Err(_) => continue,
                    };
                    let anchor = Anchor::Abs(d.strip_prefix(b"/").unwrap_or(&d));
                    match self.read_dir_file(&data, m, anchor) {
                        Ok((rules, cleared)) => {
                            if m.tmpl.no_inherit || cleared {
                                list.clear();
                            }
                            list.splice(0..0, rules);
                        }
                        Err(e) => errors.push(e.to_string()),
                    }
                }
            }
            here.slots.push(list.into());
        }
        (here, errors)
    }

    /// The rules in a directory of a walk (`rel` below the root, `""` for the root
    /// itself) whose parent's are `parent`; `read` gives the content of one of its
    /// files by name (None when it has none). Problems are returned as messages.
    pub fn enter(
        &self,
        parent: &DirRules,
        rel: &[u8],
        mut read: impl FnMut(&[u8]) -> Option<Vec<u8>>,
    ) -> (DirRules, Vec<String>) {
        let mut errors = Vec::new();
        if self.merges.is_empty() {
            return (parent.clone(), errors);
        }
        let mut here = DirRules {
            slots: Vec::with_capacity(self.merges.len()),
            root: parent.root.clone(),
        };
        for (i, m) in self.merges.iter().enumerate() {
            let inherited = parent.slots.get(i).filter(|_| !m.tmpl.no_inherit);
            let own = read(&m.name).map(|data| self.read_dir_file(&data, m, Anchor::Rel(rel)));
            let slot: Arc<[Rule]> = match own {
                None => inherited.cloned().unwrap_or_else(|| Arc::from(Vec::new())),
                Some(Err(e)) => {
                    errors.push(e.to_string());
                    inherited.cloned().unwrap_or_else(|| Arc::from(Vec::new()))
                }
                Some(Ok((mut rules, cleared))) => {
                    if !cleared && let Some(up) = inherited {
                        rules.extend(up.iter().cloned());
                    }
                    rules.into()
                }
            };
            here.slots.push(slot);
        }
        (here, errors)
    }

    /// One per-directory file's rules, and whether it cleared the inherited ones.
    /// Anchored patterns are anchored at the file's directory.
    fn read_dir_file(
        &self,
        data: &[u8],
        m: &DirMerge,
        anchor: Anchor<'_>,
    ) -> Result<(Vec<Rule>, bool), FilterError> {
        let mut rules = Vec::new();
        let mut cleared = false;
        for tok in tokens(data, &m.tmpl) {
            let tok = tok.split(|&b| b == 0).next().unwrap_or_default();
            match parse_rule(tok, Syntax::Merged(&m.tmpl))? {
                Parsed::Nothing => {}
                Parsed::Clear => {
                    rules.clear();
                    cleared = true;
                }
                Parsed::Rule(mut r) => {
                    if r.pattern.first() == Some(&b'/') && !r.abs {
                        let (dir, abs) = match anchor {
                            Anchor::Rel(d) => (d, false),
                            Anchor::Abs(d) => (d, true),
                        };
                        if !dir.is_empty() {
                            let mut p = Vec::with_capacity(dir.len() + r.pattern.len() + 1);
                            p.push(b'/');
                            p.extend_from_slice(dir);
                            p.extend_from_slice(&r.pattern);
                            r = r.with_pattern(p);
                        }
                        r.abs = abs;
                    }
                    rules.push(r);
                }
                // The same file named again inside itself: rsync ignores it too.
                Parsed::Merge {
                    per_dir: true,
                    pattern,
                    ..
                } if DirMerge::new(&pattern, Template::default()).name == m.name => {}
                Parsed::Merge { .. } => {
                    return Err(unsupported(
                        tok,
                        "a merge rule inside a per-directory file is",
                    ));
                }
                Parsed::Cvs(_) => {
                    return Err(unsupported(tok, "a -C rule inside a per-directory file is"));
                }
            }
        }
        Ok((rules, cleared))
    }
}

/// Where a per-directory file's anchored patterns are anchored.
#[derive(Clone, Copy)]
enum Anchor<'a> {
    /// A directory of the walk, relative to its root.
    Rel(&'a [u8]),
    /// A directory above the walk, absolute (without its leading `/`).
    Abs(&'a [u8]),
}

struct Matcher<'a> {
    here: &'a DirRules,
    side: Side,
    rel: &'a [u8],
    is_dir: bool,
    delete_excluded: bool,
}

impl DirMerge {
    fn new(pattern: &[u8], tmpl: Template) -> DirMerge {
        let (scan_from, name) = match pattern.iter().rposition(|&b| b == b'/') {
            Some(p) => (
                Some(pattern[..p.max(1)].to_vec()),
                pattern[p + 1..].to_vec(),
            ),
            None => (None, pattern.to_vec()),
        };
        // A relative directory part only matters when it climbs out of the transfer
        // (rsync scans only directories that hold it).
        let scan_from = scan_from.filter(|d| d.starts_with(b"/") || d.starts_with(b".."));
        DirMerge {
            name,
            scan_from,
            tmpl,
        }
    }

    /// rsync's own spelling of the rule (`get_rule_prefix`), for the server.
    fn text(&self) -> Vec<u8> {
        let t = &self.tmpl;
        let mut s = b":".to_vec();
        if t.abs {
            s.push(b'/');
        }
        if t.cvs {
            s.push(b'C');
        } else {
            if t.no_inherit {
                s.push(b'n');
            }
            if t.word_split {
                s.push(b'w');
            }
            match t.kind {
                Some(true) => s.push(b'+'),
                Some(false) => s.push(b'-'),
                None => {}
            }
        }
        // (`e` is not repeated: its exclude rule travels on its own, before this one.)
        push_sides(&mut s, t.sides, t.perishable);
        s.push(b' ');
        if let Some(d) = &self.scan_from {
            s.extend_from_slice(d);
            if !d.ends_with(b"/") {
                s.push(b'/');
            }
        }
        s.extend_from_slice(&self.name);
        s
    }
}

fn push_sides(s: &mut Vec<u8>, sides: Sides, perishable: bool) {
    match sides {
        Sides::Default => {}
        Sides::Sender => s.push(b's'),
        Sides::Receiver => s.push(b'r'),
        Sides::Both => s.extend_from_slice(b"sr"),
    }
    if perishable {
        s.push(b'p');
    }
}

/// `e`: an exclude of the merge file's own name.
fn self_exclude(pattern: &[u8]) -> Rule {
    let name = match pattern.iter().rposition(|&b| b == b'/') {
        Some(p) => &pattern[p + 1..],
        None => pattern,
    };
    Rule::new(
        name,
        Head {
            include: false,
            sides: Sides::Default,
            negate: false,
            clear: false,
            abs: false,
            perishable: false,
            what: What::Rule,
        },
    )
}

/// The `-C` list: the default CVS ignore list (perishable), `$HOME/.cvsignore`, and
/// `$CVSIGNORE`, each split on whitespace (a lone `!` clears what came before).
fn cvs_list(sides: Sides) -> Result<Vec<Rule>, FilterError> {
    let tmpl = Template {
        kind: Some(false),
        word_split: true,
        no_inherit: true,
        cvs: true,
        sides,
        ..Template::default()
    };
    let mut rules = Vec::new();
    let mut add = |data: &[u8], perishable: bool| -> Result<(), FilterError> {
        for tok in tokens(data, &tmpl) {
            match parse_rule(tok, Syntax::Merged(&tmpl))? {
                Parsed::Rule(mut r) => {
                    r.perishable |= perishable;
                    rules.push(r);
                }
                Parsed::Clear => rules.clear(),
                _ => {}
            }
        }
        Ok(())
    };
    add(DEFAULT_CVSIGNORE.as_bytes(), true)?;
    if let Some(home) = std::env::var_os("HOME")
        && let Ok(data) = std::fs::read(Path::new(&home).join(".cvsignore"))
    {
        add(&data, false)?;
    }
    if let Some(env) = std::env::var_os("CVSIGNORE") {
        add(env.as_encoded_bytes(), false)?;
    }
    Ok(rules)
}

/// A rules file's bytes (`-` = stdin).
fn read_rules_file(path: &Path) -> Result<Vec<u8>, FilterError> {
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
    Ok(data)
}

/// A merge file's rules: words with `w`, else lines (CR or LF), without empty lines and
/// `;`/`#` comments.
fn tokens<'d>(data: &'d [u8], tmpl: &Template) -> Vec<&'d [u8]> {
    if tmpl.word_split {
        data.split(|b| b.is_ascii_whitespace())
            .filter(|w| !w.is_empty())
            .collect()
    } else {
        data.split(|&b| b == b'\n' || b == b'\r')
            .filter(|l| !l.is_empty() && l[0] != b';' && l[0] != b'#')
            .collect()
    }
}

/// `..` and `.` and doubled slashes resolved in an absolute path (rsync's
/// `clean_fname` with `CFN_COLLAPSE_DOT_DOT_DIRS`), with no trailing slash.
fn clean(path: &[u8]) -> Vec<u8> {
    let mut out: Vec<&[u8]> = Vec::new();
    for c in path.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    [b"/".as_slice(), &out.join(&b'/')].concat()
}

/// Whether absolute `dir` is `top` or below it.
fn is_within(dir: &[u8], top: &[u8]) -> bool {
    top == b"/" || dir == top || (dir.starts_with(top) && dir.get(top.len()) == Some(&b'/'))
}

enum Parsed {
    Nothing,
    Clear,
    Rule(Rule),
    /// A `-C` rule (its sides).
    Cvs(Sides),
    Merge {
        per_dir: bool,
        pattern: Vec<u8>,
        tmpl: Template,
    },
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

/// What kind of line a rule is.
#[derive(Clone, Debug, PartialEq, Eq)]
enum What {
    Rule,
    Cvs,
    Merge { per_dir: bool, tmpl: Template },
}

/// Kind and modifiers of a rule, before its pattern is analysed.
struct Head {
    include: bool,
    sides: Sides,
    negate: bool,
    clear: bool,
    abs: bool,
    perishable: bool,
    what: What,
}

impl Head {
    fn plain(include: bool) -> Head {
        Head {
            include,
            sides: Sides::Default,
            negate: false,
            clear: false,
            abs: false,
            perishable: false,
            what: What::Rule,
        }
    }
}

/// Parses one rule the way rsync's `parse_rule_tok` does: a kind (letter or word),
/// optional modifiers (after an optional `,`), then exactly one space or `_`, then
/// the pattern verbatim (trailing whitespace included).
fn parse_rule(text: &[u8], syntax: Syntax) -> Result<Parsed, FilterError> {
    if text.is_empty() {
        return Ok(Parsed::Nothing);
    }
    let (mut head, pat) = match syntax {
        Syntax::OldPrefixes(kind) => {
            let mut head = Head::plain(kind == RuleKind::Include);
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
        Syntax::Merged(Template {
            kind: Some(include),
            cvs,
            ..
        }) => {
            let mut head = Head::plain(*include);
            // In CVS mode a lone "!" clears the list.
            head.clear = *cvs && text == b"!";
            let pat = if head.clear { &[][..] } else { text };
            (head, pat)
        }
        Syntax::Filter | Syntax::Merged(_) => parse_filter_head(text)?,
    };
    if let Syntax::Merged(t) = syntax {
        head.abs |= t.abs;
        head.perishable |= t.perishable;
        if t.sides != Sides::Default {
            if head.sides != Sides::Default {
                return Err(syntax_err(
                    text,
                    "specified-side merge file contains specified-side filter",
                ));
            }
            head.sides = t.sides;
        }
    }
    if head.clear {
        if !pat.is_empty() {
            return Err(syntax_err(text, "'!' rule has trailing characters"));
        }
        return Ok(Parsed::Clear);
    }
    match head.what {
        What::Cvs => return Ok(Parsed::Cvs(head.sides)),
        What::Merge { per_dir, mut tmpl } => {
            let pattern = if pat.is_empty() {
                b".cvsignore".to_vec()
            } else {
                pat.to_vec()
            };
            if !tmpl.cvs && pat.is_empty() {
                return Err(syntax_err(text, "unexpected end of filter rule"));
            }
            tmpl.sides = head.sides;
            tmpl.abs = head.abs;
            tmpl.perishable = head.perishable;
            return Ok(Parsed::Merge {
                per_dir,
                pattern,
                tmpl,
            });
        }
        What::Rule => {}
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
    let mut head = Head::plain(false);
    let mut side_in_kind = false;
    let mut tmpl = Template::default();
    let mut merge = None;
    match kind {
        b'.' | b':' => merge = Some(kind == b':'),
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
    let mut cvs = false;
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
                b'!' if merge.is_some() => return Err(invalid()),
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
                b'-' | b'+' if merge.is_some() && tmpl.kind.is_none() => {
                    tmpl.kind = Some(m == b'+');
                }
                b'/' => head.abs = true,
                b'p' => head.perishable = true,
                b'x' => return Err(unsupported(text, "the 'x' (xattr) modifier is")),
                b'C' if tmpl.kind.is_some() || side_in_kind => return Err(invalid()),
                b'C' => {
                    cvs = true;
                    tmpl.kind = Some(false);
                    tmpl.word_split = true;
                    tmpl.no_inherit = true;
                    tmpl.cvs = true;
                }
                b'e' if merge.is_some() => tmpl.exclude_self = true,
                b'n' if merge.is_some() => tmpl.no_inherit = true,
                b'w' if merge.is_some() => tmpl.word_split = true,
                _ => return Err(invalid()),
            }
        }
    }
    head.what = match merge {
        Some(per_dir) => What::Merge { per_dir, tmpl },
        None if cvs => What::Cvs,
        None => What::Rule,
    };
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
            abs: head.abs,
            perishable: head.perishable,
            slash_cnt,
            wild,
            wild2: wild && star2.is_some(),
            wild2_prefix: wild && star2 == Some(0),
            wild3_suffix: wild && star2.is_some() && pattern.ends_with(b"***"),
            pattern,
        }
    }

    /// The same rule with another pattern (a per-directory file's anchored one).
    fn with_pattern(&self, mut pattern: Vec<u8>) -> Rule {
        if self.dir_only {
            pattern.push(b'/');
        }
        let mut head = Head::plain(self.include);
        head.sides = self.sides;
        head.negate = self.negate;
        head.abs = self.abs;
        head.perishable = self.perishable;
        Rule::new(&pattern, head)
    }

    /// rsync's spelling of the rule (`get_rule_prefix`), for the server.
    fn text(&self) -> Vec<u8> {
        let mut s = vec![if self.include { b'+' } else { b'-' }];
        if self.abs {
            s.push(b'/');
        }
        if self.negate {
            s.push(b'!');
        }
        push_sides(&mut s, self.sides, self.perishable);
        s.push(b' ');
        s.extend_from_slice(&self.pattern);
        if self.dir_only {
            s.push(b'/');
        }
        s
    }

    /// [`matches`](Self::matches), an absolute rule against `root` + `/` + `path`.
    fn matches_in(&self, path: &[u8], is_dir: bool, root: Option<&[u8]>) -> bool {
        match root {
            Some(root) if self.abs && !root.is_empty() && !path.is_empty() => {
                let full = [root, b"/", path].concat();
                self.matches(&full, is_dir)
            }
            _ => self.matches(path, is_dir),
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
    fn a_merge_line_from_the_peer_is_refused() {
        let mut f = Filters::new();
        assert!(f.add_line(None, b"merge /etc/passwd").is_err());
        assert!(f.add_line(None, b". /etc/passwd").is_err());
        assert!(f.add_line(None, b". /etc/passwd\0x").is_err());
        assert!(f.add_line(None, b": .rsync-filter").is_ok());
        assert!(f.add_line(None, b"-C").is_ok());
    }

    #[test]
    fn xattr_rules_are_refused_by_name() {
        for rule in ["-x user.*", "-,x user.*"] {
            let err = Filters::new().add_rule(rule).unwrap_err();
            assert!(
                matches!(err, FilterError::Unsupported { .. }),
                "{rule}: {err}"
            );
            assert!(err.to_string().contains(rule), "{err}");
        }
        for rule in [":! f", ".! f", "-e x", "+n x", "-w x", "PC", ":C,s"] {
            let err = Filters::new().add_rule(rule).unwrap_err();
            assert!(matches!(err, FilterError::Syntax { .. }), "{rule}: {err}");
        }
    }

    fn merge_file(content: &[u8]) -> (tempfile::TempDir, String) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rules");
        std::fs::write(&path, content).unwrap();
        let p = path.to_str().unwrap().to_string();
        (dir, p)
    }

    #[test]
    fn merge_reads_the_file_in_place_with_its_modifiers() {
        let (_d, p) = merge_file(b"# comment\n- *.o\n+ keep.tmp\n");
        let f = filters(&[&format!("merge {p}"), "- *.tmp"]);
        assert!(ex(&f, "a.o", false));
        assert!(!ex(&f, "keep.tmp", false));
        assert!(ex(&f, "x.tmp", false));
        // `-`: every line an exclude pattern; `w`: words; `e`: the file's own name.
        let (_d, p) = merge_file(b"a b\nc");
        let f = filters(&[&format!(".-we {p}")]);
        for n in ["a", "b", "c", "rules"] {
            assert!(ex(&f, n, false), "{n}");
        }
        assert!(!ex(&f, "a b", false));
        let (_d, p) = merge_file(b"*.c\n");
        let f = filters(&[&format!("merge,+ {p}"), "- *"]);
        assert!(!ex(&f, "x.c", false) && ex(&f, "x.h", false));
        // Sides from the merge rule; a side inside such a file is an error.
        let (_d, p) = merge_file(b"- *.o\n");
        let f = filters(&[&format!("merge,s {p}")]);
        assert!(f.excluded(Side::Sender, b"a.o", false, false));
        assert!(!f.excluded(Side::Receiver, b"a.o", false, false));
        let (_d, p) = merge_file(b"P *.o\n");
        assert!(Filters::new().add_rule(&format!("merge,s {p}")).is_err());
        // The expanded rules are what travels.
        let (_d, p) = merge_file(b"- a\n");
        let lines = filters(&[&format!("merge {p}"), ": .f", "-C"]).lines();
        assert_eq!(lines, [b"- a".to_vec(), b": .f".to_vec(), b"-C".to_vec()]);
        assert!(matches!(
            Filters::new().add_rule("merge /nonexistent/rules"),
            Err(FilterError::Io { .. })
        ));
    }

    fn enter(f: &Filters, parent: &DirRules, rel: &str, files: &[(&str, &str)]) -> DirRules {
        let (rules, errors) = f.enter(parent, rel.as_bytes(), |name| {
            files
                .iter()
                .find(|(n, _)| n.as_bytes() == name)
                .map(|(_, c)| c.as_bytes().to_vec())
        });
        assert!(errors.is_empty(), "{errors:?}");
        rules
    }

    fn ex_in(f: &Filters, here: &DirRules, path: &str) -> bool {
        f.check(here, Side::Sender, path.as_bytes(), false, false) != Verdict::Kept
    }

    #[test]
    fn dir_merge_rules_are_inherited_deepest_first_and_anchored_at_their_directory() {
        let f = filters(&[": .rules", "- *.tmp"]);
        let root = enter(
            &f,
            &DirRules::default(),
            "",
            &[(".rules", "- *.o\n- /top\n")],
        );
        assert!(ex_in(&f, &root, "a.o") && ex_in(&f, &root, "top"));
        let sub = enter(&f, &root, "sub", &[(".rules", "+ keep.o\n- /deep\n")]);
        assert!(!ex_in(&f, &sub, "sub/keep.o"), "the deeper file first");
        assert!(ex_in(&f, &sub, "sub/b.o"), "inherited");
        assert!(ex_in(&f, &sub, "sub/deep") && !ex_in(&f, &sub, "deep"));
        assert!(
            !ex_in(&f, &sub, "sub/top"),
            "anchored at the root's directory"
        );
        assert!(
            ex_in(&f, &sub, "sub/x.tmp"),
            "the list's later rules still apply"
        );
        let plain = enter(&f, &sub, "sub/plain", &[]);
        assert!(!ex_in(&f, &plain, "sub/plain/keep.o"));
        let cleared = enter(&f, &sub, "sub/c", &[(".rules", "!\n- z\n")]);
        assert!(!ex_in(&f, &cleared, "sub/c/a.o") && ex_in(&f, &cleared, "sub/c/z"));
        // `n`: nothing inherited.
        let f = filters(&[":n .rules"]);
        let root = enter(&f, &DirRules::default(), "", &[(".rules", "- *.o")]);
        let sub = enter(&f, &root, "sub", &[]);
        assert!(ex_in(&f, &root, "a.o") && !ex_in(&f, &sub, "sub/a.o"));
    }

    #[test]
    fn cvs_mode_splits_words_clears_on_bang_and_is_perishable() {
        let f = filters(&[":C", "-C"]);
        let root = enter(
            &f,
            &DirRules::default(),
            "",
            &[(".cvsignore", "foo bar\n*.x")],
        );
        for n in ["foo", "bar", "a.x", "a.o", "core", "x~"] {
            assert!(ex_in(&f, &root, n), "{n}");
        }
        assert!(!ex_in(&f, &root, "a.c"));
        let sub = enter(&f, &root, "d", &[]);
        assert!(!ex_in(&f, &sub, "d/foo"), ".cvsignore is not inherited");
        assert!(ex_in(&f, &sub, "d/a.o"));
        let check = |p: &str, dir| f.check(&root, Side::Receiver, p.as_bytes(), dir, false);
        assert_eq!(check("a.o", false), Verdict::Perishable);
        assert_eq!(check(".git", true), Verdict::Perishable);
        assert_eq!(check("foo", false), Verdict::Excluded);
        let cleared = enter(&f, &DirRules::default(), "", &[(".cvsignore", "foo ! bar")]);
        assert!(!ex_in(&f, &cleared, "foo") && ex_in(&f, &cleared, "bar"));
    }

    #[test]
    fn parent_directories_are_read_for_a_dir_merge_name_with_a_path() {
        let top = tempfile::tempdir().unwrap();
        let root = top.path().join("w/src");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(top.path().join(".rules"), "- /w/src/anchored\n- *.tmp\n").unwrap();
        std::fs::write(top.path().join("w/.rules"), "+ keep.tmp\n").unwrap();
        let f = filters(&[&format!("dir-merge {}/.rules", top.path().display())]);
        let (outer, errors) = f.outer(&root, true);
        assert!(errors.is_empty(), "{errors:?}");
        assert!(ex_in(&f, &outer, "a.tmp") && !ex_in(&f, &outer, "keep.tmp"));
        assert!(ex_in(&f, &outer, "anchored") && !ex_in(&f, &outer, "x/anchored"));
        // Not the root's own file (the walk reads that when it enters the root)...
        std::fs::write(root.join(".rules"), "- own\n").unwrap();
        let (outer, _) = f.outer(&root, true);
        assert!(!ex_in(&f, &outer, "own"));
        // ...unless the walk only reads a name in it (`src` rather than `src/`).
        let (outer, _) = f.outer(&root, false);
        assert!(ex_in(&f, &outer, "own"));
        // A directory that does not hold the transfer is not read.
        let f = filters(&["dir-merge /nonexistent/.rules"]);
        assert!(f.outer(&root, true).1.is_empty());
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
