//! Owner and group mapping across machines: rsync sends the *names* of the users and groups
//! a tree uses, and the receiver gives each file the local id of that name (the same number
//! when the name is unknown there). `--numeric-ids` turns this off. Root (id 0) is never
//! mapped, as in rsync.
//!
//! Names come from NSS, as rsync's do (`getpwuid`, `getgrnam`, …): `/etc/passwd` and
//! `/etc/group`, and whatever else `/etc/nsswitch.conf` lists (LDAP, SSSD, systemd,
//! extrausers). The lookups are glibc's reentrant `*_r` calls (through `nix`), so any thread
//! may make them. An NSS source may be a server across the network, so each distinct id and
//! name is asked once per process ([`Cached`]), and a process is one run: the client, and
//! `xsync --server` at the other end.

use crate::tree::Entry;
use nix::unistd::{Gid, Group, Uid, User};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};
use std::hash::Hash;
use std::sync::{LazyLock, Mutex, PoisonError};

/// The id → name tables the sender sends.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, Eq)]
pub struct Names {
    pub users: Vec<(u32, String)>,
    pub groups: Vec<(u32, String)>,
}

/// The account databases, as the mapping asks them: NSS in a run, a table in the unit tests.
trait Db: Sync {
    fn user_name(&self, uid: u32) -> Option<String>;
    fn group_name(&self, gid: u32) -> Option<String>;
    fn user_id(&self, name: &str) -> Option<u32>;
    fn group_id(&self, name: &str) -> Option<u32>;
    /// The home directory of `user`, or with `None` of this process's user.
    fn home(&self, user: Option<&str>) -> Option<String>;
}

/// NSS through glibc. A failed lookup (an unreachable LDAP server) counts as an unknown
/// name, as it does for rsync: the id keeps its number.
struct Nss;

/// `nix` turns a name that is not UTF-8 into one with U+FFFD in it; that name would map to
/// nothing (or to the wrong account), so it is no name at all.
fn real_name(name: String) -> Option<String> {
    (!name.contains(char::REPLACEMENT_CHARACTER)).then_some(name)
}

impl Db for Nss {
    fn user_name(&self, uid: u32) -> Option<String> {
        let user = User::from_uid(Uid::from_raw(uid)).ok()??;
        real_name(user.name)
    }

    fn group_name(&self, gid: u32) -> Option<String> {
        let group = Group::from_gid(Gid::from_raw(gid)).ok()??;
        real_name(group.name)
    }

    fn user_id(&self, name: &str) -> Option<u32> {
        Some(User::from_name(name).ok()??.uid.as_raw())
    }

    fn group_id(&self, name: &str) -> Option<u32> {
        Some(Group::from_name(name).ok()??.gid.as_raw())
    }

    fn home(&self, user: Option<&str>) -> Option<String> {
        let account = match user {
            Some(name) => User::from_name(name),
            None => User::from_uid(Uid::from_raw(rustix::process::getuid().as_raw())),
        };
        account.ok()??.dir.into_os_string().into_string().ok()
    }
}

/// Answers remembered by question: each is asked of the database once.
struct Memo<K, V>(Mutex<HashMap<K, V>>);

impl<K: Eq + Hash, V: Clone> Memo<K, V> {
    fn new() -> Memo<K, V> {
        Memo(Mutex::new(HashMap::new()))
    }

    /// The lock is held while the database answers, so two threads that ask at once still
    /// make one lookup (and an LDAP server sees one query per id, as rsync's one thread makes).
    fn get(&self, key: K, look: impl FnOnce(&K) -> V) -> V {
        let mut m = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(v) = m.get(&key) {
            return v.clone();
        }
        let v = look(&key);
        m.insert(key, v.clone());
        v
    }
}

/// A database whose id and name answers (found or not) are remembered. Homes are not: each
/// `~user` in a path is asked once anyway.
struct Cached<D> {
    db: D,
    user_names: Memo<u32, Option<String>>,
    group_names: Memo<u32, Option<String>>,
    user_ids: Memo<String, Option<u32>>,
    group_ids: Memo<String, Option<u32>>,
}

impl<D: Db> Cached<D> {
    fn new(db: D) -> Cached<D> {
        Cached {
            db,
            user_names: Memo::new(),
            group_names: Memo::new(),
            user_ids: Memo::new(),
            group_ids: Memo::new(),
        }
    }
}

impl<D: Db> Db for Cached<D> {
    fn user_name(&self, uid: u32) -> Option<String> {
        self.user_names.get(uid, |&id| self.db.user_name(id))
    }
    fn group_name(&self, gid: u32) -> Option<String> {
        self.group_names.get(gid, |&id| self.db.group_name(id))
    }
    fn user_id(&self, name: &str) -> Option<u32> {
        self.user_ids.get(name.to_owned(), |n| self.db.user_id(n))
    }
    fn group_id(&self, name: &str) -> Option<u32> {
        self.group_ids.get(name.to_owned(), |n| self.db.group_id(n))
    }
    fn home(&self, user: Option<&str>) -> Option<String> {
        self.db.home(user)
    }
}

/// This machine's accounts, for the whole run.
static SYSTEM: LazyLock<Cached<Nss>> = LazyLock::new(|| Cached::new(Nss));

/// The home directory NSS gives `user` (or, with `None`, this process's user): what a remote
/// shell would put for a leading `~`/`~user` in rsync's remote paths. An empty one is none.
pub fn home_dir(user: Option<&str>) -> Option<String> {
    home_in(&*SYSTEM, user)
}

fn home_in(db: &impl Db, user: Option<&str>) -> Option<String> {
    db.home(user).filter(|h| !h.is_empty())
}

/// An id by number or name, as rsync reads `--chown`'s: all digits is the number itself.
fn id_of(name: &str, by_name: impl FnOnce(&str) -> Option<u32>) -> Option<u32> {
    if !name.is_empty() && name.bytes().all(|b| b.is_ascii_digit()) {
        return name.parse().ok();
    }
    by_name(name)
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
        Chown::resolve_in(&*SYSTEM, &opts.chown, &mut |what, name| {
            if let Some(r) = report {
                r.warn(format!(
                    "unknown --chown {what} on the receiver: `{name}` (left as it is)"
                ));
            }
        })
    }

    fn resolve_in(
        db: &impl Db,
        (user, group): &(Option<String>, Option<String>),
        unknown: &mut dyn FnMut(&str, &str),
    ) -> Chown {
        let mut look = |name: &Option<String>, what: &str, by_name: &dyn Fn(&str) -> _| {
            let name = name.as_deref()?;
            let id = id_of(name, by_name);
            if id.is_none() {
                unknown(what, name);
            }
            id
        };
        Chown {
            uid: look(user, "user", &|n| db.user_id(n)),
            gid: look(group, "group", &|n| db.group_id(n)),
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
    /// The names of the (non-root) ids used in `root`, from this machine's accounts.
    pub fn of_tree(root: &Entry) -> Names {
        Names::of_tree_in(&*SYSTEM, root)
    }

    fn of_tree_in(db: &impl Db, root: &Entry) -> Names {
        let (mut uids, mut gids) = (BTreeSet::new(), BTreeSet::new());
        root.walk(b"", &mut |_, e| {
            uids.insert(e.meta.uid);
            gids.insert(e.meta.gid);
            // (-A: the named entries' ids are mapped by name too, as rsync maps them.)
            for who in e.acls.iter().flat_map(|a| a.ids()) {
                match who {
                    crate::acl::Who::User(u) => uids.insert(u),
                    crate::acl::Who::Group(g) => gids.insert(g),
                };
            }
        });
        let pick = |ids: &BTreeSet<u32>, name_of: &dyn Fn(u32) -> Option<String>| {
            ids.iter()
                .filter(|&&id| id != 0)
                .filter_map(|&id| name_of(id).map(|n| (id, n)))
                .collect()
        };
        Names {
            users: pick(&uids, &|id| db.user_name(id)),
            groups: pick(&gids, &|id| db.group_name(id)),
        }
    }
}

/// What a `--usermap`/`--groupmap` rule matches on the sender's side, as rsync reads it: a
/// FROM that starts with a digit is an id or a `LO-HI` range, one with `*`, `?` or `[` a
/// wildcard over names, anything else one name (the empty name: ids the sender has no
/// name for).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Matcher {
    Ids(u32, u32),
    Name(String),
    Wild(String),
}

impl Matcher {
    fn matches(&self, id: u32, name: &str) -> bool {
        match self {
            Matcher::Ids(lo, hi) => (*lo..=*hi).contains(&id),
            Matcher::Name(n) => n == name,
            Matcher::Wild(w) => crate::filter::name_matches(w.as_bytes(), name.as_bytes()),
        }
    }
}

/// `--usermap`/`--groupmap` as written: comma-separated FROM:TO rules, the first match
/// wins. TO (a name or a number) is resolved on the receiver, in [`Maps::resolve`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapSpec(Vec<(Matcher, String)>);

impl MapSpec {
    /// Checks the syntax as rsync does (its messages; the caller exits 1). `what` is
    /// `user` or `group`.
    pub fn parse(spec: &str, what: &str) -> Result<MapSpec, String> {
        let mut rules = Vec::new();
        for item in spec.split(',') {
            let Some((from, to)) = item.split_once(':') else {
                return Err(format!("No colon found in --{what}map: {item}"));
            };
            if to.is_empty() {
                return Err(format!("No name found after colon --{what}map: {item}"));
            }
            let from = if from.starts_with(|c: char| c.is_ascii_digit()) {
                let bad = || format!("Invalid number in --{what}map: {from}");
                if !from.bytes().all(|b| b.is_ascii_digit() || b == b'-') {
                    return Err(bad());
                }
                let number = |n: &str| {
                    n.parse::<u32>()
                        .map_err(|_| format!("Invalid ID number: {n}"))
                };
                match from.split_once('-') {
                    None => {
                        let id = number(from)?;
                        Matcher::Ids(id, id)
                    }
                    Some((_, "")) => return Err(bad()),
                    Some((_, hi)) if hi.contains('-') => return Err(bad()),
                    // (rsync reads a range ending at 0 as the one id LO.)
                    Some((lo, hi)) => match (number(lo)?, number(hi)?) {
                        (lo, 0) => Matcher::Ids(lo, lo),
                        (lo, hi) => Matcher::Ids(lo, hi),
                    },
                }
            } else if from.contains(['*', '?', '[']) {
                Matcher::Wild(from.to_string())
            } else {
                Matcher::Name(from.to_string())
            };
            rules.push((from, to.to_string()));
        }
        Ok(MapSpec(rules))
    }
}

/// The rules of `--usermap` and `--groupmap` with TO resolved here, on the receiver.
#[derive(Debug, Clone, Default)]
pub struct Maps {
    users: Vec<(Matcher, u32)>,
    groups: Vec<(Matcher, u32)>,
    /// Whether the sender's names count (not under `--numeric-ids`, where a rule can match
    /// only the empty name); id 0 is then `root`, the name rsync sends for it.
    names: bool,
}

impl Maps {
    /// Resolves the options' maps; a TO this machine does not know drops its rule, with
    /// rsync's message (which does not change the exit code).
    pub fn resolve(
        opts: &crate::config::Options,
        report: Option<&crate::report::Report<'_>>,
    ) -> Maps {
        Maps::resolve_in(&*SYSTEM, opts, &mut |what, name| {
            if let Some(r) = report {
                r.warn_bare(format!("Unknown --{what}map name on receiver: {name}"));
            }
        })
    }

    fn resolve_in(
        db: &impl Db,
        opts: &crate::config::Options,
        unknown: &mut dyn FnMut(&str, &str),
    ) -> Maps {
        let mut side = |spec: &Option<String>, what: &str, by_name: &dyn Fn(&str) -> _| {
            // (Checked by the face: a spec that does not parse maps nothing here.)
            let Some(Ok(MapSpec(rules))) = spec.as_deref().map(|s| MapSpec::parse(s, what)) else {
                return Vec::new();
            };
            rules
                .into_iter()
                .filter_map(|(from, to)| match id_of(&to, by_name) {
                    Some(id) => Some((from, id)),
                    None => {
                        unknown(what, &to);
                        None
                    }
                })
                .collect()
        };
        Maps {
            users: side(&opts.usermap, "user", &|n| db.user_id(n)),
            groups: side(&opts.groupmap, "group", &|n| db.group_id(n)),
            names: !opts.numeric_ids,
        }
    }

    fn first(rules: &[(Matcher, u32)], id: u32, name: &str) -> Option<u32> {
        rules
            .iter()
            .find(|(from, _)| from.matches(id, name))
            .map(|&(_, to)| to)
    }
}

/// One kind of id (users or groups), sender's → receiver's: the sender's named ids as
/// looked up once, the rules for the ids it sent no name for.
#[derive(Debug, Default)]
struct IdSide {
    named: HashMap<u32, u32>,
    rules: Vec<(Matcher, u32)>,
    /// The name id 0 goes by in the rules (`root`, or none under `--numeric-ids`).
    zero: &'static str,
}

impl IdSide {
    fn new(
        table: &[(u32, String)],
        rules: &[(Matcher, u32)],
        names: bool,
        id_of: &dyn Fn(&str) -> Option<u32>,
    ) -> IdSide {
        // rsync: the first rule that matches; else the name's id here (never for id 0);
        // else the number itself.
        let named = table
            .iter()
            .filter_map(|(id, n)| {
                Maps::first(rules, *id, n)
                    .or_else(|| (*id != 0).then(|| id_of(n)).flatten())
                    .map(|local| (*id, local))
            })
            .collect();
        IdSide {
            named,
            rules: rules.to_vec(),
            zero: if names { "root" } else { "" },
        }
    }

    fn map(&self, id: u32) -> u32 {
        if let Some(&local) = self.named.get(&id) {
            return local;
        }
        if self.rules.is_empty() {
            return id;
        }
        let name = if id == 0 { self.zero } else { "" };
        Maps::first(&self.rules, id, name).unwrap_or(id)
    }

    fn is_identity(&self) -> bool {
        self.rules.is_empty() && self.named.iter().all(|(a, b)| a == b)
    }
}

/// Remote id → local id, built on the receiver: by name, and by `--usermap`/`--groupmap`.
#[derive(Debug, Default)]
pub struct IdMap {
    users: IdSide,
    groups: IdSide,
}

impl IdMap {
    pub fn new(names: &Names, maps: &Maps) -> IdMap {
        IdMap::new_in(&*SYSTEM, names, maps)
    }

    fn new_in(db: &impl Db, names: &Names, maps: &Maps) -> IdMap {
        IdMap {
            users: IdSide::new(&names.users, &maps.users, maps.names, &|n| db.user_id(n)),
            groups: IdSide::new(&names.groups, &maps.groups, maps.names, &|n| db.group_id(n)),
        }
    }

    pub fn is_identity(&self) -> bool {
        self.users.is_identity() && self.groups.is_identity()
    }

    /// Rewrites an entry's owner and group to local ids.
    pub fn apply(&self, e: &mut Entry) {
        e.meta.uid = self.users.map(e.meta.uid);
        e.meta.gid = self.groups.map(e.meta.gid);
        if let Some(a) = &mut e.acls {
            a.map_ids(&|who| match who {
                crate::acl::Who::User(u) => crate::acl::Who::User(self.users.map(u)),
                crate::acl::Who::Group(g) => crate::acl::Who::Group(self.groups.map(g)),
            });
        }
    }

    /// [`apply`](Self::apply) to every entry of a tree, unless nothing would change.
    pub fn apply_tree(&self, root: &mut Entry) {
        fn all(e: &mut Entry, ids: &IdMap) {
            ids.apply(e);
            for c in &mut e.children {
                all(c, ids);
            }
        }
        if !self.is_identity() {
            all(root, self);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// One machine's accounts as a table; counts the questions it is asked.
    #[derive(Default)]
    struct Table {
        users: Vec<(&'static str, u32, &'static str)>,
        groups: Vec<(&'static str, u32)>,
        asked: AtomicUsize,
    }

    impl Table {
        fn ask(&self) {
            self.asked.fetch_add(1, Ordering::Relaxed);
        }
    }

    impl Db for Table {
        fn user_name(&self, uid: u32) -> Option<String> {
            self.ask();
            let u = self.users.iter().find(|u| u.1 == uid)?;
            Some(u.0.to_string())
        }
        fn group_name(&self, gid: u32) -> Option<String> {
            self.ask();
            let g = self.groups.iter().find(|g| g.1 == gid)?;
            Some(g.0.to_string())
        }
        fn user_id(&self, name: &str) -> Option<u32> {
            self.ask();
            Some(self.users.iter().find(|u| u.0 == name)?.1)
        }
        fn group_id(&self, name: &str) -> Option<u32> {
            self.ask();
            Some(self.groups.iter().find(|g| g.0 == name)?.1)
        }
        fn home(&self, user: Option<&str>) -> Option<String> {
            let u = self.users.iter().find(|u| Some(u.0) == user)?;
            Some(u.2.to_string())
        }
    }

    fn entry(uid: u32, gid: u32) -> Entry {
        let mut e = Entry::new(Box::from(&b"f"[..]), crate::tree::virtual_dir_meta());
        e.meta.uid = uid;
        e.meta.gid = gid;
        e
    }

    /// A directory whose entries are owned by each `(uid, gid)`.
    fn tree_of(owners: &[(u32, u32)]) -> Entry {
        let mut root = entry(0, 0);
        root.children = owners.iter().map(|&(u, g)| entry(u, g)).collect();
        root
    }

    #[test]
    fn homes_come_from_the_account_and_an_empty_one_is_none() {
        let db = Table {
            users: vec![("ann", 1000, "/home/ann"), ("nohome", 5, "")],
            ..Table::default()
        };
        assert_eq!(home_in(&db, Some("ann")).as_deref(), Some("/home/ann"));
        assert_eq!(home_in(&db, Some("bob")), None);
        assert_eq!(home_in(&db, Some("nohome")), None);
    }

    #[test]
    fn ids_map_by_name_and_unknown_names_keep_their_number() {
        let sender = Table {
            users: vec![("root", 0, "/root"), ("alice", 1000, ""), ("bob", 1001, "")],
            groups: vec![("root", 0), ("staff", 50), ("alice", 1000)],
            ..Table::default()
        };
        let tree = tree_of(&[(1000, 50), (1001, 1000), (4242, 0), (0, 0)]);
        let names = Names::of_tree_in(&sender, &tree);
        assert_eq!(
            names.users,
            vec![(1000, "alice".into()), (1001, "bob".into())]
        );
        assert_eq!(
            names.groups,
            vec![(50, "staff".into()), (1000, "alice".into())]
        );

        let receiver = Table {
            users: vec![("root", 0, ""), ("bob", 2000, ""), ("alice", 2001, "")],
            groups: vec![("staff", 60)],
            ..Table::default()
        };
        let map = IdMap::new_in(&receiver, &names, &Maps::default());
        assert!(!map.is_identity());
        for (uid, gid, want) in [
            (1000, 50, (2001, 60)),
            (1001, 1000, (2000, 1000)),
            (4242, 0, (4242, 0)),
            (0, 0, (0, 0)),
        ] {
            let mut e = entry(uid, gid);
            map.apply(&mut e);
            assert_eq!((e.meta.uid, e.meta.gid), want, "uid {uid} gid {gid}");
        }
        // The same names on both sides: nothing to rewrite.
        assert!(IdMap::new_in(&sender, &names, &Maps::default()).is_identity());
    }

    #[test]
    fn acl_entries_map_by_name_like_owners() {
        use crate::acl::{Access, Acls, Named, Who};
        let sender = Table {
            users: vec![("alice", 1000, ""), ("bob", 1001, "")],
            groups: vec![("staff", 50)],
            ..Table::default()
        };
        let mut tree = tree_of(&[(0, 0)]);
        tree.children[0].acls = Some(Box::new(Acls {
            access: Some(Access {
                group: 4,
                named: vec![
                    Named {
                        who: Who::User(1000),
                        perm: 7,
                    },
                    Named {
                        who: Who::User(1001),
                        perm: 5,
                    },
                    Named {
                        who: Who::Group(50),
                        perm: 4,
                    },
                ],
            }),
            default: None,
        }));
        // Ids that only an ACL uses travel in the tables too.
        let names = Names::of_tree_in(&sender, &tree);
        assert_eq!(names.users.len(), 2);
        assert_eq!(names.groups, vec![(50, "staff".into())]);
        let receiver = Table {
            users: vec![("bob", 900, ""), ("alice", 2001, "")],
            groups: vec![("staff", 60)],
            ..Table::default()
        };
        let mut e = tree.children.remove(0);
        IdMap::new_in(&receiver, &names, &Maps::default()).apply(&mut e);
        let who: Vec<Who> = e.acls.as_ref().unwrap().ids().collect();
        assert_eq!(who, [Who::User(900), Who::User(2001), Who::Group(60)]);
    }

    #[test]
    fn each_distinct_id_and_name_is_looked_up_once() {
        let db = Cached::new(Table {
            users: vec![("alice", 1000, "")],
            groups: vec![("staff", 50)],
            ..Table::default()
        });
        // 1000 and 7 (unknown) as owners, 50 and 8 (unknown) as groups, many times over.
        let owners: Vec<(u32, u32)> = (0..100)
            .map(|i| [(1000, 50), (1007, 8), (1000, 8)][i % 3])
            .collect();
        let tree = tree_of(&owners);
        let names = Names::of_tree_in(&db, &tree);
        assert_eq!(names.users, vec![(1000, "alice".into())]);
        assert_eq!(db.db.asked.load(Ordering::Relaxed), 4, "1007, 1000; 8, 50");
        // A second tree with the same ids asks nothing new; an unknown id is remembered too.
        assert_eq!(Names::of_tree_in(&db, &tree), names);
        assert_eq!(db.db.asked.load(Ordering::Relaxed), 4);
        // Names: once each, however often they come.
        for _ in 0..3 {
            IdMap::new_in(&db, &names, &Maps::default());
            assert_eq!(db.user_id("nobody-here"), None);
        }
        assert_eq!(db.db.asked.load(Ordering::Relaxed), 4 + 3);
    }

    #[test]
    fn chown_takes_numbers_as_they_are_and_names_from_the_db() {
        let db = Table {
            users: vec![("alice", 1000, "")],
            groups: vec![("staff", 50), ("123x", 77)],
            ..Table::default()
        };
        let mut unknown = Vec::new();
        let mut resolve = |user: Option<&str>, group: Option<&str>| {
            let spec = (user.map(String::from), group.map(String::from));
            Chown::resolve_in(&db, &spec, &mut |what, name| {
                unknown.push(format!("{what} {name}"))
            })
        };
        let c = |uid, gid| Chown { uid, gid };
        assert_eq!(
            resolve(Some("alice"), Some("staff")),
            c(Some(1000), Some(50))
        );
        assert_eq!(resolve(Some("4242"), Some("123x")), c(Some(4242), Some(77)));
        assert_eq!(resolve(None, Some("0")), c(None, Some(0)));
        assert_eq!(resolve(Some("bob"), None), c(None, None));
        assert!(resolve(None, None).is_empty());
        assert_eq!(unknown, vec!["user bob"]);
    }

    #[test]
    fn map_specs_parse_as_rsyncs_and_refuse_what_rsync_refuses() {
        let p = |s: &str| MapSpec::parse(s, "user");
        assert_eq!(
            p("0-99:nobody,1000:alice,ad*:staff,bob:7,:x").unwrap().0,
            vec![
                (Matcher::Ids(0, 99), "nobody".to_string()),
                (Matcher::Ids(1000, 1000), "alice".to_string()),
                (Matcher::Wild("ad*".into()), "staff".to_string()),
                (Matcher::Name("bob".into()), "7".to_string()),
                (Matcher::Name(String::new()), "x".to_string()),
            ]
        );
        assert_eq!(
            p("5-0:a").unwrap().0,
            vec![(Matcher::Ids(5, 5), "a".into())]
        );
        for (bad, why) in [
            ("foo", "No colon found in --usermap: foo"),
            ("a:b,", "No colon found in --usermap: "),
            ("1:", "No name found after colon --usermap: 1:"),
            ("1x:a", "Invalid number in --usermap: 1x"),
            ("1-:a", "Invalid number in --usermap: 1-"),
            ("1-2-3:a", "Invalid number in --usermap: 1-2-3"),
            ("99999999999:a", "Invalid ID number: 99999999999"),
        ] {
            assert_eq!(p(bad).unwrap_err(), why);
        }
        assert_eq!(
            MapSpec::parse("x", "group").unwrap_err(),
            "No colon found in --groupmap: x"
        );
    }

    #[test]
    fn usermap_rules_come_first_and_the_first_match_wins() {
        let sender = Table {
            users: vec![("alice", 1000, ""), ("adm", 1001, ""), ("carol", 1002, "")],
            groups: vec![("staff", 50)],
            ..Table::default()
        };
        let receiver = Table {
            users: vec![
                ("alice", 2000, ""),
                ("nobody", 65534, ""),
                ("carol", 3002, ""),
            ],
            groups: vec![("staff", 60), ("wheel", 10)],
            ..Table::default()
        };
        let opts = crate::config::Options {
            usermap: Some("a*:nobody,1000:alice,4000-4999:1,ghost:x,:nobody".into()),
            groupmap: Some("staff:wheel".into()),
            ..Default::default()
        };
        let mut unknown = Vec::new();
        let maps = Maps::resolve_in(&receiver, &opts, &mut |w, n| {
            unknown.push(format!("{w} {n}"))
        });
        assert_eq!(unknown, ["user x"]);
        let tree = tree_of(&[(1000, 50), (1001, 50), (1002, 50), (4242, 7), (0, 0)]);
        let names = Names::of_tree_in(&sender, &tree);
        let map = IdMap::new_in(&receiver, &names, &maps);
        assert!(!map.is_identity());
        for (uid, gid, want) in [
            // a* matches before 1000.
            (1000, 50, (65534, 10)),
            (1001, 50, (65534, 10)),
            // No rule for carol: her name here.
            (1002, 50, (3002, 10)),
            // Unnamed ids: the range, then the empty name.
            (4242, 7, (1, 7)),
            (5000, 7, (65534, 7)),
            // Root is `root` to the rules, and no rule names it.
            (0, 0, (0, 0)),
        ] {
            let mut e = entry(uid, gid);
            map.apply(&mut e);
            assert_eq!((e.meta.uid, e.meta.gid), want, "uid {uid} gid {gid}");
        }
        // A wildcard that matches everything takes root too, as rsync's does.
        let all = crate::config::Options {
            usermap: Some("*:nobody".into()),
            ..Default::default()
        };
        let map = IdMap::new_in(
            &receiver,
            &names,
            &Maps::resolve_in(&receiver, &all, &mut |_, _| {}),
        );
        let mut e = entry(0, 0);
        map.apply(&mut e);
        assert_eq!(e.meta.uid, 65534);
    }

    /// The real databases, through NSS: root is in every one of them.
    #[test]
    fn nss_knows_root_both_ways() {
        assert_eq!(Nss.user_name(0).as_deref(), Some("root"));
        assert_eq!(Nss.user_id("root"), Some(0));
        assert_eq!(Nss.group_name(0).as_deref(), Some("root"));
        assert_eq!(Nss.group_id("root"), Some(0));
        let home = home_dir(Some("root")).expect("root has a home");
        assert!(home.starts_with('/'), "{home}");
        if rustix::process::getuid().is_root() {
            assert_eq!(home_dir(None), Some(home));
        }
        // Unknown, and names NSS cannot even be asked about, are no one.
        assert_eq!(Nss.user_id("no-such-user-xsync"), None);
        assert_eq!(Nss.group_id("no\0such"), None);
        assert_eq!(SYSTEM.user_id("no-such-user-xsync"), None);
    }
}
