//! rsync's rolling-checksum delta, behind our own interface: the receiver [`sign`]s a range
//! of its basis file, the sender [`diff`]s its new file against that [`Signature`] and emits
//! [`Op`]s (copy this basis range, or here are literal bytes), and the receiver's [`Applier`]
//! writes them out, moving matched runs with `copy_file_range` so unchanged bytes never pass
//! through user space.
//!
//! For huge files a coarse level comes first: both ends hash aligned blocks of
//! [`coarse_block`] bytes with blake3 ([`coarse_scan`]); the sender matches its blocks
//! against the basis's in place, then finds moved ones by rolling each basis block's
//! anchor ([`coarse_match`]), and only the [`CoarsePart`]s left go through sign/diff. The
//! file's end-to-end digest is then [`coarse_digest`], a hash over the block hashes, so
//! neither end reads the file a second time to check it.
//!
//! The rolling checksum and the strong hash are `fast_rsync`'s (librsync's rollsum, MD4
//! with SIMD). Nothing of it leaks out of this module: the signature's wire form is our own
//! struct, and fast_rsync's librsync-format delta is parsed here, as it streams out, into
//! [`Op`]s whose literals borrow the source window (no copy of the literal data is made).
//! Swapping the engine means rewriting this file only.
//!
//! Memory is bounded by windows: the basis is signed [`SIGN_WINDOW`] bytes at a time (in
//! parallel), the source diffed [`DIFF_WINDOW`] bytes at a time. Between two source windows
//! the trailing unmatched bytes (at most one block less one byte) are carried into the next
//! window, so a block straddling the edge is still found and no byte is lost or repeated.

use rayon::prelude::*;
use rustix::io::Errno;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::BorrowedFd;
use std::os::unix::fs::FileExt;

/// Smallest block: rsync's `BLOCK_SIZE`.
pub const MIN_BLOCK: u32 = 700;
/// Largest block: rsync's `MAX_BLOCK_SIZE` for protocol 30 and later.
pub const MAX_BLOCK: u32 = 128 * 1024;

/// Bytes of (truncated) MD4 kept per block. With the 32-bit rolling checksum in front, a
/// wrong block is taken only if a window collides on both. fast_rsync blacklists a rolling
/// value after 1024 failed strong checks, so at most `1024 × blocks` strong comparisons can
/// fail per diff: with 64 bits that bounds a false match at `1024 × 2^23 / 2^64 = 2^-31` for
/// the largest signature we make (2^23 blocks), whatever the file's length. The whole-file
/// blake3 check after apply catches what remains (and any crafted MD4 collision). 12 bytes a
/// block on the wire; rsync's adaptive length is smaller (often 4+3), which the coarse level
/// more than makes up for on large files.
pub const STRONG_LEN: u8 = 8;

/// Bytes of strong hash per block for a signature of `len` bytes in blocks of `block`:
/// rsync's rule (protocol 27+), about `2·log2(len) − log2(block) − 21` bits, at least 2
/// bytes, at most [`STRONG_LEN`]. rsync keeps signatures this small because a false block
/// match only costs a retransmission: here too, the whole-file blake3 check after apply
/// catches it and the file is fetched whole. Matching rsync's length keeps xsync's
/// signatures no larger than rsync's.
pub fn strong_len(len: u64, block: u32) -> u8 {
    const BLOCKSUM_BIAS: i64 = 10;
    let mut b = BLOCKSUM_BIAS;
    let mut l = len;
    loop {
        l >>= 1;
        if l == 0 {
            break;
        }
        b += 2;
    }
    let mut c = block;
    loop {
        c >>= 1;
        if c == 0 || b == 0 {
            break;
        }
        b -= 1;
    }
    let s2 = (b + 1 - 32 + 7) / 8;
    s2.clamp(2, STRONG_LEN as i64) as u8
}

/// Basis bytes read per signing task.
pub const SIGN_WINDOW: usize = 8 << 20;
/// Source bytes held in memory while diffing.
pub const DIFF_WINDOW: usize = 32 << 20;
/// Below this length the coarse level costs a round trip for little gain; callers go
/// straight to sign/diff.
pub const COARSE_MIN_LEN: u64 = 64 << 20;

/// librsync's delta magic, and the 12-byte header of its MD4 signatures (magic, block size,
/// strong length) that fast_rsync wants in front of the per-block hashes.
const DELTA_MAGIC: u32 = 0x7273_0236;
const MD4_SIG_MAGIC: u32 = 0x7273_0136;
const SIG_HEADER: usize = 12;
/// Size of the rolling checksum in front of each block's strong hash.
const WEAK_LEN: usize = 4;

/// rsync's rule: about `sqrt(len)` rounded down to a multiple of 8, at least [`MIN_BLOCK`],
/// at most [`MAX_BLOCK`].
pub fn block_size(len: u64) -> u32 {
    (len.isqrt() & !7).clamp(MIN_BLOCK as u64, MAX_BLOCK as u64) as u32
}

/// The signature of `len` bytes of a basis starting at `start`: for each block of
/// `block_size` bytes (the last one may be shorter) its rolling checksum and strong hash.
/// It crosses the wire, so [`diff`] validates it before use.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Signature {
    pub block_size: u32,
    pub start: u64,
    pub len: u64,
    /// Bytes of MD4 kept per block (1..=16).
    strong_len: u8,
    /// Per block: the rolling checksum (4 bytes, big-endian) then `strong_len` bytes of MD4.
    #[serde(with = "serde_bytes")]
    hashes: Vec<u8>,
}

impl Signature {
    /// Number of blocks covered.
    pub fn blocks(&self) -> u64 {
        self.len.div_ceil(self.block_size.max(1) as u64)
    }

    /// Checks what a peer could have got wrong: sizes in range, one entry per block.
    pub fn validate(&self) -> io::Result<()> {
        // (The floor bounds the engine's index: a peer's signature of 1-byte blocks would
        // cost tens of bytes of memory per byte of the file.)
        if self.block_size < MIN_BLOCK || self.block_size > MAX_BLOCK {
            return Err(invalid(format!(
                "signature block size {} out of range",
                self.block_size
            )));
        }
        if self.strong_len == 0 || self.strong_len > 16 {
            return Err(invalid(format!(
                "signature strong hash length {} out of range",
                self.strong_len
            )));
        }
        if self.start.checked_add(self.len).is_none() || self.blocks() > u32::MAX as u64 {
            return Err(invalid("signature range too large".into()));
        }
        let want = (self.blocks() as u128) * (WEAK_LEN + self.strong_len as usize) as u128;
        if self.hashes.len() as u128 != want {
            return Err(invalid(format!(
                "signature has {} bytes of hashes for {} blocks",
                self.hashes.len(),
                self.blocks()
            )));
        }
        Ok(())
    }

    /// fast_rsync's form: its header in front of our hashes.
    fn to_engine(&self) -> io::Result<fast_rsync::Signature> {
        self.validate()?;
        let mut bytes = Vec::with_capacity(SIG_HEADER + self.hashes.len());
        bytes.extend_from_slice(&MD4_SIG_MAGIC.to_be_bytes());
        bytes.extend_from_slice(&self.block_size.to_be_bytes());
        bytes.extend_from_slice(&(self.strong_len as u32).to_be_bytes());
        bytes.extend_from_slice(&self.hashes);
        fast_rsync::Signature::deserialize(bytes)
            .map_err(|e| invalid(format!("signature rejected: {e}")))
    }

    /// The hashes of the last block when it is shorter than `block_size` (fast_rsync only
    /// matches whole blocks; [`diff`] matches this one itself at the end of the source).
    fn short_tail(&self) -> Option<(u64, &[u8])> {
        let tail = self.len % self.block_size as u64;
        if tail == 0 {
            return None;
        }
        let entry = WEAK_LEN + self.strong_len as usize;
        Some((tail, &self.hashes[self.hashes.len() - entry..]))
    }
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("delta: {msg}"))
}

fn engine_options(block: u32, strong_len: u8) -> fast_rsync::SignatureOptions {
    fast_rsync::SignatureOptions {
        block_size: block,
        crypto_hash_size: strong_len as u32,
    }
}

/// Signs `basis[start..start+len)` in blocks of `block` bytes. Windows of [`SIGN_WINDOW`]
/// bytes (a whole number of blocks) are read and hashed in parallel, one buffer per thread.
pub fn sign(basis: &File, start: u64, len: u64, block: u32) -> io::Result<Signature> {
    if block == 0 || block > MAX_BLOCK {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("delta: block size {block} out of range"),
        ));
    }
    let end = start
        .checked_add(len)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "delta: range overflows"))?;
    let window = (SIGN_WINDOW / block as usize).max(1) as u64 * block as u64;
    let windows = usize::try_from(len.div_ceil(window))
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "delta: range too large"))?;
    let strong = strong_len(len, block);
    let opts = engine_options(block, strong);
    let parts = (0..windows)
        .into_par_iter()
        .map_init(Vec::new, |buf, i| {
            let at = start + i as u64 * window;
            buf.resize((end - at).min(window) as usize, 0);
            basis.read_exact_at(buf, at)?;
            let sig = fast_rsync::Signature::calculate(buf, opts).into_serialized();
            Ok(sig[SIG_HEADER..].to_vec())
        })
        .collect::<io::Result<Vec<Vec<u8>>>>()?;
    let sig = Signature {
        block_size: block,
        start,
        len,
        strong_len: strong,
        hashes: parts.concat(),
    };
    sig.validate()?;
    Ok(sig)
}

/// One instruction of a delta, in source order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op<'a> {
    /// `len` bytes of the basis from `offset` (absolute in the basis file).
    Copy { offset: u64, len: u64 },
    /// Bytes the basis does not have.
    Literal(&'a [u8]),
}

/// What a diff sent: bytes as literals, bytes matched in the basis.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DiffStats {
    pub literal: u64,
    pub matched: u64,
}

/// Sender: the delta of `src[start..start+len)` against `sig`, emitted in order. Adjacent
/// copies are merged (contiguous in the basis), so the receiver makes few large copies.
pub fn diff(
    sig: &Signature,
    src: &File,
    start: u64,
    len: u64,
    emit: &mut dyn FnMut(Op<'_>) -> io::Result<()>,
) -> io::Result<DiffStats> {
    diff_windowed(sig, src, start, len, DIFF_WINDOW, emit)
}

fn diff_windowed(
    sig: &Signature,
    src: &File,
    start: u64,
    len: u64,
    window: usize,
    emit: &mut dyn FnMut(Op<'_>) -> io::Result<()>,
) -> io::Result<DiffStats> {
    let engine = sig.to_engine()?;
    let index = engine.index();
    let end = start
        .checked_add(len)
        .ok_or_else(|| invalid("source range overflows".into()))?;
    let block = sig.block_size as usize;
    // At least a few blocks per window, so the carried tail never stalls the walk.
    let window = window.max(4 * block) as u64;
    let mut sink = Sink {
        emit,
        copy: None,
        stats: DiffStats::default(),
    };
    let mut buf = Vec::new();
    let mut pos = start;
    while pos < end {
        let wlen = (end - pos).min(window) as usize;
        buf.resize(wlen, 0);
        src.read_exact_at(&mut buf, pos)?;
        let last = pos + wlen as u64 == end;
        let mut parser = DeltaParser::new(&buf, sig.start, &mut sink);
        match fast_rsync::diff(&index, &buf, &mut parser) {
            Ok(()) => {}
            Err(fast_rsync::DiffError::Io(e)) => return Err(e),
            Err(e) => return Err(invalid(e.to_string())),
        }
        let tail_from = parser.finish()?;
        // Unmatched bytes at the end of the window: [tail_from, wlen).
        let mut next = wlen;
        if let Some(from) = tail_from {
            let mut lit_end = wlen;
            let mut tail_copy = None;
            if !last {
                // Carry up to a block less one byte into the next window: a block that
                // starts there and straddles the edge is still found.
                let keep = (wlen - from).min(block - 1);
                lit_end = wlen - keep;
                next = lit_end;
            } else if let Some((tail, hashes)) = sig.short_tail() {
                // The basis's short last block, at the very end of the source (rsync
                // matches it too): an unchanged or appended-to file's tail is not resent.
                let tail = tail as usize;
                if wlen - from >= tail {
                    let ours = fast_rsync::Signature::calculate(
                        &buf[wlen - tail..],
                        engine_options(sig.block_size, sig.strong_len),
                    );
                    if ours.serialized()[SIG_HEADER..] == *hashes {
                        lit_end = wlen - tail;
                        tail_copy = Some((sig.start + sig.len - tail as u64, tail as u64));
                    }
                }
            }
            if lit_end > from {
                sink.literal(&buf[from..lit_end])?;
            }
            if let Some((offset, n)) = tail_copy {
                sink.copy(offset, n)?;
            }
        }
        pos += next as u64;
    }
    sink.flush()?;
    Ok(sink.stats)
}

/// Merges adjacent copies, counts, and hands ops on.
struct Sink<'f> {
    emit: &'f mut dyn FnMut(Op<'_>) -> io::Result<()>,
    copy: Option<(u64, u64)>,
    stats: DiffStats,
}

impl Sink<'_> {
    fn copy(&mut self, offset: u64, len: u64) -> io::Result<()> {
        self.stats.matched += len;
        if let Some((o, l)) = &mut self.copy
            && *o + *l == offset
        {
            *l += len;
            return Ok(());
        }
        self.flush()?;
        self.copy = Some((offset, len));
        Ok(())
    }

    fn literal(&mut self, data: &[u8]) -> io::Result<()> {
        self.flush()?;
        self.stats.literal += data.len() as u64;
        (self.emit)(Op::Literal(data))
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.copy.take() {
            Some((offset, len)) => (self.emit)(Op::Copy { offset, len }),
            None => Ok(()),
        }
    }
}

/// Reads fast_rsync's librsync-format delta as it is written, one window at a time:
/// the magic, then commands — `0x01..=0x40` a literal of that many bytes, `0x41..=0x44` a
/// literal whose length follows in 1/2/4/8 bytes, `0x45..=0x54` a copy whose offset and
/// length follow in 1/2/4/8 bytes each (big-endian), `0x00` the end. Literal payloads are
/// skipped: the same bytes are in the window, and they are emitted from there.
struct DeltaParser<'w, 's, 'f> {
    window: &'w [u8],
    /// Window bytes accounted for by the commands so far.
    pos: usize,
    /// Start of the literal run not yet emitted (it ends at `pos`).
    literal_from: Option<usize>,
    /// Where the signature's offsets start in the basis.
    base: u64,
    head: [u8; 17],
    head_len: usize,
    /// Literal payload bytes still to skip.
    skip: u64,
    magic: bool,
    ended: bool,
    sink: &'s mut Sink<'f>,
}

impl<'w, 's, 'f> DeltaParser<'w, 's, 'f> {
    fn new(window: &'w [u8], base: u64, sink: &'s mut Sink<'f>) -> Self {
        DeltaParser {
            window,
            pos: 0,
            literal_from: None,
            base,
            head: [0; 17],
            head_len: 0,
            skip: 0,
            magic: false,
            ended: false,
            sink,
        }
    }

    /// Header length of the command starting with `cmd`.
    fn head_size(cmd: u8) -> io::Result<usize> {
        Ok(match cmd {
            0x00..=0x40 => 1,
            0x41..=0x44 => 1 + (1 << (cmd - 0x41)),
            0x45..=0x54 => {
                let c = cmd - 0x45;
                1 + (1 << (c / 4)) + (1 << (c % 4))
            }
            _ => return Err(invalid(format!("unknown delta command {cmd:#x}"))),
        })
    }

    fn command(&mut self) -> io::Result<()> {
        let cmd = self.head[0];
        let arg = &self.head[1..self.head_len];
        match cmd {
            0x00 => self.ended = true,
            0x01..=0x44 => {
                let n = if cmd <= 0x40 { cmd as u64 } else { be(arg) };
                let end = (self.pos as u64)
                    .checked_add(n)
                    .filter(|&e| e <= self.window.len() as u64)
                    .ok_or_else(|| invalid("delta literal past the window".into()))?;
                self.literal_from.get_or_insert(self.pos);
                self.pos = end as usize;
                self.skip = n;
            }
            _ => {
                let w = 1 << ((cmd - 0x45) / 4);
                let (offset, n) = (be(&arg[..w]), be(&arg[w..]));
                let end = (self.pos as u64)
                    .checked_add(n)
                    .filter(|&e| e <= self.window.len() as u64)
                    .ok_or_else(|| invalid("delta copy past the window".into()))?;
                let offset = self
                    .base
                    .checked_add(offset)
                    .ok_or_else(|| invalid("delta copy offset overflows".into()))?;
                if let Some(from) = self.literal_from.take() {
                    self.sink.literal(&self.window[from..self.pos])?;
                }
                self.sink.copy(offset, n)?;
                self.pos = end as usize;
            }
        }
        Ok(())
    }

    /// After the engine is done: the start of the window's trailing literal run, if any,
    /// left to the caller to emit or carry over.
    fn finish(self) -> io::Result<Option<usize>> {
        if !self.ended || self.skip != 0 || self.pos != self.window.len() {
            return Err(invalid("delta does not cover its window".into()));
        }
        Ok(self.literal_from)
    }
}

fn be(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0, |a, &b| (a << 8) | b as u64)
}

impl Write for DeltaParser<'_, '_, '_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let mut rest = data;
        while !rest.is_empty() {
            if self.ended {
                return Err(invalid("data after the end of the delta".into()));
            }
            if !self.magic {
                let take = (4 - self.head_len).min(rest.len());
                self.head[self.head_len..self.head_len + take].copy_from_slice(&rest[..take]);
                self.head_len += take;
                rest = &rest[take..];
                if self.head_len == 4 {
                    if self.head[..4] != DELTA_MAGIC.to_be_bytes() {
                        return Err(invalid("bad delta magic".into()));
                    }
                    self.magic = true;
                    self.head_len = 0;
                }
            } else if self.skip > 0 {
                let take = self.skip.min(rest.len() as u64) as usize;
                self.skip -= take as u64;
                rest = &rest[take..];
            } else {
                self.head[self.head_len] = rest[0];
                self.head_len += 1;
                rest = &rest[1..];
                if self.head_len == Self::head_size(self.head[0])? {
                    self.command()?;
                    self.head_len = 0;
                }
            }
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Receiver: writes a delta's ops sequentially to `out` from `out_offset`, with explicit
/// offsets (the file position is not used, so `out` must not be `O_APPEND`). Copies go
/// through `copy_file_range`, falling back to pread/pwrite where the kernel refuses.
pub struct Applier<'a> {
    basis: BorrowedFd<'a>,
    basis_len: u64,
    out: BorrowedFd<'a>,
    out_offset: u64,
    written: u64,
    in_kernel: bool,
    buf: Vec<u8>,
}

impl<'a> Applier<'a> {
    /// `basis_len` bounds every copy: a peer's copy past it is an error.
    pub fn new(
        basis: BorrowedFd<'a>,
        basis_len: u64,
        out: BorrowedFd<'a>,
        out_offset: u64,
    ) -> Self {
        Applier {
            basis,
            basis_len,
            out,
            out_offset,
            written: 0,
            in_kernel: true,
            buf: Vec::new(),
        }
    }

    /// Bytes written so far (the next op lands at `out_offset + written()`).
    pub fn written(&self) -> u64 {
        self.written
    }

    pub fn apply(&mut self, op: Op<'_>) -> io::Result<()> {
        match op {
            Op::Literal(data) => {
                self.write_at(data)?;
                self.written += data.len() as u64;
                Ok(())
            }
            Op::Copy { offset, len } => {
                match offset.checked_add(len) {
                    Some(end) if end <= self.basis_len => {}
                    _ => {
                        return Err(invalid(format!(
                            "copy of {len} bytes at {offset} is past the basis ({} bytes)",
                            self.basis_len
                        )));
                    }
                }
                self.copy(offset, len)
            }
        }
    }

    fn out_pos(&self) -> io::Result<u64> {
        self.out_offset
            .checked_add(self.written)
            .ok_or_else(|| invalid("output offset overflows".into()))
    }

    fn copy(&mut self, offset: u64, len: u64) -> io::Result<()> {
        let n = crate::fs::copy_range(
            self.basis,
            offset,
            self.out,
            self.out_pos()?,
            len,
            &mut self.in_kernel,
            &mut self.buf,
        )
        .map_err(|e| match e {
            crate::fs::CopyError::Read(e) | crate::fs::CopyError::Write(e) => e,
        })?;
        self.written += n;
        if n < len {
            return Err(basis_shrank());
        }
        Ok(())
    }

    /// Writes all of `data` at the current output position (does not advance it).
    fn write_at(&self, mut data: &[u8]) -> io::Result<()> {
        let mut at = self.out_pos()?;
        while !data.is_empty() {
            match rustix::io::pwrite(self.out, data, at) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    data = &data[n..];
                    at += n as u64;
                }
                Err(Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

fn basis_shrank() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "delta: basis file is shorter than when it was signed",
    )
}

/// Coarse block for a file of `len` bytes: 1 MiB up to 64 GiB, then doubling so the hash
/// list stays at most 64 Ki entries (1 MiB on the wire). Both ends must use the same value:
/// the one for the source's length.
pub fn coarse_block(len: u64) -> u64 {
    len.div_ceil(1 << 16)
        .next_power_of_two()
        .clamp(1 << 20, 1 << 30)
}

/// Bytes at the start of each coarse block whose rolling hash is the block's anchor. The
/// sender rolls this hash over the source ranges that did not match in place, so a basis
/// block that moved (after an insertion or a deletion) is found at its new offset and an
/// insertion costs about its own length instead of a search over the rest of the file.
pub const ANCHOR_LEN: usize = 4096;

/// Multiplier of the anchors' polynomial rolling hash (odd, so every byte counts).
const ROLL_MUL: u64 = 0x9E37_79B9_7F4A_7C15;

/// Predicted blocks of a shifted run hashed at once (in parallel) by the sender.
const CHAIN_BATCH: usize = 8;

/// Source bytes read at a time while rolling anchors.
const ROLL_WINDOW: usize = 4 << 20;

/// The anchor of `window` (exactly [`ANCHOR_LEN`] bytes): `Σ (b + 1)·M^(n-1-i)` mod 2^64.
fn anchor_of(window: &[u8]) -> u64 {
    window.iter().fold(0u64, |h, &b| {
        h.wrapping_mul(ROLL_MUL).wrapping_add(b as u64 + 1)
    })
}

/// `M^(ANCHOR_LEN-1)`: the weight of the byte leaving the window.
fn anchor_out_weight() -> u64 {
    (1..ANCHOR_LEN).fold(1u64, |w, _| w.wrapping_mul(ROLL_MUL))
}

/// One pass over a file's aligned coarse blocks.
pub struct CoarseScan {
    /// blake3 of each block in full: the wire carries the first 16 bytes, the file digest
    /// ([`coarse_digest`]) covers all 32.
    pub hashes: Vec<[u8; 32]>,
    /// Each block's anchor (meaningless, and ignored, for a block shorter than
    /// [`ANCHOR_LEN`]); empty unless asked for.
    pub anchors: Vec<u64>,
}

/// blake3 of each aligned `block` of `file[..len)` (the last may be shorter), and with
/// `anchors` each block's anchor, in one read. Blocks are hashed in parallel, each read in
/// chunks of at most 1 MiB.
pub fn coarse_scan(file: &File, len: u64, block: u64, anchors: bool) -> io::Result<CoarseScan> {
    if block == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "delta: coarse block size 0",
        ));
    }
    let n = usize::try_from(len.div_ceil(block))
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "delta: file too large"))?;
    let chunk = block.min(1 << 20) as usize;
    let both: Vec<([u8; 32], u64)> = (0..n)
        .into_par_iter()
        .map_init(
            || vec![0u8; chunk],
            |buf, i| {
                let mut at = i as u64 * block;
                let end = (at + block).min(len);
                let mut h = blake3::Hasher::new();
                let mut anchor = 0;
                let mut first = true;
                while at < end {
                    let take = (end - at).min(chunk as u64) as usize;
                    file.read_exact_at(&mut buf[..take], at)?;
                    if anchors && first && take >= ANCHOR_LEN {
                        anchor = anchor_of(&buf[..ANCHOR_LEN]);
                    }
                    first = false;
                    h.update(&buf[..take]);
                    at += take as u64;
                }
                Ok((*h.finalize().as_bytes(), anchor))
            },
        )
        .collect::<io::Result<_>>()?;
    let (hashes, all_anchors): (Vec<_>, Vec<_>) = both.into_iter().unzip();
    Ok(CoarseScan {
        hashes,
        anchors: if anchors { all_anchors } else { Vec::new() },
    })
}

/// A basis copied into the receiver's temporary while it is hashed ([`prefill_scan`]).
pub struct Prefill {
    /// Per block, the first 16 bytes of the blake3 of the basis block: what the sender
    /// compares.
    pub wire: Vec<[u8; 16]>,
    /// Per block, the full blake3 of the bytes written to the temporary: what the
    /// receiver's digest is made of for blocks that are not written again.
    pub written: Vec<[u8; 32]>,
    pub anchors: Vec<u64>,
}

/// Receiver: [`coarse_scan`] of the basis that also writes each block to `out` at the same
/// offset, in parallel, from the buffer it hashes. A big update mostly keeps blocks in
/// place, so the temporary is built while the basis is read for its hashes: the basis is
/// read once, and the blocks the sender confirms are neither copied again nor read back
/// (their hash is the hash of exactly the bytes written). `fault` (a test hook) flips the
/// byte at that offset after its block's wire hash is taken and before it is written and
/// hashed again: a difference the coarse hashes cannot see, which the digest must catch.
pub fn prefill_scan(
    basis: &File,
    len: u64,
    block: u64,
    out: &File,
    fault: Option<u64>,
) -> io::Result<Prefill> {
    if block == 0 || block > 1 << 30 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "delta: coarse block size out of range",
        ));
    }
    let n = usize::try_from(len.div_ceil(block))
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "delta: file too large"))?;
    let per: Vec<([u8; 16], [u8; 32], u64)> = (0..n)
        .into_par_iter()
        .map_init(Vec::new, |buf, i| {
            let at = i as u64 * block;
            let blen = (len - at).min(block) as usize;
            buf.resize(blen, 0);
            basis.read_exact_at(buf, at)?;
            let anchor = if blen >= ANCHOR_LEN {
                anchor_of(&buf[..ANCHOR_LEN])
            } else {
                0
            };
            let full = *blake3::hash(buf).as_bytes();
            let mut wire = [0u8; 16];
            wire.copy_from_slice(&full[..16]);
            let mut written = full;
            if let Some(f) = fault.filter(|&f| f >= at && f < at + blen as u64) {
                buf[(f - at) as usize] ^= 0xff;
                written = *blake3::hash(buf).as_bytes();
            }
            out.write_all_at(buf, at)?;
            Ok((wire, written, anchor))
        })
        .collect::<io::Result<_>>()?;
    let mut p = Prefill {
        wire: Vec::with_capacity(n),
        written: Vec::with_capacity(n),
        anchors: Vec::with_capacity(n),
    };
    for (w, h, a) in per {
        p.wire.push(w);
        p.written.push(h);
        p.anchors.push(a);
    }
    Ok(p)
}

/// [`coarse_scan`]'s hashes of the blocks from `from` (a multiple of `block`) on.
pub fn coarse_hashes_from(
    file: &File,
    len: u64,
    block: u64,
    from: u64,
) -> io::Result<Vec<[u8; 32]>> {
    if block == 0 || !from.is_multiple_of(block) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "delta: coarse blocks misaligned",
        ));
    }
    let first = from / block;
    let n = len.div_ceil(block).saturating_sub(first);
    let chunk = block.min(1 << 20) as usize;
    (0..n)
        .into_par_iter()
        .map_init(
            || vec![0u8; chunk],
            |buf, i| {
                let mut at = (first + i) * block;
                let end = (at + block).min(len);
                let mut h = blake3::Hasher::new();
                while at < end {
                    let take = (end - at).min(chunk as u64) as usize;
                    file.read_exact_at(&mut buf[..take], at)?;
                    h.update(&buf[..take]);
                    at += take as u64;
                }
                Ok(*h.finalize().as_bytes())
            },
        )
        .collect()
}

/// The digest of a big file on the coarse path: blake3 (in derive-key mode, so it can
/// never equal a plain content hash) over its length, the block size and the full blake3
/// of each aligned block. Equal digests mean equal lengths and equal block hashes at every
/// offset, hence equal content: as strong an end-to-end check as one blake3 over the file,
/// but the sender gets it from the same read as its coarse hashes (no second pass over the
/// source), and the receiver can hash a rebuilt file block by block, in parallel, behind
/// the writer.
pub fn coarse_digest(len: u64, block: u64, hashes: &[[u8; 32]]) -> [u8; 32] {
    let mut h = blake3::Hasher::new_derive_key("xsync 2026-11 coarse file digest");
    h.update(&len.to_le_bytes());
    h.update(&block.to_le_bytes());
    for x in hashes {
        h.update(x);
    }
    *h.finalize().as_bytes()
}

/// A source range the coarse level could not place (`start`, `len`), and the basis range
/// the receiver should sign for it (`basis_start`, `basis_len`): what lies in the basis
/// between the copies on either side.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CoarsePart {
    pub start: u64,
    pub len: u64,
    pub basis_start: u64,
    pub basis_len: u64,
}

/// One piece of a big source file, in source order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Segment {
    /// Equal to `len` bytes of the basis at `offset` (verified by a coarse block hash).
    Copy { offset: u64, len: u64 },
    /// To be diffed against the receiver's signature of the part's basis range.
    Part(CoarsePart),
}

/// The sender's view of a big file after the coarse level.
#[derive(Clone, Debug)]
pub struct CoarseMatch {
    /// [`coarse_digest`] of the source as it was read.
    pub digest: [u8; 32],
    pub segments: Vec<Segment>,
}

impl CoarseMatch {
    /// The ranges the receiver signs, in order.
    pub fn parts(&self) -> Vec<CoarsePart> {
        self.segments
            .iter()
            .filter_map(|s| match s {
                Segment::Part(p) => Some(*p),
                Segment::Copy { .. } => None,
            })
            .collect()
    }
}

/// What the sender knows of the basis: its length and, per aligned block, the first 16
/// bytes of its blake3 and its anchor. All of it came from the peer: a short or odd list
/// means fewer matches, never a panic.
struct Basis<'a> {
    len: u64,
    block: u64,
    hashes: &'a [[u8; 16]],
    /// Blocks that have a hash (and lie inside `len`).
    n: usize,
    by_hash: std::collections::HashMap<[u8; 16], usize>,
    /// Anchor → first block with it, behind a 2^20-bit filter so most rolled positions
    /// cost one bit test.
    by_anchor: std::collections::HashMap<u64, usize>,
    filter: Vec<u64>,
    /// Shortest block that has an anchor: no shorter source range can hold a moved block.
    min_anchored: u64,
}

impl<'a> Basis<'a> {
    fn new(len: u64, block: u64, hashes: &'a [[u8; 16]], anchors: &[u64]) -> Self {
        let n = hashes.len().min(len.div_ceil(block) as usize);
        let mut b = Basis {
            len,
            block,
            hashes,
            n,
            by_hash: Default::default(),
            by_anchor: Default::default(),
            filter: vec![0; (1 << 20) / 64],
            min_anchored: u64::MAX,
        };
        for (j, h) in hashes.iter().enumerate().take(n) {
            b.by_hash.entry(*h).or_insert(j);
            let l = b.block_len(j);
            if let Some(&a) = anchors.get(j)
                && l >= ANCHOR_LEN as u64
            {
                b.by_anchor.entry(a).or_insert(j);
                let bit = (a >> 44) as usize;
                b.filter[bit / 64] |= 1 << (bit % 64);
                b.min_anchored = b.min_anchored.min(l);
            }
        }
        b
    }

    fn block_len(&self, j: usize) -> u64 {
        (self.len - j as u64 * self.block).min(self.block)
    }

    fn anchored(&self, h: u64) -> Option<usize> {
        let bit = (h >> 44) as usize;
        if self.filter[bit / 64] & (1 << (bit % 64)) == 0 {
            return None;
        }
        self.by_anchor.get(&h).copied()
    }
}

fn hash_range(src: &File, mut at: u64, len: u64, buf: &mut Vec<u8>) -> io::Result<[u8; 16]> {
    let end = at + len;
    buf.resize(1 << 20, 0);
    let mut h = blake3::Hasher::new();
    while at < end {
        let take = ((end - at) as usize).min(buf.len());
        src.read_exact_at(&mut buf[..take], at)?;
        h.update(&buf[..take]);
        at += take as u64;
    }
    let mut out = [0u8; 16];
    out.copy_from_slice(&h.finalize().as_bytes()[..16]);
    Ok(out)
}

/// Sender: matches a big source against the basis's coarse hashes and anchors, reading the
/// source once for its own aligned hashes (and the file digest), then only the ranges that
/// did not match in place: there it rolls anchors to find moved blocks, and follows each
/// one found with its successors at the same shift. What remains becomes [`CoarsePart`]s
/// for the fine level (rsync's rolling search over small ranges only).
pub fn coarse_match(
    src: &File,
    src_len: u64,
    block: u64,
    basis_len: u64,
    basis_hashes: &[[u8; 16]],
    basis_anchors: &[u64],
) -> io::Result<CoarseMatch> {
    let mine = coarse_scan(src, src_len, block, false)?.hashes;
    let digest = coarse_digest(src_len, block, &mine);
    let basis = Basis::new(basis_len, block, basis_hashes, basis_anchors);
    let short = |h: &[u8; 32]| -> [u8; 16] { h[..16].try_into().expect("16 of 32") };
    // In place first: the same block at the same offset, else any basis block of that
    // hash and length (a block copied from elsewhere in the file).
    let aligned: Vec<Option<usize>> = mine
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let slen = (src_len - i as u64 * block).min(block);
            let h = short(h);
            if i < basis.n && basis.hashes[i] == h && basis.block_len(i) == slen {
                return Some(i);
            }
            basis
                .by_hash
                .get(&h)
                .copied()
                .filter(|&j| basis.block_len(j) == slen)
        })
        .collect();
    // (source offset, basis offset, length), in source order.
    let mut copies: Vec<(u64, u64, u64)> = Vec::new();
    let mut i = 0;
    while i < aligned.len() {
        let at = i as u64 * block;
        if let Some(j) = aligned[i] {
            copies.push((at, j as u64 * block, basis.block_len(j)));
            i += 1;
            continue;
        }
        let mut k = i;
        while k < aligned.len() && aligned[k].is_none() {
            k += 1;
        }
        let end = (k as u64 * block).min(src_len);
        search_moved(src, at, end, &basis, &mut copies)?;
        i = k;
    }
    Ok(CoarseMatch {
        digest,
        segments: segments(&copies, src_len, &basis),
    })
}

/// Finds basis blocks inside the source range `[from, end)` at any offset: anchors rolled
/// byte by byte until one verifies, then its successors checked at the same shift in
/// parallel batches. Candidate checks are budgeted (a few per coarse block of the range) so
/// data crafted to collide with anchors costs bounded time.
fn search_moved(
    src: &File,
    from: u64,
    end: u64,
    basis: &Basis<'_>,
    copies: &mut Vec<(u64, u64, u64)>,
) -> io::Result<()> {
    if basis.min_anchored == u64::MAX {
        return Ok(());
    }
    let mut budget = 8 + 2 * (end - from) / basis.block;
    let mut buf = Vec::new();
    let mut p = from;
    while p + basis.min_anchored <= end {
        let Some((mut q, mut j)) = find_anchor(src, p, end, basis, &mut budget, &mut buf)? else {
            break;
        };
        copies.push((q, j as u64 * basis.block, basis.block_len(j)));
        q += basis.block_len(j);
        j += 1;
        'chain: loop {
            let mut batch = Vec::with_capacity(CHAIN_BATCH);
            let (mut bq, mut bj) = (q, j);
            while batch.len() < CHAIN_BATCH && bj < basis.n && bq + basis.block_len(bj) <= end {
                batch.push((bq, bj));
                bq += basis.block_len(bj);
                bj += 1;
            }
            if batch.is_empty() {
                break;
            }
            let ok = batch
                .par_iter()
                .map_init(Vec::new, |buf, &(bq, bj)| {
                    hash_range(src, bq, basis.block_len(bj), buf).map(|h| h == basis.hashes[bj])
                })
                .collect::<io::Result<Vec<bool>>>()?;
            for (&(bq, bj), ok) in batch.iter().zip(ok) {
                if !ok {
                    break 'chain;
                }
                copies.push((bq, bj as u64 * basis.block, basis.block_len(bj)));
                q = bq + basis.block_len(bj);
                j = bj + 1;
            }
        }
        p = q;
    }
    Ok(())
}

/// The first position at or after `from` where a basis block starts and fits before `end`.
fn find_anchor(
    src: &File,
    from: u64,
    end: u64,
    basis: &Basis<'_>,
    budget: &mut u64,
    buf: &mut Vec<u8>,
) -> io::Result<Option<(u64, usize)>> {
    let out_weight = anchor_out_weight();
    let last = end - basis.min_anchored;
    let mut window = Vec::new();
    let mut wstart = from;
    while wstart <= last {
        let wend = (wstart + (ROLL_WINDOW + ANCHOR_LEN - 1) as u64).min(end);
        window.resize((wend - wstart) as usize, 0);
        src.read_exact_at(&mut window, wstart)?;
        let positions = window.len() + 1 - ANCHOR_LEN;
        let mut h = anchor_of(&window[..ANCHOR_LEN]);
        for k in 0..positions {
            let p = wstart + k as u64;
            if p > last {
                return Ok(None);
            }
            if let Some(j) = basis.anchored(h) {
                let l = basis.block_len(j);
                if p + l <= end {
                    if *budget == 0 {
                        return Ok(None);
                    }
                    *budget -= 1;
                    if hash_range(src, p, l, buf)? == basis.hashes[j] {
                        return Ok(Some((p, j)));
                    }
                }
            }
            if k + 1 < positions {
                h = h
                    .wrapping_sub((window[k] as u64 + 1).wrapping_mul(out_weight))
                    .wrapping_mul(ROLL_MUL)
                    .wrapping_add(window[k + ANCHOR_LEN] as u64 + 1);
            }
        }
        wstart += positions as u64;
    }
    Ok(None)
}

/// Copies merged where they continue each other, and the gaps between them as parts.
/// A part's basis range is what lies between the neighbouring copies' basis ends (an edit
/// or insertion: about the part's own length); when that is much longer than the part (a
/// deletion) only its head is signed, and when the copies run backwards, the basis at the
/// part's own offsets.
fn segments(copies: &[(u64, u64, u64)], src_len: u64, basis: &Basis<'_>) -> Vec<Segment> {
    let mut merged: Vec<(u64, u64, u64)> = Vec::with_capacity(copies.len());
    for &(s, b, l) in copies {
        match merged.last_mut() {
            Some((ps, pb, pl)) if *ps + *pl == s && *pb + *pl == b => *pl += l,
            _ => merged.push((s, b, l)),
        }
    }
    let part = |start: u64, len: u64, before: u64, after: u64| -> Segment {
        let (pe, ns) = (before.min(basis.len), after.min(basis.len));
        let (basis_start, basis_len) = if pe <= ns {
            let span = ns - pe;
            let cap = len.saturating_mul(2).saturating_add(2 * basis.block);
            (
                pe,
                if span <= cap {
                    span
                } else {
                    (len + basis.block).min(span)
                },
            )
        } else {
            let s = start.min(basis.len);
            (s, len.min(basis.len - s))
        };
        Segment::Part(CoarsePart {
            start,
            len,
            basis_start,
            basis_len,
        })
    };
    let mut out = Vec::with_capacity(2 * merged.len() + 1);
    let (mut pos, mut basis_end) = (0u64, 0u64);
    for &(s, b, l) in &merged {
        if s > pos {
            out.push(part(pos, s - pos, basis_end, b));
        }
        out.push(Segment::Copy { offset: b, len: l });
        pos = s + l;
        basis_end = b + l;
    }
    if pos < src_len {
        out.push(part(pos, src_len - pos, basis_end, basis.len));
    }
    out
}

/// A local update's coarse level: which aligned `block`s of `src` are byte-for-byte equal
/// to the basis at the same offset, compared in parallel (no hashes: locally both files
/// can be read, so nothing can falsely match).
pub fn equal_blocks(
    src: &File,
    src_len: u64,
    basis: &File,
    basis_len: u64,
    block: u64,
) -> io::Result<Vec<bool>> {
    let n = usize::try_from(src_len.div_ceil(block.max(1)))
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "delta: file too large"))?;
    (0..n)
        .into_par_iter()
        .map_init(
            || (vec![0u8; block as usize], vec![0u8; block as usize]),
            |(a, b), i| {
                let at = i as u64 * block;
                let len = (src_len - at).min(block) as usize;
                if at + len as u64 > basis_len {
                    return Ok(false);
                }
                src.read_exact_at(&mut a[..len], at)?;
                basis.read_exact_at(&mut b[..len], at)?;
                Ok(a[..len] == b[..len])
            },
        )
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;
    use std::time::Instant;

    #[test]
    fn strong_hash_length_follows_rsyncs_rule() {
        // rsync 3.x: 32 MiB in blocks of 5792 -> 3 bytes; small files -> the 2-byte floor.
        assert_eq!(strong_len(32 << 20, 5792), 3);
        assert_eq!(strong_len(10_000, 700), 2);
        assert_eq!(strong_len(2 << 30, 32768), 4);
        assert!(strong_len(u64::MAX, MIN_BLOCK) <= STRONG_LEN);
    }

    /// Deterministic bytes (xorshift64).
    fn random(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            out.extend_from_slice(&x.to_le_bytes());
        }
        out.truncate(len);
        out
    }

    fn file_with(dir: &tempfile::TempDir, name: &str, data: &[u8]) -> File {
        let path = dir.path().join(name);
        std::fs::write(&path, data).expect("write fixture");
        File::open(&path).expect("open fixture")
    }

    fn out_file(dir: &tempfile::TempDir) -> (File, std::path::PathBuf) {
        let path = dir.path().join("out");
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .expect("create out");
        (f, path)
    }

    /// sign → diff (with `window`) → apply; checks the result and returns the stats.
    fn round_trip_windowed(basis: &[u8], new: &[u8], window: usize) -> DiffStats {
        let dir = tempfile::tempdir().expect("tempdir");
        let b = file_with(&dir, "basis", basis);
        let s = file_with(&dir, "new", new);
        let (o, out_path) = out_file(&dir);
        let sig = sign(&b, 0, basis.len() as u64, block_size(basis.len() as u64)).expect("sign");
        let mut ap = Applier::new(b.as_fd(), basis.len() as u64, o.as_fd(), 0);
        let mut last_was_copy = false;
        let stats = diff_windowed(&sig, &s, 0, new.len() as u64, window, &mut |op| {
            let is_copy = matches!(op, Op::Copy { .. });
            assert!(!(is_copy && last_was_copy), "adjacent copies not merged");
            last_was_copy = is_copy;
            ap.apply(op)
        })
        .expect("diff");
        assert_eq!(ap.written(), new.len() as u64);
        assert_eq!(stats.literal + stats.matched, new.len() as u64);
        let got = std::fs::read(out_path).expect("read out");
        assert!(got == new, "round trip differs");
        stats
    }

    fn round_trip(basis: &[u8], new: &[u8]) -> DiffStats {
        round_trip_windowed(basis, new, DIFF_WINDOW)
    }

    fn figure(case: &str, stats: DiffStats) {
        eprintln!(
            "delta figures: {case}: literal {} bytes, matched {} bytes",
            stats.literal, stats.matched
        );
    }

    #[test]
    fn block_size_follows_rsync() {
        assert_eq!(block_size(0), 700);
        assert_eq!(block_size(490_000), 700);
        assert_eq!(block_size(8 << 20), 2896);
        assert_eq!(block_size(1 << 30), 32768);
        assert_eq!(block_size(u64::MAX), MAX_BLOCK);
        assert_eq!(block_size(10_000_000) % 8, 0);
    }

    #[test]
    fn identical_files_are_all_copy() {
        let data = random(3 << 20, 1);
        let st = round_trip(&data, &data);
        figure("identical 3 MiB", st);
        assert_eq!(st.literal, 0);
    }

    #[test]
    fn scattered_edits_round_trip() {
        let basis = random(32 << 20, 2);
        let mut new = basis.clone();
        let pos = random(20 * 8, 3);
        for p in pos.chunks(8) {
            let at = (u64::from_le_bytes(p.try_into().unwrap()) % (new.len() as u64 - 50)) as usize;
            for b in &mut new[at..at + 50] {
                *b = !*b;
            }
        }
        let st = round_trip(&basis, &new);
        figure("32 MiB, 20 scattered 50-byte edits", st);
        // Each edit costs at most the two blocks it may touch.
        assert!(st.literal <= 20 * 2 * block_size(32 << 20) as u64);
    }

    #[test]
    fn insertion_costs_about_its_length() {
        let basis = random(8 << 20, 4);
        let mut new = basis.clone();
        let ins = random(100, 5);
        new.splice(5000..5000, ins);
        let st = round_trip(&basis, &new);
        figure("8 MiB, 100-byte insertion", st);
        let block = block_size(8 << 20) as u64;
        assert!(st.literal >= 100);
        assert!(st.literal <= 100 + 2 * block, "literal {}", st.literal);
    }

    #[test]
    fn deletion_round_trips() {
        let basis = random(8 << 20, 6);
        let mut new = basis.clone();
        new.drain(1_000_000..1_000_777);
        let st = round_trip(&basis, &new);
        figure("8 MiB, 777-byte deletion", st);
        assert!(st.literal <= 2 * block_size(8 << 20) as u64);
    }

    #[test]
    fn unrelated_data_is_all_literal() {
        let st = round_trip(&random(2 << 20, 7), &random(2 << 20, 8));
        figure("unrelated 2 MiB", st);
        assert_eq!(st.matched, 0);
    }

    #[test]
    fn empty_basis_and_empty_new() {
        let data = random(100_000, 9);
        let st = round_trip(&[], &data);
        assert_eq!(st.literal, data.len() as u64);
        let st = round_trip(&data, &[]);
        assert_eq!(st, DiffStats::default());
        assert_eq!(round_trip(&[], &[]), DiffStats::default());
    }

    #[test]
    fn short_last_block_is_matched() {
        // Not a multiple of the block: the basis's short tail still matches at the end.
        let basis = random(1_000_003, 10);
        let st = round_trip(&basis, &basis);
        figure("identical 1000003 bytes", st);
        assert_eq!(st.literal, 0);
        let mut new = basis.clone();
        new[500] ^= 1;
        let st = round_trip(&basis, &new);
        assert!(st.literal <= block_size(basis.len() as u64) as u64);
        // Appended data: everything old is copied, only the new bytes are literal.
        let mut appended = basis.clone();
        appended.extend_from_slice(&random(333, 11));
        let st = round_trip(&basis, &appended);
        figure("1000003 bytes + 333 appended", st);
        assert!(st.literal < 333 + block_size(basis.len() as u64) as u64);
    }

    #[test]
    fn matches_across_window_edges_round_trip() {
        // Windows of 64 KiB over 1 MiB with 1000-byte blocks: the edges fall mid-block.
        let basis = random(1 << 20, 12);
        let mut new = basis.clone();
        new.splice(10_000..10_000, random(37, 13));
        for at in [65_530usize, 131_070, 400_000, 655_359] {
            new[at] ^= 0xff;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let b = file_with(&dir, "basis", &basis);
        let s = file_with(&dir, "new", &new);
        let (o, out_path) = out_file(&dir);
        let sig = sign(&b, 0, basis.len() as u64, 1000).expect("sign");
        let mut ap = Applier::new(b.as_fd(), basis.len() as u64, o.as_fd(), 0);
        let windowed = diff_windowed(&sig, &s, 0, new.len() as u64, 64 << 10, &mut |op| {
            ap.apply(op)
        })
        .expect("diff");
        assert_eq!(std::fs::read(out_path).expect("read"), new);
        // Carrying the unmatched tail across edges loses nothing against one window.
        let whole = diff(&sig, &s, 0, new.len() as u64, &mut |_| Ok(())).expect("diff");
        figure("1 MiB in 64 KiB windows", windowed);
        assert_eq!(windowed, whole);
        // And the default-sized round trip with a tiny window too.
        round_trip_windowed(&basis, &new, 10_000);
    }

    #[test]
    fn copy_past_basis_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let b = file_with(&dir, "basis", &random(1000, 14));
        let (o, _) = out_file(&dir);
        let mut ap = Applier::new(b.as_fd(), 1000, o.as_fd(), 0);
        ap.apply(Op::Copy {
            offset: 0,
            len: 1000,
        })
        .expect("in range");
        for (offset, len) in [(990, 11), (1001, 0), (u64::MAX, 2), (1, u64::MAX)] {
            let e = ap
                .apply(Op::Copy { offset, len })
                .expect_err("hostile copy");
            assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        }
        // A basis that shrank behind our back: an error, not a short file.
        let mut ap = Applier::new(b.as_fd(), 5000, o.as_fd(), 0);
        let e = ap
            .apply(Op::Copy {
                offset: 0,
                len: 5000,
            })
            .expect_err("short basis");
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn fallback_copy_matches() {
        let data = random(700_001, 15);
        let dir = tempfile::tempdir().expect("tempdir");
        let b = file_with(&dir, "basis", &data);
        let (o, out_path) = out_file(&dir);
        let mut ap = Applier::new(b.as_fd(), data.len() as u64, o.as_fd(), 7);
        ap.in_kernel = false;
        ap.apply(Op::Literal(b"abcdefg")).expect("literal");
        ap.apply(Op::Copy {
            offset: 1,
            len: 700_000,
        })
        .expect("copy");
        let got = std::fs::read(out_path).expect("read");
        assert_eq!(&got[7..14], b"abcdefg");
        assert!(got[14..] == data[1..]);
        assert_eq!(ap.written(), 700_007);
    }

    #[test]
    fn hostile_signature_is_rejected() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = file_with(&dir, "new", &random(10_000, 16));
        let b = file_with(&dir, "basis", &random(10_000, 17));
        let good = sign(&b, 0, 10_000, 1000).expect("sign");
        let mut bad = vec![
            Signature {
                block_size: 0,
                ..good.clone()
            },
            Signature {
                block_size: MAX_BLOCK + 1,
                ..good.clone()
            },
            Signature {
                len: 20_000,
                ..good.clone()
            },
            Signature {
                strong_len: 17,
                ..good.clone()
            },
            Signature {
                start: u64::MAX,
                ..good.clone()
            },
        ];
        let mut short = good.clone();
        short.hashes.pop();
        bad.push(short);
        for sig in bad {
            let e = diff(&sig, &s, 0, 10_000, &mut |_| Ok(())).expect_err("bad signature");
            assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        }
        // The wire form survives serde.
        let bytes = postcard::to_stdvec(&good).expect("encode");
        let back: Signature = postcard::from_bytes(&bytes).expect("decode");
        assert_eq!(back, good);
    }

    #[test]
    fn coarse_block_sizes() {
        assert_eq!(coarse_block(1), 1 << 20);
        assert_eq!(coarse_block(64 << 30), 1 << 20);
        assert_eq!(coarse_block(1 << 40), 16 << 20);
    }

    #[test]
    fn anchors_roll() {
        let data = random(3 * ANCHOR_LEN, 30);
        let w = anchor_out_weight();
        let mut h = anchor_of(&data[..ANCHOR_LEN]);
        for k in 0..2 * ANCHOR_LEN {
            h = h
                .wrapping_sub((data[k] as u64 + 1).wrapping_mul(w))
                .wrapping_mul(ROLL_MUL)
                .wrapping_add(data[k + ANCHOR_LEN] as u64 + 1);
            assert_eq!(h, anchor_of(&data[k + 1..k + 1 + ANCHOR_LEN]), "at {k}");
        }
    }

    /// What the two ends do with a big file, in one process: the receiver scans its basis,
    /// the sender matches, the receiver signs each part's basis range, the sender diffs the
    /// parts, the receiver applies copies and ops; then the rebuilt file's coarse digest is
    /// checked against the sender's. Returns (bytes in parts, literal bytes).
    fn coarse_round_trip(basis: &[u8], new: &[u8]) -> (u64, u64) {
        let dir = tempfile::tempdir().expect("tempdir");
        let b = file_with(&dir, "basis", basis);
        let s = file_with(&dir, "new", new);
        let (o, out_path) = out_file(&dir);
        let (blen, slen) = (basis.len() as u64, new.len() as u64);
        let block = coarse_block(slen);
        let scan = coarse_scan(&b, blen, block, true).expect("scan basis");
        let short: Vec<[u8; 16]> = scan
            .hashes
            .iter()
            .map(|h| h[..16].try_into().unwrap())
            .collect();
        let m = coarse_match(&s, slen, block, blen, &short, &scan.anchors).expect("match");
        let mut ap = Applier::new(b.as_fd(), blen, o.as_fd(), 0);
        let (mut in_parts, mut literal) = (0, 0);
        for seg in &m.segments {
            match *seg {
                Segment::Copy { offset, len } => ap.apply(Op::Copy { offset, len }).expect("copy"),
                Segment::Part(p) => {
                    let st = p.basis_start.min(blen);
                    let l = p.basis_len.min(blen - st);
                    let sig = sign(&b, st, l, block_size(l).max(4096)).expect("sign");
                    let d = diff(&sig, &s, p.start, p.len, &mut |op| ap.apply(op)).expect("diff");
                    in_parts += p.len;
                    literal += d.literal;
                }
            }
        }
        assert_eq!(ap.written(), slen);
        assert!(
            std::fs::read(&out_path).expect("read") == new,
            "rebuilt file differs"
        );
        let out = File::open(&out_path).expect("open out");
        let mine = coarse_scan(&out, slen, block, false)
            .expect("scan out")
            .hashes;
        assert_eq!(coarse_digest(slen, block, &mine), m.digest);
        (in_parts, literal)
    }

    /// 16 scattered 4 KiB edits in 64 MiB: only the edited coarse blocks reach the fine
    /// level, and each edit costs about its 4 KiB.
    #[test]
    fn coarse_level_narrows_to_edited_blocks() {
        let len = 64usize << 20;
        let basis = random(len, 18);
        let mut new = basis.clone();
        let block = coarse_block(len as u64);
        let mut edited = std::collections::BTreeSet::new();
        for (k, p) in random(16 * 8, 19).chunks(8).enumerate() {
            // One edit per 4 MiB stripe, anywhere in it (may straddle a coarse edge).
            let stripe = 4usize << 20;
            let at = k * stripe
                + (u64::from_le_bytes(p.try_into().unwrap()) % (stripe as u64 - 4096)) as usize;
            for b in &mut new[at..at + 4096] {
                *b = b.wrapping_add(1);
            }
            edited.insert(at as u64 / block);
            edited.insert((at as u64 + 4095) / block);
        }
        let (in_parts, literal) = coarse_round_trip(&basis, &new);
        eprintln!(
            "delta figures: coarse 64 MiB, 16×4 KiB edits: {in_parts} bytes in parts, \
             literal {literal} bytes (edits {})",
            16 * 4096
        );
        assert_eq!(in_parts, edited.len() as u64 * block);
        assert!(literal <= 16 * (4096 + 2 * 4096));
    }

    /// An insertion shifts every later block: the anchors find them at their new offsets,
    /// so one coarse block (plus the insertion) is searched and the literal is the insertion.
    #[test]
    fn coarse_level_finds_shifted_blocks() {
        let len = 64usize << 20;
        let basis = random(len, 31);
        for (at, n) in [
            (len / 2 + 12345, 1),
            (len / 3, 100_000),
            (0, 7),
            (len - 5, 3),
        ] {
            let mut new = basis.clone();
            new.splice(at..at, random(n, 32));
            let (in_parts, literal) = coarse_round_trip(&basis, &new);
            eprintln!(
                "delta figures: coarse 64 MiB, {n} bytes inserted at {at}: {in_parts} bytes in \
                 parts, literal {literal}"
            );
            assert!(
                in_parts <= 2 * (1 << 20) + n as u64,
                "{n} at {at}: {in_parts}"
            );
            assert!(
                literal <= n as u64 + 2 * 4096,
                "{n} at {at}: literal {literal}"
            );
        }
        // A deletion shifts the other way; a file of unrelated data has nothing to find.
        let mut new = basis.clone();
        new.drain(len / 4..len / 4 + (3 << 20) + 17);
        let (in_parts, literal) = coarse_round_trip(&basis, &new);
        assert!(in_parts <= 2 << 20, "deletion: {in_parts}");
        assert!(literal <= 1 << 20, "deletion: literal {literal}");
        let other = random(len / 4, 33);
        let (in_parts, _) = coarse_round_trip(&basis[..len / 4], &other);
        assert_eq!(in_parts, other.len() as u64);
    }

    /// Hostile or odd coarse input from a peer: short lists, zero-length basis, a basis
    /// longer than its hash list, anchors that all collide — no panic, and a round trip
    /// still rebuilds the file.
    #[test]
    fn coarse_match_survives_odd_input() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = random(5 << 20, 34);
        let s = file_with(&dir, "new", &data);
        let len = data.len() as u64;
        let block = 1 << 20;
        for (basis_len, hashes, anchors) in [
            (0u64, vec![], vec![]),
            (len, vec![[0u8; 16]; 2], vec![7u64; 2]),
            (u64::MAX / 2, vec![[1u8; 16]; 3], vec![0u64; 100]),
            (
                len,
                vec![[2u8; 16]; 5],
                vec![anchor_of(&data[..ANCHOR_LEN]); 5],
            ),
        ] {
            let m = coarse_match(&s, len, block, basis_len, &hashes, &anchors).expect("match");
            let covered: u64 = m.parts().iter().map(|p| p.len).sum();
            assert_eq!(covered, len, "nothing can match");
        }
    }

    /// Throughput of sign, diff and apply on 64 MiB with scattered edits (8 MiB unoptimised; run with
    /// `--release --nocapture` for figures worth quoting).
    #[test]
    fn throughput_figures() {
        // Unoptimised, fast_rsync's rolling loop crawls: keep the debug run short.
        let len = if cfg!(debug_assertions) { 8usize } else { 64 } << 20;
        let basis = random(len, 20);
        let mut new = basis.clone();
        for p in random(64 * 8, 21).chunks(8) {
            let at = (u64::from_le_bytes(p.try_into().unwrap()) % (len as u64 - 100)) as usize;
            new[at..at + 100].fill(0);
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let b = file_with(&dir, "basis", &basis);
        let s = file_with(&dir, "new", &new);
        let (o, out_path) = out_file(&dir);
        let mb = len as f64 / (1 << 20) as f64;
        let block = block_size(len as u64);

        let t = Instant::now();
        let sig = sign(&b, 0, len as u64, block).expect("sign");
        let sign_t = t.elapsed().as_secs_f64();

        let t = Instant::now();
        let mut n_ops = 0u64;
        let st = diff(&sig, &s, 0, len as u64, &mut |_| {
            n_ops += 1;
            Ok(())
        })
        .expect("diff");
        let diff_t = t.elapsed().as_secs_f64();

        let mut ap = Applier::new(b.as_fd(), len as u64, o.as_fd(), 0);
        let mut apply_t = 0.0;
        diff(&sig, &s, 0, len as u64, &mut |op| {
            let t = Instant::now();
            let r = ap.apply(op);
            apply_t += t.elapsed().as_secs_f64();
            r
        })
        .expect("diff+apply");
        assert!(std::fs::read(out_path).expect("read") == new);

        let unrelated = file_with(&dir, "unrelated", &random(len, 22));
        let t = Instant::now();
        diff(&sig, &unrelated, 0, len as u64, &mut |_| Ok(())).expect("diff");
        let diff_unrelated_t = t.elapsed().as_secs_f64();

        eprintln!(
            "delta figures: {mb} MiB, block {block}, 64×100-byte edits: sign {:.0} MB/s, \
             diff {:.0} MB/s (unrelated data {:.0} MB/s), apply {:.0} MB/s; {n_ops} ops, \
             literal {} bytes, signature {} bytes",
            mb / sign_t,
            mb / diff_t,
            mb / diff_unrelated_t,
            mb / apply_t,
            st.literal,
            postcard::to_stdvec(&sig).expect("encode").len()
        );
    }
}
