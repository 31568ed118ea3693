//! Temporaries owned by their run.
//!
//! Every file xsync writes first lands under a temporary name beside its target (see
//! `write.rs`). A `kill -9` can leave one behind, and the next run into that
//! directory removes it; but two runs can share a destination (a cron job that overlaps
//! the last one, two CI jobs), and a user may have files of their own that merely look
//! like ours. So a temporary's name says who made it:
//!
//! `.xsync-tmp.<host><boot>.<pid>.<start>.<unique>`
//!
//! (host and boot id hashed to 8 hex digits each, the process id and its start time in
//! clock ticks since boot, in hex, then 16 hex digits unique within the process). A later
//! run removes one only when it can tell that its owner is gone: made on this host, and
//! in an earlier boot, or by a process that no longer exists, or whose pid now belongs to
//! a process that started at another time. A temporary from another host (a shared NFS
//! destination) is left alone, and a name that does not parse is not a temporary at all:
//! it is the user's file, copied, compared, filtered and deleted like any other.

use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// The prefix every temporary starts with.
pub const PREFIX: &[u8] = b".xsync-tmp.";

/// Who may own a temporary found in a destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// Not one of xsync's names: a user's file.
    NotOurs,
    /// Made by a run that may still be going (this one, another live one, or one on
    /// another host): left alone, and not part of the destination's tree.
    Live,
    /// Its run is gone: the next run removes it.
    Dead,
}

/// This process's identity as it appears in its temporaries.
struct Me {
    host: u32,
    boot: u32,
    pid: u32,
    start: u64,
}

static ME: LazyLock<Me> = LazyLock::new(|| {
    let pid = std::process::id();
    Me {
        host: host_hash(),
        boot: boot_hash(),
        pid,
        // (Without /proc nothing can be checked; 0 makes every other run's temporary
        // look alive, which loses nothing.)
        start: start_time(pid).unwrap_or(0),
    }
});

fn hash32(bytes: &[u8]) -> u32 {
    xxhash_rust::xxh3::xxh3_64(bytes) as u32
}

fn host_hash() -> u32 {
    // (The kernel's node name, as uname gives it.)
    std::fs::read("/proc/sys/kernel/hostname")
        .map(|b| hash32(b.trim_ascii()))
        .unwrap_or(0)
}

fn boot_hash() -> u32 {
    std::fs::read("/proc/sys/kernel/random/boot_id")
        .map(|b| hash32(b.trim_ascii()))
        .unwrap_or(0)
}

/// Field 22 of /proc/PID/stat: when the process started, in clock ticks since boot.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count from the
    // last `)`.
    let after = &stat[stat.iter().rposition(|&b| b == b')')? + 1..];
    let field = after
        .split(|&b| b == b' ')
        .filter(|f| !f.is_empty())
        .nth(19)?;
    std::str::from_utf8(field).ok()?.parse().ok()
}

/// A fresh temporary name for this run: unique within the process by a counter, and
/// against other processes by the owner fields.
pub fn name() -> Vec<u8> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    // (Hashed with the time so that names do not repeat across runs of one pid.)
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut seed = [0u8; 24];
    seed[..16].copy_from_slice(&t.to_le_bytes());
    seed[16..].copy_from_slice(&n.to_le_bytes());
    let unique = xxhash_rust::xxh3::xxh3_64(&seed);
    let me = &*ME;
    name_for(me.host, me.boot, me.pid, me.start, unique)
}

/// The name a process with these fields gives a temporary (tests make other runs' names).
pub fn name_for(host: u32, boot: u32, pid: u32, start: u64, unique: u64) -> Vec<u8> {
    let mut v = PREFIX.to_vec();
    v.extend_from_slice(format!("{host:08x}{boot:08x}.{pid:x}.{start:x}.{unique:016x}").as_bytes());
    v
}

/// This host's and this boot's fields, as [`name_for`] takes them.
pub fn this_machine() -> (u32, u32) {
    (ME.host, ME.boot)
}

/// The start time [`name_for`] takes for a live process (None without /proc).
pub fn process_start(pid: u32) -> Option<u64> {
    start_time(pid)
}

fn parse(name: &[u8]) -> Option<(u32, u32, u32, u64)> {
    let rest = name.strip_prefix(PREFIX)?;
    let s = std::str::from_utf8(rest).ok()?;
    let mut parts = s.split('.');
    let (machine, pid, start, unique) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |p: &str, max: usize| {
        !p.is_empty() && p.len() <= max && p.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    };
    if parts.next().is_some()
        || machine.len() != 16
        || !hex(machine, 16)
        || !hex(pid, 8)
        || !hex(start, 16)
        || unique.len() != 16
        || !hex(unique, 16)
    {
        return None;
    }
    Some((
        u32::from_str_radix(&machine[..8], 16).ok()?,
        u32::from_str_radix(&machine[8..], 16).ok()?,
        u32::from_str_radix(pid, 16).ok()?,
        u64::from_str_radix(start, 16).ok()?,
    ))
}

/// Whose temporary `name` is, as far as this host can tell.
pub fn owner(name: &[u8]) -> Owner {
    let Some((host, boot, pid, start)) = parse(name) else {
        return Owner::NotOurs;
    };
    let me = &*ME;
    if host != me.host || me.host == 0 || me.boot == 0 || me.start == 0 {
        return Owner::Live;
    }
    if boot != me.boot {
        return Owner::Dead;
    }
    match start_time(pid) {
        Some(s) if s == start => Owner::Live,
        // No such process, or the pid now belongs to another one.
        _ => Owner::Dead,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_runs_names_are_live_and_parse_back() {
        let n = name();
        assert!(n.starts_with(PREFIX));
        assert!(n.len() < 100);
        assert_eq!(owner(&n), Owner::Live);
        assert_ne!(name(), n);
    }

    #[test]
    fn a_user_file_that_only_shares_the_prefix_is_not_a_temporary() {
        for n in [
            &b".xsync-tmp.notes"[..],
            b".xsync-tmp.",
            b".xsync-tmp.0123456789abcdef.1.2.0123456789abcdef.bak",
            b".xsync-tmp.0123456789ABCDEF.1.2.0123456789abcdef",
            b".xsync-tmp.0123456789abcdef.1.2.0123",
            b"xsync-tmp.0123456789abcdef.1.2.0123456789abcdef",
        ] {
            assert_eq!(owner(n), Owner::NotOurs, "{}", String::from_utf8_lossy(n));
        }
    }

    #[test]
    fn a_gone_owner_is_dead_and_another_hosts_is_left_alone() {
        let (host, boot) = this_machine();
        let me = std::process::id();
        let start = process_start(me).expect("/proc");
        assert_eq!(owner(&name_for(host, boot, me, start, 1)), Owner::Live);
        // The same pid started at another time: the pid was reused.
        assert_eq!(owner(&name_for(host, boot, me, start + 1, 1)), Owner::Dead);
        // An earlier boot.
        assert_eq!(owner(&name_for(host, boot ^ 1, me, start, 1)), Owner::Dead);
        // A process that has exited.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert_eq!(owner(&name_for(host, boot, pid, 1, 1)), Owner::Dead);
        // Another host's run cannot be checked from here.
        assert_eq!(owner(&name_for(host ^ 1, boot, pid, 1, 1)), Owner::Live);
    }
}
