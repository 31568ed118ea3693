//! The fine level: rsync's rolling checksum over blocks of about sqrt(len) bytes —
//! signatures of the basis, the diff of a source against one, and fast_rsync's
//! librsync-format delta parsed into [`Op`]s as it streams out.

use super::*;

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
pub(super) const DELTA_MAGIC: u32 = 0x7273_0236;
pub(super) const MD4_SIG_MAGIC: u32 = 0x7273_0136;
pub(super) const SIG_HEADER: usize = 12;
/// Size of the rolling checksum in front of each block's strong hash.
pub(super) const WEAK_LEN: usize = 4;

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
    pub(super) strong_len: u8,
    /// Per block: the rolling checksum (4 bytes, big-endian) then `strong_len` bytes of MD4.
    #[serde(with = "serde_bytes")]
    pub(super) hashes: Vec<u8>,
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

pub(super) fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("delta: {msg}"))
}

pub(super) fn engine_options(block: u32, strong_len: u8) -> fast_rsync::SignatureOptions {
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

pub(super) fn diff_windowed(
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
pub(super) struct Sink<'f> {
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
pub(super) struct DeltaParser<'w, 's, 'f> {
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

pub(super) fn be(bytes: &[u8]) -> u64 {
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
