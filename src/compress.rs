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

use crate::config::Options;
use std::io;
use std::time::Duration;
use zstd::stream::raw::{CParameter, Decoder, Encoder, InBuffer, Operation, OutBuffer};

/// The level plain `-z` starts from, and what `--compress-level=0` means: zstd's own
/// default, the level rsync 3.x negotiates. From there `-z` goes deeper only while the link,
/// not the compressor, is what holds the transfer back (see [`Tuner`]).
pub const DEFAULT_LEVEL: i32 = 3;

/// The deeper steps compress with an 8 MiB window: source trees repeat themselves across
/// files (headers, licenses), and 8 MiB reaches back over many files; they run where the
/// link is slow and bytes are what counts. The decoder refuses any
/// larger window, which bounds the memory a peer can make us allocate. (Long-distance
/// matching measured no better on source trees and needs a much larger window: off.)
pub const WINDOW_LOG: u32 = 23;

/// The window of the steps up to [`DEFAULT_LEVEL`]. On 200 MB of the kernel's source text
/// (one tar stream, zstd 3, the protocol's 256 KiB batches and flushes), 2 MiB sends 0.14%
/// more than 8 MiB and compresses 5% faster alone on a core; under `-z` on loopback, where
/// both cores are busy and share their cache, the whole push took 1.98 s against 2.23 s
/// (medians of 6 interleaved runs; rsync 2.26 s). rsync's zstd 3 has the same 2 MiB window.
pub const FAST_WINDOW_LOG: u32 = 21;

/// An extra stream's window (`--streams`): its ranges of one big file gain little from a
/// long reach back, and eight streams each with an 8 MiB window and a deep level's tables
/// held 230 MiB on the client and 80 MiB on the server pushing 1 GiB at 100 ms.
pub const LANE_WINDOW_LOG: u32 = 20;

/// How a run compresses what it sends over a remote shell. A local copy has no wire and
/// never compresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plan {
    /// `--no-compress`: frames travel bare, as rsync's do without `-z`.
    Off,
    /// The default: segments, raw until the run measures that compressing delivers more
    /// (the link is slower than the compressor and the data compresses).
    Auto,
    /// `-z`: always compressed, from [`DEFAULT_LEVEL`] deeper while the link is the
    /// bottleneck.
    Adaptive,
    /// `--compress-level=N`: zstd level N throughout (rsync passes the level to zstd too).
    Fixed(i32),
    /// An extra stream of a run with one of the plans above ([`Plan::lane`]): at most
    /// `level`, in a [`LANE_WINDOW_LOG`] window; tuned between raw and `level` if `auto`.
    Lane { auto: bool, level: i32 },
}

impl Plan {
    /// rsync's rules: `--compress-level` turns compression on whatever else was said (its
    /// `do_compression_level != CLVL_NOT_SPECIFIED`), 0 is zstd's default level, and a level
    /// outside zstd's range is clamped into it (-131072 to 22: negative levels are zstd's
    /// fast ones).
    pub fn of(opts: &Options) -> Plan {
        match (opts.compress_level, opts.compress, opts.no_compress) {
            (Some(n), _, _) => Plan::Fixed(zstd_level(n)),
            (None, true, _) => Plan::Adaptive,
            (None, false, true) => Plan::Off,
            (None, false, false) => Plan::Auto,
        }
    }

    /// The plan of an extra stream of a run with this one: the same, bounded in memory (at
    /// most [`DEFAULT_LEVEL`], the smaller window), as there may be sixteen of them.
    pub fn lane(self) -> Plan {
        match self {
            Plan::Off | Plan::Lane { .. } => self,
            Plan::Auto => Plan::Lane {
                auto: true,
                level: DEFAULT_LEVEL,
            },
            Plan::Adaptive => Plan::Lane {
                auto: false,
                level: DEFAULT_LEVEL,
            },
            Plan::Fixed(n) => Plan::Lane {
                auto: false,
                level: n.min(DEFAULT_LEVEL),
            },
        }
    }

    /// The zstd window this plan compresses with.
    pub fn window_log(self) -> u32 {
        match self {
            Plan::Lane { .. } => LANE_WINDOW_LOG,
            _ => WINDOW_LOG,
        }
    }

    /// Whether frames travel in segments (anything but [`Plan::Off`]).
    pub fn segmented(self) -> bool {
        self != Plan::Off
    }
}

/// `--compress-level=N` as the zstd level it sends with.
pub fn zstd_level(n: i32) -> i32 {
    if n == 0 {
        return DEFAULT_LEVEL;
    }
    let range = zstd::compression_level_range();
    n.clamp(*range.start(), *range.end())
}

/// One way of sending a stretch of the stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Setting {
    /// Raw segments (only [`Plan::Auto`] has this step).
    Raw,
    /// zstd at this level, as zstd defines it.
    Zstd(i32),
    /// zstd level 6 made to search deeper for source text (see [`Compressor::set`]).
    Deep,
}

/// The steps [`Tuner`] moves along, cheapest per byte first. `-z` starts at zstd 3 (rsync's
/// level, and its bytes); the deeper steps pay when the link is slow enough that the
/// compressor waits on it.
const AUTO_LADDER: &[Setting] = &[
    Setting::Raw,
    Setting::Zstd(1),
    Setting::Zstd(3),
    Setting::Deep,
    Setting::Zstd(9),
    Setting::Zstd(12),
];
const LANE_LADDER: &[Setting] = &[Setting::Raw, Setting::Zstd(1), Setting::Zstd(3)];
const Z_LADDER: &[Setting] = &[
    Setting::Zstd(3),
    Setting::Deep,
    Setting::Zstd(9),
    Setting::Zstd(12),
];

/// The zstd stream of one direction. Its context (3 MiB for an extra stream, 9 MiB for the
/// first at zstd 3, more at the deeper steps) exists only while the stream compresses: a
/// run the tuner keeps raw, or returns to raw, holds none (eight extra streams pushing an
/// incompressible 1 GiB file kept 33 MB of contexts a probe had made).
pub struct Compressor {
    enc: Option<Encoder<'static>>,
    /// The step frames are compressed at (never `Raw`: a compressor always has a level,
    /// for the stretches that are compressed).
    setting: Setting,
    window_log: u32,
}

impl Compressor {
    pub fn new(setting: Setting) -> io::Result<Compressor> {
        Compressor::with_window(setting, WINDOW_LOG)
    }

    /// A compressor whose frames reach back 2^`window_log` bytes (at most [`WINDOW_LOG`],
    /// which the decoder accepts). Its context is made when it first compresses.
    pub fn with_window(setting: Setting, window_log: u32) -> io::Result<Compressor> {
        Ok(Compressor {
            enc: None,
            setting: match setting {
                Setting::Raw => Setting::Zstd(DEFAULT_LEVEL),
                s => s,
            },
            window_log: window_log.min(WINDOW_LOG),
        })
    }

    pub fn setting(&self) -> Setting {
        self.setting
    }

    /// Whether a zstd context is held (a frame is open).
    pub fn holds_context(&self) -> bool {
        self.enc.is_some()
    }

    /// Changes the level. zstd takes a new level only between frames (single-threaded), so
    /// a change ends the current frame (its bytes appended to `out`), and the next frame
    /// starts with no history: the tuner changes level seldom for that reason. The decoder
    /// reads one frame after another in the same stream. `Raw` keeps the current level.
    pub fn set(&mut self, setting: Setting, out: &mut Vec<u8>) -> io::Result<()> {
        match setting {
            Setting::Raw => return Ok(()),
            _ if setting == self.setting => return Ok(()),
            _ => {}
        }
        self.release(out)?;
        self.setting = setting;
        Ok(())
    }

    /// Ends the current frame (its last bytes appended to `out`) and frees the context;
    /// the next compressed bytes start a new frame, with no history.
    pub fn release(&mut self, out: &mut Vec<u8>) -> io::Result<()> {
        if self.enc.is_some() {
            self.end_frame(out)?;
            self.enc = None;
        }
        Ok(())
    }

    /// The context, made at the current step when there is none.
    fn encoder(&mut self) -> io::Result<&mut Encoder<'static>> {
        if self.enc.is_none() {
            let level = match self.setting {
                Setting::Zstd(n) => n,
                Setting::Deep | Setting::Raw => 6,
            };
            let mut e = Encoder::new(level)?;
            // The fast steps reach back 2 MiB, zstd's own window for them: they run where the
            // compressor is the slower stage, and the larger window's misses in the shared
            // cache cost more than its matches save.
            let wl = match self.setting {
                Setting::Zstd(n) if n <= DEFAULT_LEVEL => self.window_log.min(FAST_WINDOW_LOG),
                _ => self.window_log,
            };
            e.set_parameter(CParameter::WindowLog(wl))?;
            if self.setting == Setting::Deep {
                // zstd's level 6 (lazy matching, 2^3 probes per position) leaves ratio on
                // the table for source text. Measured on 40 MB of crate sources
                // (.rs/.c/.h/.toml/.md) and the kernel's fs/ (45 MB of C), one stream as the
                // protocol sends it: lazy2 with 2^4 probes into 1 MiB chain and 2 MiB hash
                // tables sends 4.3% and 5.6% fewer bytes, at 55–65% of level 6's speed (per
                // core: 90 against 130–160 MB/s on the crate sources, 32–38 against 59–70
                // MB/s on fs/; zstd 3 is 2× level 6 but sends 17% more; zstd 12 sends 2%
                // less at about a third of our speed). A 6-byte minimum match is 0.6%
                // better on C, neutral elsewhere, and faster.
                use zstd::zstd_safe::Strategy;
                e.set_parameter(CParameter::Strategy(Strategy::ZSTD_lazy2))?;
                e.set_parameter(CParameter::ChainLog(20))?;
                e.set_parameter(CParameter::HashLog(21))?;
                e.set_parameter(CParameter::SearchLog(4))?;
                e.set_parameter(CParameter::MinMatch(6))?;
            }
            self.enc = Some(e);
        }
        Ok(self.enc.as_mut().expect("made above"))
    }

    /// Ends the current zstd frame, appending its last bytes to `out`.
    fn end_frame(&mut self, out: &mut Vec<u8>) -> io::Result<()> {
        let Some(enc) = self.enc.as_mut() else {
            return Ok(());
        };
        let mut chunk = vec![0u8; zstd::zstd_safe::CCtx::out_size().max(64 * 1024)];
        loop {
            let mut outb = OutBuffer::around(&mut chunk[..]);
            let remaining = enc.finish(&mut outb, true)?;
            let n = outb.pos();
            out.extend_from_slice(&chunk[..n]);
            if remaining == 0 {
                return Ok(());
            }
        }
    }

    /// Feeds `input` to the stream without ending a block, appending whatever compressed
    /// bytes zstd has ready to `out` (possibly none: it holds back up to one block). Used
    /// when the writer's buffer fills: ending a block there costs its entropy tables and
    /// the matches a longer block would have found, for no benefit to the peer.
    pub fn compress_more(&mut self, input: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        if input.is_empty() {
            return Ok(());
        }
        let mut inb = InBuffer::around(input);
        let mut chunk = vec![0u8; zstd::zstd_safe::CCtx::out_size().max(64 * 1024)];
        let enc = self.encoder()?;
        while inb.pos() < input.len() {
            let mut outb = OutBuffer::around(&mut chunk[..]);
            enc.run(&mut inb, &mut outb)?;
            let n = outb.pos();
            out.extend_from_slice(&chunk[..n]);
        }
        Ok(())
    }

    /// Compresses `input` and flushes (ends the current block), appending the compressed
    /// bytes to `out`: after it the peer can decode everything fed so far.
    pub fn compress_flush(&mut self, input: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        self.compress_more(input, out)?;
        let Some(enc) = self.enc.as_mut() else {
            // Nothing was ever fed: nothing to flush.
            return Ok(());
        };
        let mut chunk = vec![0u8; zstd::zstd_safe::CCtx::out_size().max(64 * 1024)];
        loop {
            let mut outb = OutBuffer::around(&mut chunk[..]);
            let remaining = enc.flush(&mut outb)?;
            let n = outb.pos();
            out.extend_from_slice(&chunk[..n]);
            if remaining == 0 {
                return Ok(());
            }
        }
    }
}

/// Chooses the step of the ladder the stream travels at, from what each step cost as the
/// run went. The writer is a two-stage pipeline (compressing on one thread, writing to the
/// remote shell on the other), so a stretch of input costs the slower stage's time: the
/// compressor's, or the writes' — which is the link's drain rate, since a write blocks
/// while the pipe to ssh is full. Raw costs the writes alone. So a slow link makes the
/// deeper steps free until the compressor becomes the slower stage, and a fast one
/// (loopback, a LAN) makes raw or the fastest level the cheapest.
///
/// The two stages' times are not the whole cost where they share CPU with the rest of the
/// run (both ends and ssh on one machine, or a busy sender): compressing then slows ssh
/// and the peer, which neither stage's time shows, and on loopback default flags measured
/// 1.4 times slower than raw on 30,000 small files while the stages said compressing was
/// cheaper. So a window costs at least its wall time, from the end of the window before to
/// its own end: what the run as a whole took to move that input.
///
/// It climbs a hill: after each window of input it compares the current step with its
/// neighbours' last measurement, and when one is stale it tries it for one window (a
/// probe). A probe that loses doubles the wait before that neighbour is tried again, so a
/// settled run spends few windows off its best step.
pub struct Tuner {
    ladder: &'static [Setting],
    at: usize,
    /// Each step's last cost, in seconds per input byte, and the window it was measured in.
    cost: Vec<Option<(f64, u64)>>,
    /// Windows to wait before probing down (index 0) or up (1) again.
    wait: [u64; 2],
    next_probe: [u64; 2],
    /// A probe in progress: the step to return to if it loses.
    probing: Option<usize>,
    window: u64,
    /// The window being measured: input bytes, compressing time, write time, wall time.
    input: u64,
    compressing: Duration,
    writing: Duration,
    wall: Duration,
    /// Whether, in the window that closed last, the writes waited at least half as long as
    /// the compressor worked (see [`Tuner::decide`]).
    link_bound: bool,
    /// The machine's idle CPU time, all cores together ([`machine_idle`], or a test's
    /// model); its reading when the window began or the stream last resumed (`None`
    /// before the first batch), and the wall time noted since.
    idle: fn() -> Option<Duration>,
    idle_at: Option<Option<Duration>>,
    idle_wall: Duration,
    /// Cores left idle on average over the window that closed last (infinite where the
    /// machine does not say).
    spare: f64,
}

/// Input bytes per window, and the least: long enough to measure a link through its
/// buffers (1 MiB pipes, ssh's window), short enough to adapt several times a second
/// on a fast link.
const WINDOW: u64 = 4 << 20;
/// And the least wall time a window spans: on loopback 4 MiB take 40 ms, over which the
/// same step measured anywhere from 5.6 to 11 ns a byte (scheduling, file sizes).
const MIN_WALL: Duration = Duration::from_millis(150);
const FIRST_PROBE: u64 = 1;
/// Leaving raw is tried only where at least this much of a core went idle in the window
/// before: zstd's CPU has to come from somewhere. On loopback with 30,000 small files both
/// cores are busy (one idle tick in ten in /proc/stat), and a window at zstd 1 moved 55% of
/// a raw window's bytes, costing 5% of the run every time it was probed.
const MIN_SPARE: f64 = 0.25;
const MAX_WAIT: u64 = 64;

impl Tuner {
    /// `None` for a fixed level, which has nothing to tune.
    pub fn new(plan: Plan) -> Option<Tuner> {
        let ladder = match plan {
            Plan::Auto => AUTO_LADDER,
            Plan::Adaptive => Z_LADDER,
            Plan::Lane { auto: true, .. } => LANE_LADDER,
            Plan::Off | Plan::Fixed(_) | Plan::Lane { auto: false, .. } => return None,
        };
        Some(Tuner {
            ladder,
            at: 0,
            cost: vec![None; ladder.len()],
            wait: [2; 2],
            next_probe: [FIRST_PROBE; 2],
            probing: None,
            window: 0,
            input: 0,
            compressing: Duration::ZERO,
            writing: Duration::ZERO,
            wall: Duration::ZERO,
            link_bound: true,
            idle: machine_idle,
            idle_at: None,
            idle_wall: Duration::ZERO,
            spare: f64::INFINITY,
        })
    }

    pub fn setting(&self) -> Setting {
        self.ladder[self.at]
    }

    /// The stream goes on after the protocol idled (a wait the window's wall time leaves
    /// out): the machine's idle time is measured afresh from here, so the wait's idle CPU
    /// (the peer's turn, a round trip) does not count as CPU to spare. (A wait on the link
    /// is not idle: its wall time counts, and so does the CPU it leaves spare.)
    pub fn resume(&mut self) {
        self.idle_at = Some((self.idle)());
        self.idle_wall = Duration::ZERO;
    }

    /// Notes `input` bytes sent at the current step, the time compressing them took, the
    /// time the writes spent meanwhile and the wall time since the last note; returns
    /// whether the window closed, after which [`setting`](Self::setting) may have changed.
    pub fn note(
        &mut self,
        input: u64,
        compressing: Duration,
        writing: Duration,
        wall: Duration,
    ) -> bool {
        if self.idle_at.is_none() {
            self.resume();
        }
        self.idle_wall += wall;
        self.input += input;
        self.compressing += compressing;
        self.writing += writing;
        self.wall += wall;
        if self.input < WINDOW || self.wall.max(self.writing) < MIN_WALL {
            return false;
        }
        let busy = self.compressing.max(self.writing).max(self.wall);
        let cost = busy.as_secs_f64() / self.input as f64;
        self.cost[self.at] = Some((cost, self.window));
        self.link_bound = self.writing * 2 >= self.compressing;
        let idle = (self.idle)();
        self.spare = match (self.idle_at.flatten(), idle) {
            (Some(a), Some(b)) if !self.idle_wall.is_zero() => {
                b.saturating_sub(a).as_secs_f64() / self.idle_wall.as_secs_f64()
            }
            _ => f64::INFINITY,
        };
        self.idle_at = Some(idle);
        self.idle_wall = Duration::ZERO;
        self.input = 0;
        self.compressing = Duration::ZERO;
        self.writing = Duration::ZERO;
        self.wall = Duration::ZERO;
        self.window += 1;
        self.decide();
        true
    }

    fn decide(&mut self) {
        if let Some(home) = self.probing.take() {
            let dir = usize::from(self.at > home);
            if self.better(self.at, home) {
                self.wait = [2; 2];
                self.next_probe = [self.window + FIRST_PROBE; 2];
            } else {
                self.wait[dir] = (self.wait[dir] * 2).min(MAX_WAIT);
                self.next_probe[dir] = self.window + self.wait[dir];
                self.at = home;
            }
            return;
        }
        // A neighbour measured recently enough that is better: go there at once.
        for n in self.neighbours() {
            if let Some((_, when)) = self.cost[n]
                && self.window - when <= self.wait[usize::from(n > self.at)]
                && self.better(n, self.at)
            {
                self.at = n;
                return;
            }
        }
        // Else probe the neighbour whose turn it is (up first: fewer bytes). A deeper step
        // compresses slower, so it can only win where the link, not the compressor, holds
        // the stream back: while the writes wait less than half the compressing time there
        // is nothing to probe for. (On loopback under -z, the probes of the deep step took a
        // sixth of the compressing thread's time and never won.)
        for dir in [1, 0] {
            let n = match dir {
                1 => self.at + 1,
                _ => self.at.wrapping_sub(1),
            };
            // And compressing at all takes a core's spare time: where the machine has none
            // (loopback, both ends and ssh on two cores) it slows everything else.
            let pointless = dir == 1
                && if self.ladder[self.at] == Setting::Raw {
                    self.spare < MIN_SPARE
                } else {
                    !self.link_bound
                };
            if n < self.ladder.len() && self.window >= self.next_probe[dir] && !pointless {
                self.probing = Some(self.at);
                self.at = n;
                return;
            }
        }
    }

    fn neighbours(&self) -> Vec<usize> {
        [self.at + 1, self.at.wrapping_sub(1)]
            .into_iter()
            .filter(|&n| n < self.ladder.len())
            .collect()
    }

    /// Whether step `a` should replace step `b`: a deeper step must cost 3% less and a
    /// shallower one 7% less (measurements are noisy, each change of level starts a zstd
    /// frame afresh, and the bias is towards the deeper step, whose bytes are fewer). A
    /// deeper step that cost the same was once allowed, which on loopback, where the wall
    /// time of small files is the same at every step, let the noise walk the level up to
    /// zstd 6 and the CPU it takes. Leaving raw is the exception: it must
    /// cost a fifth less, because compressing takes CPU that ssh and the peer may need,
    /// which this end's timings cannot see (on loopback under load, default flags measured
    /// slower end to end than raw while the tuner saw compressing as cheaper).
    fn better(&self, a: usize, b: usize) -> bool {
        let (Some((ca, _)), Some((cb, _))) = (self.cost[a], self.cost[b]) else {
            return false;
        };
        if self.ladder[b] == Setting::Raw {
            ca < cb * 0.8
        } else if a > b {
            ca <= cb * 0.97
        } else {
            ca < cb * 0.93
        }
    }
}

/// The machine's idle CPU time since boot, all cores together (idle and iowait in
/// /proc/stat): `None` where the file cannot be read or parsed.
fn machine_idle() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let cpu = stat.lines().next()?.strip_prefix("cpu ")?;
    let mut fields = cpu.split_whitespace().skip(3);
    let ticks: u64 = fields.next()?.parse::<u64>().ok()? + fields.next()?.parse::<u64>().ok()?;
    let hz = rustix::param::clock_ticks_per_second().max(1);
    Some(Duration::from_secs_f64(ticks as f64 / hz as f64))
}

pub struct Decompressor {
    dec: Decoder<'static>,
    /// The output buffer of every call, kept rather than allocated per segment.
    chunk: Vec<u8>,
}

impl Decompressor {
    pub fn new() -> io::Result<Decompressor> {
        let mut dec = Decoder::new()?;
        // A window larger than the encoder's is refused (see [`WINDOW_LOG`]).
        dec.set_parameter(zstd::stream::raw::DParameter::WindowLogMax(WINDOW_LOG))?;
        Ok(Decompressor {
            dec,
            chunk: vec![0u8; 128 * 1024],
        })
    }

    /// Decodes one segment, appending to `out`; fails once `out` would exceed `limit`
    /// (a decompression bomb is a protocol error, not an allocation of gigabytes).
    pub fn decompress(&mut self, input: &[u8], out: &mut Vec<u8>, limit: usize) -> io::Result<()> {
        let mut inb = InBuffer::around(input);
        let chunk = &mut self.chunk[..];
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
    // Four histograms, summed after: one would make every byte wait for the last store to
    // the same counter (30,000 small files spent a tenth of both cores here).
    let mut hist = [[0u32; 256]; 4];
    let mut quads = sample.chunks_exact(4);
    for q in &mut quads {
        hist[0][q[0] as usize] += 1;
        hist[1][q[1] as usize] += 1;
        hist[2][q[2] as usize] += 1;
        hist[3][q[3] as usize] += 1;
    }
    for &b in quads.remainder() {
        hist[0][b as usize] += 1;
    }
    let n = sample.len() as f64;
    let (mut bits, mut seen) = (0.0f64, 0u32);
    let [h0, h1, h2, h3] = &hist;
    for (((a, b), c), d) in h0.iter().zip(h1).zip(h2).zip(h3) {
        let c = a + b + c + d;
        if c > 0 {
            let p = c as f64 / n;
            bits -= p * p.log2();
            seen += 1;
        }
    }
    // Miller–Madow: a short sample's entropy reads low by about this much, which would
    // make a few KiB of random bytes look compressible.
    bits += (seen - 1) as f64 / (2.0 * n * std::f64::consts::LN_2);
    if bits < 7.6 {
        return true;
    }
    // Repeats: the last 4-byte sequence seen at each 12-bit hash, kept with a mark bit so
    // that an empty slot never matches.
    let mut last = [0u64; 4096];
    let mut repeats = 0usize;
    for w in sample.windows(4) {
        let v = u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
        let slot = &mut last[(v.wrapping_mul(0x9E37_79B1) >> 20) as usize];
        let seen = u64::from(v) | 1 << 32;
        repeats += usize::from(*slot == seen);
        *slot = seen;
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
        let mut c = Compressor::new(Setting::Deep).unwrap();
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
        let mut c = Compressor::new(Setting::Zstd(1)).unwrap();
        let mut seg = Vec::new();
        c.compress_flush(&vec![0u8; 8 << 20], &mut seg).unwrap();
        let mut d = Decompressor::new().unwrap();
        let mut out = Vec::new();
        assert!(d.decompress(&seg, &mut out, 1 << 20).is_err());
    }

    #[test]
    fn an_extra_stream_is_bounded_in_level_and_window() {
        assert_eq!(Plan::Off.lane(), Plan::Off);
        for p in [Plan::Auto, Plan::Adaptive, Plan::Fixed(19), Plan::Fixed(1)] {
            let Plan::Lane { level, .. } = p.lane() else {
                panic!("{p:?}");
            };
            assert!(level <= DEFAULT_LEVEL, "{p:?}");
            assert_eq!(p.lane().window_log(), LANE_WINDOW_LOG);
        }
        assert_eq!(
            Plan::Fixed(1).lane(),
            Plan::Lane {
                auto: false,
                level: 1
            }
        );
        // The tuned lane never leaves the shallow steps.
        let steps = settle(Plan::Auto.lane(), 1e6);
        assert!(steps.iter().all(|s| LANE_LADDER.contains(s)), "{steps:?}");
        assert!(Tuner::new(Plan::Adaptive.lane()).is_none());
        // Its frames declare the small window, which is what the decoder allocates.
        let mut c = Compressor::with_window(Setting::Zstd(3), LANE_WINDOW_LOG).unwrap();
        let mut seg = Vec::new();
        c.compress_flush(&b"lane ".repeat(100_000), &mut seg)
            .unwrap();
        // The frame header's window descriptor (RFC 8878 3.1.1.1.2): no single-segment
        // flag in a stream whose size is unknown, so the descriptor follows.
        assert_eq!(seg[..4], [0x28, 0xb5, 0x2f, 0xfd]);
        assert_eq!(seg[4] & 0x20, 0, "single segment");
        let log = 10 + u32::from(seg[5] >> 3);
        let window = (1u64 << log) + u64::from(seg[5] & 7) * ((1u64 << log) / 8);
        assert_eq!(window, 1 << LANE_WINDOW_LOG);
        let mut out = Vec::new();
        Decompressor::new()
            .unwrap()
            .decompress(&seg, &mut out, 1 << 20)
            .unwrap();
        assert_eq!(out.len(), 500_000);
    }

    /// A stream that goes raw frees its context and, compressing again, starts a new frame
    /// the same decoder reads on from.
    #[test]
    fn a_released_context_leaves_the_stream_readable() {
        let mut c = Compressor::with_window(Setting::Zstd(3), LANE_WINDOW_LOG).unwrap();
        assert!(!c.holds_context(), "no context before the first bytes");
        let mut seg = Vec::new();
        c.compress_flush(&b"first stretch ".repeat(2000), &mut seg)
            .unwrap();
        assert!(c.holds_context());
        c.release(&mut seg).unwrap();
        assert!(!c.holds_context());
        c.compress_flush(&b"second stretch ".repeat(2000), &mut seg)
            .unwrap();
        let mut out = Vec::new();
        Decompressor::new()
            .unwrap()
            .decompress(&seg, &mut out, 1 << 20)
            .unwrap();
        assert_eq!(
            out,
            [
                b"first stretch ".repeat(2000),
                b"second stretch ".repeat(2000)
            ]
            .concat()
        );
    }

    #[test]
    fn a_window_over_the_limit_is_refused() {
        let mut enc = Encoder::new(3).unwrap();
        enc.set_parameter(CParameter::WindowLog(WINDOW_LOG + 1))
            .unwrap();
        let mut c = Compressor {
            enc: Some(enc),
            setting: Setting::Zstd(3),
            window_log: WINDOW_LOG + 1,
        };
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
        for level in [Setting::Zstd(1), Setting::Deep, Setting::Zstd(22)] {
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

    #[test]
    fn a_change_of_level_starts_a_frame_the_decoder_reads_on() {
        let text = include_bytes!("compress.rs");
        let mut c = Compressor::new(Setting::Zstd(3)).unwrap();
        let mut d = Decompressor::new().unwrap();
        let mut out = Vec::new();
        for step in [
            Setting::Deep,
            Setting::Raw,
            Setting::Zstd(1),
            Setting::Zstd(-5),
        ] {
            let mut seg = Vec::new();
            c.set(step, &mut seg).unwrap();
            c.compress_flush(text, &mut seg).unwrap();
            d.decompress(&seg, &mut out, 1 << 20).unwrap();
            assert_eq!(out, text, "after {step:?}");
            out.clear();
        }
        // Raw leaves the level as it was.
        assert_eq!(c.setting(), Setting::Zstd(-5));
    }

    #[test]
    fn compress_level_maps_onto_zstd_levels_as_rsync_passes_them() {
        assert_eq!(zstd_level(0), 3);
        assert_eq!(zstd_level(19), 19);
        assert_eq!(zstd_level(99), 22);
        assert_eq!(zstd_level(-1), -1);
        assert_eq!(
            zstd_level(i32::MIN),
            *zstd::compression_level_range().start()
        );
        let o = |compress, no_compress, compress_level| Options {
            compress,
            no_compress,
            compress_level,
            ..Options::default()
        };
        assert_eq!(Plan::of(&o(false, false, None)), Plan::Auto);
        assert_eq!(Plan::of(&o(true, false, None)), Plan::Adaptive);
        assert_eq!(Plan::of(&o(false, true, None)), Plan::Off);
        // rsync: a level turns compression on, even after --no-compress.
        assert_eq!(Plan::of(&o(false, true, Some(7))), Plan::Fixed(7));
        assert_eq!(Plan::of(&o(true, false, Some(0))), Plan::Fixed(3));
        assert!(Tuner::new(Plan::Fixed(3)).is_none());
    }

    /// Runs a tuner against a model link: each step compresses at `speed` bytes a second to
    /// `ratio` of the input, the link drains `link` bytes a second. Returns the steps of the
    /// last 100 windows.
    fn settle(plan: Plan, link: f64) -> Vec<Setting> {
        settle_on(plan, link, false, 1.0)
    }

    thread_local! {
        /// The model machine's idle CPU time so far, for [`Tuner::idle`].
        static IDLE: std::cell::Cell<Duration> = const { std::cell::Cell::new(Duration::ZERO) };
    }

    fn model_idle() -> Option<Duration> {
        Some(IDLE.get())
    }

    /// As [`settle`]; `shared`: the compressor and the link share one CPU (loopback), so a
    /// batch's wall time is the sum of both stages, not the slower one; `spare`: the cores
    /// the machine leaves idle meanwhile.
    fn settle_on(plan: Plan, link: f64, shared: bool, spare: f64) -> Vec<Setting> {
        settle_all(plan, link, shared, spare).split_off(200)
    }

    /// As [`settle_on`], every window's step.
    fn settle_all(plan: Plan, link: f64, shared: bool, spare: f64) -> Vec<Setting> {
        let model = |s: Setting| match s {
            Setting::Raw => (f64::INFINITY, 1.0),
            Setting::Zstd(1) => (500e6, 0.30),
            Setting::Zstd(3) => (300e6, 0.26),
            Setting::Deep => (90e6, 0.22),
            Setting::Zstd(9) => (45e6, 0.21),
            Setting::Zstd(12) => (25e6, 0.205),
            other => panic!("{other:?}"),
        };
        let mut t = Tuner::new(plan).unwrap();
        t.idle = model_idle;
        let mut seen = Vec::new();
        let batch = 256u64 << 10;
        while seen.len() < 300 {
            let (speed, ratio) = model(t.setting());
            let secs = |x: f64| Duration::from_secs_f64(x);
            let step = t.setting();
            let (c, w) = (batch as f64 / speed, batch as f64 * ratio / link);
            let wall = if shared { c + w } else { c.max(w) };
            IDLE.set(IDLE.get() + secs(wall * spare));
            if t.note(batch, secs(c), secs(w), secs(wall)) {
                seen.push(step);
            }
        }
        seen
    }

    #[test]
    fn the_fast_steps_reach_back_2_mib_and_the_deep_ones_8() {
        // A decoder that allows only 2 MiB reads the fast steps' frames and refuses the
        // deeper ones': the window is what the frame header declares.
        let text = include_bytes!("compress.rs").repeat(8);
        for (step, fits) in [
            (Setting::Zstd(1), true),
            (Setting::Zstd(3), true),
            (Setting::Deep, false),
            (Setting::Zstd(9), false),
        ] {
            let mut c = Compressor::new(step).unwrap();
            let mut z = Vec::new();
            c.compress_flush(&text, &mut z).unwrap();
            let mut dec = Decoder::new().unwrap();
            dec.set_parameter(zstd::stream::raw::DParameter::WindowLogMax(FAST_WINDOW_LOG))
                .unwrap();
            let mut out = vec![0u8; text.len() + 1024];
            let mut inb = InBuffer::around(&z);
            let mut outb = OutBuffer::around(&mut out[..]);
            let read = dec.run(&mut inb, &mut outb);
            assert_eq!(read.is_ok(), fits, "{step:?}: {read:?}");
        }
    }

    #[test]
    fn a_compressor_slower_than_the_link_never_tries_a_deeper_step() {
        // The link drains 1 GB/s, zstd 3 compresses at 300 MB/s: the writes wait a twelfth
        // of the compressing time. A deeper step could only be slower; no window goes to it.
        for plan in [Plan::Adaptive, Plan::Auto] {
            let mut t = Tuner::new(plan).unwrap();
            let mut steps = Vec::new();
            let batch = 256u64 << 10;
            let secs = |x: f64| Duration::from_secs_f64(x);
            while steps.len() < 300 {
                let step = t.setting();
                let (speed, ratio) = match step {
                    Setting::Raw => (f64::INFINITY, 1.0),
                    Setting::Zstd(1) => (500e6, 0.30),
                    Setting::Zstd(3) => (300e6, 0.26),
                    Setting::Deep => (90e6, 0.22),
                    other => panic!("{other:?}"),
                };
                // The compressor is the slower stage: it sets the wall time.
                let (c, w) = (batch as f64 / speed, batch as f64 * ratio / 1e9);
                if t.note(batch, secs(c), secs(w), secs(c.max(w))) {
                    steps.push(step);
                }
            }
            assert!(!steps.contains(&Setting::Deep), "{plan:?}: {steps:?}");
        }
    }

    #[test]
    fn the_tuner_compresses_harder_as_the_link_slows_and_not_at_all_when_it_is_fast() {
        let most = |steps: &[Setting], s: Setting| steps.iter().filter(|&&x| x == s).count();
        // 100 Mbit/s: the deep step keeps the link full with the fewest bytes.
        let slow = settle(Plan::Auto, 12.5e6);
        assert!(most(&slow, Setting::Deep) >= 85, "{slow:?}");
        let slow = settle(Plan::Adaptive, 12.5e6);
        assert!(most(&slow, Setting::Deep) >= 85, "{slow:?}");
        // A link faster than any compressor: raw by default, rsync's level under -z.
        let fast = settle(Plan::Auto, 2e9);
        assert!(most(&fast, Setting::Raw) >= 85, "{fast:?}");
        let fast = settle(Plan::Adaptive, 2e9);
        assert!(most(&fast, Setting::Zstd(3)) >= 85, "{fast:?}");
        // Compressing a tenth cheaper than raw, as this end measures it: not worth the CPU
        // the other processes may need.
        let close = settle(Plan::Auto, 450e6);
        assert!(most(&close, Setting::Raw) >= 85, "{close:?}");
        // 1 Gbit/s: compressing still pays, at a fast level.
        let gig = settle(Plan::Auto, 125e6);
        assert!(most(&gig, Setting::Raw) <= 15, "{gig:?}");
        // Loopback: ssh's 300 MB/s takes the same CPU the compressor would; compressing at
        // 500 MB/s to 0.3 costs 2.0 + 1.0 ns a byte against raw's 3.3: not a fifth less.
        let looped = settle_on(Plan::Auto, 300e6, true, 0.0);
        assert!(most(&looped, Setting::Raw) >= 85, "{looped:?}");
        // But a slow link still wants compression when the CPU is shared.
        let slow = settle_on(Plan::Auto, 12.5e6, true, 0.9);
        assert!(most(&slow, Setting::Raw) == 0, "{slow:?}");
    }

    #[test]
    fn raw_is_not_left_while_the_machine_has_no_idle_cpu() {
        // A link where zstd 1 would pay (1 Gbit/s), on a machine whose cores are all busy:
        // not one window compresses, probes included, since the CPU would come from ssh
        // and the peer. With a core idle the same link is compressed (the test above).
        let busy = settle_all(Plan::Auto, 125e6, false, 0.1);
        assert!(busy.iter().all(|&s| s == Setting::Raw), "{busy:?}");
        let idle = settle_all(Plan::Auto, 125e6, false, 1.0);
        assert!(idle.iter().any(|&s| s != Setting::Raw), "{idle:?}");
        // Where the machine cannot say, as before: tried.
        let mut t = Tuner::new(Plan::Auto).unwrap();
        t.idle = || None;
        let mut steps = Vec::new();
        while steps.len() < 10 {
            let step = t.setting();
            if t.note(
                8 << 20,
                Duration::ZERO,
                Duration::from_millis(60),
                Duration::from_millis(200),
            ) {
                steps.push(step);
            }
        }
        assert!(steps.contains(&Setting::Zstd(1)), "{steps:?}");
    }

    #[test]
    fn the_machines_idle_time_is_read_from_proc_stat() {
        let a = machine_idle().expect("/proc/stat on Linux");
        std::thread::sleep(Duration::from_millis(30));
        let b = machine_idle().unwrap();
        assert!(b >= a, "{a:?} then {b:?}");
    }
}
