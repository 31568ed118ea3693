//! `--list-only` (and rsync's listing mode, one source and no destination): the source tree
//! as rsync prints it, one `ls -l`-like line per entry — permissions, size (rsync's digit
//! grouping, or its `-h` units), modification time in local time, the name, and under `-l`
//! a symlink's target — in rsync's file-list order. The lines are text for the client's
//! stdout; the tree comes from the sender's scan, locally or over the wire.
//!
//! Local time is read from the TZif data the C library would use (`$TZ`, else
//! `/etc/localtime`), without calling `localtime_r`: the process has threads by now, and the
//! crates that wrap it refuse to answer then. Times after a zone's last listed transition
//! keep that transition's offset (the "fat" files distributions ship list them to 2037).

use crate::config::Options;
use crate::error::show;
use crate::pathsafe::join;
use crate::tree::{Entry, Kind};

/// The listing of `root`: its own line when it is a transferred directory (`src/`), then
/// every entry below in rsync's order (at each level the non-directories by name, then each
/// directory followed by what is below it). `skip` leaves out entries rsync would not list
/// (the implied directories under `--no-implied-dirs`).
pub fn lines(
    root: &Entry,
    opts: &Options,
    root_is_transfer_dir: bool,
    skip: &dyn Fn(&[u8], &Entry) -> bool,
) -> Vec<String> {
    let zone = Zone::local();
    let mut out = Vec::new();
    if root_is_transfer_dir {
        out.push(line(root, b".", opts, &zone));
    }
    walk(root, b"", opts, &zone, skip, &mut out);
    out
}

fn walk(
    dir: &Entry,
    rel: &[u8],
    opts: &Options,
    zone: &Zone,
    skip: &dyn Fn(&[u8], &Entry) -> bool,
    out: &mut Vec<String>,
) {
    for c in dir.children.iter().filter(|c| !c.is_dir()) {
        let p = join(rel, &c.name);
        if !skip(&p, c) {
            out.push(line(c, &p, opts, zone));
        }
    }
    let mut dirs: Vec<&Entry> = dir.children.iter().filter(|c| c.is_dir()).collect();
    // As if each name ended in `/` (rsync's order: `a.b` before `a`).
    dirs.sort_by(|a, b| a.name.iter().chain(b"/").cmp(b.name.iter().chain(b"/")));
    for d in dirs {
        let p = join(rel, &d.name);
        if !skip(&p, d) {
            out.push(line(d, &p, opts, zone));
        }
        walk(d, &p, opts, zone, skip, out);
    }
}

/// One entry's line, as rsync's `list_file_entry` formats it.
fn line(e: &Entry, rel: &[u8], opts: &Options, zone: &Zone) -> String {
    let m = &e.meta;
    let size = crate::progress::num(m.size, opts.human_readable);
    let mut s = format!(
        "{} {:>14} {} {}",
        perms(m.kind, m.mode),
        size,
        zone.format(m.mtime),
        show(rel)
    );
    if opts.links
        && m.kind == Kind::Symlink
        && let Some(t) = &e.target
    {
        s.push_str(" -> ");
        s.push_str(&show(t));
    }
    s
}

/// rsync's `permstring`: the kind letter and the nine permission letters, with `s`/`S` and
/// `t`/`T` for setuid, setgid and sticky.
pub fn perms(kind: Kind, mode: u32) -> String {
    let kind = match kind {
        Kind::File => '-',
        Kind::Dir => 'd',
        Kind::Symlink => 'l',
        Kind::CharDev => 'c',
        Kind::BlockDev => 'b',
        Kind::Fifo => 'p',
        Kind::Socket => 's',
    };
    let mut s = String::with_capacity(10);
    s.push(kind);
    let bit = |b: u32, c: char| if mode & b != 0 { c } else { '-' };
    let special = |x: u32, sp: u32, on: char, off: char| match (mode & x != 0, mode & sp != 0) {
        (true, true) => on,
        (false, true) => off,
        (true, false) => 'x',
        (false, false) => '-',
    };
    s.push(bit(0o400, 'r'));
    s.push(bit(0o200, 'w'));
    s.push(special(0o100, 0o4000, 's', 'S'));
    s.push(bit(0o040, 'r'));
    s.push(bit(0o020, 'w'));
    s.push(special(0o010, 0o2000, 's', 'S'));
    s.push(bit(0o004, 'r'));
    s.push(bit(0o002, 'w'));
    s.push(special(0o001, 0o1000, 't', 'T'));
    s
}

/// A time zone as TZif data gives it: the transitions (sorted) with the UTC offset each
/// starts, and the offset before the first.
pub struct Zone {
    transitions: Vec<(i64, i64)>,
    initial: i64,
}

impl Zone {
    pub fn utc() -> Zone {
        Zone {
            transitions: Vec::new(),
            initial: 0,
        }
    }

    /// The zone the C library would use: `$TZ` (a file name after `:`, or a name below
    /// `/usr/share/zoneinfo`), else `/etc/localtime`; UTC when none can be read (as glibc).
    pub fn local() -> Zone {
        let path = match std::env::var_os("TZ") {
            None => std::path::PathBuf::from("/etc/localtime"),
            Some(tz) => {
                let tz = tz.to_string_lossy().into_owned();
                let name = tz.strip_prefix(':').unwrap_or(&tz);
                if name.is_empty() {
                    return Zone::utc();
                }
                if name.starts_with('/') {
                    name.into()
                } else {
                    std::path::Path::new("/usr/share/zoneinfo").join(name)
                }
            }
        };
        std::fs::read(path)
            .ok()
            .and_then(|d| Zone::parse(&d))
            .unwrap_or_else(Zone::utc)
    }

    /// Reads TZif data (RFC 8536): the 64-bit section of a version 2+ file, else the
    /// 32-bit one. None when it is not TZif or is cut short.
    pub fn parse(d: &[u8]) -> Option<Zone> {
        let header = |d: &[u8]| -> Option<[usize; 6]> {
            if d.get(..4)? != b"TZif" {
                return None;
            }
            let mut c = [0usize; 6];
            for (i, v) in c.iter_mut().enumerate() {
                let at = 20 + 4 * i;
                *v = u32::from_be_bytes(d.get(at..at + 4)?.try_into().ok()?) as usize;
            }
            Some(c)
        };
        // isutcnt, isstdcnt, leapcnt, timecnt, typecnt, charcnt
        let [isut, isstd, leap, time, types, chars] = header(d)?;
        let v1_len = 44 + time * 5 + types * 6 + chars + leap * 8 + isstd + isut;
        let (d, tsize) = if d.get(4).is_some_and(|&v| v >= b'2') {
            (d.get(v1_len..)?, 8)
        } else {
            (d, 4)
        };
        let [_, _, _, time, types, _] = header(d)?;
        let body = d.get(44..)?;
        let times = body.get(..time * tsize)?;
        let idx = body.get(time * tsize..time * tsize + time)?;
        let tt = body.get(time * tsize + time..time * tsize + time + types * 6)?;
        let offset_of = |i: usize| -> Option<i64> {
            let b = tt.get(i * 6..i * 6 + 4)?;
            Some(i32::from_be_bytes(b.try_into().ok()?) as i64)
        };
        let mut transitions = Vec::with_capacity(time);
        for i in 0..time {
            let t = &times[i * tsize..(i + 1) * tsize];
            let at = if tsize == 8 {
                i64::from_be_bytes(t.try_into().ok()?)
            } else {
                i32::from_be_bytes(t.try_into().ok()?) as i64
            };
            transitions.push((at, offset_of(*idx.get(i)? as usize)?));
        }
        // RFC 8536: before the first transition, the first non-DST type (else type 0).
        let initial = (0..types)
            .find(|&i| tt.get(i * 6 + 4) == Some(&0))
            .and_then(offset_of)
            .or_else(|| offset_of(0))
            .unwrap_or(0);
        Some(Zone {
            transitions,
            initial,
        })
    }

    fn offset_at(&self, t: i64) -> i64 {
        match self.transitions.partition_point(|&(at, _)| at <= t) {
            0 => self.initial,
            i => self.transitions[i - 1].1,
        }
    }

    /// rsync's `timestring`: `YYYY/MM/DD HH:MM:SS` in this zone.
    pub fn format(&self, t: i64) -> String {
        let local = t.saturating_add(self.offset_at(t));
        let (days, secs) = (local.div_euclid(86400), local.rem_euclid(86400));
        let (y, m, d) = civil_from_days(days);
        format!(
            "{y:04}/{m:02}/{d:02} {:02}:{:02}:{:02}",
            secs / 3600,
            secs / 60 % 60,
            secs % 60
        )
    }
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day): Howard Hinnant's
/// `civil_from_days`.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719468;
    let era = z.div_euclid(146097);
    let doe = z.rem_euclid(146097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = (if mp < 10 { mp + 3 } else { mp - 9 }) as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permission_strings_are_rsyncs() {
        assert_eq!(perms(Kind::Dir, 0o755), "drwxr-xr-x");
        assert_eq!(perms(Kind::File, 0o644), "-rw-r--r--");
        assert_eq!(perms(Kind::Symlink, 0o777), "lrwxrwxrwx");
        assert_eq!(perms(Kind::File, 0o4755), "-rwsr-xr-x");
        assert_eq!(perms(Kind::File, 0o2644), "-rw-r-Sr--");
        assert_eq!(perms(Kind::Dir, 0o1777), "drwxrwxrwt");
        assert_eq!(perms(Kind::Dir, 0o1770), "drwxrwx--T");
        assert_eq!(perms(Kind::Fifo, 0o600), "prw-------");
        assert_eq!(perms(Kind::CharDev, 0o666), "crw-rw-rw-");
        assert_eq!(perms(Kind::Socket, 0o755), "srwxr-xr-x");
    }

    #[test]
    fn times_are_formatted_in_the_zone() {
        let utc = Zone::utc();
        assert_eq!(utc.format(0), "1970/01/01 00:00:00");
        assert_eq!(utc.format(1_577_934_245), "2020/01/02 03:04:05");
        assert_eq!(utc.format(951_782_400), "2000/02/29 00:00:00");
        assert_eq!(utc.format(-1), "1969/12/31 23:59:59");
        let cet = Zone {
            transitions: vec![(1_000, 3600), (2_000, 7200)],
            initial: 0,
        };
        assert_eq!(cet.format(999), "1970/01/01 00:16:39");
        assert_eq!(cet.format(1_000), "1970/01/01 01:16:40");
        assert_eq!(cet.format(5_000), "1970/01/01 03:23:20");
    }

    #[test]
    fn the_systems_zone_files_parse() {
        // Whatever zones this host has: each must read, and agree with itself.
        for name in ["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata"] {
            let p = std::path::Path::new("/usr/share/zoneinfo").join(name);
            if let Ok(d) = std::fs::read(&p) {
                let z = Zone::parse(&d).expect("TZif");
                if name == "Asia/Kolkata" {
                    assert_eq!(z.offset_at(1_700_000_000), 19_800);
                }
                if name == "Europe/Berlin" {
                    // 2023-07-01 is summer time, 2023-01-01 is not.
                    assert_eq!(z.offset_at(1_688_169_600), 7200);
                    assert_eq!(z.offset_at(1_672_531_200), 3600);
                }
            }
        }
        assert!(Zone::parse(b"not a zone").is_none());
    }
}
