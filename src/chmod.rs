//! rsync's `--chmod=CHMOD`: chmod(1)-style changes to the permissions of the files in the
//! transfer, applied on the sending side after the scan, so that the result is what the
//! sender "supplied" for each file (rsync's words). With `-p` the destination gets it; without
//! `-p` only new files do (masked by the umask, as any new file without `-p`), and the
//! comparison and the Merkle digests see the tweaked modes on both ends alike.
//!
//! The syntax is rsync's: comma-separated items, each optionally prefixed `D` (directories
//! only) or `F` (everything else), then either an octal mode or chmod's symbolic form
//! (`[ugoa]*`, one of `+-=`, then `[rwxXst]*` or a copy from `u`, `g` or `o`).
//! Unlike chmod(1), an empty `who` means `a` without consulting the umask, as in rsync.

use crate::tree::{Entry, Kind};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Applies {
    All,
    Dirs,
    Files,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Perms {
    /// `r`, `w`, `x`, `s`, `t` as bits for every `who` (masked by `who` when applied), and
    /// whether `X` was given.
    Bits { bits: u32, big_x: bool },
    /// `=u`, `+g`, ...: the permission bits of that class, copied.
    Copy(u32),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Octal(u32),
    Symbolic { who: u32, op: u8, perms: Perms },
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Item {
    applies: Applies,
    ops: Vec<Op>,
}

/// A parsed `--chmod` (several options add up, in order).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Chmod {
    items: Vec<Item>,
    /// The values as given, for the server's command line.
    specs: Vec<String>,
}

const U: u32 = 0o4700;
const G: u32 = 0o2070;
const O: u32 = 0o1007;

impl Chmod {
    /// Parses one `--chmod` value onto the rules given before it. `Err` carries rsync's
    /// message for a value it refuses.
    pub fn add(&mut self, spec: &str) -> Result<(), String> {
        let bad = || format!("Invalid argument passed to --chmod ({spec})");
        for part in spec.split(',') {
            let mut s = part.as_bytes();
            let applies = match s.first() {
                Some(b'D') => Applies::Dirs,
                Some(b'F') => Applies::Files,
                _ => Applies::All,
            };
            if applies != Applies::All {
                s = &s[1..];
            }
            if s.is_empty() {
                return Err(bad());
            }
            let mut ops = Vec::new();
            if s.iter().all(u8::is_ascii_digit) {
                let n = std::str::from_utf8(s).map_err(|_| bad())?;
                let mode = u32::from_str_radix(n, 8).map_err(|_| bad())?;
                if mode > 0o7777 {
                    return Err(bad());
                }
                ops.push(Op::Octal(mode));
            } else {
                let mut who = 0;
                while let Some(&c) = s.first() {
                    who |= match c {
                        b'u' => U,
                        b'g' => G,
                        b'o' => O,
                        b'a' => U | G | O,
                        _ => break,
                    };
                    s = &s[1..];
                }
                let who = if who == 0 { U | G | O } else { who };
                // One operator per item, as rsync (`u+rw-x` is refused there).
                if let Some(&op) = s.first() {
                    if !matches!(op, b'+' | b'-' | b'=') {
                        return Err(bad());
                    }
                    s = &s[1..];
                    let copy = match s.first() {
                        Some(b'u') => Some(0o700),
                        Some(b'g') => Some(0o070),
                        Some(b'o') => Some(0o007),
                        _ => None,
                    };
                    let perms = match copy {
                        Some(class) => {
                            s = &s[1..];
                            Perms::Copy(class)
                        }
                        None => {
                            let (mut bits, mut big_x) = (0, false);
                            while let Some(&c) = s.first() {
                                match c {
                                    b'r' => bits |= 0o444,
                                    b'w' => bits |= 0o222,
                                    b'x' => bits |= 0o111,
                                    b'X' => big_x = true,
                                    b's' => bits |= 0o6000,
                                    b't' => bits |= 0o1000,
                                    _ => break,
                                }
                                s = &s[1..];
                            }
                            Perms::Bits { bits, big_x }
                        }
                    };
                    ops.push(Op::Symbolic { who, op, perms });
                }
                if ops.is_empty() || !s.is_empty() {
                    return Err(bad());
                }
            }
            self.items.push(Item { applies, ops });
        }
        self.specs.push(spec.to_string());
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn specs(&self) -> &[String] {
        &self.specs
    }

    /// The permission bits (`mode & 0o7777`) after the rules, for an entry of `kind`.
    pub fn apply(&self, kind: Kind, mut mode: u32) -> u32 {
        let is_dir = kind == Kind::Dir;
        for item in &self.items {
            match item.applies {
                Applies::Dirs if !is_dir => continue,
                Applies::Files if is_dir => continue,
                _ => {}
            }
            for op in &item.ops {
                mode = match *op {
                    Op::Octal(m) => m,
                    Op::Symbolic { who, op, perms } => {
                        let add = match perms {
                            Perms::Bits { bits, big_x } => {
                                let x = if big_x && (is_dir || mode & 0o111 != 0) {
                                    0o111
                                } else {
                                    0
                                };
                                (bits | x) & who
                            }
                            Perms::Copy(class) => {
                                let b = mode & class;
                                // The class's rwx, spread to every class, then masked by who.
                                let rwx = if class == 0o700 {
                                    b >> 6
                                } else if class == 0o070 {
                                    b >> 3
                                } else {
                                    b
                                };
                                (rwx * 0o111) & who & 0o777
                            }
                        };
                        match op {
                            b'+' => mode | add,
                            b'-' => mode & !add,
                            // `=` resets the class's rwx only: set-id and sticky bits stay
                            // unless named (rsync's rule; `=t` keeps a set-gid bit).
                            _ => (mode & !(who & 0o777)) | add,
                        }
                    }
                };
            }
        }
        mode & 0o7777
    }

    /// Tweaks `e` and everything below it, but symlinks (whose modes mean nothing).
    pub fn apply_tree(&self, e: &mut Entry) {
        if e.meta.kind != Kind::Symlink {
            e.meta.mode = self.apply(e.meta.kind, e.meta.mode);
        }
        for c in &mut e.children {
            self.apply_tree(c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Chmod;
    use crate::tree::Kind;

    fn tweak(spec: &str, kind: Kind, mode: u32) -> u32 {
        let mut c = Chmod::default();
        c.add(spec).expect(spec);
        c.apply(kind, mode)
    }

    #[test]
    fn modes_change_as_rsyncs_chmod_changes_them() {
        use Kind::{Dir, File};
        // (spec, file 600, dir 700, file 640, dir 755) as real rsync 3.5 left them.
        for (spec, want) in [
            ("D755,F644", [0o644, 0o755, 0o644, 0o755]),
            ("ug+rwX,o-w", [0o660, 0o770, 0o660, 0o775]),
            ("Dg+s,ug+w,Fo-w,+X", [0o620, 0o2731, 0o660, 0o2775]),
            ("u=rwX,go=rX", [0o644, 0o755, 0o644, 0o755]),
            ("a+x", [0o711, 0o711, 0o751, 0o755]),
            ("644", [0o644, 0o644, 0o644, 0o644]),
            ("F=r", [0o444, 0o700, 0o444, 0o755]),
            ("o=u", [0o606, 0o707, 0o646, 0o757]),
            ("Fu+s", [0o4600, 0o700, 0o4640, 0o755]),
            ("+t", [0o1600, 0o1700, 0o1640, 0o1755]),
            ("D2755", [0o600, 0o2755, 0o640, 0o2755]),
            ("+", [0o600, 0o700, 0o640, 0o755]),
            ("=", [0, 0, 0, 0]),
            ("u=g", [0, 0, 0o440, 0o555]),
            ("Fa-x,Dg+s", [0o600, 0o2700, 0o640, 0o2755]),
            ("7777", [0o7777, 0o7777, 0o7777, 0o7777]),
        ] {
            let got = [
                tweak(spec, File, 0o600),
                tweak(spec, Dir, 0o700),
                tweak(spec, File, 0o640),
                tweak(spec, Dir, 0o755),
            ];
            let octal = |v: [u32; 4]| v.map(|m| format!("{m:o}"));
            assert_eq!(octal(got), octal(want), "{spec}");
        }
    }

    #[test]
    fn equals_keeps_special_bits_unless_named_as_rsync() {
        use Kind::File;
        // (spec, [2755, 4755, 1755, 6755, 7777]) as real rsync 3.5 left them.
        for (spec, want) in [
            ("go=rX", [0o2755, 0o4755, 0o1755, 0o6755, 0o7755]),
            ("a=r", [0o2444, 0o4444, 0o1444, 0o6444, 0o7444]),
            ("=", [0o2000, 0o4000, 0o1000, 0o6000, 0o7000]),
            ("g-s", [0o755, 0o4755, 0o1755, 0o4755, 0o5777]),
            ("g=rs", [0o2745, 0o6745, 0o3745, 0o6745, 0o7747]),
            ("o=t", [0o3750, 0o5750, 0o1750, 0o7750, 0o7770]),
            ("=t", [0o3000, 0o5000, 0o1000, 0o7000, 0o7000]),
        ] {
            let got = [0o2755, 0o4755, 0o1755, 0o6755, 0o7777].map(|m| tweak(spec, File, m));
            let octal = |v: [u32; 5]| v.map(|m| format!("{m:o}"));
            assert_eq!(octal(got), octal(want), "{spec}");
        }
    }

    #[test]
    fn a_value_rsync_refuses_is_refused_with_its_message() {
        // Each refused by real rsync 3.5 (exit 1).
        for bad in [
            "Q", "", "D", "u", "ug", "u+q", "99999", "8", "17777", "u+r,", "g=x+", "u+rw-x",
        ] {
            let mut c = Chmod::default();
            let e = c.add(bad);
            assert!(e.is_err(), "{bad:?} accepted");
        }
        let e = Chmod::default().add("Q").unwrap_err();
        assert_eq!(e, "Invalid argument passed to --chmod (Q)");
    }
}
