//! Owner and group mapping across machines: rsync sends the *names* of the users and groups
//! a tree uses, and the receiver gives each file the local id of that name (the same number
//! when the name is unknown there). `--numeric-ids` turns this off. Root (id 0) is never
//! mapped, as in rsync.
//!
//! Names are read from `/etc/passwd` and `/etc/group` (the files, not NSS: no libc binding
//! is needed, and a user known only to LDAP keeps its number).

use crate::tree::Entry;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};

/// The id → name tables the sender sends.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, Eq)]
pub struct Names {
    pub users: Vec<(u32, String)>,
    pub groups: Vec<(u32, String)>,
}

/// `name:x:id:...` lines → id → name.
fn parse_db(text: &str) -> HashMap<u32, String> {
    let mut m = HashMap::new();
    for line in text.lines() {
        let mut f = line.split(':');
        if let (Some(name), Some(_), Some(id)) = (f.next(), f.next(), f.next())
            && let Ok(id) = id.parse::<u32>()
        {
            m.entry(id).or_insert_with(|| name.to_string());
        }
    }
    m
}

fn read_db(path: &str) -> HashMap<u32, String> {
    std::fs::read_to_string(path)
        .map(|t| parse_db(&t))
        .unwrap_or_default()
}

/// The home directory `/etc/passwd` gives `user` (or, with `None`, this process's user):
/// what a remote shell would put for a leading `~`/`~user` in rsync's remote paths.
pub fn home_dir(user: Option<&str>) -> Option<String> {
    let text = std::fs::read_to_string("/etc/passwd").ok()?;
    home_in(&text, user, rustix::process::getuid().as_raw())
}

fn home_in(passwd: &str, user: Option<&str>, uid: u32) -> Option<String> {
    passwd.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        let matches = match user {
            Some(u) => f.first() == Some(&u),
            None => f.get(2).and_then(|id| id.parse::<u32>().ok()) == Some(uid),
        };
        (matches && f.len() >= 6 && !f[5].is_empty()).then(|| f[5].to_string())
    })
}

/// An id by name or number, from `/etc/passwd` or `/etc/group` (as the name mapping).
fn id_of(db: &str, name: &str) -> Option<u32> {
    if let Ok(n) = name.parse::<u32>() {
        return Some(n);
    }
    let text = std::fs::read_to_string(db).ok()?;
    text.lines().find_map(|line| {
        let mut f = line.split(':');
        (f.next() == Some(name))
            .then(|| f.nth(1).and_then(|id| id.parse().ok()))
            .flatten()
    })
}

/// `--chown=USER:GROUP` where it takes effect, on the receiving side: the ids every entry
/// gets, as this machine names them. An unknown name maps nothing (rsync warns and goes on).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Chown {
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

impl Chown {
    /// Resolves the option's names; with a report, says which are unknown.
    pub fn resolve(
        opts: &crate::config::Options,
        report: Option<&crate::report::Report<'_>>,
    ) -> Chown {
        let look = |name: &Option<String>, db: &str, what: &str| {
            let name = name.as_deref()?;
            let id = id_of(db, name);
            if id.is_none()
                && let Some(r) = report
            {
                r.warn(format!(
                    "unknown --chown {what} on the receiver: `{name}` (left as it is)"
                ));
            }
            id
        };
        Chown {
            uid: look(&opts.chown.0, "/etc/passwd", "user"),
            gid: look(&opts.chown.1, "/etc/group", "group"),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.uid.is_none() && self.gid.is_none()
    }

    /// Gives every entry of the source tree the forced ids before it is planned.
    pub fn apply_tree(&self, e: &mut Entry) {
        if let Some(u) = self.uid {
            e.meta.uid = u;
        }
        if let Some(g) = self.gid {
            e.meta.gid = g;
        }
        for c in &mut e.children {
            self.apply_tree(c);
        }
    }
}

impl Names {
    /// The names of the (non-root) ids used in `root`, from this machine's databases.
    pub fn of_tree(root: &Entry) -> Names {
        let (mut uids, mut gids) = (BTreeSet::new(), BTreeSet::new());
        root.walk(b"", &mut |_, e| {
            uids.insert(e.meta.uid);
            gids.insert(e.meta.gid);
        });
        Names::from_dbs(
            &read_db("/etc/passwd"),
            &read_db("/etc/group"),
            &uids,
            &gids,
        )
    }

    fn from_dbs(
        passwd: &HashMap<u32, String>,
        group: &HashMap<u32, String>,
        uids: &BTreeSet<u32>,
        gids: &BTreeSet<u32>,
    ) -> Names {
        let pick = |db: &HashMap<u32, String>, ids: &BTreeSet<u32>| {
            ids.iter()
                .filter(|&&id| id != 0)
                .filter_map(|id| db.get(id).map(|n| (*id, n.clone())))
                .collect()
        };
        Names {
            users: pick(passwd, uids),
            groups: pick(group, gids),
        }
    }
}

/// Remote id → local id, built on the receiver.
#[derive(Debug, Default)]
pub struct IdMap {
    users: HashMap<u32, u32>,
    groups: HashMap<u32, u32>,
}

impl IdMap {
    pub fn new(names: &Names) -> IdMap {
        IdMap::from_dbs(names, &read_db("/etc/passwd"), &read_db("/etc/group"))
    }

    fn from_dbs(
        names: &Names,
        passwd: &HashMap<u32, String>,
        group: &HashMap<u32, String>,
    ) -> IdMap {
        let invert = |db: &HashMap<u32, String>| -> HashMap<String, u32> {
            db.iter().map(|(id, n)| (n.clone(), *id)).collect()
        };
        let (by_user, by_group) = (invert(passwd), invert(group));
        IdMap {
            users: names
                .users
                .iter()
                .filter_map(|(id, n)| by_user.get(n).map(|local| (*id, *local)))
                .collect(),
            groups: names
                .groups
                .iter()
                .filter_map(|(id, n)| by_group.get(n).map(|local| (*id, *local)))
                .collect(),
        }
    }

    pub fn is_identity(&self) -> bool {
        self.users.iter().all(|(a, b)| a == b) && self.groups.iter().all(|(a, b)| a == b)
    }

    /// Rewrites an entry's owner and group to local ids.
    pub fn apply(&self, e: &mut Entry) {
        if let Some(u) = self.users.get(&e.meta.uid) {
            e.meta.uid = *u;
        }
        if let Some(g) = self.groups.get(&e.meta.gid) {
            e.meta.gid = *g;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn homes_come_from_the_passwd_fields() {
        let db =
            "root:x:0:0:root:/root:/bin/bash\nann:x:1000:1000::/home/ann:/bin/sh\nnohome:x:5:5::\n";
        assert_eq!(home_in(db, Some("ann"), 0).as_deref(), Some("/home/ann"));
        assert_eq!(home_in(db, None, 1000).as_deref(), Some("/home/ann"));
        assert_eq!(home_in(db, None, 0).as_deref(), Some("/root"));
        assert_eq!(home_in(db, Some("bob"), 0), None);
        assert_eq!(home_in(db, Some("nohome"), 0), None);
    }

    #[test]
    fn ids_map_by_name_and_unknown_names_keep_their_number() {
        let sender_pw = parse_db(
            "root:x:0:0::/root:/bin/sh\nalice:x:1000:1000::/h:/bin/sh\nbob:x:1001:1001::/h:/bin/sh\n",
        );
        let sender_gr = parse_db("root:x:0:\nstaff:x:50:\nalice:x:1000:\n");
        let uids = BTreeSet::from([0, 1000, 1001, 4242]);
        let gids = BTreeSet::from([0, 50, 1000]);
        let names = Names::from_dbs(&sender_pw, &sender_gr, &uids, &gids);
        assert_eq!(
            names.users,
            vec![(1000, "alice".into()), (1001, "bob".into())]
        );

        let recv_pw = parse_db(
            "root:x:0:0::/root:/bin/sh\nbob:x:2000:2000::/h:/bin/sh\nalice:x:2001:2001::/h:/bin/sh\n",
        );
        let recv_gr = parse_db("staff:x:60:\n");
        let map = IdMap::from_dbs(&names, &recv_pw, &recv_gr);
        assert!(!map.is_identity());
        let mut e = Entry::new(Box::from(&b"f"[..]), crate::tree::virtual_dir_meta());
        for (uid, gid, want) in [
            (1000, 50, (2001, 60)),
            (1001, 1000, (2000, 1000)),
            (4242, 0, (4242, 0)),
            (0, 0, (0, 0)),
        ] {
            e.meta.uid = uid;
            e.meta.gid = gid;
            map.apply(&mut e);
            assert_eq!((e.meta.uid, e.meta.gid), want, "uid {uid} gid {gid}");
        }
    }
}
