//! The in-memory picture of one side's tree: what the scan found, what the summary hashes,
//! what the plan compares. Both ends build the same shape, so the comparison is one function
//! of two trees whether the other side is local or behind a pipe.

use rustix::fs::{FileType, Stat};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    CharDev,
    BlockDev,
    Fifo,
    Socket,
}

impl Kind {
    pub fn from_mode(mode: u32) -> Kind {
        match FileType::from_raw_mode(mode) {
            FileType::Directory => Kind::Dir,
            FileType::Symlink => Kind::Symlink,
            FileType::CharacterDevice => Kind::CharDev,
            FileType::BlockDevice => Kind::BlockDev,
            FileType::Fifo => Kind::Fifo,
            FileType::Socket => Kind::Socket,
            _ => Kind::File,
        }
    }

    pub fn is_device(self) -> bool {
        matches!(self, Kind::CharDev | Kind::BlockDev)
    }

    pub fn is_special(self) -> bool {
        matches!(self, Kind::Fifo | Kind::Socket)
    }

    /// rsync's itemize letter for the kind (`f`, `d`, `L`, `D`, `S`).
    pub fn itemize_letter(self) -> char {
        match self {
            Kind::File => 'f',
            Kind::Dir => 'd',
            Kind::Symlink => 'L',
            Kind::CharDev | Kind::BlockDev => 'D',
            Kind::Fifo | Kind::Socket => 'S',
        }
    }

    /// The `S_IFMT` bits, for mknod.
    pub fn type_bits(self) -> u32 {
        match self {
            Kind::File => 0o100000,
            Kind::Dir => 0o040000,
            Kind::Symlink => 0o120000,
            Kind::CharDev => 0o020000,
            Kind::BlockDev => 0o060000,
            Kind::Fifo => 0o010000,
            Kind::Socket => 0o140000,
        }
    }
}

/// Entries counted by kind, as rsync's `--stats` breaks its counts down: `[total, reg, dir,
/// link, dev, special]` (created and deleted files; the receiver's travel in its
/// `Finish`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally(pub [u64; 6]);

impl Tally {
    /// The slot of `kind` in the breakdown.
    fn slot(kind: Kind) -> usize {
        match kind {
            Kind::File => 1,
            Kind::Dir => 2,
            Kind::Symlink => 3,
            Kind::CharDev | Kind::BlockDev => 4,
            Kind::Fifo | Kind::Socket => 5,
        }
    }

    pub fn one(kind: Kind) -> Tally {
        Tally::of(kind, 1)
    }

    pub fn of(kind: Kind, n: u64) -> Tally {
        let mut t = Tally::default();
        t.0[0] = n;
        t.0[Tally::slot(kind)] = n;
        t
    }

    pub fn add(&mut self, other: Tally) {
        for (a, b) in self.0.iter_mut().zip(other.0) {
            *a += b;
        }
    }

    pub fn total(&self) -> u64 {
        self.0[0]
    }
}

/// The metadata xsync compares and preserves, as lstat reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    pub kind: Kind,
    /// Permission bits including setuid/setgid/sticky (`st_mode & 0o7777`).
    pub mode: u32,
    pub size: u64,
    pub mtime: i64,
    pub mtime_nsec: u32,
    /// `-U`: the access time in whole seconds (rsync keeps no more); 0 on a sender without
    /// `-U` and for directories, whose access times rsync neither sends nor sets.
    pub atime: i64,
    pub uid: u32,
    pub gid: u32,
    pub rdev: u64,
    pub dev: u64,
    pub ino: u64,
    pub nlink: u64,
}

impl Meta {
    pub fn from_stat(st: &Stat) -> Meta {
        let mode = st.st_mode;
        Meta {
            kind: Kind::from_mode(mode),
            mode: mode & 0o7777,
            size: st.st_size as u64,
            mtime: st.st_mtime,
            mtime_nsec: st.st_mtime_nsec as u32,
            atime: st.st_atime,
            uid: st.st_uid,
            gid: st.st_gid,
            rdev: st.st_rdev,
            dev: st.st_dev,
            ino: st.st_ino,
            nlink: st.st_nlink,
        }
    }
}

/// rsync's `--modify-window`: when two mtimes count as the same. rsync's default, 0, compares
/// whole seconds, so a copy on a file system that keeps coarser times (ext3, HFS+, many SMB
/// and NFS mounts) is not sent again on every run; a negative window compares nanoseconds too;
/// N > 0 lets times N seconds apart count as the same (FAT keeps 2-second times).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TimeWindow(pub i64);

impl TimeWindow {
    pub fn same(self, a: &Meta, b: &Meta) -> bool {
        match self.0 {
            w if w < 0 => a.mtime == b.mtime && a.mtime_nsec == b.mtime_nsec,
            w => a.mtime.abs_diff(b.mtime) <= w as u64,
        }
    }

    /// `a` is newer than `b` by more than the window (`-u`).
    pub fn newer(self, a: &Meta, b: &Meta) -> bool {
        !self.same(a, b) && (a.mtime, a.mtime_nsec) > (b.mtime, b.mtime_nsec)
    }

    /// What a Merkle digest covers of an mtime, such that equal keys on the two sides imply
    /// [`same`](Self::same): whole seconds, or seconds and nanoseconds for a negative window,
    /// or the seconds' bucket of `N + 1` (two times in one bucket are at most N apart; times
    /// in neighbouring buckets make the digests differ and the planner compares them).
    pub fn digest_key(self, m: &Meta) -> (i64, u32) {
        match self.0 {
            w if w < 0 => (m.mtime, m.mtime_nsec),
            0 => (m.mtime, 0),
            w => (m.mtime.div_euclid(w.saturating_add(1)), 0),
        }
    }
}

#[cfg(test)]
mod window_tests {
    use super::{Meta, TimeWindow};

    fn at(secs: i64, nsec: u32) -> Meta {
        Meta {
            mtime: secs,
            mtime_nsec: nsec,
            ..crate::tree::virtual_dir_meta()
        }
    }

    #[test]
    fn windows_compare_as_rsyncs_do_and_digest_keys_never_hide_a_difference() {
        let (a, b) = (at(100, 100), at(100, 900));
        assert!(TimeWindow(0).same(&a, &b), "rsync's default: whole seconds");
        assert!(!TimeWindow(-1).same(&a, &b), "negative: nanoseconds count");
        assert!(!TimeWindow(0).same(&a, &at(101, 100)));
        assert!(TimeWindow(1).same(&a, &at(101, 999)));
        assert!(!TimeWindow(1).same(&a, &at(102, 0)));
        assert!(TimeWindow(0).newer(&at(101, 0), &a) && !TimeWindow(0).newer(&b, &a));
        assert!(TimeWindow(-1).newer(&b, &a));
        // Equal keys must mean "same" for every window and pair of times.
        for w in [-1i64, 0, 1, 2, 5] {
            for s1 in 95..110 {
                for s2 in 95..110 {
                    for (n1, n2) in [(0, 0), (1, 2), (999_999_999, 0)] {
                        let (x, y) = (at(s1, n1), at(s2, n2));
                        let win = TimeWindow(w);
                        if win.digest_key(&x) == win.digest_key(&y) {
                            assert!(win.same(&x, &y), "window {w}: {s1}.{n1} vs {s2}.{n2}");
                        }
                    }
                }
            }
        }
    }
}

/// One name in a directory, with everything below it.
#[derive(Clone, Debug)]
pub struct Entry {
    /// One path component (raw bytes: names need not be UTF-8).
    pub name: Box<[u8]>,
    pub meta: Meta,
    /// Symlink target, read with readlinkat (never followed).
    pub target: Option<Box<[u8]>>,
    /// blake3 of the content, only with `-c`.
    pub hash: Option<[u8; 32]>,
    /// Sorted by name; empty for non-directories.
    pub children: Vec<Entry>,
    /// False when the directory's contents were not read (unreadable, or a mount point under
    /// `-x`): nothing below it may be deleted on the other side.
    pub complete: bool,
    /// With `-H`: the transfer-root-relative path of the first name of this inode's
    /// hard-link group, when that is not this entry itself.
    pub link_leader: Option<Box<[u8]>>,
    /// Receiver side: excluded by the filter rules, so `--delete` leaves it alone.
    pub protected: bool,
    /// Receiver side: protected only by a perishable rule (`-C`'s default list), so it
    /// goes with a directory that is deleted (rsync's `ignore_perishable`).
    pub perishable: bool,
    /// Sender side: a symlink replaced by its referent (`-L`, `-k`, `--copy-unsafe-links`).
    /// The meta is the referent's; only this entry is opened through the link, every other
    /// open on the sender stays `O_NOFOLLOW`. Receiver side under `-K`: a destination
    /// symlink to a directory inside the destination, walked as that directory (opened only
    /// through `fs::open_dirlink_beneath`, and removed as the link it is).
    pub followed: bool,
    /// `-R`: a directory on a kept path above a named source (rsync's implied directory),
    /// sent only for the path; under `--no-implied-dirs` its attributes are not.
    pub implied: bool,
    /// Merkle digest over the compared metadata and everything below (see summary.rs).
    pub digest: u128,
    /// `-X` only: the extended attributes (boxed, so a run without them pays one word).
    pub xattrs: Option<Box<crate::xattr::Xattrs>>,
    /// `-A` only: the ACLs beyond the mode (none for an entry the mode says all of).
    pub acls: Option<Box<crate::acl::Acls>>,
}

/// What an entry carries beyond its stat, as the writer sets it.
#[derive(Clone, Copy, Debug, Default)]
pub struct Attrs<'a> {
    pub xattrs: Option<&'a crate::xattr::Xattrs>,
    pub acls: Option<&'a crate::acl::Acls>,
}

impl Entry {
    pub fn new(name: Box<[u8]>, meta: Meta) -> Entry {
        Entry {
            name,
            meta,
            target: None,
            hash: None,
            children: Vec::new(),
            complete: true,
            link_leader: None,
            protected: false,
            perishable: false,
            followed: false,
            implied: false,
            digest: 0,
            xattrs: None,
            acls: None,
        }
    }

    /// Its attributes beyond the stat, for the writer.
    pub fn attrs(&self) -> Attrs<'_> {
        Attrs {
            xattrs: self.xattrs.as_deref(),
            acls: self.acls.as_deref(),
        }
    }

    pub fn is_dir(&self) -> bool {
        self.meta.kind == Kind::Dir
    }

    /// Binary search among sorted children.
    pub fn child(&self, name: &[u8]) -> Option<&Entry> {
        self.children
            .binary_search_by(|c| (*c.name).cmp(name))
            .ok()
            .map(|i| &self.children[i])
    }

    /// Calls `f` on every entry below this one with its root-relative path, depth-first in
    /// name order (the order both sides agree on).
    pub fn walk<'a>(&'a self, prefix: &[u8], f: &mut dyn FnMut(&[u8], &'a Entry)) {
        for c in &self.children {
            let p = crate::pathsafe::join(prefix, &c.name);
            f(&p, c);
            if c.is_dir() {
                c.walk(&p, f);
            }
        }
    }
}

/// rsync's `--munge-links` prefix (with its trailing slash).
pub const MUNGE_PREFIX: &[u8] = b"/rsyncd-munged/";

/// `--munge-links` on a receiver: every symlink target gets [`MUNGE_PREFIX`] in front,
/// whatever it already starts with (rsync munges an already munged target again).
pub fn munge_targets(e: &mut Entry) {
    if let Some(t) = &mut e.target {
        let munged = [MUNGE_PREFIX, &t[..]].concat();
        e.meta.size = munged.len() as u64;
        *t = munged.into_boxed_slice();
    }
    e.children.iter_mut().for_each(munge_targets);
}

/// `--munge-links` on a sender: a target longer than [`MUNGE_PREFIX`] that starts with it
/// is sent without it, as rsync's sender reads it.
pub fn unmunge_targets(e: &mut Entry) {
    if let Some(t) = &mut e.target
        && t.len() > MUNGE_PREFIX.len()
        && t.starts_with(MUNGE_PREFIX)
    {
        let plain = t[MUNGE_PREFIX.len()..].to_vec();
        e.meta.size = plain.len() as u64;
        *t = plain.into_boxed_slice();
    }
    e.children.iter_mut().for_each(unmunge_targets);
}

/// Frees a tree on a detached thread. Freeing 80,000 entries takes milliseconds that the
/// run's result need not wait for; if the process exits first, the tree goes with it.
pub fn drop_in_background<T: Send + 'static>(tree: T) {
    // (Without a thread to be had, the tree is freed here, as it would have been.)
    let _ = std::thread::Builder::new().spawn(move || drop(tree));
}

/// The metadata of a root that is not itself a transferred directory: only its children
/// take part in the comparison, so both sides use this same stand-in.
pub fn virtual_dir_meta() -> Meta {
    Meta {
        kind: Kind::Dir,
        mode: 0o755,
        size: 0,
        mtime: 0,
        mtime_nsec: 0,
        atime: 0,
        uid: 0,
        gid: 0,
        rdev: 0,
        dev: 0,
        ino: 0,
        nlink: 1,
    }
}
