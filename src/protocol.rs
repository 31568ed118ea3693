//! The wire protocol between `xsync` and `xsync --server`, in one place.
//!
//! A connection is two byte streams (the remote shell's stdin and stdout). Each carries
//! frames: a 4-byte little-endian length, then one [`Msg`] encoded with postcard. A frame
//! longer than [`MAX_FRAME`] or one that does not decode is a broken stream (exit 12).
//! Everything decoded here is still untrusted: names and paths are checked by
//! [`check_entry`]/[`check_rel_path`] before the engine sees them.
//!
//! Sequence (see docs/PROTOCOL.md): both ends send `Hello`; the client sends `Start`; the
//! sender sends `Sources`, scans, and sends `SourceRoot`; the receiver asks for directory listings one tree level at a
//! time (`List` → `Listing`) only where Merkle digests differ; then it streams `Get`
//! requests while the sender streams `File*` frames back (no per-file round trip); the
//! receiver ends with `Finish`, the sender answers `Done`.

use crate::compress::{Compressor, Decompressor, Plan, Setting, Tuner};
use crate::error::Error;
use crate::exit::ExitCode;
use crate::pathsafe::check_name;
use crate::summary::Compared;
use crate::tree::{Entry, Meta};
use serde::{Deserialize, Serialize};
use std::io::{self, Read, Write};

/// First bytes of every connection, so a shell that prints a banner is recognised.
pub const MAGIC: [u8; 8] = *b"XSYNC\x00\r\n";
/// Largest frame accepted from a peer.
pub const MAX_FRAME: usize = 64 << 20;
/// File data travels in chunks of at most this many bytes.
pub const CHUNK: usize = 256 << 10;
/// Requests and listings are batched to at most this many items per frame.
pub const BATCH: usize = 1024;

/// A file's digest as it travels: [`data_digest`] for bytes sent as they are, else the
/// first 16 bytes of the 32-byte blake3 (or coarse) digest both ends compute. 128 bits keep
/// an accidental match out of reach (the peer who could forge one is the sender, who
/// chooses the content anyway) and save 16 bytes per file: about 1% of a `-z` push of a
/// source tree.
pub type Digest = [u8; 16];

/// The wire form of a full digest.
pub fn wire_digest(full: &[u8; 32]) -> Digest {
    full[..16].try_into().expect("16 of 32 bytes")
}

/// The digest that ends bytes sent as they are, a whole file's or a range's (`Data`
/// answering `Request::Whole` or `GetRange`): xxh3-128. Such bytes are copied, not
/// rebuilt, so the digest only has to catch an accident between one end's read and the
/// other's write (ssh's MAC covers the wire itself), and the peer who could forge a match
/// is the sender, who chooses the content anyway. On small files xxh3 costs a twentieth of
/// blake3: 124 MB of 0-8 KiB files took blake3 0.09-0.14 s of a core on each end and xxh3
/// 5-9 ms, where a 30,000-file push over loopback spends about 2.4 s of CPU in all.
/// Rebuilt files (`Delta`, whose coarse level matches blocks by blake3) and `--append`'s
/// bytes (checked against the file read back) keep blake3.
pub fn data_digest(bytes: &[u8]) -> Digest {
    xxhash_rust::xxh3::xxh3_128(bytes).to_le_bytes()
}

/// [`data_digest`] of bytes that arrive in pieces.
#[derive(Default, Clone)]
pub struct DataHasher(xxhash_rust::xxh3::Xxh3);

impl DataHasher {
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    pub fn digest(&self) -> Digest {
        self.0.digest128().to_le_bytes()
    }
}

/// Which end reads the source tree.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Sender,
    Receiver,
}

/// What the receiver needs to know of the sources to apply rsync's destination rules.
#[derive(Serialize, Deserialize, Debug, Clone, Default)]
pub struct SourceInfo {
    /// Some source was `dir/`: the root is a directory of the transfer.
    pub root_is_transfer_dir: bool,
    /// Exactly one source, and it is not a directory (the copy-to-a-new-name rule).
    pub single_file: bool,
    /// Top-level names brought by `src` (no trailing slash) sources.
    pub named_tops: Vec<serde_bytes::ByteBuf>,
    /// The sender could not read everything: the receiver must not delete.
    pub io_error: bool,
    /// Names of the owners and groups the tree uses (empty with --numeric-ids).
    pub names: crate::ids::Names,
    /// `--delete-missing-args`: the root-relative paths of named sources that do not
    /// exist, whose destination entries are deleted (checked by [`SourceInfo::check`];
    /// a pulling client also checks each against what it asked for).
    pub missing: Vec<serde_bytes::ByteBuf>,
}

/// What one entry of the source tree costs the receiver, name and all, as a round upper
/// figure (an [`Entry`] is about 150 bytes before its name, target and attributes).
pub const ENTRY_COST: u64 = 512;

/// How many entries of a peer's tree this end will hold: half the memory available when
/// the run starts, at [`ENTRY_COST`] each (at least a million). A peer that announces more
/// is refused before anything is listed, and listings that add up to more than announced
/// are a broken stream: the peer cannot make the receiver grow without bound.
pub fn entry_budget() -> u64 {
    let available = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemAvailable:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map(|kib| kib * 1024)
        .unwrap_or(8 << 30);
    (available / 2 / ENTRY_COST).max(1 << 20)
}

impl SourceInfo {
    /// A description from the peer is only believed where it is self-consistent: the
    /// copy-to-a-new-name rule uses the destination's parent as the root, so a peer that
    /// could claim "one file" beside a transfer-dir root, or beside several names, would
    /// reach the siblings of the destination.
    pub fn check(&self) -> Result<(), Error> {
        let mut seen = std::collections::HashSet::new();
        for n in &self.named_tops {
            check_name(n).map_err(|e| stream_error(format!("unsafe top-level name: {e}")))?;
            if !seen.insert(n.as_slice()) {
                return Err(stream_error(format!(
                    "top-level name `{}` named twice",
                    crate::error::show(n)
                )));
            }
        }
        let mut gone = std::collections::HashSet::new();
        for m in &self.missing {
            if m.is_empty() {
                return Err(stream_error("an empty missing source path"));
            }
            crate::pathsafe::check_rel_path(m)?;
            if !gone.insert(m.as_slice()) {
                return Err(stream_error(format!(
                    "missing source `{}` named twice",
                    crate::error::show(m)
                )));
            }
        }
        if self.single_file && (self.root_is_transfer_dir || self.named_tops.len() != 1) {
            return Err(stream_error(
                "a single file was announced beside other sources",
            ));
        }
        Ok(())
    }

    /// The root's listing from the peer, checked against this description before anything
    /// is planned: where the root is not a transfer directory its entries are exactly the
    /// named tops (a name nobody asked for would land beside them), and the single file is
    /// at most one entry (none when a filter excludes it), not a directory.
    pub fn check_root_listing<'e>(
        &self,
        names: impl Iterator<Item = (&'e [u8], bool)>,
    ) -> Result<(), Error> {
        if self.root_is_transfer_dir {
            return Ok(());
        }
        let mut n = 0;
        for (name, is_dir) in names {
            n += 1;
            if !self.named_tops.iter().any(|t| t.as_slice() == name) {
                return Err(stream_error(format!(
                    "the root's listing holds `{}`, which no source names",
                    crate::error::show(name)
                )));
            }
            if self.single_file && is_dir {
                return Err(stream_error("the single file announced is a directory"));
            }
        }
        if self.single_file && n > 1 {
            return Err(stream_error(format!(
                "a single file was announced but the root lists {n} entries"
            )));
        }
        Ok(())
    }
}

/// One entry as it crosses the wire: an [`Entry`] without its children, and without what
/// only the sender's side needs (device, inode and link count: hard-link groups travel as
/// `link_leader`). Only a directory carries its Merkle digest: the digest of anything else
/// is a function of these fields, which the receiver recomputes ([`WireEntry::into_entry`]),
/// so 17 bytes per file stay off the wire.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct WireEntry {
    #[serde(with = "serde_bytes")]
    pub name: Vec<u8>,
    pub meta: WireMeta,
    pub target: Option<serde_bytes::ByteBuf>,
    pub hash: Option<[u8; 32]>,
    pub complete: bool,
    pub link_leader: Option<serde_bytes::ByteBuf>,
    pub digest: Option<u128>,
    /// `-X`: (name, value) pairs, sorted by name; checked by [`check_xattrs`].
    pub xattrs: Option<Vec<(serde_bytes::ByteBuf, serde_bytes::ByteBuf)>>,
    /// `-A`: checked by [`crate::acl::Acls::check`].
    pub acls: Option<Box<crate::acl::Acls>>,
    /// `-R`: an implied directory ([`Entry::implied`]).
    pub implied: bool,
}

/// [`Meta`] as it crosses the wire.
#[derive(Serialize, Deserialize, Debug, Clone, Copy)]
pub struct WireMeta {
    pub kind: crate::tree::Kind,
    pub mode: u32,
    pub size: u64,
    pub mtime: i64,
    pub mtime_nsec: u32,
    /// `-U` only (0 otherwise: one byte).
    pub atime: i64,
    pub uid: u32,
    pub gid: u32,
    pub rdev: u64,
}

impl WireEntry {
    pub fn from_entry(e: &Entry) -> WireEntry {
        let m = &e.meta;
        WireEntry {
            name: e.name.to_vec(),
            meta: WireMeta {
                kind: m.kind,
                mode: m.mode,
                size: m.size,
                mtime: m.mtime,
                mtime_nsec: m.mtime_nsec,
                atime: m.atime,
                uid: m.uid,
                gid: m.gid,
                rdev: m.rdev,
            },
            target: e
                .target
                .as_ref()
                .map(|t| serde_bytes::ByteBuf::from(t.to_vec())),
            hash: e.hash,
            complete: e.complete,
            link_leader: e
                .link_leader
                .as_ref()
                .map(|l| serde_bytes::ByteBuf::from(l.to_vec())),
            digest: e.is_dir().then_some(e.digest),
            xattrs: e.xattrs.as_ref().map(|x| {
                x.0.iter()
                    .map(|(n, v)| {
                        (
                            serde_bytes::ByteBuf::from(n.to_vec()),
                            serde_bytes::ByteBuf::from(v.to_vec()),
                        )
                    })
                    .collect()
            }),
            acls: e.acls.clone(),
            implied: e.implied,
        }
    }

    /// The entry, with its digest: the sender's for a directory (it covers the subtree
    /// this end has not seen), computed here for anything else. A directory without one
    /// is a protocol error.
    pub fn into_entry(self, cmp: &Compared) -> Result<Entry, Error> {
        let w = self.meta;
        let meta = Meta {
            kind: w.kind,
            mode: w.mode,
            size: w.size,
            mtime: w.mtime,
            mtime_nsec: w.mtime_nsec,
            atime: w.atime,
            uid: w.uid,
            gid: w.gid,
            rdev: w.rdev,
            dev: 0,
            ino: 0,
            nlink: 1,
        };
        let mut e = Entry::new(self.name.into_boxed_slice(), meta);
        e.target = self.target.map(|t| t.into_vec().into_boxed_slice());
        e.hash = self.hash;
        e.complete = self.complete;
        e.implied = self.implied && e.is_dir();
        e.link_leader = self.link_leader.map(|l| l.into_vec().into_boxed_slice());
        if let Some(x) = self.xattrs {
            check_xattrs(&x)?;
            e.xattrs = Some(Box::new(crate::xattr::Xattrs(
                x.into_iter()
                    .map(|(n, v)| {
                        (
                            n.into_vec().into_boxed_slice(),
                            v.into_vec().into_boxed_slice(),
                        )
                    })
                    .collect(),
            )));
        }
        if let Some(a) = self.acls {
            a.check(match e.meta.kind {
                crate::tree::Kind::Dir => crate::acl::Holder::Dir,
                crate::tree::Kind::Symlink => crate::acl::Holder::Symlink,
                _ => crate::acl::Holder::Other,
            })
            .map_err(|why| stream_error(format!("peer sent {why}")))?;
            e.acls = Some(a);
        }
        e.digest = match (e.is_dir(), self.digest) {
            (true, Some(d)) => d,
            (false, _) => crate::summary::digest_of(&e, cmp),
            (true, None) => return Err(stream_error("a directory without its digest")),
        };
        Ok(e)
    }
}

/// The key a receiver sends for each child it already has: the low 64 bits of its digest
/// (which covers the name and every compared attribute). 64 bits keep a false match
/// between two directories of 10,000 entries each below one in 10^11.
pub fn child_key(e: &Entry) -> u64 {
    e.digest as u64
}

/// One directory of a `List` request: its path and the keys of the children the
/// receiver has there, 8 bytes each (little-endian), in its own sorted order.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct ListDir {
    pub path: serde_bytes::ByteBuf,
    pub have: serde_bytes::ByteBuf,
}

/// The answer for one [`ListDir`]: bit *i* of `same` says the receiver's child *i* is
/// also the sender's, unchanged; `new` holds the sender's other children in full. A
/// change to one file in a directory of 3,000 therefore costs about 8 bytes per sibling
/// up and 1 bit down, instead of a full entry (about 40 bytes) each.
#[derive(Serialize, Deserialize, Debug, Clone, Default)]
pub struct DirListing {
    pub same: serde_bytes::ByteBuf,
    pub new: Vec<WireEntry>,
}

impl ListDir {
    pub fn new(path: Vec<u8>, have: &[Entry]) -> ListDir {
        let mut keys = Vec::with_capacity(have.len() * 8);
        for c in have {
            keys.extend_from_slice(&child_key(c).to_le_bytes());
        }
        ListDir {
            path: serde_bytes::ByteBuf::from(path),
            have: serde_bytes::ByteBuf::from(keys),
        }
    }

    /// The keys, checked: a whole number of 8-byte keys.
    fn keys(&self) -> Result<impl Iterator<Item = u64> + '_, Error> {
        if !self.have.len().is_multiple_of(8) {
            return Err(stream_error("a listing request with a partial key"));
        }
        Ok(self
            .have
            .chunks_exact(8)
            .map(|k| u64::from_le_bytes(k.try_into().expect("8 bytes"))))
    }

    /// The sender's answer, given its children of this directory.
    pub fn answer(&self, children: &[Entry]) -> Result<DirListing, Error> {
        let mut index = std::collections::HashMap::new();
        for (i, k) in self.keys()?.enumerate() {
            index.entry(k).or_insert(i);
        }
        let mut same = vec![0u8; (self.have.len() / 8).div_ceil(8)];
        let mut new = Vec::new();
        for c in children {
            match index.get(&child_key(c)) {
                Some(&i) => same[i / 8] |= 1 << (i % 8),
                None => new.push(WireEntry::from_entry(c)),
            }
        }
        Ok(DirListing {
            same: serde_bytes::ByteBuf::from(same),
            new,
        })
    }
}

impl DirListing {
    /// The sender's children of one directory, rebuilt from the receiver's own `have`
    /// (the children it sent keys for) and the answer. Everything from the peer is
    /// checked: the bitmap's size, each new entry, and the merged list's order (unique
    /// names).
    pub fn merge(self, have: &[Entry], cmp: &Compared) -> Result<Vec<Entry>, Error> {
        if self.same.len() != have.len().div_ceil(8)
            || !have.len().is_multiple_of(8)
                && self.same.last().is_some_and(|b| b >> (have.len() % 8) != 0)
        {
            return Err(stream_error("a listing bitmap of the wrong size"));
        }
        let mut out = Vec::with_capacity(have.len() + self.new.len());
        for (i, h) in have.iter().enumerate() {
            if self.same[i / 8] & (1 << (i % 8)) != 0 {
                // Equal digests: a stand-in for the sender's entry. A directory's subtree
                // is equal too and is not descended into, so its children are not copied.
                let mut e = Entry::new(h.name.clone(), h.meta);
                e.target = h.target.clone();
                e.hash = h.hash;
                e.complete = h.complete;
                e.link_leader = h.link_leader.clone();
                e.digest = h.digest;
                out.push(e);
            }
        }
        for w in self.new {
            check_entry(&w)?;
            out.push(w.into_entry(cmp)?);
        }
        out.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        check_sorted(&out)?;
        Ok(out)
    }
}

/// Counters the receiver reports back for `--stats` and the summary line.
#[derive(Serialize, Deserialize, Debug, Clone, Default)]
pub struct WireStats {
    pub created: crate::tree::Tally,
    pub deleted: crate::tree::Tally,
    pub transferred: u64,
    pub transferred_size: u64,
    pub literal: u64,
    pub matched: u64,
    /// How long the exchange of listings took the receiver, in ms.
    pub list_ms: u64,
}

impl WireStats {
    /// The receiver's counters as they travel.
    pub fn of(s: &crate::report::Stats) -> WireStats {
        let g = crate::report::Stats::get;
        WireStats {
            created: s.created.get(),
            deleted: s.deleted.get(),
            transferred: g(&s.transferred),
            transferred_size: g(&s.transferred_size),
            literal: g(&s.literal),
            matched: g(&s.matched),
            list_ms: g(&s.flist_xfer_ms),
        }
    }

    /// Adds the peer's counters to this end's (a pushing client reports what its server did).
    pub fn add_to(&self, s: &crate::report::Stats) {
        use crate::report::Stats;
        s.created.add(self.created);
        s.deleted.add(self.deleted);
        Stats::add(&s.transferred, self.transferred);
        Stats::add(&s.transferred_size, self.transferred_size);
        Stats::add(&s.literal, self.literal);
        Stats::add(&s.matched, self.matched);
        Stats::add(&s.flist_xfer_ms, self.list_ms);
    }
}

#[derive(Serialize, Deserialize, Debug)]
pub enum Msg {
    Hello {
        version: u32,
    },
    /// Client → server: the server's role, the options (as argv words, parsed by the same
    /// CLI code), the server-side paths and the filter rules.
    Start {
        role: Role,
        args: Vec<serde_bytes::ByteBuf>,
        paths: Vec<serde_bytes::ByteBuf>,
        filters: Vec<FilterLine>,
        /// A pulling client's `--files-from` names (read on the client, as rsync), made
        /// relative and safe there and checked again by the server.
        files: Vec<crate::pathsafe::ListedName>,
    },
    /// Sender → receiver, before the sender scans: what the receiver needs to open its
    /// destination (rsync's path rules), so both ends scan at the same time.
    Sources {
        info: SourceInfo,
    },
    /// Sender → receiver, after its scan: the root entry with its Merkle digest, whether
    /// everything could be read (`io_error`: the receiver must not delete), and the names
    /// of the owners and groups the tree uses, and the tree's totals (as in `Done`), for
    /// a pulling client's progress lines.
    SourceRoot {
        io_error: bool,
        names: crate::ids::Names,
        root: WireEntry,
        counts: Box<[u64; 7]>,
    },
    /// Receiver → sender: list the children of these directories (root-relative),
    /// given the keys of the children the receiver has in each.
    List {
        dirs: Vec<ListDir>,
    },
    /// Sender → receiver: for each listed directory, in request order, which of the
    /// receiver's children are unchanged, and the others in full.
    Listing {
        dirs: Vec<DirListing>,
    },
    /// Receiver → sender: send these files, whole or as deltas against the receiver's
    /// basis.
    Get {
        files: Vec<Request>,
    },
    /// Receiver → sender: the coarse hashes of big bases; answered by `CoarseRanges`.
    Coarse {
        items: Vec<CoarseItem>,
    },
    /// Sender → receiver: for each big file, the source ranges the coarse level could not
    /// place and the basis range to sign for each; `None`: the sender could not read the
    /// file then, so the receiver falls back to a plain delta.
    CoarseRanges {
        items: Vec<(u32, Option<Vec<crate::delta::CoarsePart>>)>,
    },
    /// Sender → receiver: delta instructions for file `id`; `end` carries, on the last
    /// piece, the blake3 of the whole source content, or for a file that went through the
    /// coarse level its `delta::coarse_digest`.
    Delta {
        id: u32,
        ops: Vec<WireOp>,
        end: Option<Digest>,
    },
    /// Receiver → sender: no more requests for now; send everything asked for so far.
    /// (More may follow: files to fetch again after a failed check.)
    GetEnd,
    /// Sender → receiver: a piece of file `id`; `end` carries the blake3 of the content on
    /// the last piece.
    Data {
        id: u32,
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
        end: Option<Digest>,
    },
    /// Sender → receiver: file `id` could not be read (already reported by the sender).
    Skip {
        id: u32,
    },
    /// Lines for the client's stdout (the server's `-v`/`-i` listing).
    Log {
        text: String,
    },
    /// Receiver → sender, before its first request: how many files it will fetch, for a
    /// pushing client's progress lines (`to-chk`).
    Planned {
        files: u64,
    },
    /// Receiver → sender, under `--remove-source-files`, before `Finish`: the sender's
    /// non-directories the receiver has in place, by their index in the sender's own
    /// numbering ([`crate::source::sent_files`]), never by path; the sender checks each
    /// against its list and the file on disk before it removes anything.
    InPlace {
        ids: Vec<u32>,
    },
    /// Receiver → sender: all done, with the receiver's outcome.
    Finish {
        code: i32,
        stats: WireStats,
    },
    /// Sender → receiver: acknowledges Finish with the sender's outcome and the source
    /// totals for `--stats` (files, regular, dirs, links, devices, specials, bytes), and
    /// how long its scan took (ms).
    Done {
        code: i32,
        counts: [u64; 7],
        scan_ms: u64,
    },
    /// Either way: a fatal error the peer already printed; the run ends with `code`.
    Abort {
        code: i32,
        msg: String,
    },
    /// Either way, only with `--timeout`: nothing, sent by an end that has been busy for
    /// half the timeout so that its peer does not give up on it. [`Reader::recv`] skips it.
    KeepAlive,
    /// Receiver → sender, on the first stream: `count` more streams are opening through
    /// the remote shell's master connection (`endpoint::streams`), each to prove itself
    /// with `token`. At most [`MAX_LANES`].
    Lanes {
        count: u32,
        token: [u8; 32],
    },
    /// Client → server, the first frame of an extra stream: the token of its `Lanes`.
    Join {
        token: [u8; 32],
    },
    /// Receiver → sender, on an extra stream (or the first once its `Get`s are answered):
    /// bytes `offset..offset + len` of a regular file the sender listed, or from `offset`
    /// to the end when `to_end` (a file's last range, so one that grew is sent as read).
    /// Answered by `Data` frames of `id`, the last carrying the blake3 of the range, or by
    /// `Skip` when the file cannot be read (the receiver then asks for it whole).
    GetRange {
        id: u32,
        path: serde_bytes::ByteBuf,
        offset: u64,
        len: u64,
        to_end: bool,
    },
}

/// Most extra streams a receiver may ask for.
pub const MAX_LANES: u32 = 15;

/// One file request.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub enum Request {
    Whole {
        id: u32,
        path: serde_bytes::ByteBuf,
    },
    /// Send a delta against the receiver's basis of `basis_len` bytes: against `sig` (the
    /// whole basis), or (`sig` is `None`) after a coarse exchange: one part per
    /// `CoarsePart` the sender answered, in order, each with the signature of that part's
    /// basis range; the sender copies the bytes between parts as its coarse match found.
    Delta {
        id: u32,
        path: serde_bytes::ByteBuf,
        basis_len: u64,
        sig: Option<crate::delta::Signature>,
        parts: Vec<Part>,
    },
    /// `--append`: send the file's bytes from `offset` (the receiver's length of it, which
    /// may not exceed the size the sender listed), ending with the digest of what was sent,
    /// or with `verify` (`--append-verify`) of the whole file.
    Append {
        id: u32,
        path: serde_bytes::ByteBuf,
        offset: u64,
        verify: bool,
    },
}

impl Request {
    pub fn id(&self) -> u32 {
        match self {
            Request::Whole { id, .. } | Request::Delta { id, .. } | Request::Append { id, .. } => {
                *id
            }
        }
    }

    pub fn path(&self) -> &[u8] {
        match self {
            Request::Whole { path, .. }
            | Request::Delta { path, .. }
            | Request::Append { path, .. } => &path[..],
        }
    }
}

#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct Part {
    pub start: u64,
    pub len: u64,
    pub sig: crate::delta::Signature,
}

#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct CoarseItem {
    pub id: u32,
    pub path: serde_bytes::ByteBuf,
    pub block: u64,
    pub basis_len: u64,
    pub hashes: Vec<[u8; 16]>,
    /// Per block, the rolling hash of its first `delta::ANCHOR_LEN` bytes.
    pub anchors: Vec<u64>,
}

#[derive(Serialize, Deserialize, Debug, Clone)]
pub enum WireOp {
    Copy { offset: u64, len: u64 },
    Literal(serde_bytes::ByteBuf),
}

/// One filter rule as the command line gave it, replayed by the server.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct FilterLine {
    /// None: `-f` rule syntax; Some(include?): an `--include`/`--exclude` pattern.
    pub pattern_include: Option<bool>,
    #[serde(with = "serde_bytes")]
    pub text: Vec<u8>,
}

impl FilterLine {
    /// The rules as they travel to the server, in order (`merge` files already read).
    pub fn from_filters(filters: &crate::filter::Filters) -> Vec<FilterLine> {
        filters
            .lines()
            .into_iter()
            .map(|text| FilterLine {
                pattern_include: None,
                text,
            })
            .collect()
    }

    /// The server's rules from the client's lines (a line that does not parse is exit 2).
    pub fn to_filters(lines: &[FilterLine]) -> Result<crate::filter::Filters, Error> {
        use crate::filter::RuleKind;
        let mut filters = crate::filter::Filters::new();
        for l in lines {
            let kind = l.pattern_include.map(|inc| {
                if inc {
                    RuleKind::Include
                } else {
                    RuleKind::Exclude
                }
            });
            filters
                .add_line(kind, &l.text)
                .map_err(|e| Error::new(ExitCode::Protocol, e.to_string()))?;
        }
        Ok(filters)
    }
}

fn stream_error(what: impl std::fmt::Display) -> Error {
    Error::new(
        ExitCode::StreamIo,
        format!("protocol error: {what} (the connection is broken or the peer is not xsync)"),
    )
}

/// The sending half of a connection.
pub struct Writer<W: Write> {
    inner: W,
    buf: Vec<u8>,
    /// Bytes written so far (the "sent" of the summary line).
    pub sent: u64,
    /// Segmented (`-z`, or compression by default): the compressing thread.
    pipe: Option<Pipe>,
}

/// Segment kinds of a segmented connection: `[kind u8][len u32 LE][bytes]`. A `SEG_ZSTD`
/// segment continues the one zstd stream of the direction (one frame after another, a new
/// frame where the sender changed level); `SEG_RAW` bytes bypass it. Both carry frame
/// bytes, and a frame may span segments of either kind.
const SEG_RAW: u8 = 0;
const SEG_ZSTD: u8 = 1;
/// An empty segment that only shows the peer is alive (`--timeout`): it carries no bytes of
/// the frame stream, so it may come between any two segments, even inside a frame.
const SEG_KEEPALIVE: u8 = 2;
/// Largest segment a writer produces; the reader accepts up to `MAX_FRAME + 4`.
const SEG_MAX: usize = 1 << 20;
/// Most decoded bytes the reader holds: the rest of one frame (≤ `MAX_FRAME`) plus what
/// one segment may add (the rest of that frame, the next ≤ 256 KiB of frames and up to one
/// 128 KiB block zstd held back). A stream that decodes to more is a bomb: refused.
const PLAIN_MAX: usize = 2 * MAX_FRAME + (1 << 20);
/// Batches handed to the compressing thread and not yet written: enough to keep both
/// stages busy, few enough that memory stays a few MiB.
const IN_FLIGHT: usize = 3;

/// The compressing stage of a segmented writer: a thread that turns batches of frames into
/// segments (compressed or raw, at the step [`crate::compress::Tuner`] chose), while the
/// protocol thread goes on reading and framing files and writes the segments that came
/// back. Two stages, so one core can compress while the other serves the protocol and ssh.
struct Pipe {
    jobs: Option<std::sync::mpsc::Sender<Job>>,
    done: std::sync::mpsc::Receiver<io::Result<Done>>,
    in_flight: usize,
    /// Nanoseconds this end has spent in writes of segments, read by the tuner: while the
    /// pipe to the remote shell is full they measure the link.
    writing: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// Batches handed over since the last protocol flush.
    dirty: bool,
    /// The compressing thread's step is raw: frames go out as they are, so there is no
    /// point sampling data to keep it out of zstd (30,000 small files on loopback spent a
    /// sixth of the sender's CPU on the samples).
    raw_now: std::sync::Arc<std::sync::atomic::AtomicBool>,
    spare: Vec<Vec<u8>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

enum Job {
    /// Frames, ending the zstd block after them when `end_block` (a protocol flush: the
    /// peer must be able to decode everything sent so far).
    Frames { data: Vec<u8>, end_block: bool },
    /// One whole frame (length and body) that would not compress: sent raw.
    Raw(Vec<u8>),
}

struct Done {
    segs: Vec<u8>,
    /// The batch's buffer, for the next batch.
    spare: Vec<u8>,
}

impl Drop for Pipe {
    fn drop(&mut self) {
        self.jobs.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn push_segs(segs: &mut Vec<u8>, kind: u8, bytes: &[u8]) {
    // A segment never exceeds what the reader accepts, however the output came out.
    for piece in bytes.chunks(SEG_MAX) {
        segs.push(kind);
        segs.extend_from_slice(&(piece.len() as u32).to_le_bytes());
        segs.extend_from_slice(piece);
    }
}

/// A wait for the next batch longer than this is the protocol idle, not the pipeline slow.
const IDLE: std::time::Duration = std::time::Duration::from_millis(20);

/// The compressing thread's loop: batches in, segments out, in order.
fn compress_batches(
    plan: Plan,
    jobs: std::sync::mpsc::Receiver<Job>,
    done: std::sync::mpsc::Sender<io::Result<Done>>,
    writing: std::sync::Arc<std::sync::atomic::AtomicU64>,
    raw_now: std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    use std::sync::atomic::Ordering::Relaxed;
    let mut tuner = Tuner::new(plan);
    let fixed = match plan {
        Plan::Fixed(n) | Plan::Lane { level: n, .. } => Setting::Zstd(n),
        _ => Setting::Zstd(crate::compress::DEFAULT_LEVEL),
    };
    let setting = |t: &Option<Tuner>| t.as_ref().map_or(fixed, Tuner::setting);
    let mut c = match Compressor::with_window(setting(&tuner), plan.window_log()) {
        Ok(c) => c,
        Err(e) => {
            let _ = done.send(Err(e));
            return;
        }
    };
    // Input fed to zstd since its last block end.
    let mut pending = false;
    let mut wrote = 0u64;
    let mut z = Vec::new();
    raw_now.store(setting(&tuner) == Setting::Raw, Relaxed);
    // The wall time of a window starts at its first batch, not while the run was starting.
    let mut last: Option<std::time::Instant> = None;
    for job in jobs {
        let start = std::time::Instant::now();
        // A long wait for this batch was the protocol idle (the peer's turn: its
        // requests, a round trip), the same at every step: not counted. Unless the writes
        // filled it: then it was the link, draining what went before.
        let link_wait = |l: std::time::Instant| {
            let wrote_meanwhile = writing.load(Relaxed).saturating_sub(wrote);
            std::time::Duration::from_nanos(wrote_meanwhile * 2) >= start - l
        };
        let from = match last {
            Some(l) if start - l <= IDLE || link_wait(l) => l,
            _ => {
                if let Some(t) = tuner.as_mut() {
                    t.resume();
                }
                start
            }
        };
        let mut segs = Vec::new();
        let step = setting(&tuner);
        let res = (|| -> io::Result<Vec<u8>> {
            z.clear();
            let raw = match job {
                Job::Frames { data, end_block } if step != Setting::Raw => {
                    c.set(step, &mut z)?;
                    if end_block {
                        c.compress_flush(&data, &mut z)?;
                    } else {
                        c.compress_more(&data, &mut z)?;
                    }
                    pending = !end_block && (pending || !data.is_empty());
                    push_segs(&mut segs, SEG_ZSTD, &z);
                    return Ok(data);
                }
                Job::Frames { data, .. } | Job::Raw(data) => data,
            };
            // Raw bytes come after everything fed to zstd, so its block ends first.
            if pending {
                c.compress_flush(&[], &mut z)?;
                pending = false;
            }
            // The tuner sends raw: the context goes (its frame ends) until it compresses
            // again.
            if step == Setting::Raw {
                c.release(&mut z)?;
            }
            if !z.is_empty() {
                push_segs(&mut segs, SEG_ZSTD, &z);
            }
            push_segs(&mut segs, SEG_RAW, &raw);
            Ok(raw)
        })();
        let res = res.map(|mut spare| {
            let input = spare.len() as u64;
            let now = writing.load(Relaxed);
            let end = std::time::Instant::now();
            if let Some(t) = tuner.as_mut()
                && t.note(
                    input,
                    end - start,
                    std::time::Duration::from_nanos(now - wrote),
                    end - from,
                )
            {
                raw_now.store(t.setting() == Setting::Raw, Relaxed);
            }
            wrote = now;
            last = Some(end);
            spare.clear();
            Done { segs, spare }
        });
        let failed = res.is_err();
        if done.send(res).is_err() || failed {
            return;
        }
    }
}

impl<W: Write> Writer<W> {
    /// The stream beneath, for bytes that are not frames (a test's malformed prefix).
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }

    pub fn new(inner: W) -> Self {
        Writer {
            inner,
            buf: Vec::with_capacity(64 * 1024),
            sent: 0,
            pipe: None,
        }
    }

    /// From the next frame on, everything this end sends travels in segments, compressed
    /// as `plan` says (nothing changes for [`Plan::Off`]).
    pub fn enable_compression(&mut self, plan: Plan) -> Result<(), Error> {
        if !plan.segmented() || self.pipe.is_some() {
            return Ok(());
        }
        self.flush()?;
        let (jobs, jobs_rx) = std::sync::mpsc::channel();
        let (done_tx, done) = std::sync::mpsc::channel();
        let writing = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let w = writing.clone();
        let raw_now = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let r = raw_now.clone();
        let thread = std::thread::Builder::new()
            .name("xsync-zstd".into())
            .spawn(move || compress_batches(plan, jobs_rx, done_tx, w, r))
            .map_err(|e| {
                Error::new(ExitCode::StreamIo, format!("cannot start compression: {e}"))
            })?;
        self.pipe = Some(Pipe {
            jobs: Some(jobs),
            done,
            in_flight: 0,
            writing,
            dirty: false,
            raw_now,
            spare: Vec::new(),
            thread: Some(thread),
        });
        Ok(())
    }

    /// Whether frames travel in segments (compressed or not), as both ends fixed after
    /// `Start`.
    pub fn segmented(&self) -> bool {
        self.pipe.is_some()
    }

    /// Whether frames sent now would be compressed, so that [`send_raw`](Self::send_raw)
    /// can keep incompressible data out of the zstd stream (false while the tuner sends
    /// raw: then every frame goes out as it is anyway).
    pub fn compressing(&self) -> bool {
        self.pipe
            .as_ref()
            .is_some_and(|p| !p.raw_now.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Hands a batch to the compressing thread, writing out what it has finished; at most
    /// [`IN_FLIGHT`] batches are in the thread at once.
    fn hand_over(&mut self, job: Job) -> Result<(), Error> {
        while self.pipe.as_ref().is_some_and(|p| p.in_flight >= IN_FLIGHT) {
            self.write_done(true)?;
        }
        let Some(p) = self.pipe.as_mut() else {
            return Ok(());
        };
        let sent = p.jobs.as_ref().is_some_and(|j| j.send(job).is_ok());
        if !sent {
            // The thread ended: its error is in the results.
            while self.pipe.as_ref().is_some_and(|p| p.in_flight > 0) {
                self.write_done(true)?;
            }
            return Err(Error::new(ExitCode::StreamIo, "compression failed"));
        }
        p.in_flight += 1;
        p.dirty = true;
        while self.write_done(false)? {}
        Ok(())
    }

    /// Writes one finished batch (waiting for it when `wait`); whether there was one.
    fn write_done(&mut self, wait: bool) -> Result<bool, Error> {
        let Some(p) = self.pipe.as_mut() else {
            return Ok(false);
        };
        if p.in_flight == 0 {
            return Ok(false);
        }
        let got = if wait {
            p.done.recv().ok()
        } else {
            match p.done.try_recv() {
                Ok(r) => Some(r),
                Err(std::sync::mpsc::TryRecvError::Empty) => return Ok(false),
                Err(std::sync::mpsc::TryRecvError::Disconnected) => None,
            }
        };
        p.in_flight -= 1;
        let done = match got {
            Some(Ok(d)) => d,
            Some(Err(e)) => {
                return Err(Error::new(
                    ExitCode::StreamIo,
                    format!("compression failed: {e}"),
                ));
            }
            None => return Err(Error::new(ExitCode::StreamIo, "compression failed")),
        };
        let start = std::time::Instant::now();
        self.inner.write_all(&done.segs).map_err(lost)?;
        p.writing.fetch_add(
            start.elapsed().as_nanos() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        self.sent += done.segs.len() as u64;
        // Enough buffers for the batches in flight and the one being filled; more would only
        // hold memory (a stream of raw frames returns one buffer per frame).
        if p.spare.len() <= IN_FLIGHT {
            p.spare.push(done.spare);
        }
        Ok(true)
    }

    /// The queued frames as a batch for the compressing thread.
    fn take_batch(&mut self) -> Vec<u8> {
        let next = self
            .pipe
            .as_mut()
            .and_then(|p| p.spare.pop())
            .unwrap_or_else(|| Vec::with_capacity(CHUNK + 64 * 1024));
        std::mem::replace(&mut self.buf, next)
    }

    /// Sends a frame outside the compressed stream (data that would not compress); the
    /// same as [`send`](Self::send) on a bare connection.
    pub fn send_raw(&mut self, msg: &Msg) -> Result<(), Error> {
        if self.pipe.is_none() {
            return self.send(msg);
        }
        if !self.buf.is_empty() {
            let data = self.take_batch();
            self.hand_over(Job::Frames {
                data,
                end_block: false,
            })?;
        }
        let mut frame = self
            .pipe
            .as_mut()
            .and_then(|p| p.spare.pop())
            .unwrap_or_default();
        frame.clear();
        frame.extend_from_slice(&[0; 4]);
        let mut frame = postcard::to_extend(msg, frame)
            .map_err(|e| Error::new(ExitCode::StreamIo, format!("cannot encode frame: {e}")))?;
        let len = frame.len() - 4;
        if len > MAX_FRAME {
            return Err(Error::new(
                ExitCode::StreamIo,
                format!("frame of {len} bytes exceeds the protocol limit"),
            ));
        }
        frame[..4].copy_from_slice(&(len as u32).to_le_bytes());
        self.hand_over(Job::Raw(frame))
    }

    pub fn magic(&mut self) -> Result<(), Error> {
        self.sent += MAGIC.len() as u64;
        self.inner.write_all(&MAGIC).map_err(lost)
    }

    /// Queues a frame; it reaches the peer at the next [`flush`](Self::flush). When the
    /// buffer fills, what is queued is written out before that (when segmented, handed to
    /// the compressing thread, whose output is written as it comes).
    pub fn send(&mut self, msg: &Msg) -> Result<(), Error> {
        let start = self.buf.len();
        self.buf.extend_from_slice(&[0; 4]);
        let body = postcard::to_extend(msg, std::mem::take(&mut self.buf))
            .map_err(|e| Error::new(ExitCode::StreamIo, format!("cannot encode frame: {e}")))?;
        self.buf = body;
        let len = self.buf.len() - start - 4;
        if len > MAX_FRAME {
            return Err(Error::new(
                ExitCode::StreamIo,
                format!("frame of {len} bytes exceeds the protocol limit"),
            ));
        }
        self.buf[start..start + 4].copy_from_slice(&(len as u32).to_le_bytes());
        if self.buf.len() >= CHUNK {
            if self.pipe.is_some() {
                // Not the end of a zstd block: cutting one here costs its entropy tables
                // and the matches a longer block would have found, for nothing (0.3% of
                // the bytes on 40 MB of crate sources, where the buffer fills 170 times).
                let data = self.take_batch();
                self.hand_over(Job::Frames {
                    data,
                    end_block: false,
                })?;
            } else {
                self.flush()?;
            }
        }
        Ok(())
    }

    /// Hands everything queued to the peer: when segmented, this ends the current zstd
    /// block so the peer can decode every frame sent so far, and waits until the
    /// compressing thread's output is written.
    pub fn flush(&mut self) -> Result<(), Error> {
        if let Some(p) = self.pipe.as_mut() {
            if p.dirty || !self.buf.is_empty() {
                let data = self.take_batch();
                self.hand_over(Job::Frames {
                    data,
                    end_block: true,
                })?;
                if let Some(p) = self.pipe.as_mut() {
                    p.dirty = false;
                }
            }
            while self.write_done(true)? {}
        } else if !self.buf.is_empty() {
            self.sent += self.buf.len() as u64;
            self.inner.write_all(&self.buf).map_err(lost)?;
            self.buf.clear();
        }
        self.inner.flush().map_err(lost)
    }
}

fn lost(e: io::Error) -> Error {
    Error::new(
        ExitCode::StreamIo,
        format!("connection unexpectedly closed: {e}"),
    )
}

/// The receiving half of a connection.
pub struct Reader<R: Read> {
    inner: R,
    buf: Vec<u8>,
    /// Bytes read so far, for "connection closed (N bytes received so far)".
    pub received: u64,
    /// `-z`: decoded segments not yet parsed into frames.
    comp: Option<Decompressor>,
    plain: Vec<u8>,
    pos: usize,
    /// The peer's magic and `Hello` have not been read yet.
    greeting: bool,
    /// The protocol version the peer's `Hello` named, once read.
    peer_version: Option<u32>,
}

impl<R: Read> Reader<R> {
    pub fn new(inner: R) -> Self {
        Reader {
            inner,
            buf: Vec::new(),
            received: 0,
            comp: None,
            plain: Vec::new(),
            pos: 0,
            greeting: false,
            peer_version: None,
        }
    }

    /// The protocol version the peer greeted with (None before its `Hello`): a client
    /// that met another version may install its own build there.
    pub fn peer_version(&self) -> Option<u32> {
        self.peer_version
    }

    /// Reads and checks the peer's greeting now, where the next frame must wait for it
    /// (after installing, nothing may be sent before the installed binary runs).
    pub fn await_greeting(&mut self) -> Result<(), Error> {
        self.read_greeting()
    }

    /// The peer's greeting is still to come: the next [`recv`](Self::recv) reads and checks
    /// it first.
    pub fn expect_greeting(&mut self) {
        self.greeting = true;
    }

    /// The peer's magic and `Hello`, which must name this end's protocol version.
    fn read_greeting(&mut self) -> Result<(), Error> {
        self.greeting = false;
        self.magic()?;
        let hello = self.recv_frame()?;
        if let Msg::Hello { version } = hello {
            self.peer_version = Some(version);
        }
        match hello {
            Msg::Hello { version } if version == crate::PROTOCOL_VERSION => Ok(()),
            Msg::Hello { version } => Err(Error::new(
                ExitCode::Protocol,
                format!(
                    "protocol version mismatch: the other end speaks {version}, this one {}",
                    crate::PROTOCOL_VERSION
                ),
            )),
            other => Err(unexpected(&other, "Hello")),
        }
    }

    /// From the next frame on, the peer's frames arrive compressed.
    pub fn enable_compression(&mut self) -> Result<(), Error> {
        self.comp = Some(Decompressor::new().map_err(|e| {
            Error::new(
                ExitCode::StreamIo,
                format!("cannot start decompression: {e}"),
            )
        })?);
        Ok(())
    }

    fn read_exact_counted(&mut self, buf: &mut [u8]) -> Result<(), Error> {
        self.inner.read_exact(buf).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                Error::new(
                    ExitCode::StreamIo,
                    format!(
                        "connection unexpectedly closed ({} bytes received so far)",
                        self.received
                    ),
                )
            } else {
                lost(e)
            }
        })?;
        self.received += buf.len() as u64;
        Ok(())
    }

    /// The next frame of a compressed connection, reading segments as needed.
    fn recv_segmented(&mut self) -> Result<Msg, Error> {
        loop {
            let avail = &self.plain[self.pos..];
            if avail.len() >= 4 {
                let len = u32::from_le_bytes(avail[..4].try_into().expect("4 bytes")) as usize;
                if len > MAX_FRAME {
                    return Err(stream_error(format!(
                        "frame of {len} bytes exceeds the limit"
                    )));
                }
                if avail.len() >= 4 + len {
                    let msg = postcard::from_bytes(&avail[4..4 + len])
                        .map_err(|e| stream_error(format!("bad frame: {e}")));
                    self.pos += 4 + len;
                    if self.pos == self.plain.len() {
                        self.plain.clear();
                        self.pos = 0;
                    }
                    return msg;
                }
            }
            if self.pos > 0 {
                self.plain.drain(..self.pos);
                self.pos = 0;
            }
            let mut head = [0u8; 5];
            self.read_exact_counted(&mut head)?;
            let len = u32::from_le_bytes(head[1..5].try_into().expect("4 bytes")) as usize;
            if len > MAX_FRAME + 4 {
                return Err(stream_error(format!(
                    "segment of {len} bytes exceeds the limit"
                )));
            }
            // (Grown with the bytes that arrive, as in `recv_frame`.) A raw segment is read
            // straight onto the frames not yet parsed; a compressed one into `buf`, which
            // keeps its capacity from one segment to the next.
            let kind = head[0];
            let into = if kind == SEG_RAW {
                &mut self.plain
            } else {
                self.buf.clear();
                &mut self.buf
            };
            let got = (&mut self.inner)
                .take(len as u64)
                .read_to_end(into)
                .map_err(lost)?;
            self.received += got as u64;
            if got < len {
                return Err(Error::new(
                    ExitCode::StreamIo,
                    format!(
                        "connection unexpectedly closed ({} bytes received so far)",
                        self.received
                    ),
                ));
            }
            match kind {
                SEG_KEEPALIVE if self.buf.is_empty() => {}
                SEG_RAW => {}
                SEG_ZSTD => {
                    let dec = self.comp.as_mut().expect("segmented only when compressing");
                    dec.decompress(&self.buf, &mut self.plain, PLAIN_MAX)
                        .map_err(|e| stream_error(format!("bad compressed data: {e}")))?;
                }
                k => return Err(stream_error(format!("unknown segment kind {k}"))),
            }
        }
    }

    /// Reads the peer's magic bytes; anything else (a shell banner, an error message from
    /// a missing program) is reported with what was seen.
    pub fn magic(&mut self) -> Result<(), Error> {
        let mut got = [0u8; 8];
        let mut n = 0;
        while n < got.len() {
            match self.inner.read(&mut got[n..]) {
                Ok(0) => {
                    return Err(Error::new(
                        ExitCode::StreamIo,
                        format!("connection unexpectedly closed ({n} bytes received so far)"),
                    ));
                }
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(lost(e)),
            }
        }
        if got != MAGIC {
            return Err(Error::new(
                ExitCode::Protocol,
                format!(
                    "the remote side is not speaking the xsync protocol (it sent {:?}); is something printing from the remote shell's startup files?",
                    String::from_utf8_lossy(&got)
                ),
            ));
        }
        self.received += 8;
        Ok(())
    }

    pub fn recv(&mut self) -> Result<Msg, Error> {
        if self.greeting {
            self.read_greeting()?;
        }
        loop {
            let msg = if self.comp.is_some() {
                self.recv_segmented()?
            } else {
                self.recv_frame()?
            };
            if !matches!(msg, Msg::KeepAlive) {
                return Ok(msg);
            }
        }
    }

    /// One bare (uncompressed) frame.
    fn recv_frame(&mut self) -> Result<Msg, Error> {
        let mut len = [0u8; 4];
        self.read_exact_counted(&mut len)?;
        let len = u32::from_le_bytes(len) as usize;
        if len > MAX_FRAME {
            return Err(stream_error(format!(
                "frame of {len} bytes exceeds the limit"
            )));
        }
        // The buffer grows with the bytes that arrive, not with the length the peer claims:
        // four bytes saying "64 MiB" cost no more than four bytes.
        self.buf.clear();
        let got = (&mut self.inner)
            .take(len as u64)
            .read_to_end(&mut self.buf)
            .map_err(lost)?;
        if got < len {
            return Err(stream_error("stream ended inside a frame"));
        }
        self.received += len as u64;
        postcard::from_bytes(&self.buf).map_err(|e| stream_error(format!("bad frame: {e}")))
    }
}

/// The bytes of one keepalive as the peer reads them now: a frame, or under `-z` an empty
/// segment (written between two of the writer's frames or segments, see endpoint/conn.rs).
pub fn keepalive(compressed: bool) -> Vec<u8> {
    if compressed {
        return vec![SEG_KEEPALIVE, 0, 0, 0, 0];
    }
    let body = postcard::to_stdvec(&Msg::KeepAlive).unwrap_or_default();
    let mut frame = (body.len() as u32).to_le_bytes().to_vec();
    frame.extend_from_slice(&body);
    frame
}

/// This end's opening: magic and `Hello`, queued (they leave with the next flush).
pub fn greet<W: Write>(wr: &mut Writer<W>) -> Result<(), Error> {
    wr.magic()?;
    wr.send(&Msg::Hello {
        version: crate::PROTOCOL_VERSION,
    })
}

/// The server's opening: its greeting out, then the client's in, and the same protocol
/// version on both sides or the run ends (exit 2). The client does not wait for this:
/// it greets, starts the server and sends its first frames at once, and its [`Reader`]
/// checks the server's greeting before the first frame it reads (see
/// [`Reader::expect_greeting`]), so the remote shell's login overlaps the client's scan.
pub fn handshake<R: Read, W: Write>(rd: &mut Reader<R>, wr: &mut Writer<W>) -> Result<(), Error> {
    greet(wr)?;
    wr.flush()?;
    rd.read_greeting()
}

pub use crate::pathsafe::check_rel_path;

/// The error a peer's `Abort` ends the run with. An abort is a failure whatever the peer
/// says: a code of 0 (or one rsync does not have) is a protocol error, so a hostile or broken
/// peer cannot end a run that transferred nothing with exit 0.
pub fn aborted(code: i32, msg: String) -> Error {
    let code = match ExitCode::from_code(code) {
        ExitCode::Ok => ExitCode::StreamIo,
        c => c,
    };
    // (The text reaches a terminal: no escape sequences from the peer.)
    let msg: String = msg
        .chars()
        .filter(|c| !c.is_control() || *c == '\n' || *c == '\t')
        .take(4096)
        .collect();
    Error::new(code, msg)
}

/// Validates an entry from the peer before it joins the tree.
pub fn check_entry(e: &WireEntry) -> Result<(), Error> {
    check_name(&e.name).map_err(|err| stream_error(format!("peer sent an unsafe name: {err}")))?;
    if let Some(l) = &e.link_leader {
        if l.is_empty() {
            return Err(stream_error("empty hard-link leader"));
        }
        check_rel_path(l)?;
    }
    if e.meta.kind == crate::tree::Kind::Symlink && e.target.is_none() {
        return Err(stream_error("symlink without a target"));
    }
    Ok(())
}

/// A peer's attribute list: a bounded count, names in a namespace `-X` copies (never
/// `system.*`, which is ACLs), strictly sorted and unique (the digests hash them in order),
/// values within Linux's limit.
pub fn check_xattrs(x: &[(serde_bytes::ByteBuf, serde_bytes::ByteBuf)]) -> Result<(), Error> {
    use crate::xattr::{MAX_COUNT, MAX_VALUE, valid_name};
    if x.len() > MAX_COUNT {
        return Err(stream_error("too many extended attributes on one entry"));
    }
    for (i, (n, v)) in x.iter().enumerate() {
        if !valid_name(n) {
            return Err(stream_error(format!(
                "peer sent an extended attribute name xsync does not copy: `{}`",
                crate::error::show(n)
            )));
        }
        if v.len() > MAX_VALUE {
            return Err(stream_error("extended attribute value over 64 KiB"));
        }
        if i > 0 && x[i - 1].0 >= *n {
            return Err(stream_error(
                "extended attributes not sorted or have duplicates",
            ));
        }
    }
    Ok(())
}

/// Children must arrive strictly sorted (the engine binary-searches them) and unique.
pub fn check_sorted(children: &[Entry]) -> Result<(), Error> {
    for w in children.windows(2) {
        if w[0].name >= w[1].name {
            return Err(stream_error(
                "directory listing not sorted or has duplicates",
            ));
        }
    }
    Ok(())
}

pub fn unexpected(msg: &Msg, expected: &str) -> Error {
    let name = format!("{msg:?}");
    let name: String = name.chars().take_while(|c| c.is_alphanumeric()).collect();
    stream_error(format!("expected {expected}, got {name}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_oversized_frames_are_refused() {
        let mut out = Vec::new();
        {
            let mut w = Writer::new(&mut out);
            w.send(&Msg::Hello { version: 7 }).unwrap();
            w.send(&Msg::Data {
                id: 3,
                data: vec![1, 2, 3],
                end: None,
            })
            .unwrap();
            w.flush().unwrap();
        }
        let mut r = Reader::new(&out[..]);
        assert!(matches!(r.recv().unwrap(), Msg::Hello { version: 7 }));
        match r.recv().unwrap() {
            Msg::Data { id, data, end } => {
                assert_eq!((id, data, end), (3, vec![1, 2, 3], None));
            }
            other => panic!("{other:?}"),
        }
        let e = r.recv().unwrap_err();
        assert_eq!(e.code, ExitCode::StreamIo);

        let mut huge = ((MAX_FRAME + 1) as u32).to_le_bytes().to_vec();
        huge.extend_from_slice(&[0; 16]);
        let e = Reader::new(&huge[..]).recv().unwrap_err();
        assert_eq!(e.code, ExitCode::StreamIo);
        assert!(e.message().contains("exceeds"), "{}", e.message());
    }

    /// Pseudo source text: varied enough that zstd's blocks matter, repetitive enough to
    /// compress.
    fn text_frames(n: u32) -> Vec<Vec<u8>> {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let words = [
            "fn", "let", "mut", "self", "match", "impl", "return", "Ok(())", "&mut", "u64",
        ];
        (0..n)
            .map(|i| {
                let mut v = format!("// file {i}\n").into_bytes();
                while v.len() < 20_000 {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    v.extend_from_slice(words[(x % 10) as usize].as_bytes());
                    v.extend_from_slice(if x.is_multiple_of(7) {
                        b";\n    "
                    } else {
                        b" "
                    });
                    v.extend_from_slice(format!("{}", x % 1000).as_bytes());
                }
                v
            })
            .collect()
    }

    #[test]
    fn a_full_buffer_writes_out_without_ending_a_zstd_block() {
        let frames = text_frames(100);
        let send_all = || {
            let mut out = Vec::new();
            let mut w = Writer::new(&mut out);
            w.enable_compression(Plan::Fixed(3)).unwrap();
            for (i, d) in frames.iter().enumerate() {
                w.send(&Msg::Data {
                    id: i as u32,
                    data: d.clone(),
                    end: None,
                })
                .unwrap();
            }
            let written_before_flush = w.sent;
            w.flush().unwrap();
            (w.sent, written_before_flush, out)
        };
        let (whole, early, out) = send_all();
        // 2 MB of frames: most of it went out as the buffer filled, before any flush, and
        // the segments cut there decode in order once the flush ends the block.
        assert!(
            early > whole / 2,
            "{early} of {whole} bytes before the flush"
        );
        let mut r = Reader::new(&out[..]);
        r.enable_compression().unwrap();
        for (i, d) in frames.iter().enumerate() {
            match r.recv().unwrap() {
                Msg::Data { id, data, .. } => assert_eq!((id, &data), (i as u32, d)),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn compressed_connections_carry_raw_and_compressed_frames_in_order() {
        let mut out = Vec::new();
        {
            let mut w = Writer::new(&mut out);
            w.enable_compression(Plan::Fixed(3)).unwrap();
            for i in 0..50u32 {
                let data = format!("line {i} of some very repetitive text\n").repeat(100);
                if i % 7 == 0 {
                    w.send_raw(&Msg::Data {
                        id: i,
                        data: data.into_bytes(),
                        end: None,
                    })
                    .unwrap();
                } else {
                    w.send(&Msg::Data {
                        id: i,
                        data: data.into_bytes(),
                        end: None,
                    })
                    .unwrap();
                }
                if i % 10 == 9 {
                    w.flush().unwrap();
                }
            }
            w.flush().unwrap();
            assert!(w.sent < 50 * 3700 / 4, "compressed to {} bytes", w.sent);
        }
        let mut r = Reader::new(&out[..]);
        r.enable_compression().unwrap();
        for i in 0..50u32 {
            match r.recv().unwrap() {
                Msg::Data { id, data, .. } => {
                    assert_eq!(id, i);
                    assert_eq!(
                        data,
                        format!("line {i} of some very repetitive text\n")
                            .repeat(100)
                            .into_bytes()
                    );
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(r.recv().unwrap_err().code, ExitCode::StreamIo);
    }

    #[test]
    fn a_run_of_raw_frames_keeps_a_bounded_pool_of_buffers() {
        // Every raw frame comes back from the compressing thread as a spare buffer; kept
        // all, a 1 GiB incompressible file held its whole size in them (client RSS 1.2 GiB
        // at 2ea1e44 on benches/compare/long-link.sh).
        let mut w = Writer::new(std::io::sink());
        w.enable_compression(Plan::Fixed(3)).unwrap();
        for i in 0..200u32 {
            w.send_raw(&Msg::Data {
                id: i,
                data: vec![i as u8; 64 * 1024],
                end: None,
            })
            .unwrap();
        }
        w.flush().unwrap();
        let pool = w.pipe.as_ref().map(|p| p.spare.len()).unwrap();
        assert!(pool <= IN_FLIGHT + 1, "{pool} spare buffers kept");
        assert!(
            w.sent > 200 * 64 * 1024,
            "raw frames went out whole: {}",
            w.sent
        );
    }

    #[test]
    fn a_peer_of_another_protocol_version_is_refused() {
        let mut peer = Vec::new();
        {
            let mut w = Writer::new(&mut peer);
            w.magic().unwrap();
            w.send(&Msg::Hello { version: 999 }).unwrap();
            w.flush().unwrap();
        }
        let mut sink = Vec::new();
        let e = handshake(&mut Reader::new(&peer[..]), &mut Writer::new(&mut sink)).unwrap_err();
        assert_eq!(e.code, ExitCode::Protocol, "{}", e.message());
        // A shell banner instead of the magic is not the protocol either.
        let e = handshake(
            &mut Reader::new(&b"Welcome!\n"[..]),
            &mut Writer::new(&mut sink),
        )
        .unwrap_err();
        assert_eq!(e.code, ExitCode::Protocol);
    }

    #[test]
    fn a_client_checks_the_servers_greeting_before_its_first_frame() {
        let peer = |version| {
            let mut bytes = Vec::new();
            let mut w = Writer::new(&mut bytes);
            w.magic().unwrap();
            w.send(&Msg::Hello { version }).unwrap();
            w.send(&Msg::GetEnd).unwrap();
            w.flush().unwrap();
            bytes
        };
        let good = peer(crate::PROTOCOL_VERSION);
        let mut r = Reader::new(&good[..]);
        r.expect_greeting();
        assert!(matches!(r.recv().unwrap(), Msg::GetEnd));
        let bad = peer(999);
        let mut r = Reader::new(&bad[..]);
        r.expect_greeting();
        assert_eq!(r.recv().unwrap_err().code, ExitCode::Protocol);
    }

    /// A directory of files named `names`, each with `size`, digested under `-a`'s rules.
    fn dir(files: &[(&str, u64)]) -> (Entry, Compared) {
        let cmp = Compared::from_options(&crate::config::Options {
            times: true,
            perms: true,
            ..Default::default()
        });
        let mut d = Entry::new(Box::from(&b"d"[..]), crate::tree::virtual_dir_meta());
        for (name, size) in files {
            let meta = Meta {
                kind: crate::tree::Kind::File,
                size: *size,
                ..crate::tree::virtual_dir_meta()
            };
            d.children.push(Entry::new(name.as_bytes().into(), meta));
        }
        crate::summary::digest_tree(&mut d, &cmp);
        (d, cmp)
    }

    fn names(v: &[Entry]) -> Vec<(String, u64)> {
        v.iter()
            .map(|e| (String::from_utf8_lossy(&e.name).into_owned(), e.meta.size))
            .collect()
    }

    #[test]
    fn a_listing_carries_only_what_changed_and_rebuilds_the_senders_children() {
        let (have, cmp) = dir(&[("a", 1), ("b", 2), ("c", 3), ("old", 4)]);
        let (sender, _) = dir(&[("a", 1), ("b", 2), ("c", 30), ("new", 5)]);
        let req = ListDir::new(Vec::new(), &have.children);
        assert_eq!(req.have.len(), 4 * 8);
        let answer = req.answer(&sender.children).unwrap();
        assert_eq!(answer.same.as_slice(), &[0b0011]);
        assert_eq!(
            names(
                &answer
                    .new
                    .iter()
                    .map(|w| w.clone().into_entry(&cmp).unwrap())
                    .collect::<Vec<_>>()
            ),
            [("c".into(), 30), ("new".into(), 5)]
        );
        let merged = answer.merge(&have.children, &cmp).unwrap();
        assert_eq!(names(&merged), names(&sender.children));
        // Every rebuilt entry has the sender's digest (computed here for files).
        for (m, s) in merged.iter().zip(&sender.children) {
            assert_eq!(m.digest, s.digest);
        }
        // On the wire the unchanged pair costs a bit each, not an entry.
        let full = postcard::to_stdvec(
            &sender
                .children
                .iter()
                .map(WireEntry::from_entry)
                .collect::<Vec<_>>(),
        )
        .unwrap();
        let small = postcard::to_stdvec(&req.answer(&sender.children).unwrap()).unwrap();
        assert!(
            small.len() < full.len() * 3 / 4,
            "{} vs {}",
            small.len(),
            full.len()
        );
    }

    #[test]
    fn a_hostile_listing_answer_is_a_protocol_error() {
        let (have, cmp) = dir(&[("a", 1), ("b", 2), ("c", 3)]);
        let (sender, _) = dir(&[("a", 1)]);
        let good = ListDir::new(Vec::new(), &have.children)
            .answer(&sender.children)
            .unwrap();
        // A bitmap of the wrong length, or with bits past the last child.
        for same in [vec![], vec![1, 0], vec![0b1000]] {
            let bad = DirListing {
                same: serde_bytes::ByteBuf::from(same),
                new: vec![],
            };
            assert_eq!(
                bad.merge(&have.children, &cmp).unwrap_err().code,
                ExitCode::StreamIo
            );
        }
        // A name both "unchanged" and sent in full: a duplicate.
        let mut dup = good.clone();
        dup.new.push(WireEntry::from_entry(&sender.children[0]));
        assert_eq!(
            dup.merge(&have.children, &cmp).unwrap_err().code,
            ExitCode::StreamIo
        );
        // An unsafe new name.
        let mut evil = good;
        let mut w = WireEntry::from_entry(&sender.children[0]);
        w.name = b"../x".to_vec();
        evil.new.push(w);
        assert_eq!(
            evil.merge(&have.children, &cmp).unwrap_err().code,
            ExitCode::StreamIo
        );
        // A request with a partial key, and a directory without its digest.
        let req = ListDir {
            path: Default::default(),
            have: serde_bytes::ByteBuf::from(vec![0; 9]),
        };
        assert!(req.answer(&sender.children).is_err());
        let mut d = WireEntry::from_entry(&have);
        d.digest = None;
        assert!(d.into_entry(&cmp).is_err());
    }

    #[test]
    fn garbage_frames_are_a_stream_error_not_a_panic() {
        let mut bytes = 5u32.to_le_bytes().to_vec();
        bytes.extend_from_slice(&[0xff; 5]);
        let e = Reader::new(&bytes[..]).recv().unwrap_err();
        assert_eq!(e.code, ExitCode::StreamIo);
    }

    #[test]
    fn hostile_extended_attributes_from_the_peer_are_refused() {
        use serde_bytes::ByteBuf;
        let x = |v: &[(&[u8], usize)]| -> Vec<(ByteBuf, ByteBuf)> {
            v.iter()
                .map(|(n, len)| (ByteBuf::from(n.to_vec()), ByteBuf::from(vec![7u8; *len])))
                .collect()
        };
        assert!(check_xattrs(&x(&[(b"security.selinux", 3), (b"user.a", 0)])).is_ok());
        for bad in [
            x(&[(b"system.posix_acl_access", 4)]),
            x(&[(b"user.b", 1), (b"user.a", 1)]),
            x(&[(b"user.a", 1), (b"user.a", 1)]),
            x(&[(b"user.a", 64 * 1024 + 1)]),
            x(&[(b"user.", 1)]),
            x(&[(b"../evil", 1)]),
            (0..1025)
                .map(|i| (ByteBuf::from(format!("user.{i:05}")), ByteBuf::new()))
                .collect(),
        ] {
            assert!(check_xattrs(&bad).is_err(), "{:?}", bad.first());
        }
        // Every entry from the peer passes the check, the root too.
        let mut w = WireEntry::from_entry(&Entry::new(
            b"f".to_vec().into_boxed_slice(),
            crate::tree::virtual_dir_meta(),
        ));
        w.xattrs = Some(x(&[(b"system.posix_acl_default", 1)]));
        let cmp = Compared::from_options(&crate::config::Options::default());
        assert!(w.into_entry(&cmp).is_err());
    }

    #[test]
    fn unsafe_paths_from_the_peer_are_refused() {
        for bad in [&b"/etc"[..], b"../x", b"a/../b", b"a//b", b"a/./b"] {
            assert!(check_rel_path(bad).is_err(), "{bad:?}");
        }
        assert!(check_rel_path(b"a/b/c").is_ok());
        assert!(check_rel_path(b"").is_ok());
    }
}
