//! The coarse level for huge files: aligned blocks of [`coarse_block`] bytes hashed with
//! blake3 on both ends, matched in place and, moved, by rolling each block's anchor; only
//! the parts left go through the fine level, and the file's digest is a hash over the
//! block hashes.

use super::*;

/// Coarse block for a file of `len` bytes: 256 KiB up to 16 GiB, then doubling so the hash
/// list stays at most 64 Ki entries (1 MiB on the wire). Both ends must use the same value:
/// the one for the source's length.
///
/// Every block an edit touches goes through the fine level whole (its basis signed by the
/// receiver, its source searched byte by byte by the sender), so the block size is what a
/// small edit costs: a 512 MiB file with 64 scattered 4 KiB edits spent 0.2 s of its push
/// on 64 MiB of fine deltas with 1 MiB blocks; with 256 KiB blocks the push took 0.80 s
/// against 0.88 s (medians of 8 interleaved runs; rsync 1.10 s). The hashes of smaller
/// blocks cost no more to compute (blake3 over the same bytes) but 24 bytes each on the
/// wire with their anchors: 196 KB for 2 GiB, still a sixth of rsync's bytes there.
pub fn coarse_block(len: u64) -> u64 {
    len.div_ceil(1 << 16)
        .next_power_of_two()
        .clamp(1 << 18, 1 << 30)
}

/// Bytes at the start of each coarse block whose rolling hash is the block's anchor. The
/// sender rolls this hash over the source ranges that did not match in place, so a basis
/// block that moved (after an insertion or a deletion) is found at its new offset and an
/// insertion costs about its own length instead of a search over the rest of the file.
pub const ANCHOR_LEN: usize = 4096;

/// Multiplier of the anchors' polynomial rolling hash (odd, so every byte counts).
pub(super) const ROLL_MUL: u64 = 0x9E37_79B9_7F4A_7C15;

/// Predicted blocks of a shifted run hashed at once (in parallel) by the sender.
pub(super) const CHAIN_BATCH: usize = 8;

/// Source bytes read at a time while rolling anchors.
pub(super) const ROLL_WINDOW: usize = 4 << 20;

/// The anchor of `window` (exactly [`ANCHOR_LEN`] bytes): `Σ (b + 1)·M^(n-1-i)` mod 2^64.
pub(super) fn anchor_of(window: &[u8]) -> u64 {
    window.iter().fold(0u64, |h, &b| {
        h.wrapping_mul(ROLL_MUL).wrapping_add(b as u64 + 1)
    })
}

/// `M^(ANCHOR_LEN-1)`: the weight of the byte leaving the window.
pub(super) fn anchor_out_weight() -> u64 {
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
    // One write into the temporary at a time: the kernel takes the file's lock for each
    // write anyway, and a writer waiting on it spins (on tmpfs, 2 GiB prefilled from two
    // threads spent 28% of the receiver's cycles in rwsem_spin_on_owner); waiting here
    // sleeps, and leaves the core to the other thread's reading and hashing.
    let writing = std::sync::Mutex::new(());
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
            {
                let _one = writing.lock().unwrap_or_else(|p| p.into_inner());
                out.write_all_at(buf, at)?;
            }
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
pub(super) struct Basis<'a> {
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

pub(super) fn hash_range(
    src: &File,
    mut at: u64,
    len: u64,
    buf: &mut Vec<u8>,
) -> io::Result<[u8; 16]> {
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
pub(super) fn search_moved(
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
pub(super) fn find_anchor(
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
pub(super) fn segments(
    copies: &[(u64, u64, u64)],
    src_len: u64,
    basis: &Basis<'_>,
) -> Vec<Segment> {
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
