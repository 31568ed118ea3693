//! The wire protocol between `xsync` and `xsync --server`, in one place.
//!
//! A connection is two byte streams (the remote shell's stdin and stdout). Each carries
//! frames: a 4-byte little-endian length, then one [`Msg`] encoded with postcard. A frame
//! longer than [`MAX_FRAME`] or one that does not decode is a broken stream (exit 12).
//! Everything decoded here is still untrusted: names and paths are checked by
//! [`check_entry`]/[`check_rel_path`] before the engine sees them.
//!
//! Sequence (see docs/PROTOCOL.md): both ends send `Hello`; the client sends `Start`; the
//! sender sends `SourceRoot`; the receiver asks for directory listings one tree level at a
//! time (`List` → `Listing`) only where Merkle digests differ; then it streams `Get`
//! requests while the sender streams `File*` frames back (no per-file round trip); the
//! receiver ends with `Finish`, the sender answers `Done`.

use crate::compress::{Compressor, Decompressor};
use crate::error::Error;
use crate::exit::ExitCode;
use crate::pathsafe::check_name;
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
}

/// One entry as it crosses the wire: an [`Entry`] without its children.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct WireEntry {
    #[serde(with = "serde_bytes")]
    pub name: Vec<u8>,
    pub meta: Meta,
    pub target: Option<serde_bytes::ByteBuf>,
    pub hash: Option<[u8; 32]>,
    pub complete: bool,
    pub link_leader: Option<serde_bytes::ByteBuf>,
    pub digest: u128,
}

impl WireEntry {
    pub fn from_entry(e: &Entry) -> WireEntry {
        WireEntry {
            name: e.name.to_vec(),
            meta: e.meta,
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
            digest: e.digest,
        }
    }

    pub fn into_entry(self) -> Entry {
        let mut e = Entry::new(self.name.into_boxed_slice(), self.meta);
        e.target = self.target.map(|t| t.into_vec().into_boxed_slice());
        e.hash = self.hash;
        e.complete = self.complete;
        e.link_leader = self.link_leader.map(|l| l.into_vec().into_boxed_slice());
        e.digest = self.digest;
        e
    }
}

/// Counters the receiver reports back for `--stats` and the summary line.
#[derive(Serialize, Deserialize, Debug, Clone, Default)]
pub struct WireStats {
    pub created: [u64; 6],
    pub deleted: u64,
    pub transferred: u64,
    pub transferred_size: u64,
    pub literal: u64,
    pub matched: u64,
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
    },
    SourceRoot {
        info: SourceInfo,
        root: WireEntry,
    },
    /// Receiver → sender: list the children of these directories (root-relative).
    List {
        dirs: Vec<serde_bytes::ByteBuf>,
    },
    /// Sender → receiver: the children of each listed directory, in request order.
    Listing {
        dirs: Vec<Vec<WireEntry>>,
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
        end: Option<[u8; 32]>,
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
        end: Option<[u8; 32]>,
    },
    /// Sender → receiver: file `id` could not be read (already reported by the sender).
    Skip {
        id: u32,
    },
    /// Lines for the client's stdout (the server's `-v`/`-i` listing).
    Log {
        text: String,
    },
    /// Receiver → sender: all done, with the receiver's outcome.
    Finish {
        code: i32,
        stats: WireStats,
    },
    /// Sender → receiver: acknowledges Finish with the sender's outcome and the source
    /// totals for `--stats` (files, regular, dirs, links, devices, specials, bytes).
    Done {
        code: i32,
        counts: [u64; 7],
    },
    /// Either way: a fatal error the peer already printed; the run ends with `code`.
    Abort {
        code: i32,
        msg: String,
    },
}

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
}

impl Request {
    pub fn id(&self) -> u32 {
        match self {
            Request::Whole { id, .. } | Request::Delta { id, .. } => *id,
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
    /// `-z`: frames travel in segments (see [`crate::compress`]).
    comp: Option<Compressor>,
    segs: Vec<u8>,
}

/// Segment kinds of a compressed connection: `[kind u8][len u32 LE][bytes]`.
const SEG_RAW: u8 = 0;
const SEG_ZSTD: u8 = 1;

impl<W: Write> Writer<W> {
    pub fn new(inner: W) -> Self {
        Writer {
            inner,
            buf: Vec::with_capacity(64 * 1024),
            sent: 0,
            comp: None,
            segs: Vec::new(),
        }
    }

    /// From the next frame on, everything this end sends is compressed.
    pub fn enable_compression(&mut self, level: i32) -> Result<(), Error> {
        self.flush()?;
        self.comp = Some(Compressor::new(level).map_err(|e| {
            Error::new(ExitCode::StreamIo, format!("cannot start compression: {e}"))
        })?);
        Ok(())
    }

    pub fn compressing(&self) -> bool {
        self.comp.is_some()
    }

    /// Compresses the queued frames into one flushed segment.
    fn seal(&mut self) -> Result<(), Error> {
        if let Some(c) = self.comp.as_mut()
            && !self.buf.is_empty()
        {
            let mut z = Vec::with_capacity(self.buf.len() / 2 + 64);
            c.compress_flush(&self.buf, &mut z)
                .map_err(|e| Error::new(ExitCode::StreamIo, format!("compression failed: {e}")))?;
            self.segs.push(SEG_ZSTD);
            self.segs.extend_from_slice(&(z.len() as u32).to_le_bytes());
            self.segs.extend_from_slice(&z);
            self.buf.clear();
        }
        Ok(())
    }

    /// Sends a frame outside the compressed stream (data that would not compress); the
    /// same as [`send`](Self::send) on an uncompressed connection.
    pub fn send_raw(&mut self, msg: &Msg) -> Result<(), Error> {
        if self.comp.is_none() {
            return self.send(msg);
        }
        self.seal()?;
        let frame = postcard::to_stdvec(msg)
            .map_err(|e| Error::new(ExitCode::StreamIo, format!("cannot encode frame: {e}")))?;
        self.segs.push(SEG_RAW);
        self.segs
            .extend_from_slice(&((frame.len() + 4) as u32).to_le_bytes());
        self.segs
            .extend_from_slice(&(frame.len() as u32).to_le_bytes());
        self.segs.extend_from_slice(&frame);
        if self.segs.len() >= 256 * 1024 {
            self.flush()?;
        }
        Ok(())
    }

    pub fn magic(&mut self) -> Result<(), Error> {
        self.sent += MAGIC.len() as u64;
        self.inner.write_all(&MAGIC).map_err(lost)
    }

    /// Queues a frame; it reaches the peer at the next [`flush`](Self::flush) or when the
    /// buffer fills.
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
        if self.buf.len() >= 256 * 1024 {
            self.flush()?;
        }
        Ok(())
    }

    pub fn flush(&mut self) -> Result<(), Error> {
        if self.comp.is_some() {
            self.seal()?;
            if !self.segs.is_empty() {
                self.sent += self.segs.len() as u64;
                self.inner.write_all(&self.segs).map_err(lost)?;
                self.segs.clear();
            }
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
            let mut seg = vec![0u8; len];
            self.read_exact_counted(&mut seg)?;
            match head[0] {
                SEG_RAW => self.plain.extend_from_slice(&seg),
                SEG_ZSTD => {
                    let dec = self.comp.as_mut().expect("segmented only when compressing");
                    dec.decompress(&seg, &mut self.plain, MAX_FRAME + 8)
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
        if self.comp.is_some() {
            return self.recv_segmented();
        }
        let mut len = [0u8; 4];
        self.read_exact_counted(&mut len)?;
        let len = u32::from_le_bytes(len) as usize;
        if len > MAX_FRAME {
            return Err(stream_error(format!(
                "frame of {len} bytes exceeds the limit"
            )));
        }
        self.buf.resize(len, 0);
        self.inner.read_exact(&mut self.buf).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                stream_error("stream ended inside a frame")
            } else {
                lost(e)
            }
        })?;
        self.received += len as u64;
        postcard::from_bytes(&self.buf).map_err(|e| stream_error(format!("bad frame: {e}")))
    }
}

/// Both ends' opening: magic and `Hello` out, the peer's magic and `Hello` in, and the same
/// protocol version on both sides or the run ends (exit 2).
pub fn handshake<R: Read, W: Write>(rd: &mut Reader<R>, wr: &mut Writer<W>) -> Result<(), Error> {
    wr.magic()?;
    wr.send(&Msg::Hello {
        version: crate::PROTOCOL_VERSION,
    })?;
    wr.flush()?;
    rd.magic()?;
    match rd.recv()? {
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

/// A path from the peer that names something below the root: relative, every component a
/// safe name. The empty path is the root itself.
pub fn check_rel_path(p: &[u8]) -> Result<(), Error> {
    if p.is_empty() {
        return Ok(());
    }
    for comp in p.split(|&b| b == b'/') {
        check_name(comp).map_err(|e| stream_error(format!("peer sent an unsafe path: {e}")))?;
    }
    Ok(())
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

    #[test]
    fn compressed_connections_carry_raw_and_compressed_frames_in_order() {
        let mut out = Vec::new();
        {
            let mut w = Writer::new(&mut out);
            w.enable_compression(3).unwrap();
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
    fn garbage_frames_are_a_stream_error_not_a_panic() {
        let mut bytes = 5u32.to_le_bytes().to_vec();
        bytes.extend_from_slice(&[0xff; 5]);
        let e = Reader::new(&bytes[..]).recv().unwrap_err();
        assert_eq!(e.code, ExitCode::StreamIo);
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
