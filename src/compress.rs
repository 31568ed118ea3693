//! `-z`: one zstd stream per direction, so repeated content across many small files (license
//! headers, boilerplate) compresses against everything sent before — the property that
//! makes rsync's continuous zlib stream beat per-file compression, with a window of
//! megabytes instead of zlib's 32 KiB.
//!
//! The stream travels in segments (`protocol::Writer`); only a protocol flush ends a zstd
//! block, so the receiver can decode every frame the sender needed it to see, and a full
//! write buffer costs nothing in ratio. Data that would not compress (rsync's
//! `--skip-compress` suffix list, or a sample judged by [`worth_compressing`]) travels in raw
//! segments beside the stream, not through it.

use std::io;
use zstd::stream::raw::{CParameter, Decoder, Encoder, InBuffer, Operation, OutBuffer};

/// The level of plain `-z` (rsync's default zlib level is 6 too). It is zstd level 6 made to
/// search deeper (see [`Compressor::new`]).
pub const DEFAULT_LEVEL: i32 = 6;

/// Every level compresses with an 8 MiB window: source trees repeat themselves across files
/// (headers, licenses), and 8 MiB reaches back over many files. The decoder refuses any
/// larger window, which bounds the memory a peer can make us allocate. (Long-distance
/// matching measured no better on source trees and needs a much larger window: off.)
pub const WINDOW_LOG: u32 = 23;

pub struct Compressor {
    enc: Encoder<'static>,
}

impl Compressor {
    pub fn new(level: i32) -> io::Result<Compressor> {
        let level = level.clamp(1, 19);
        let mut enc = Encoder::new(level)?;
        enc.set_parameter(CParameter::WindowLog(WINDOW_LOG))?;
        if level == DEFAULT_LEVEL {
            // zstd's level 6 (lazy matching, 2^3 probes per position) leaves ratio on the
            // table for source text. Measured on 40 MB of crate sources (.rs/.c/.h/.toml/.md)
            // and the kernel's fs/ (45 MB of C), one stream as the protocol sends it: lazy2
            // with 2^4 probes into 1 MiB chain and 2 MiB hash tables sends 4.3% and 5.6%
            // fewer bytes, at 55–65% of level 6's speed (per core: 90 against 130–160 MB/s
            // on the crate sources, 32–38 against 59–70 MB/s on fs/; zstd 3 is 2× level 6
            // but sends 17% more; zstd 12 sends 2% less at about a third of our speed). A
            // 6-byte minimum match is 0.6% better on C, neutral elsewhere, and faster. 2^5
            // probes measured 1–1.5% fewer bytes for another 15–20% of the speed.
            enc.set_parameter(CParameter::Strategy(zstd::zstd_safe::Strategy::ZSTD_lazy2))?;
            enc.set_parameter(CParameter::ChainLog(20))?;
            enc.set_parameter(CParameter::HashLog(21))?;
            enc.set_parameter(CParameter::SearchLog(4))?;
            enc.set_parameter(CParameter::MinMatch(6))?;
        }
        Ok(Compressor { enc })
    }

    /// Feeds `input` to the stream without ending a block, appending whatever compressed
    /// bytes zstd has ready to `out` (possibly none: it holds back up to one block). Used
    /// when the writer's buffer fills: ending a block there costs its entropy tables and
    /// the matches a longer block would have found, for no benefit to the peer.
    pub fn compress_more(&mut self, input: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        let mut inb = InBuffer::around(input);
        let mut chunk = vec![0u8; zstd::zstd_safe::CCtx::out_size().max(64 * 1024)];
        while inb.pos() < input.len() {
            let mut outb = OutBuffer::around(&mut chunk[..]);
            self.enc.run(&mut inb, &mut outb)?;
            let n = outb.pos();
            out.extend_from_slice(&chunk[..n]);
        }
        Ok(())
    }

    /// Compresses `input` and flushes (ends the current block), appending the compressed
    /// bytes to `out`: after it the peer can decode everything fed so far.
    pub fn compress_flush(&mut self, input: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        self.compress_more(input, out)?;
        let mut chunk = vec![0u8; zstd::zstd_safe::CCtx::out_size().max(64 * 1024)];
        loop {
            let mut outb = OutBuffer::around(&mut chunk[..]);
            let remaining = self.enc.flush(&mut outb)?;
            let n = outb.pos();
            out.extend_from_slice(&chunk[..n]);
            if remaining == 0 {
                return Ok(());
            }
        }
    }
}

pub struct Decompressor {
    dec: Decoder<'static>,
}

impl Decompressor {
    pub fn new() -> io::Result<Decompressor> {
        let mut dec = Decoder::new()?;
        // A window larger than the encoder's is refused (see [`WINDOW_LOG`]).
        dec.set_parameter(zstd::stream::raw::DParameter::WindowLogMax(WINDOW_LOG))?;
        Ok(Decompressor { dec })
    }

    /// Decodes one segment, appending to `out`; fails once `out` would exceed `limit`
    /// (a decompression bomb is a protocol error, not an allocation of gigabytes).
    pub fn decompress(&mut self, input: &[u8], out: &mut Vec<u8>, limit: usize) -> io::Result<()> {
        let mut inb = InBuffer::around(input);
        let mut chunk = vec![0u8; 128 * 1024];
        loop {
            let mut outb = OutBuffer::around(&mut chunk[..]);
            self.dec.run(&mut inb, &mut outb)?;
            let n = outb.pos();
            out.extend_from_slice(&chunk[..n]);
            if out.len() > limit {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "compressed segment expands beyond the frame limit",
                ));
            }
            if inb.pos() == input.len() && n < chunk.len() {
                return Ok(());
            }
        }
    }
}

/// rsync's default `--skip-compress` list: formats that are already compressed.
const SKIP: &[&str] = &[
    "3g2", "3gp", "7z", "aac", "ace", "apk", "avi", "bz2", "deb", "dmg", "ear", "f4v", "flac",
    "flv", "gpg", "gz", "iso", "jar", "jpeg", "jpg", "lrz", "lz", "lz4", "lzma", "lzo", "m1a",
    "m1v", "m2a", "m2ts", "m2v", "m4a", "m4b", "m4p", "m4r", "m4v", "mka", "mkv", "mov", "mp1",
    "mp2", "mp3", "mp4", "mpa", "mpeg", "mpg", "mpv", "mts", "odb", "odf", "odg", "odi", "odm",
    "odp", "ods", "odt", "oga", "ogg", "ogm", "ogv", "ogx", "opus", "otg", "oth", "otp", "ots",
    "ott", "oxt", "png", "qt", "rar", "rpm", "rz", "rzip", "spx", "squashfs", "sxc", "sxd", "sxg",
    "sxm", "sxw", "sz", "tbz", "tbz2", "tgz", "tlz", "ts", "txz", "tz", "uvz", "viv", "vob",
    "webm", "webp", "wma", "wmv", "xz", "z", "zip", "zst",
];

/// Whether a file name's suffix marks already-compressed data.
pub fn skip_compress(name: &[u8]) -> bool {
    let base = name.rsplit(|&b| b == b'/').next().unwrap_or(name);
    match base.iter().rposition(|&b| b == b'.') {
        Some(i) if i + 1 < base.len() => {
            let ext = String::from_utf8_lossy(&base[i + 1..]).to_ascii_lowercase();
            SKIP.binary_search(&ext.as_str()).is_ok()
        }
        _ => false,
    }
}

/// A cheap runtime check for data with no telling suffix: would compressing it save at
/// least 5%? Judged on the first 64 KiB by two linear passes instead of a trial
/// compression (which cost a fifth of the sender's CPU under `-z`): the bytes' order-0
/// entropy (below 7.6 bits a byte, zstd's Huffman coding of literals alone saves 5%), and,
/// for data whose bytes look uniform yet repeat (random blocks written twice), how often
/// a 4-byte sequence recurs. Compressed or encrypted data fails both.
pub fn worth_compressing(sample: &[u8]) -> bool {
    if sample.len() < 512 {
        return true;
    }
    let sample = &sample[..sample.len().min(64 * 1024)];
    let mut hist = [0u32; 256];
    for &b in sample {
        hist[b as usize] += 1;
    }
    let n = sample.len() as f64;
    let (mut bits, mut seen) = (0.0f64, 0u32);
    for &c in hist.iter().filter(|&&c| c > 0) {
        let p = c as f64 / n;
        bits -= p * p.log2();
        seen += 1;
    }
    // Miller–Madow: a short sample's entropy reads low by about this much, which would
    // make a few KiB of random bytes look compressible.
    bits += (seen - 1) as f64 / (2.0 * n * std::f64::consts::LN_2);
    if bits < 7.6 {
        return true;
    }
    // Repeats: the last position of each 4-byte sequence, by a 12-bit hash.
    let mut last = [0u32; 4096];
    let mut repeats = 0usize;
    for i in 0..sample.len() - 3 {
        let v = u32::from_le_bytes(sample[i..i + 4].try_into().expect("4 bytes"));
        let slot = &mut last[(v.wrapping_mul(0x9E37_79B1) >> 20) as usize];
        let j = *slot as usize;
        if j > 0 && sample[j - 1..j + 3] == sample[i..i + 4] {
            repeats += 1;
        }
        *slot = i as u32 + 1;
    }
    repeats > sample.len() / 16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skip_list_is_sorted_for_binary_search() {
        let mut sorted = SKIP.to_vec();
        sorted.sort_unstable();
        assert_eq!(sorted, SKIP);
        assert!(skip_compress(b"dir/photo.JPG"));
        assert!(skip_compress(b"a.tar.gz"));
        assert!(!skip_compress(b"main.rs"));
        assert!(!skip_compress(b"gz"));
    }

    #[test]
    fn flushed_segments_decode_one_by_one_and_share_context() {
        let mut c = Compressor::new(DEFAULT_LEVEL).unwrap();
        let mut d = Decompressor::new().unwrap();
        let text =
            b"/* SPDX-License-Identifier: GPL-2.0 */\nint main(void) { return 0; }\n".repeat(20);
        let (mut s1, mut s2) = (Vec::new(), Vec::new());
        c.compress_flush(&text, &mut s1).unwrap();
        c.compress_flush(&text, &mut s2).unwrap();
        // The second copy is found in the first: it costs a few bytes.
        assert!(s2.len() < s1.len() / 2, "{} vs {}", s2.len(), s1.len());
        let mut out = Vec::new();
        d.decompress(&s1, &mut out, 1 << 20).unwrap();
        assert_eq!(out, text);
        out.clear();
        d.decompress(&s2, &mut out, 1 << 20).unwrap();
        assert_eq!(out, text);
    }

    #[test]
    fn a_decompression_bomb_is_refused() {
        let mut c = Compressor::new(1).unwrap();
        let mut seg = Vec::new();
        c.compress_flush(&vec![0u8; 8 << 20], &mut seg).unwrap();
        let mut d = Decompressor::new().unwrap();
        let mut out = Vec::new();
        assert!(d.decompress(&seg, &mut out, 1 << 20).is_err());
    }

    #[test]
    fn a_window_over_the_limit_is_refused() {
        let mut enc = Encoder::new(3).unwrap();
        enc.set_parameter(CParameter::WindowLog(WINDOW_LOG + 1))
            .unwrap();
        let mut c = Compressor { enc };
        let mut seg = Vec::new();
        c.compress_flush(&b"some text ".repeat(1000), &mut seg)
            .unwrap();
        let mut out = Vec::new();
        let e = Decompressor::new()
            .unwrap()
            .decompress(&seg, &mut out, 1 << 20)
            .unwrap_err();
        assert!(e.to_string().contains("memory"), "{e}");
        // Our own encoder's window is accepted at every level.
        for level in [1, DEFAULT_LEVEL, 19] {
            let mut seg = Vec::new();
            Compressor::new(level)
                .unwrap()
                .compress_flush(&b"some text ".repeat(1000), &mut seg)
                .unwrap();
            out.clear();
            Decompressor::new()
                .unwrap()
                .decompress(&seg, &mut out, 1 << 20)
                .unwrap();
            assert_eq!(out.len(), 10_000);
        }
    }

    #[test]
    fn random_data_is_not_worth_compressing_but_text_is() {
        let mut x = 0x9e3779b97f4a7c15u64;
        let random: Vec<u8> = (0..65536)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        assert!(!worth_compressing(&random));
        // However short the sample (down to the 512 bytes it starts judging at).
        for len in [512, 1000, 4096, 20_000] {
            assert!(!worth_compressing(&random[..len]), "{len} random bytes");
        }
        assert!(worth_compressing(&b"fn main() {}\n".repeat(1000)));
        // Real text, read from this crate's own source.
        let source = include_bytes!("compress.rs");
        assert!(worth_compressing(source));
        assert!(worth_compressing(&source[..600]));
        // Bytes that look uniform one by one but repeat: zstd halves them.
        let twice = [&random[..8192], &random[..8192]].concat();
        assert!(worth_compressing(&twice));
        // Already compressed: zstd's own output.
        let packed = zstd::bulk::compress(&source.repeat(4), 19).unwrap();
        assert!(packed.len() > 512);
        assert!(!worth_compressing(&packed));
    }
}
