//! Turns the difference between the source and destination trees into actions, like
//! rsync's generator: what to create, transfer, update in place, link, or delete.
//!
//! The walk goes down only where the Merkle digests differ, and produces a [`DirPlan`] tree
//! that mirrors just those directories; the executor then runs it in parallel. The listing
//! lines (`-v`, `-i`) are produced here, in a deterministic order, so output does not depend
//! on thread timing.

use crate::altdest::AltDirs;
use crate::config::{AltDest, DeleteWhen, Options};
use crate::error::show;
use crate::outfmt::{Fields, Format, Line};
use crate::pathsafe::join;
use crate::tree::{Entry, Kind, Meta, Tally};
use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};

/// What to do with one non-directory source entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Copy the content (new file, or the quick check says it differs).
    Transfer,
    /// Content is right; only mode/owner/times differ.
    Meta,
    /// Symlink, device, fifo or socket to (re)create.
    Special,
    /// `--link-dest`: an exact match in DIR (`Item::alt`) becomes this name by a hard link.
    AltLink,
    /// A copy made locally from DIR's file (`Item::alt`), whose content is right: an exact
    /// match under `--copy-dest`, or one that differs only in attributes (set afterwards).
    AltCopy,
}

/// The file in an alternate destination DIR that an item uses: what it links or copies,
/// or (for a transfer) the delta basis and what `-i` compares with.
#[derive(Debug, Clone, Copy)]
pub struct AltUse {
    /// Index into [`AltDirs::dirs`].
    pub dir: usize,
    pub meta: Meta,
}

/// How well DIR's file matches the source's, in rsync's three levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AltMatch {
    /// A regular file, but the quick check says its content differs: a delta basis.
    Basis,
    /// The quick check passes; preserved attributes differ.
    Quick,
    /// The quick check passes and every preserved attribute is equal.
    Exact,
}

#[derive(Debug)]
pub struct Item<'a> {
    pub src: &'a Entry,
    /// The name in the source directory (differs from `name` only for a single file copied
    /// to a new name).
    pub src_name: &'a [u8],
    pub name: &'a [u8],
    pub rel: Vec<u8>,
    /// The destination entry it replaces or updates, if any (same kind).
    pub dst: Option<Meta>,
    pub action: Action,
    /// What an alternate destination DIR gives this item (see [`Action::AltLink`]).
    pub alt: Option<AltUse>,
    /// Under per-file progress, a transferred file's `-v`/`-i` line, printed with its
    /// progress line when it is done rather than in the listing before the transfer
    /// (under --json, its itemize code for the file's record).
    pub line: Option<String>,
    /// A transferred file's line that shows its bytes (`--out-format`'s `%b`): printed
    /// when the file is done, filled in then (`outfmt::fill`).
    pub late: Option<Line>,
}

impl<'a> Item<'a> {
    fn new(
        src: &'a Entry,
        src_name: &'a [u8],
        rel: Vec<u8>,
        dst: Option<&Entry>,
        action: Action,
    ) -> Item<'a> {
        Item {
            src,
            src_name,
            name: &src.name,
            rel,
            dst: dst.map(|d| d.meta),
            action,
            alt: None,
            line: None,
            late: None,
        }
    }
}

#[derive(Debug)]
pub struct Delete<'a> {
    pub entry: &'a Entry,
    pub rel: Vec<u8>,
    /// Path of the entry's parent below the planned directory ("" for a direct child):
    /// under --max-delete a directory's contents are deleted one by one.
    pub under: Vec<u8>,
    /// Delete only this entry (a directory only if it is empty by then).
    pub shallow: bool,
    /// A type change (dir → file and the like), done whether or not `--delete` was given.
    pub replace: bool,
}

/// A directory that is created or descended into.
#[derive(Debug)]
pub struct DirPlan<'a> {
    pub src: &'a Entry,
    pub src_name: &'a [u8],
    pub name: &'a [u8],
    pub rel: Vec<u8>,
    /// The destination directory's metadata, None when it must be created.
    pub dst: Option<Meta>,
    /// `-K`: the destination has this directory through a symlink (opened from the
    /// destination's root with `fs::open_dirlink_beneath`).
    pub via_link: bool,
    /// Final mode/owner/times must be (re)applied after the contents.
    pub set_meta: bool,
    pub deletes: Vec<Delete<'a>>,
    pub items: Vec<Item<'a>>,
    pub subdirs: Vec<DirPlan<'a>>,
    /// `--no-implied-dirs`: an implied directory, made with default permissions where it
    /// is missing and otherwise left as it is (its metadata never set).
    pub implied: bool,
}

impl DirPlan<'_> {
    /// Anything below (or at) this directory that needs its metadata set afterwards.
    pub fn needs_post(&self) -> bool {
        self.set_meta || self.subdirs.iter().any(|d| d.needs_post())
    }
}

/// A `-H` follower: `rel` must become another name of the file at `leader`.
#[derive(Debug)]
pub struct HardLink<'a> {
    pub rel: Vec<u8>,
    pub leader: Cow<'a, [u8]>,
    /// The name is new in the destination (`hf+++++++++`): `--stats` counts it created.
    pub new: bool,
}

impl DirPlan<'_> {
    /// Files this plan transfers (the total behind progress's `to-chk`).
    pub fn transfers(&self) -> u64 {
        let here = self
            .items
            .iter()
            .filter(|i| i.action == Action::Transfer)
            .count() as u64;
        here + self.subdirs.iter().map(|d| d.transfers()).sum::<u64>()
    }
}

/// What `--stats` counts for a plan that is not carried out (`-n`): rsync's dry run
/// counts the files it would create, transfer and delete as a real run does.
#[derive(Debug, Default)]
pub struct Planned {
    pub created: Tally,
    pub deleted: Tally,
    pub transferred: u64,
    pub transferred_size: u64,
}

impl Plan<'_> {
    /// The counts a real run of this plan adds where it succeeds (`exec.rs` counts those
    /// as it goes): new entries by kind (a `-H` follower is a new regular file), files
    /// transferred and their size, and what the deletions remove.
    pub fn planned(&self) -> Planned {
        fn dir(d: &DirPlan<'_>, p: &mut Planned) {
            for it in &d.items {
                if it.action == Action::Transfer {
                    p.transferred += 1;
                    p.transferred_size += it.src.meta.size;
                }
                if it.dst.is_none() && it.action != Action::Meta {
                    p.created.add(Tally::one(it.src.meta.kind));
                }
            }
            for del in d.deletes.iter().filter(|x| !x.replace) {
                p.deleted.add(removed(del.entry, del.shallow));
            }
            for sub in &d.subdirs {
                if sub.dst.is_none() {
                    p.created.add(Tally::one(Kind::Dir));
                }
                dir(sub, p);
            }
        }
        // As `write::remove_entry` removes: a protected entry stays, and so does the
        // directory holding it; a directory not read whole is one entry here.
        fn removed(e: &Entry, shallow: bool) -> Tally {
            let mut t = Tally::default();
            if e.followed || !e.is_dir() || shallow || !e.complete {
                return Tally::one(if e.followed {
                    Kind::Symlink
                } else {
                    e.meta.kind
                });
            }
            let mut kept = false;
            for c in &e.children {
                if c.protected && !c.perishable {
                    kept = true;
                } else {
                    t.add(removed(c, false));
                }
            }
            if !kept {
                t.add(Tally::one(Kind::Dir));
            }
            t
        }
        let mut p = Planned::default();
        dir(&self.root, &mut p);
        let new_links = self.links.iter().filter(|l| l.new).count() as u64;
        p.created.add(Tally::of(Kind::File, new_links));
        p
    }
}

pub struct Plan<'a> {
    pub root: DirPlan<'a>,
    pub links: Vec<HardLink<'a>>,
    pub lines: Vec<Line>,
    /// Deletions not done because of --max-delete.
    pub delete_skipped: u64,
    /// `--no-implied-dirs`: implied directories whose destination name holds something
    /// else (a symlink, a file), which is neither followed nor replaced; nothing below is
    /// planned (rsync 3.5's receiver fails those entries too).
    pub refused: Vec<Vec<u8>>,
}

pub struct Planner<'o> {
    pub opts: &'o Options,
    /// `--delete-missing-args`: the root-relative paths of missing sources, whose
    /// destination entries are deleted without --delete.
    pub missing: HashSet<Vec<u8>>,
    /// Whether the root is a directory of the transfer (`src/`), whose metadata and
    /// extraneous entries are handled; false when the root only holds named top entries.
    pub root_is_transfer_dir: bool,
    /// Skip deletions (the sender side had I/O errors, as rsync does).
    pub no_deletes: bool,
    /// What this receiver can preserve: owners only as the super-user (rsync silently
    /// drops `-o` otherwise), groups only where it may set them. Only those differences
    /// are changes.
    pub rules: crate::write::MetaRules,
    /// `--compare-dest`/`--copy-dest`/`--link-dest`: the DIRs a missing file is looked for
    /// in first.
    pub alt: Option<&'o AltDirs>,
    /// The destination root was created by this run (it is listed as new).
    pub root_is_new: bool,
    /// This end is a pulling client: rsync's receiver prints the listing as the data
    /// arrives, so its deletions come out ahead of the top directory's entries.
    pub pulled: bool,
}

/// A subdirectory met in its parent's entries, planned (and listed) after them.
struct PendingDir<'a> {
    e: &'a Entry,
    d: Option<&'a Entry>,
    rel: Vec<u8>,
    line: Option<Line>,
}

struct State<'a> {
    plan_links: Vec<HardLink<'a>>,
    lines: Vec<Line>,
    /// `*deleting` lines when deletions are not interleaved (--delete-before/-after/-delay):
    /// they are listed where they happen, before or after everything else.
    deletion_lines: Vec<Line>,
    /// Under --delete-during, the `*deleting` lines of the directory being planned: they
    /// go before its own line.
    dir_deletions: Vec<Line>,
    /// Under --delete-during, the `*deleting` lines of the directories below the top: rsync
    /// prints them ahead of those directories' listings (its deletions are messages,
    /// which overtake the buffered listing), at [`State::late_at`].
    late_deletions: Vec<Line>,
    late_at: Option<usize>,
    /// `-H`: the sets of names of one file, and which set each name is in.
    groups: Vec<LinkGroup>,
    member_of: HashMap<Vec<u8>, usize>,
    /// Groups whose leader is transferred, in the order rsync finishes them.
    transferred_groups: Vec<usize>,
    deletes: u64,
    delete_skipped: u64,
    dst_root: Option<&'a Entry>,
    /// A single file copied to another name: (destination name, source name).
    rename: Option<(&'a [u8], &'a [u8])>,
    refused: Vec<Vec<u8>>,
}

impl<'a> State<'a> {
    fn src_name(&self, name: &'a [u8], is_root: bool) -> &'a [u8] {
        match self.rename {
            Some((to, from)) if is_root && to == name => from,
            _ => name,
        }
    }
}

impl<'o> Planner<'o> {
    /// Compares `src` (the root) with `dst` (the destination root, None if it does not
    /// exist yet). `renames` maps a top-level destination name to its source name.
    pub fn plan<'a>(
        &self,
        src: &'a Entry,
        dst: Option<&'a Entry>,
        rename: Option<(&'a [u8], &'a [u8])>,
    ) -> Plan<'a> {
        let mut st = State {
            plan_links: Vec::new(),
            lines: Vec::new(),
            deletion_lines: Vec::new(),
            dir_deletions: Vec::new(),
            late_deletions: Vec::new(),
            late_at: None,
            groups: Vec::new(),
            member_of: HashMap::new(),
            transferred_groups: Vec::new(),
            deletes: 0,
            delete_skipped: 0,
            dst_root: dst,
            rename,
            refused: Vec::new(),
        };
        if self.opts.hard_links && self.alt.is_none() {
            (st.groups, st.member_of) = link_groups(src, dst);
        }
        let mut root = DirPlan {
            src,
            src_name: b".",
            name: b".",
            rel: Vec::new(),
            dst: dst.map(|d| d.meta),
            via_link: false,
            set_meta: false,
            deletes: Vec::new(),
            items: Vec::new(),
            subdirs: Vec::new(),
            implied: false,
        };
        let alts: Vec<Option<&Entry>> = self
            .alt
            .map(|a| a.dirs.iter().map(|d| Some(&d.root)).collect())
            .unwrap_or_default();
        let mut root_line = None;
        if self.root_is_transfer_dir {
            let flags = match dst {
                None => self.new_dir_flags(src, alts.iter().flatten().next().copied()),
                Some(_) if self.root_is_new => {
                    self.new_dir_flags(src, alts.iter().flatten().next().copied())
                }
                Some(d) => self.attr_flags(src, d, 'd', '.', false),
            };
            // (A new root matching an alternate DIR's is not listed, but still gets its
            // metadata.)
            root.set_meta = flags.is_some() || self.root_is_new;
            root_line = flags.and_then(|f| self.line_text(Some(src), &f, "./", None));
        }
        // Equal digests mean nothing below differs, for the root as for any directory:
        // over a wire the root then arrives without its children, which must not read as
        // "the source is empty".
        let unchanged = rename.is_none()
            && src.link_leader.is_none()
            && dst.is_some_and(|d| d.digest == src.digest);
        if unchanged {
            st.lines.extend(root_line);
        } else {
            self.plan_children(&mut root, dst, &alts, &mut st, true, root_line);
        }
        let mut lines = st.lines;
        let at = st.late_at.unwrap_or(lines.len()).min(lines.len());
        lines.splice(at..at, st.late_deletions);
        // rsync links the other names of a transferred file when its receiver is done with
        // it, which it tells after the rest of the listing.
        for &g in &st.transferred_groups {
            let group = &mut st.groups[g];
            lines.append(&mut group.waiting);
            lines.append(&mut group.after_transfer);
        }
        // (A leader never planned, its directory unchanged or it skipped: the names before
        // it are still linked to it.)
        for group in st.groups.iter().filter(|g| !g.planned) {
            let arrow = Some(format!(" => {}", show(&group.leader)));
            for m in group.before().iter().rev() {
                lines.extend(self.line_text(None, "hf+++++++++", &show(m), arrow.clone()));
                st.plan_links.push(HardLink {
                    rel: m.clone(),
                    leader: Cow::Owned(group.leader.clone()),
                    new: true,
                });
            }
        }
        let lines = match self.opts.delete_when {
            DeleteWhen::During => lines,
            DeleteWhen::Before => [st.deletion_lines, lines].concat(),
            DeleteWhen::Delay | DeleteWhen::After => [lines, st.deletion_lines].concat(),
        };
        Plan {
            root,
            links: st.plan_links,
            lines,
            delete_skipped: st.delete_skipped,
            refused: st.refused,
        }
    }

    /// `--no-implied-dirs` (with `-R`): a directory sent only as the path to a named
    /// source, whose attributes are not the destination's business.
    fn keeps_implied(&self, e: &Entry) -> bool {
        self.opts.no_implied_dirs && self.opts.relative && e.implied
    }

    fn line(
        &self,
        st: &mut State<'_>,
        e: Option<&Entry>,
        flags: &str,
        rel: &str,
        extra: Option<String>,
    ) {
        if let Some(l) = self.line_text(e, flags, rel, extra) {
            st.lines.push(l);
        }
    }

    /// An item's line for stdout (`-i`, `-v` or `--out-format`) and for the log
    /// (`--log-file-format`; under `-n` only what rsync's generator makes itself). Without `%i`
    /// in the format (and for `-v`), rsync lists what changed in a significant way: a
    /// transfer, a link or node made, a directory touched, not another entry whose
    /// attributes alone changed.
    fn line_text(
        &self,
        e: Option<&Entry>,
        flags: &str,
        rel: &str,
        extra: Option<String>,
    ) -> Option<Line> {
        let o = self.opts;
        let attrs_only = flags.starts_with('.') && flags.get(1..2) != Some("d");
        let extra = extra.as_deref();
        let out = match &o.out_format {
            Some(f) if o.names && (f.has('i') || !attrs_only) => {
                Some(self.render(f, e, flags, rel, extra))
            }
            Some(_) => None,
            None if o.itemize => Some(format!("{flags} {rel}{}", extra.unwrap_or_default())),
            None if o.names && !attrs_only => Some(format!("{rel}{}", extra.unwrap_or_default())),
            None => None,
        };
        // (Under -n rsync's generator still logs what it makes or touches itself: a
        // directory, a link, a node.)
        let logged = !o.dry_run || flags.starts_with(['c', 'h']) || flags.get(1..2) == Some("d");
        let log = o
            .log_format
            .as_ref()
            .filter(|f| logged && (f.has('i') || !attrs_only))
            .map(|f| self.render(f, e, flags, rel, extra));
        (out.is_some() || log.is_some()).then_some(Line { out, log })
    }

    fn render(
        &self,
        f: &Format,
        e: Option<&Entry>,
        flags: &str,
        name: &str,
        extra: Option<&str>,
    ) -> String {
        f.render(&Fields {
            flags,
            name,
            // (" -> TARGET" or " => NAME": the arrow is four characters.)
            link: extra.and_then(|x| Some((x.get(..4)?, x.get(4..)?))),
            // rsync's client is the sender but on a pull.
            op: if self.pulled { "recv" } else { "send" },
            meta: e.map(|e| &e.meta),
            perms: e.map(|e| (e.meta.kind, e.meta.mode)),
            owner: self.opts.owner,
            group: self.opts.group,
            transfer: flags.starts_with(['>', '<']),
        })
    }

    /// A transferred file's line: in the listing; or printed when the file is done,
    /// with the progress line (item.line) or with its bytes (item.late).
    fn transfer_line(&self, st: &mut State<'_>, item: &mut Item<'_>, line: Option<Line>) {
        let Some(mut l) = line else {
            return;
        };
        let o = self.opts;
        if o.dry_run {
            // (Nothing is sent.)
            st.lines.push(l.filled(0, 0));
            return;
        }
        if o.progress == 1 || o.json {
            item.line = l
                .out
                .take()
                .map(|t| crate::outfmt::fill(&t, item.src.meta.size, 0));
        }
        if l.waits() {
            item.late = Some(l);
        } else if l.out.is_some() || l.log.is_some() {
            st.lines.push(l);
        }
    }

    /// Plans one directory's entries, then descends into its subdirectories in name order:
    /// rsync lists a directory's line (`own_line`), its other entries, then each
    /// subdirectory's line and contents in turn, depth first. Under --delete-during the
    /// directory's `*deleting` lines come before its own line.
    /// `alts` holds, for each alternate DIR, its directory at this path (if it has one).
    fn plan_children<'a>(
        &self,
        dir: &mut DirPlan<'a>,
        dst: Option<&'a Entry>,
        alts: &[Option<&Entry>],
        st: &mut State<'a>,
        is_root: bool,
        own_line: Option<Line>,
    ) {
        let o = self.opts;
        let src = dir.src;
        let empty: &[Entry] = &[];
        let dst_children = dst.map(|d| d.children.as_slice()).unwrap_or(empty);
        let may_delete = o.delete
            && !self.no_deletes
            && src.complete
            && dst.map(|d| d.complete).unwrap_or(false)
            && (!is_root || self.root_is_transfer_dir);
        let mut pending_dirs: Vec<PendingDir<'a>> = Vec::new();
        let start = st.lines.len();
        let links_before = st.plan_links.len();
        let mut extraneous: Vec<&'a Entry> = Vec::new();
        let doomed = doomed_dirs(
            src,
            dst_children,
            may_delete && o.delete_when != DeleteWhen::After && o.delete_when != DeleteWhen::Delay,
        );

        // Merge the two sorted child lists.
        let (mut i, mut j) = (0, 0);
        let s = &src.children;
        while i < s.len() || j < dst_children.len() {
            let ord = match (s.get(i), dst_children.get(j)) {
                (Some(a), Some(b)) => a.name.cmp(&b.name),
                (Some(_), None) => Ordering::Less,
                (None, _) => Ordering::Greater,
            };
            match ord {
                Ordering::Greater => {
                    let d = &dst_children[j];
                    j += 1;
                    if may_delete && !d.protected {
                        extraneous.push(d);
                    } else if !self.missing.is_empty()
                        && !d.protected
                        && self.missing.contains(&join(&dir.rel, &d.name))
                    {
                        self.delete_missing(dir, d, st);
                    }
                }
                Ordering::Less => {
                    let e = &s[i];
                    i += 1;
                    self.entry(dir, e, None, alts, st, &mut pending_dirs, is_root);
                }
                Ordering::Equal => {
                    let (e, d) = (&s[i], &dst_children[j]);
                    i += 1;
                    j += 1;
                    if d.followed && doomed.contains(&(d.meta.dev, d.meta.ino)) {
                        // A -K link into a directory deleted here first: it would dangle,
                        // so it is replaced (as rsync finds it dangling and replaces it).
                        self.delete(dir, d, true, st);
                        self.entry(dir, e, None, alts, st, &mut pending_dirs, is_root);
                        continue;
                    }
                    if e.digest == d.digest
                        && e.link_leader.is_none()
                        && (st.member_of.is_empty()
                            || !st.member_of.contains_key(&join(&dir.rel, &e.name)))
                    {
                        continue;
                    }
                    self.entry(dir, e, Some(d), alts, st, &mut pending_dirs, is_root);
                }
            }
        }
        // rsync walks a directory's extraneous entries in reverse of its list order, before
        // its entries (whose changes of kind may remove more).
        let replaced = std::mem::take(&mut st.dir_deletions);
        for d in rsync_order(extraneous).into_iter().rev() {
            self.delete(dir, d, false, st);
        }
        st.dir_deletions.extend(replaced);
        let entries = st.lines.split_off(start);
        let deletions = std::mem::take(&mut st.dir_deletions);
        // --delete-before has removed entries before rsync compares the directory, whose
        // time has moved then.
        let own_line = match dst {
            Some(d)
                if o.delete_when == DeleteWhen::Before
                    && dir.deletes.iter().any(|x| !x.replace) =>
            {
                self.touched_dir_line(src, d, &dir.rel)
            }
            _ => own_line,
        };
        if dir.rel.is_empty() {
            // The deletions below the top overtake the top's entries where rsync's generator
            // does not wait for the next directory's list (it has them all beforehand
            // without its incremental recursion and under -H) or where the receiver lists.
            let overtake = !inc_recursive(o) || o.hard_links || self.pulled;
            st.lines.extend(deletions);
            st.lines.extend(own_line);
            if overtake {
                st.late_at = Some(st.lines.len());
            }
            st.lines.extend(entries);
            if !overtake {
                st.late_at = Some(st.lines.len());
            }
        } else {
            st.late_deletions.extend(deletions);
            st.lines.extend(own_line);
            st.lines.extend(entries);
        }
        if !dir.deletes.is_empty()
            || !dir.items.is_empty()
            || dir.dst.is_none()
            || st.plan_links.len() > links_before
        {
            dir.set_meta = true;
        }
        pending_dirs.sort_by(|a, b| dir_name_cmp(&a.e.name, &b.e.name));
        for PendingDir { e, d, rel, line } in pending_dirs {
            let mut sub = DirPlan {
                src: e,
                src_name: st.src_name(&e.name, is_root),
                name: &e.name,
                rel,
                dst: d.map(|d| d.meta),
                via_link: d.is_some_and(|d| d.followed),
                set_meta: false,
                deletes: Vec::new(),
                items: Vec::new(),
                subdirs: Vec::new(),
                implied: self.keeps_implied(e),
            };
            let attrs_differ = match d {
                None => true,
                Some(d) => self.attr_flags(e, d, 'd', '.', false).is_some(),
            };
            let sub_alts: Vec<Option<&Entry>> = alts
                .iter()
                .map(|a| a.and_then(|a| a.child(&e.name)).filter(|c| c.is_dir()))
                .collect();
            self.plan_children(&mut sub, d, &sub_alts, st, false, line);
            if sub.implied {
                // (Its own times move with what is made in it, as rsync leaves them.)
                sub.set_meta = false;
                dir.set_meta |= d.is_none();
            } else {
                sub.set_meta |= attrs_differ;
                if sub.set_meta {
                    dir.set_meta |= d.is_none();
                }
            }
            dir.subdirs.push(sub);
        }
    }

    /// `--delete-missing-args`: the destination's entry at a missing source's name goes
    /// whatever --delete says (a directory with entries only under --delete or --force,
    /// else rsync's note), its lines where rsync's generator meets the name: in list order
    /// among the other entries (a missing source sorts as a file), not with the
    /// directory's deletions.
    fn delete_missing<'a>(&self, dir: &mut DirPlan<'a>, d: &'a Entry, st: &mut State<'a>) {
        let o = self.opts;
        let rel = join(&dir.rel, &d.name);
        if d.is_dir() && !d.children.is_empty() && !(o.delete || o.force) {
            if !o.quiet {
                st.lines.push(Line::message(format!(
                    "cannot delete non-empty directory: {}",
                    show(&rel)
                )));
            }
            return;
        }
        let during = std::mem::take(&mut st.dir_deletions);
        let before = std::mem::take(&mut st.deletion_lines);
        st.deletes += 1;
        self.deletion_lines(d, &rel, true, st);
        let mut lines = std::mem::replace(&mut st.dir_deletions, during);
        lines.append(&mut st.deletion_lines);
        st.deletion_lines = before;
        st.lines.extend(lines);
        dir.deletes.push(Delete {
            entry: d,
            rel,
            under: Vec::new(),
            shallow: false,
            replace: false,
        });
    }

    fn delete<'a>(&self, dir: &mut DirPlan<'a>, d: &'a Entry, replace: bool, st: &mut State<'a>) {
        if !replace && self.opts.max_delete.is_some() {
            return self.delete_counted(dir, d, Vec::new(), st);
        }
        let rel = join(&dir.rel, &d.name);
        if !replace {
            st.deletes += 1;
            self.deletion_lines(d, &rel, true, st);
        } else if (self.opts.delete || self.opts.force) && d.is_dir() {
            // A directory that a file replaces: rsync lists what it removes in it (under
            // --delete or --force, which let it remove a non-empty one), not the directory.
            self.replaced_lines(d, &rel, st);
        }
        dir.deletes.push(Delete {
            entry: d,
            rel,
            under: Vec::new(),
            shallow: false,
            replace,
        });
    }

    /// rsync lists everything a deletion removes, deepest first, each directory's entries
    /// in reverse name order. A directory that keeps something — a protected entry, or
    /// under `-b` without a DIR the backups made in it — is not removed, and rsync says
    /// so (whatever the verbosity): once for the deletion's own directory, twice for one
    /// below it that kept a protected entry (once for its contents, once for its removal).
    /// Returns whether the deletion leaves something at `rel`'s directory level.
    fn deletion_lines(&self, d: &Entry, rel: &[u8], top: bool, st: &mut State<'_>) -> bool {
        if !d.is_dir() {
            self.deletion_line(st, &show(rel), d);
            // (A file that is itself a backup is deleted without one.)
            return self.opts.backup.as_ref().is_some_and(|b| match &b.dir {
                None => !(rel.len() > b.suffix.len() && rel.ends_with(b.suffix.as_bytes())),
                Some(_) => true,
            });
        }
        let (mut contents_kept, mut backups) = (false, false);
        // (A -K directory link is removed as the link: nothing below it goes.)
        let below = if d.followed {
            Vec::new()
        } else {
            rsync_order(d.children.iter().collect())
        };
        for c in below.into_iter().rev() {
            if c.protected && !c.perishable {
                contents_kept = true;
            } else if self.deletion_lines(c, &join(rel, &c.name), false, st) {
                if c.is_dir() {
                    contents_kept = true;
                } else {
                    backups |= self.backups_land_in(rel);
                }
            }
        }
        if contents_kept || backups {
            let times = if contents_kept && !top { 2 } else { 1 };
            for _ in 0..times {
                self.kept_dir_line(st, rel);
            }
            return true;
        }
        self.deletion_line(st, &format!("{}/", show(rel)), d);
        false
    }

    /// `-b`: whether backups of what is deleted below the destination directory `rel` are
    /// made inside it: beside the files without a DIR, or with a DIR inside it (relative to
    /// the destination, as `--backup-dir=bak` while `bak` itself is deleted).
    fn backups_land_in(&self, rel: &[u8]) -> bool {
        match self.opts.backup.as_ref().map(|b| b.dir.as_deref()) {
            None => false,
            Some(None) => true,
            Some(Some(dir)) => {
                let absolute = dir.starts_with('/');
                let dir: Vec<&[u8]> = crate::fs::components(dir.as_bytes()).collect();
                let rel: Vec<&[u8]> = crate::fs::components(rel).collect();
                !absolute && !dir.contains(&&b".."[..]) && dir.starts_with(&rel)
            }
        }
    }

    /// rsync's note (an informational line, not a listing one) for a directory a deletion
    /// leaves because something in it stays.
    fn kept_dir_line(&self, st: &mut State<'_>, rel: &[u8]) {
        if self.opts.quiet {
            return;
        }
        let line = Line::message(format!("cannot delete non-empty directory: {}", show(rel)));
        if self.opts.delete_when == DeleteWhen::During {
            st.dir_deletions.push(line);
        } else {
            st.deletion_lines.push(line);
        }
    }

    /// The `*deleting` lines of a replaced directory's contents, listed where the
    /// directory's own deletions are whenever deletions happen.
    fn replaced_lines(&self, d: &Entry, rel: &[u8], st: &mut State<'_>) {
        let before = std::mem::take(&mut st.deletion_lines);
        let during = std::mem::take(&mut st.dir_deletions);
        for c in rsync_order(d.children.iter().filter(|c| !c.protected).collect())
            .into_iter()
            .rev()
        {
            self.deletion_lines(c, &join(rel, &c.name), false, st);
        }
        let mut lines = std::mem::replace(&mut st.deletion_lines, before);
        lines.append(&mut st.dir_deletions);
        st.dir_deletions = [during, lines].concat();
    }

    /// A deletion's line: in the format when it has `%i` or `%o` (rsync's rule, for the
    /// log's format too), else `deleting NAME`; listed under `--out-format` whatever the
    /// verbosity, as rsync.
    fn deletion_line(&self, st: &mut State<'_>, shown: &str, d: &Entry) {
        let o = self.opts;
        let shaped = |f: &Format| {
            if f.has('i') || f.has('o') {
                f.render(&Fields {
                    flags: "*deleting  ",
                    name: shown,
                    link: None,
                    op: "del.",
                    meta: None,
                    // (A pulling rsync deletes, and shows, the entry itself; elsewhere it
                    // is told the name by the receiver, with no permissions.)
                    perms: self.pulled.then_some((d.meta.kind, d.meta.mode)),
                    owner: o.owner,
                    group: o.group,
                    transfer: false,
                })
            } else {
                format!("deleting {shown}")
            }
        };
        let out = match &o.out_format {
            Some(f) => o.names.then(|| shaped(f)),
            None if o.itemize => Some(format!("*deleting   {shown}")),
            None if o.verbose > 0 => Some(format!("deleting {shown}")),
            None => None,
        };
        let log = o.log_format.as_ref().filter(|_| !o.dry_run).map(shaped);
        if out.is_none() && log.is_none() {
            return;
        }
        let line = Line { out, log };
        if self.opts.delete_when == DeleteWhen::During {
            st.dir_deletions.push(line);
        } else {
            st.deletion_lines.push(line);
        }
    }

    /// --max-delete: entries are deleted one at a time in rsync's order (a directory's
    /// contents in reverse name order before the directory) until the budget is spent.
    fn delete_counted<'a>(
        &self,
        dir: &mut DirPlan<'a>,
        d: &'a Entry,
        under: Vec<u8>,
        st: &mut State<'a>,
    ) {
        let max = self.opts.max_delete.unwrap_or(u64::MAX);
        let here = join(&under, &d.name);
        if d.is_dir() && d.complete && !d.followed {
            for c in rsync_order(
                d.children
                    .iter()
                    .filter(|c| !c.protected || c.perishable)
                    .collect(),
            )
            .into_iter()
            .rev()
            {
                self.delete_counted(dir, c, here.clone(), st);
            }
        }
        if st.deletes >= max {
            st.delete_skipped += 1;
            return;
        }
        st.deletes += 1;
        let rel = join(&dir.rel, &here);
        let shown = if d.is_dir() {
            format!("{}/", show(&rel))
        } else {
            show(&rel)
        };
        self.deletion_line(st, &shown, d);
        dir.deletes.push(Delete {
            entry: d,
            rel,
            under,
            shallow: true,
            replace: false,
        });
    }

    /// rsync's generator for one name: which action the source entry (or its absence)
    /// calls for against the destination's and the alternate DIRs' entries. Long because it
    /// is rsync's decision table in rsync's order (`--existing`/`--ignore-existing`, a
    /// change of kind, new directories, the alternate DIRs, `-u`, the quick check,
    /// attribute-only updates), each rule reading the previous ones' outcome.
    #[allow(clippy::too_many_arguments)]
    fn entry<'a>(
        &self,
        dir: &mut DirPlan<'a>,
        e: &'a Entry,
        d: Option<&'a Entry>,
        alts: &[Option<&Entry>],
        st: &mut State<'a>,
        pending_dirs: &mut Vec<PendingDir<'a>>,
        is_root: bool,
    ) {
        let o = self.opts;
        let rel = join(&dir.rel, &e.name);
        let src_name: &'a [u8] = st.src_name(&e.name, is_root);
        // Both count an entry of any kind as existing; only a directory meeting a
        // directory is still descended under --ignore-existing.
        if d.is_none() && o.existing {
            return;
        }
        if o.ignore_existing && d.is_some_and(|d| !(d.is_dir() && e.is_dir())) {
            return;
        }
        // (Before a different kind at the destination is replaced: rsync leaves that too.)
        if e.meta.kind == Kind::File && !o.sizes.contains(e.meta.size) {
            return;
        }
        // --safe-links: an unsafe link is skipped here, on the receiving side as in rsync,
        // so whatever the destination has at its name stays (the sender still lists it).
        if e.meta.kind == Kind::Symlink
            && o.links
            && o.safe_links
            && let Some(t) = e.target.as_deref()
            && crate::pathsafe::unsafe_link(t, &rel)
        {
            if o.verbose > 0 && !o.quiet {
                st.lines.push(Line::message(format!(
                    "ignoring unsafe symlink \"{}\" -> \"{}\"",
                    show(&rel),
                    show(t)
                )));
            }
            return;
        }
        // --no-implied-dirs: what the destination has at an implied directory's name is
        // not the sender's to replace, and a symlink there is never followed.
        if self.keeps_implied(e) && d.is_some_and(|d| !d.is_dir()) {
            st.refused.push(rel);
            return;
        }
        // A different kind at the destination is removed first (rsync does this even
        // without --delete).
        let d = match d {
            Some(d) if d.meta.kind != e.meta.kind => {
                self.delete(dir, d, true, st);
                None
            }
            other => other,
        };
        let shown = show(&rel);
        match e.meta.kind {
            Kind::Dir => {
                let flags = match d {
                    _ if self.keeps_implied(e) => None,
                    None => {
                        let alt = alts
                            .iter()
                            .flatten()
                            .find_map(|a| a.child(&e.name).filter(|c| c.is_dir()));
                        self.new_dir_flags(e, alt)
                    }
                    Some(d) => self.attr_flags(e, d, 'd', '.', false),
                };
                let line =
                    flags.and_then(|f| self.line_text(Some(e), &f, &format!("{shown}/"), None));
                pending_dirs.push(PendingDir { e, d, rel, line });
            }
            Kind::File => {
                if let Some(&g) = st.member_of.get(&rel) {
                    self.group_member(dir, e, d, src_name, rel, g, st);
                    return;
                }
                if o.hard_links
                    && let Some(leader) = &e.link_leader
                {
                    // A follower with an exact match of its own in DIR is linked (or left
                    // out) like its leader, which it then shares an inode with anyway; it
                    // is not listed, as rsync does not list it.
                    if self.alt.is_some_and(|a| a.kind != AltDest::Copy)
                        && self.alt_file(dir, e, d, alts, src_name, &rel, st, true)
                    {
                        return;
                    }
                    self.follower(e, d, leader, rel, st);
                    return;
                }
                if self.alt_file(dir, e, d, alts, src_name, &rel, st, false) {
                    return;
                }
                self.plain_file(dir, e, d, src_name, rel, st);
            }
            Kind::Symlink | Kind::CharDev | Kind::BlockDev | Kind::Fifo | Kind::Socket => {
                let letter = e.meta.kind.itemize_letter();
                let extra = e.target.as_ref().map(|t| format!(" -> {}", show(t)));
                let (action, flags) = match d {
                    None if self.alt.is_some() => match self.alt_node(e, alts) {
                        None => (Action::Special, format!("c{letter}+++++++++")),
                        Some((j, a, AltMatch::Exact)) => {
                            let action = match self.alt.map(|x| x.kind) {
                                Some(AltDest::Link) => Action::AltLink,
                                Some(AltDest::Copy) => Action::Special,
                                _ => return,
                            };
                            let mut item = Item::new(e, src_name, rel, d, action);
                            item.alt = Some(AltUse {
                                dir: j,
                                meta: a.meta,
                            });
                            dir.items.push(item);
                            return;
                        }
                        Some((_, a, _)) => {
                            let mut f = self
                                .attr_flags(e, a, letter, 'c', false)
                                .unwrap_or_else(|| format!("c{letter}........."));
                            if !same_node(e, a) {
                                f.replace_range(2..3, "c");
                            }
                            (Action::Special, f)
                        }
                    },
                    None => (Action::Special, format!("c{letter}+++++++++")),
                    Some(d) => {
                        let changed = !same_node(e, d);
                        if changed {
                            let mut f = self
                                .attr_flags(e, d, letter, 'c', false)
                                .unwrap_or_else(|| format!("c{letter}........."));
                            f.replace_range(2..3, "c");
                            (Action::Special, f)
                        } else if let Some(f) = self.attr_flags(e, d, letter, '.', false) {
                            (Action::Meta, f)
                        } else {
                            return;
                        }
                    }
                };
                self.line(st, Some(e), &flags, &shown, extra);
                dir.items.push(Item::new(e, src_name, rel, d, action));
            }
        }
    }

    /// A regular file on its own: transferred (new, or the quick check says it differs),
    /// its attributes updated, or nothing; the action planned, if any.
    fn plain_file<'a>(
        &self,
        dir: &mut DirPlan<'a>,
        e: &'a Entry,
        d: Option<&'a Entry>,
        src_name: &'a [u8],
        rel: Vec<u8>,
        st: &mut State<'a>,
    ) -> Option<Action> {
        let o = self.opts;
        // (A single file copied to another name is listed by its source name, as rsync.)
        let shown = show(if dir.rel.is_empty() { src_name } else { &rel });
        let (action, flags) = match d {
            None => (
                Action::Transfer,
                format!("{}f+++++++++", self.opts.transfer_mark()),
            ),
            Some(d) => {
                if o.update && o.modify_window.newer(&d.meta, &e.meta) {
                    return None;
                }
                if self.needs_transfer(e, d) {
                    // rsync 3's --append: a destination file as long as the source or
                    // longer is left alone, attributes too.
                    if o.append.is_some() && d.meta.kind == Kind::File && d.meta.size >= e.meta.size
                    {
                        return None;
                    }
                    let mut f = self
                        .attr_flags(e, d, 'f', self.opts.transfer_mark(), true)
                        .unwrap_or_else(|| format!("{}f.........", self.opts.transfer_mark()));
                    if o.checksum && e.hash != d.hash {
                        f.replace_range(2..3, "c");
                    }
                    (Action::Transfer, f)
                } else if let Some(f) = self.attr_flags(e, d, 'f', '.', false) {
                    (Action::Meta, f)
                } else {
                    return None;
                }
            }
        };
        let mut item = Item::new(e, src_name, rel, d, action);
        let line = self.line_text(Some(e), &flags, &shown, None);
        if action == Action::Transfer {
            self.transfer_line(st, &mut item, line);
        } else {
            st.lines.extend(line);
        }
        dir.items.push(item);
        Some(action)
    }

    /// The line of a directory whose time deletions have just moved (when times are kept).
    fn touched_dir_line(&self, src: &Entry, dst: &Entry, rel: &[u8]) -> Option<Line> {
        let o = self.opts;
        let mut f = self.attr_flags(src, dst, 'd', '.', false);
        if o.times && !o.omit_dir_times {
            let mut flags = f.unwrap_or_else(|| ".d.........".into());
            flags.replace_range(4..5, "t");
            f = Some(flags);
        }
        let shown = if rel.is_empty() {
            "./".to_string()
        } else {
            format!("{}/", show(rel))
        };
        f.and_then(|f| self.line_text(Some(src), &f, &shown, None))
    }

    /// The `-i` flags of a directory that does not exist yet: new, or (rsync's way with an
    /// alternate DIR holding it) what differs from DIR's copy, nothing when nothing does.
    fn new_dir_flags(&self, src: &Entry, alt: Option<&Entry>) -> Option<String> {
        match alt {
            None => Some("cd+++++++++".to_string()),
            Some(a) => self.attr_flags(src, a, 'd', 'c', false),
        }
    }

    /// rsync's search of the alternate DIRs for a regular file, in order: the first exact
    /// match wins; else the first that passes the quick check; else the first regular file
    /// (a basis). The comparisons are the destination's own ([`Self::needs_transfer`],
    /// [`Self::attr_flags`]): a hard link shares every attribute, so only a file equal in
    /// all the preserved ones may be linked.
    fn alt_match<'x>(
        &self,
        e: &Entry,
        alts: &[Option<&'x Entry>],
    ) -> Option<(usize, &'x Entry, AltMatch)> {
        let mut best: Option<(usize, &'x Entry, AltMatch)> = None;
        for (j, a) in alts.iter().enumerate() {
            let Some(a) = a
                .and_then(|a| a.child(&e.name))
                .filter(|a| a.meta.kind == Kind::File && !a.protected)
            else {
                continue;
            };
            if self.needs_transfer(e, a) {
                if best.is_none() {
                    best = Some((j, a, AltMatch::Basis));
                }
                continue;
            }
            if self.attr_flags(e, a, 'f', '.', false).is_none() {
                return Some((j, a, AltMatch::Exact));
            }
            if !matches!(best, Some((_, _, AltMatch::Quick))) {
                best = Some((j, a, AltMatch::Quick));
            }
        }
        best
    }

    /// The same search for a symlink, device or special file (rsync's try_dests_non): an
    /// entry of the same kind, exact when its target (or device number) and attributes
    /// are equal.
    fn alt_node<'x>(
        &self,
        e: &Entry,
        alts: &[Option<&'x Entry>],
    ) -> Option<(usize, &'x Entry, AltMatch)> {
        let letter = e.meta.kind.itemize_letter();
        let mut best = None;
        for (j, a) in alts.iter().enumerate() {
            let Some(a) = a
                .and_then(|a| a.child(&e.name))
                .filter(|a| a.meta.kind == e.meta.kind && !a.protected)
            else {
                continue;
            };
            if same_node(e, a) && self.attr_flags(e, a, letter, '.', false).is_none() {
                return Some((j, a, AltMatch::Exact));
            }
            best = best.or(Some((j, a, AltMatch::Basis)));
        }
        best
    }

    /// A regular file with alternate DIRs: plans what DIR's copy allows and returns true,
    /// or false when the file takes the usual path (nothing in DIR, or a destination file
    /// that exists and DIR holds no exact match for: rsync then updates the destination's).
    /// `--copy-dest` looks in DIR only for a file missing from the destination. With
    /// `exact_only` (a `-H` follower), only an exact match counts.
    #[allow(clippy::too_many_arguments)]
    fn alt_file<'a>(
        &self,
        dir: &mut DirPlan<'a>,
        e: &'a Entry,
        d: Option<&'a Entry>,
        alts: &[Option<&Entry>],
        src_name: &'a [u8],
        rel: &[u8],
        st: &mut State<'a>,
        exact_only: bool,
    ) -> bool {
        let Some(kind) = self.alt.map(|a| a.kind) else {
            return false;
        };
        if d.is_some() && kind == AltDest::Copy {
            return false;
        }
        let Some((j, a, level)) = self.alt_match(e, alts) else {
            return false;
        };
        if exact_only && level != AltMatch::Exact {
            return false;
        }
        let alt = AltUse {
            dir: j,
            meta: a.meta,
        };
        let shown = show(rel);
        let (action, flags) = match (level, d) {
            (AltMatch::Exact, _) => {
                match (kind, d) {
                    // Already DIR's file (linked by an earlier run).
                    (AltDest::Link, Some(d))
                        if d.meta.ino == a.meta.ino && d.meta.dev == a.meta.dev =>
                    {
                        return true;
                    }
                    // rsync removes a destination file that DIR's copy stands in for, so
                    // the result is what a fresh run into an empty directory would give.
                    (AltDest::Compare, Some(d)) => {
                        self.delete(dir, d, true, st);
                        return true;
                    }
                    (AltDest::Compare, None) => return true,
                    _ => {}
                }
                // (Listed by rsync only at -ii, which xsync does not have.)
                let action = if kind == AltDest::Link {
                    Action::AltLink
                } else {
                    Action::AltCopy
                };
                (action, None)
            }
            (AltMatch::Quick, None) => (Action::AltCopy, self.attr_flags(e, a, 'f', 'c', false)),
            (AltMatch::Basis, None) => {
                let mut f = self
                    .attr_flags(e, a, 'f', self.opts.transfer_mark(), true)
                    .unwrap_or_else(|| format!("{}f.........", self.opts.transfer_mark()));
                if self.opts.checksum && e.hash != a.hash {
                    f.replace_range(2..3, "c");
                }
                (Action::Transfer, Some(f))
            }
            _ => return false,
        };
        let mut item = Item::new(e, src_name, rel.to_vec(), d, action);
        item.alt = Some(alt);
        if let Some(f) = flags {
            let line = self.line_text(Some(e), &f, &shown, None);
            if action == Action::Transfer {
                self.transfer_line(st, &mut item, line);
            } else {
                st.lines.extend(line);
            }
        }
        dir.items.push(item);
        true
    }

    /// rsync's quick check: size, then checksum (-c), --size-only, -I (never equal), mtime.
    fn needs_transfer(&self, e: &Entry, d: &Entry) -> bool {
        let o = self.opts;
        if e.meta.size != d.meta.size {
            return true;
        }
        if o.checksum {
            return e.hash != d.hash;
        }
        if o.size_only {
            return false;
        }
        o.ignore_times || !o.modify_window.same(&e.meta, &d.meta)
    }

    /// The itemize string for an existing entry whose attributes differ, or None when none
    /// of the preserved attributes do. `y` is the update-type letter; `sized` shows the
    /// size column for transferred files.
    fn attr_flags(&self, se: &Entry, de: &Entry, x: char, y: char, sized: bool) -> Option<String> {
        let o = self.opts;
        let (s, d) = (&se.meta, &de.meta);
        let xattrs = o.receiver_xattrs().is_some_and(|scope| {
            !crate::xattr::same(se.xattrs.as_deref(), de.xattrs.as_deref(), scope)
        });
        let size = sized && s.size != d.size;
        let time = !o.modify_window.same(s, d)
            && match s.kind {
                // (A transferred file gets the source's time even without -t: rsync's 'T'.)
                Kind::File => o.times || sized,
                Kind::Dir => o.times && !o.omit_dir_times,
                Kind::Symlink => o.times && !o.omit_link_times,
                _ => o.times,
            };
        let acls = o.acls
            && s.kind != Kind::Symlink
            && !crate::acl::same(se.acls.as_deref(), de.acls.as_deref());
        let perms = if o.perms {
            s.kind != Kind::Symlink && s.mode != d.mode
        } else {
            // -E: what the file's mode would become (rsync compares its tweaked mode too,
            // so a file no one may read, which -E leaves alone, shows no p).
            self.rules.executability
                && s.kind == Kind::File
                && self.rules.file_mode(s, Some(d)) != d.mode
        };
        let owner = self.rules.owner && s.uid != d.uid;
        let group = s.gid != d.gid && self.rules.sets_group(s.gid);
        // -U: rsync's `u` (the access, or use, time) in the column after the group's.
        let atime = o.atimes && crate::summary::has_atime(s.kind) && s.atime != d.atime;
        if !(size || time || perms || owner || group || atime || xattrs || acls || sized) {
            return None;
        }
        // rsync sets the attributes of a non-directory whose content is not sent before it
        // lists it, and an access ACL set brings the permission bits with it: `p` then shows
        // only set-id and sticky bits that differ.
        let perms = perms
            && !(y == '.'
                && s.kind != Kind::Dir
                && o.acls
                && crate::acl::access_differs(se.acls.as_deref(), de.acls.as_deref())
                && (s.mode ^ d.mode) & 0o7000 == 0);
        let t = if time {
            if o.times { 't' } else { 'T' }
        } else {
            '.'
        };
        Some(format!(
            "{y}{x}.{}{t}{}{}{}{}{}{}",
            if size { 's' } else { '.' },
            if perms { 'p' } else { '.' },
            if owner { 'o' } else { '.' },
            if group { 'g' } else { '.' },
            if atime { 'u' } else { '.' },
            if acls { 'a' } else { '.' },
            if xattrs { 'x' } else { '.' },
        ))
    }

    /// `-H`: a follower is linked to its leader unless it already is one with it and the
    /// leader's content is unchanged.
    fn follower<'a>(
        &self,
        e: &'a Entry,
        d: Option<&'a Entry>,
        leader: &'a [u8],
        rel: Vec<u8>,
        st: &mut State<'a>,
    ) {
        let dst_leader = st.dst_root.and_then(|r| lookup(r, leader));
        let linked = match (d, dst_leader) {
            (Some(d), Some(l)) => {
                d.meta.ino == l.meta.ino
                    && d.meta.dev == l.meta.dev
                    && !self.needs_transfer(e, d)
                    && self.attr_flags(e, d, 'f', '.', false).is_none()
            }
            _ => false,
        };
        if linked {
            return;
        }
        let flags = if d.is_none() {
            "hf+++++++++"
        } else {
            "hf........."
        };
        self.line(
            st,
            Some(e),
            flags,
            &show(&rel),
            Some(format!(" => {}", show(leader))),
        );
        st.plan_links.push(HardLink {
            rel,
            leader: Cow::Borrowed(leader),
            new: d.is_none(),
        });
    }

    /// `-H`, one name of a [`LinkGroup`]: the leader is planned as a file of its own; the
    /// names before it are linked to it (listed after it, or once its transfer is done);
    /// a name after it is linked unless it already is one with it.
    #[allow(clippy::too_many_arguments)]
    fn group_member<'a>(
        &self,
        dir: &mut DirPlan<'a>,
        e: &'a Entry,
        d: Option<&'a Entry>,
        src_name: &'a [u8],
        rel: Vec<u8>,
        g: usize,
        st: &mut State<'a>,
    ) {
        let leader = st.groups[g].leader.clone();
        let arrow = Some(format!(" => {}", show(&leader)));
        if rel == leader {
            let transferred =
                self.plain_file(dir, e, d, src_name, rel, st) == Some(Action::Transfer);
            let group = &mut st.groups[g];
            group.planned = true;
            group.transferred = transferred;
            let mut lines = Vec::new();
            for m in group.before().iter().rev() {
                lines.extend(self.line_text(None, "hf+++++++++", &show(m), arrow.clone()));
                st.plan_links.push(HardLink {
                    rel: m.clone(),
                    leader: Cow::Owned(leader.clone()),
                    new: true,
                });
            }
            if transferred {
                st.groups[g].after_transfer = lines;
                st.transferred_groups.push(g);
            } else {
                st.lines.extend(lines);
            }
            return;
        }
        if st.groups[g].before().contains(&rel) {
            return;
        }
        let transferred = st.groups[g].transferred;
        if !transferred
            && let (Some(d), Some(l)) = (d, st.dst_root.and_then(|r| lookup(r, &leader)))
            && d.meta.ino == l.meta.ino
            && d.meta.dev == l.meta.dev
        {
            return;
        }
        let flags = match d {
            None => "hf+++++++++".to_string(),
            Some(d) => self
                .attr_flags(e, d, 'f', 'h', true)
                .unwrap_or_else(|| "hf.........".into()),
        };
        let line = self.line_text(Some(e), &flags, &show(&rel), arrow);
        st.plan_links.push(HardLink {
            rel,
            leader: Cow::Owned(leader),
            new: d.is_none(),
        });
        if transferred {
            st.groups[g].waiting.extend(line);
        } else {
            st.lines.extend(line);
        }
    }
}

/// `-K` with deletions before the transfers: the directories (and those below them) that
/// the deletion of a directory's extraneous entries removes, by device and inode, so that a
/// destination link into one of them is not followed. Empty unless a link is there.
fn doomed_dirs(src: &Entry, dst_children: &[Entry], deletes_first: bool) -> Vec<(u64, u64)> {
    fn add(e: &Entry, out: &mut Vec<(u64, u64)>) {
        if e.is_dir() && !e.followed {
            out.push((e.meta.dev, e.meta.ino));
            for c in &e.children {
                add(c, out);
            }
        }
    }
    let mut out = Vec::new();
    if deletes_first && dst_children.iter().any(|c| c.followed) {
        for d in dst_children.iter().filter(|d| !d.protected) {
            if src.child(&d.name).is_none() {
                add(d, &mut out);
            }
        }
    }
    out
}

/// Whether two entries of one non-file kind say the same thing: the same target, or the
/// same device number.
fn same_node(a: &Entry, b: &Entry) -> bool {
    match a.meta.kind {
        Kind::Symlink => a.target == b.target,
        Kind::CharDev | Kind::BlockDev => a.meta.rdev == b.meta.rdev,
        _ => true,
    }
}

/// Whether rsync would walk this transfer with its incremental recursion (its default),
/// which some options turn off: the listing's header and order of deletions depend on it.
pub fn inc_recursive(o: &Options) -> bool {
    o.recursive
        && !o.prune_empty_dirs
        && !matches!(o.delete_when, DeleteWhen::Before | DeleteWhen::After)
}

/// `-H`: the names of one multiply-linked file in rsync's list order, and the one rsync
/// transfers or keeps (the leader): the first that exists at the destination as a file,
/// else the last (rsync defers a missing name while a later one of its group may exist).
struct LinkGroup {
    members: Vec<Vec<u8>>,
    leader: Vec<u8>,
    /// The leader went through the planner (its directory was compared).
    planned: bool,
    transferred: bool,
    /// Names after the leader, linked once its transfer is done; then the names before it.
    waiting: Vec<Line>,
    after_transfer: Vec<Line>,
}

impl LinkGroup {
    fn before(&self) -> &[Vec<u8>] {
        let at = self.members.iter().position(|m| *m == self.leader);
        &self.members[..at.unwrap_or(0)]
    }
}

/// The [`LinkGroup`]s of the source tree the planner sees (each follower's group is
/// named by its first name, `Entry::link_leader`, which may lie in an unchanged directory
/// the planner does not see; then it exists at the destination).
fn link_groups(src: &Entry, dst: Option<&Entry>) -> (Vec<LinkGroup>, HashMap<Vec<u8>, usize>) {
    fn visit(e: &Entry, rel: &[u8], by_key: &mut HashMap<Vec<u8>, Vec<Vec<u8>>>) {
        for c in &e.children {
            let p = join(rel, &c.name);
            if c.meta.kind == Kind::File && !c.protected {
                match &c.link_leader {
                    Some(l) => by_key.entry(l.to_vec()).or_default().push(p.clone()),
                    None if c.meta.nlink > 1 => {
                        by_key.entry(p.clone()).or_default().push(p.clone())
                    }
                    None => {}
                }
            }
            if c.is_dir() {
                visit(c, &p, by_key);
            }
        }
    }
    let mut by_key = HashMap::new();
    visit(src, b"", &mut by_key);
    let mut keys: Vec<Vec<u8>> = by_key.keys().cloned().collect();
    keys.sort();
    let (mut groups, mut member_of) = (Vec::new(), HashMap::new());
    for key in keys {
        let mut members = by_key.remove(&key).unwrap_or_default();
        if !members.contains(&key) {
            members.push(key);
        }
        if members.len() < 2 {
            continue;
        }
        members.sort_by(|a, b| rsync_path_cmp(a, b));
        let exists = |m: &Vec<u8>| {
            dst.and_then(|d| lookup(d, m))
                .is_some_and(|d| d.meta.kind == Kind::File)
        };
        let leader = match members.iter().find(|m| exists(m)) {
            Some(m) => m.clone(),
            None => members[members.len() - 1].clone(),
        };
        for m in &members {
            member_of.insert(m.clone(), groups.len());
        }
        groups.push(LinkGroup {
            members,
            leader,
            planned: false,
            transferred: false,
            waiting: Vec::new(),
            after_transfer: Vec::new(),
        });
    }
    (groups, member_of)
}

/// Two root-relative paths in rsync's list order: at the first level where they differ, a
/// file before a directory, files by name, directories by [`dir_name_cmp`].
fn rsync_path_cmp(a: &[u8], b: &[u8]) -> Ordering {
    let mut ai = a.split(|&c| c == b'/').peekable();
    let mut bi = b.split(|&c| c == b'/').peekable();
    while let (Some(x), Some(y)) = (ai.next(), bi.next()) {
        let order = match (ai.peek().is_some(), bi.peek().is_some()) {
            (false, false) => x.cmp(y),
            (true, true) => dir_name_cmp(x, y),
            (false, true) => Ordering::Less,
            (true, false) => Ordering::Greater,
        };
        if order != Ordering::Equal {
            return order;
        }
    }
    a.len().cmp(&b.len())
}

/// rsync's order of one directory's entries (its file list's): the other entries by name,
/// then the subdirectories, compared as if their names ended in `/`.
fn rsync_order(mut entries: Vec<&Entry>) -> Vec<&Entry> {
    entries.sort_by(|a, b| match (a.is_dir(), b.is_dir()) {
        (false, false) => a.name.cmp(&b.name),
        (true, true) => dir_name_cmp(&a.name, &b.name),
        (a, b) => a.cmp(&b),
    });
    entries
}

/// Two directory names in rsync's order: as if each ended in `/` (`a.b` before `a`).
fn dir_name_cmp(a: &[u8], b: &[u8]) -> Ordering {
    a.iter().chain(b"/").cmp(b.iter().chain(b"/"))
}

/// Finds the entry at a root-relative path.
pub fn lookup<'a>(root: &'a Entry, rel: &[u8]) -> Option<&'a Entry> {
    let mut cur = root;
    for comp in rel.split(|&b| b == b'/') {
        cur = cur.child(comp)?;
    }
    Some(cur)
}
