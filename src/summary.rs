//! The Merkle summary: one digest per entry that covers exactly what the options compare,
//! and for a directory, everything below it.
//!
//! Equal digests on the two sides mean "nothing to do below here", so the comparison walks
//! down only where they differ — locally that skips the per-entry comparison of unchanged
//! subtrees, and over a wire it is what lets an unchanged tree cost one exchange. A digest
//! must therefore cover every attribute that would cause an action under the current
//! options and nothing else (an attribute that is not preserved, like the owner without
//! `-o`, would make unchanged trees look different forever).

use crate::config::Options;
use crate::tree::{Entry, Kind};
use rayon::prelude::*;
use xxhash_rust::xxh3::Xxh3;

/// Which attributes take part in the comparison, derived once from the options.
#[derive(Clone, Copy, Debug)]
pub struct Compared {
    pub times: bool,
    pub omit_dir_times: bool,
    pub omit_link_times: bool,
    /// `-U`: the access times of all but directories and symlinks (rsync's rule).
    pub atimes: bool,
    pub perms: bool,
    /// `-E` without `-p`: whether a regular file is executable.
    pub executability: bool,
    pub owner: bool,
    pub group: bool,
    pub size_only: bool,
    pub sizes: crate::config::SizeRange,
    pub checksum: bool,
    pub hard_links: bool,
    pub window: crate::tree::TimeWindow,
    /// `-X`: the attribute names the digests cover (none without it).
    pub xattrs: Option<crate::xattr::Scope>,
    /// `-A`: the ACLs beyond the mode.
    pub acls: bool,
    /// `--chown`: how the owner and the group take part (see [`Forced`]).
    pub chown_uid: Forced,
    pub chown_gid: Forced,
    /// `-I` on the receiving side: no file is ever equal to the sender's, so every file's
    /// digest here carries a mark the sender's never does, and every directory holding a
    /// file is compared. (Only this side marks: the receiver computes the digests of the
    /// sender's listed files itself, without it.)
    pub never_equal_files: bool,
}

impl Compared {
    pub fn from_options(o: &Options) -> Compared {
        Compared {
            times: o.times,
            omit_dir_times: o.omit_dir_times,
            omit_link_times: o.omit_link_times,
            atimes: o.atimes,
            perms: o.perms,
            executability: o.executability && !o.perms,
            owner: o.owner,
            group: o.group,
            size_only: o.size_only,
            sizes: o.sizes,
            checksum: o.checksum,
            hard_links: o.hard_links,
            window: o.modify_window,
            xattrs: o.xattrs,
            acls: o.acls,
            chown_uid: Forced::when(o.chown.0.is_some()),
            chown_gid: Forced::when(o.chown.1.is_some()),
            never_equal_files: false,
        }
    }

    /// What the destination's own tree is digested with.
    pub fn for_receiver(o: &Options) -> Compared {
        let chown = crate::ids::Chown::resolve(o, None);
        Compared {
            // rsync's quick check looks at -c and --size-only before -I.
            never_equal_files: o.ignore_times && !o.checksum && !o.size_only,
            xattrs: o.receiver_xattrs(),
            chown_uid: chown.uid.map_or(Forced::No, Forced::IfEqual),
            chown_gid: chown.gid.map_or(Forced::No, Forced::IfEqual),
            ..Compared::from_options(o)
        }
    }
}

/// How an owner or group enters a digest under `--chown`, which the receiver resolves: the
/// sender's ids do not matter (every entry gets the forced one), so the sender hashes a mark
/// in their place, and the receiver hashes the same mark where its entry already has the
/// forced id and the id itself where it has not. Equal digests still mean nothing to do,
/// and an unchanged tree still costs one exchange.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Forced {
    /// No `--chown` for this id: the id itself.
    No,
    /// The sending side's entries: the mark.
    Mark,
    /// The receiver's own entries: the mark where the id is this one.
    IfEqual(u32),
}

impl Forced {
    fn when(chown: bool) -> Forced {
        if chown { Forced::Mark } else { Forced::No }
    }

    fn hash(self, h: &mut Xxh3, id: u32) {
        match self {
            Forced::No => h.update(&id.to_le_bytes()),
            Forced::Mark => h.update(&[1]),
            Forced::IfEqual(f) if f == id => h.update(&[1]),
            Forced::IfEqual(_) => {
                h.update(&[0]);
                h.update(&id.to_le_bytes());
            }
        }
    }
}

/// Fills in `digest` for `e` and everything below it (children in parallel).
pub fn digest_tree(e: &mut Entry, cmp: &Compared) {
    if e.is_dir() && !e.children.is_empty() {
        if e.children.len() > 8 {
            e.children.par_iter_mut().for_each(|c| digest_tree(c, cmp));
        } else {
            for c in &mut e.children {
                digest_tree(c, cmp);
            }
        }
    }
    e.digest = digest_of(e, cmp);
}

/// Digest of one entry given its children's digests. Protected (receiver-excluded)
/// children are left out: the sender never lists them, and they are never acted on.
/// (The receiver of a listing computes a file's digest with this from its wire fields.)
pub fn digest_of(e: &Entry, cmp: &Compared) -> u128 {
    let m = &e.meta;
    let mut h = Xxh3::new();
    h.update(&(e.name.len() as u64).to_le_bytes());
    h.update(&e.name);
    h.update(&[e.meta.kind.itemize_letter() as u8, e.meta.kind as u8]);
    // A file outside --min-size/--max-size is left alone whatever the other side has, so
    // its digest is its name alone. (Each side decides by its own size: a sender's file in
    // range never matches a receiver's out of range, and the planner sees the rest.)
    if m.kind == Kind::File && !cmp.sizes.contains(m.size) {
        return h.digest128();
    }
    if cmp.perms && m.kind != Kind::Symlink {
        h.update(&m.mode.to_le_bytes());
    } else if cmp.executability && m.kind == Kind::File {
        h.update(&[u8::from(m.mode & 0o111 != 0)]);
    }
    if cmp.owner {
        cmp.chown_uid.hash(&mut h, m.uid);
    }
    if cmp.group {
        cmp.chown_gid.hash(&mut h, m.gid);
    }
    let time_matters = match m.kind {
        // The quick check uses the mtime even without -t (rsync re-sends then).
        Kind::File => cmp.times || !(cmp.size_only || cmp.checksum),
        Kind::Dir => cmp.times && !cmp.omit_dir_times,
        Kind::Symlink => cmp.times && !cmp.omit_link_times,
        _ => cmp.times,
    };
    if time_matters {
        let (secs, nsec) = cmp.window.digest_key(m);
        h.update(&secs.to_le_bytes());
        h.update(&nsec.to_le_bytes());
    }
    if cmp.atimes && has_atime(m.kind) {
        h.update(&m.atime.to_le_bytes());
    }
    if let Some(scope) = cmp.xattrs {
        crate::xattr::hash(&mut h, e.xattrs.as_deref(), scope);
    }
    if cmp.acls && m.kind != Kind::Symlink {
        crate::acl::hash(&mut h, e.acls.as_deref());
    }
    match m.kind {
        Kind::File => {
            if cmp.never_equal_files {
                h.update(b"receiver under -I");
            }
            h.update(&m.size.to_le_bytes());
            if let Some(hash) = &e.hash {
                h.update(hash);
            }
            if cmp.hard_links
                && let Some(l) = &e.link_leader
            {
                h.update(&(l.len() as u64).to_le_bytes());
                h.update(l);
            }
        }
        Kind::Symlink => {
            if let Some(t) = &e.target {
                h.update(t);
            }
        }
        Kind::CharDev | Kind::BlockDev => h.update(&m.rdev.to_le_bytes()),
        Kind::Dir => {
            h.update(&[e.complete as u8]);
            for c in &e.children {
                if !c.protected {
                    h.update(&c.digest.to_le_bytes());
                }
            }
        }
        Kind::Fifo | Kind::Socket => {}
    }
    h.digest128()
}

/// Whether `-U` compares an entry's access time: rsync's generator leaves directories and
/// symlinks out (reading a link, or listing a directory, moves it anyway).
pub fn has_atime(kind: Kind) -> bool {
    !matches!(kind, Kind::Dir | Kind::Symlink)
}

/// The sender sends access times only under `-U`, and never a directory's (rsync's rule):
/// a zero costs one byte on the wire.
fn drop_atimes(e: &mut Entry, keep: bool) {
    if !keep || e.is_dir() {
        e.meta.atime = 0;
    }
    e.children.iter_mut().for_each(|c| drop_atimes(c, keep));
}

/// What both sides do to a scanned tree before comparing: hard-link leaders (`-H`), the
/// sender's access times as `-U` has them, and the Merkle digests.
pub fn prepare(root: &mut Entry, opts: &Options, side: crate::filter::Side) {
    if side == crate::filter::Side::Sender {
        drop_atimes(root, opts.atimes);
    }
    if opts.hard_links {
        crate::scan::assign_link_leaders(root);
    }
    let cmp = match side {
        crate::filter::Side::Sender => Compared::from_options(opts),
        crate::filter::Side::Receiver => Compared::for_receiver(opts),
    };
    digest_tree(root, &cmp);
    // rsync looks in the alternate DIRs even for a destination file that is already right
    // (`--compare-dest` removes it, `--link-dest` links DIR's copy in its place), so no
    // part of the destination may be pruned as equal: digests the sender's can never match
    // make every directory listed and compared. So too where the receiver changes the
    // sender's entries after their digests were taken: `--usermap`/`--groupmap` (the ids
    // rules give are the receiver's to know), and `--munge-links` (a pulling client's
    // targets gain a prefix the sender's do not have).
    let rewritten = opts.usermap.is_some() || opts.groupmap.is_some() || opts.munge_links;
    if side == crate::filter::Side::Receiver && (opts.alt_dest.is_some() || rewritten) {
        fn never_equal(e: &mut Entry) {
            e.digest = !e.digest;
            e.children.iter_mut().for_each(never_equal);
        }
        never_equal(root);
    }
}
