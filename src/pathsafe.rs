//! The path-safety rule: what a name may be before xsync creates, writes, renames or deletes
//! anything under it.
//!
//! Every change to the destination is made with `*at()` calls relative to an open directory
//! handle, one component at a time, so the only thing that could make a write escape the
//! destination is a component that is not a plain name. [`check_name`] is that gate; the
//! writers in [`crate::write`] call it on every name they are handed, whether it came from
//! a local scan or (later) from a peer over the wire.

use std::io;

/// A single path component that is safe to pass to an `*at()` call: non-empty, not `.` or
/// `..`, no `/` and no NUL.
pub fn check_name(name: &[u8]) -> io::Result<()> {
    let bad = name.is_empty()
        || name == b"."
        || name == b".."
        || name.contains(&b'/')
        || name.contains(&0)
        || name.len() > 255;
    if bad {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("unsafe file name `{}` refused", crate::error::show(name)),
        ));
    }
    Ok(())
}

/// Joins a relative path and a component with `/` (the transfer-root-relative form that
/// filters, messages and the hard-link map use).
pub fn join(parent: &[u8], name: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(parent.len() + 1 + name.len());
    if !parent.is_empty() {
        p.extend_from_slice(parent);
        p.push(b'/');
    }
    p.extend_from_slice(name);
    p
}

/// rsync's lexical test for a symlink that points out of the transfer
/// (`--copy-unsafe-links`, `--safe-links`), judged on the target's text without resolving
/// it: absolute or empty is unsafe; so is a `..` after a name (`a/../b`, `a/..`), which
/// rsync 3.4+ refuses outright; a leading run of `..` is safe only if it climbs no higher
/// than the directory the link sits in is deep. `rel` is the link's path from the top of
/// the transfer (`src/` puts the top at `src`; `src` at its parent, so `src/x` is 1 deep).
pub fn unsafe_link(target: &[u8], rel: &[u8]) -> bool {
    if target.first().is_none_or(|&b| b == b'/') {
        return true;
    }
    let depth = rel
        .split(|&b| b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
        .count()
        .saturating_sub(1);
    let (mut ups, mut named) = (0usize, false);
    for comp in target.split(|&b| b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." if named => return true,
            b".." => ups += 1,
            _ => named = true,
        }
    }
    ups > depth
}

/// A path from the peer that names something below the root: relative, every component a
/// safe name. The empty path is the root itself.
pub fn check_rel_path(p: &[u8]) -> Result<(), crate::error::Error> {
    if p.is_empty() {
        return Ok(());
    }
    for comp in p.split(|&b| b == b'/') {
        check_name(comp).map_err(|e| {
            crate::error::Error::new(
                crate::exit::ExitCode::StreamIo,
                format!(
                    "protocol error: peer sent an unsafe path: {e} (the connection is broken or the peer is not xsync)"
                ),
            )
        })?;
    }
    Ok(())
}

/// A `--files-from` name made safe on the side that read the list: `dir` is the part
/// before a `/./` (where the kept path starts; empty without one) and `path` the kept
/// part, both relative and inside the source: a leading `/` is dropped, and `..` removes
/// the component before it, or nothing at the start (rsync keeps such a name "as far as
/// it stays inside the source"). Both travel to a pulling server and are checked there
/// with `check_rel_path`.
#[derive(serde::Serialize, serde::Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct ListedName {
    #[serde(with = "serde_bytes")]
    pub dir: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub path: Vec<u8>,
}

impl ListedName {
    pub fn parse(raw: &[u8]) -> Option<ListedName> {
        let (dir, path) = match raw.windows(3).position(|w| w == b"/./") {
            Some(i) => (&raw[..i], &raw[i + 3..]),
            None => (&b""[..], raw),
        };
        let dir = sanitize(dir);
        let path = sanitize(path);
        // A name that was only slashes and dots still names the source itself (`.`).
        (!raw.is_empty()).then_some(ListedName { dir, path })
    }

    /// What a peer sent must be what [`ListedName::parse`] could have made.
    pub fn check(&self) -> Result<(), crate::error::Error> {
        check_rel_path(&self.dir)?;
        check_rel_path(&self.path)
    }
}

/// rsync's sanitising of a listed name: components joined by `/`, no empty or `.` ones,
/// and `..` taking back the previous component (or ignored at the start).
fn sanitize(p: &[u8]) -> Vec<u8> {
    let mut comps: Vec<&[u8]> = Vec::new();
    for c in p.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                comps.pop();
            }
            c => comps.push(c),
        }
    }
    comps.join(&b"/"[..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsafe_links_are_judged_as_rsync_judges_them() {
        // (target, link's path from the top, unsafe) — each checked against rsync 3.5.
        for (t, rel, bad) in [
            (&b"/etc/passwd"[..], &b"abs"[..], true),
            (b"", b"empty", true),
            (b"file", b"flink", false),
            (b"./file", b"dot", false),
            (b"../file", b"dir/up", false),
            (b"../file", b"up", true),
            (b"../outside/o", b"climb", true),
            (b"../outside/o", b"src/climb", false),
            (b"../src/file", b"selfclimb", true),
            (b"dir/sub/..", b"trail", true),
            (b"sub/../../file", b"dir/embedded", true),
            (b"..", b"dir/loop", false),
            (b"../..", b"dir/loop", true),
        ] {
            assert_eq!(unsafe_link(t, rel), bad, "{t:?} at {rel:?}");
        }
    }

    #[test]
    fn names_that_could_leave_the_directory_are_refused() {
        for bad in [&b""[..], b".", b"..", b"a/b", b"/", b"a\0b"] {
            assert!(check_name(bad).is_err(), "{bad:?} accepted");
        }
        for good in [&b"a"[..], b"..a", b"-x", b" ", b"a\nb", b"\xff"] {
            assert!(check_name(good).is_ok(), "{good:?} refused");
        }
        assert!(check_name(&[b'x'; 256]).is_err());
    }

    #[test]
    fn join_builds_root_relative_paths() {
        assert_eq!(join(b"", b"a"), b"a");
        assert_eq!(join(b"a/b", b"c"), b"a/b/c");
    }
}
