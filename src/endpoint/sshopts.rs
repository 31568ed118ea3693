//! What xsync adds to the user's ssh command line, read from `ssh -G` (the configuration
//! ssh would use for this host, with the user's words and files; it does not connect):
//! the cipher order, and a direct connection with Nagle off during the login.
//!
//! **Ciphers.** OpenSSH puts chacha20-poly1305 first. On a CPU with AES and carry-less
//! multiply instructions AES-GCM costs a fraction of it: through a loopback sshd here, 1 GB
//! took 1.16 s of the ssh client's user time with chacha20-poly1305 and 0.38 s with
//! aes128-gcm, and pushing 30,000 small files the two ssh processes spent a third of the
//! run's CPU, most of it in chacha20-poly1305. Both are OpenSSH defaults, offered to every
//! server; only their order changes, and only when ssh's effective list is exactly
//! OpenSSH's default list, so a `Ciphers` line in any ssh_config, `-c` or `-o Ciphers=` in
//! `-e`, or another OpenSSH release's defaults leave it as it is. The server picks the
//! first cipher of ours that it supports, so one without AES-GCM gets what it would have
//! had.
//!
//! **The connection.** ssh turns Nagle's algorithm off (TCP_NODELAY) only once the user
//! is authenticated, so during the key exchange and the authentication a small packet
//! that follows another waits for the peer's delayed acknowledgement: 40 ms on Linux, a
//! round trip and more on a long link. Through a loopback sshd one login took 358 ms
//! against 307 ms with the socket made by a `ProxyCommand` that sets TCP_NODELAY first and
//! hands it to ssh (`ProxyUseFdpass`: ssh then speaks over that socket itself; no process
//! relays the bytes). Where the configuration connects directly (no `ProxyCommand` or
//! `ProxyJump`, no `BindAddress` or `BindInterface`, no host-name canonicalisation, no
//! `CheckHostIP`), xsync asks ssh to do that with this binary ([`super::connect`]),
//! passing on the address family, `ConnectTimeout`, `ConnectionAttempts` and
//! `TCPKeepAlive` ssh would have used. Anything else is left as it is.

use std::ffi::OsStr;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// OpenSSH's default cipher list since 6.9 (what `ssh -G` prints when nothing set it).
const OPENSSH_DEFAULT: &str = "chacha20-poly1305@openssh.com,aes128-ctr,aes192-ctr,aes256-ctr,\
                               aes128-gcm@openssh.com,aes256-gcm@openssh.com";

/// The same ciphers, AES-GCM first.
const AES_FIRST: &str = "aes128-gcm@openssh.com,aes256-gcm@openssh.com,\
                         chacha20-poly1305@openssh.com,aes128-ctr,aes192-ctr,aes256-ctr";

/// The `-o` options to add to the ssh that `program words… host` runs (none for another
/// program, or where `ssh -G` fails). Decided once a run (the remote shell's command line
/// is the same each time it is spawned); the question costs one `ssh -G`.
pub fn options(program: &OsStr, words: &[&OsStr], host: &OsStr) -> &'static [String] {
    static DECIDED: OnceLock<Vec<String>> = OnceLock::new();
    DECIDED.get_or_init(|| {
        let Some(out) = Command::new(program)
            .args(words)
            .arg("-G")
            .arg(host)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
        else {
            return Vec::new();
        };
        let config = String::from_utf8_lossy(&out.stdout);
        let mut opts = Vec::new();
        if aes_is_cheap()
            && let Some(list) = reorder(&config)
        {
            opts.push(format!("Ciphers={list}"));
        }
        if let Ok(exe) = std::env::current_exe()
            && let Some(proxy) = direct(&config, &exe)
        {
            opts.push("ProxyUseFdpass=yes".to_string());
            opts.push(format!("ProxyCommand={proxy}"));
        }
        opts
    })
}

/// The first value of `key` in `ssh -G`'s output.
fn value<'c>(config: &'c str, key: &str) -> Option<&'c str> {
    config.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim())
    })
}

/// The `ProxyCommand` that connects as ssh would with Nagle off ([`super::connect`]),
/// where the configuration `ssh -G` printed connects directly and says how; `exe` is this
/// binary.
fn direct(config: &str, exe: &std::path::Path) -> Option<String> {
    let unset = |key: &str| value(config, key).is_none_or(|v| v == "none");
    let is = |key: &str, want: &[&str]| value(config, key).is_none_or(|v| want.contains(&v));
    // (`hostname` and `port` are in every -G output: without them this is not OpenSSH's.)
    value(config, "hostname")?;
    value(config, "port")?.parse::<u16>().ok()?;
    if !(unset("proxycommand")
        && unset("proxyjump")
        && unset("bindaddress")
        && unset("bindinterface")
        && is("proxyusefdpass", &["no"])
        && is("checkhostip", &["no"])
        && is("canonicalizehostname", &["false", "no"]))
    {
        return None;
    }
    let family = match value(config, "addressfamily").unwrap_or("any") {
        f @ ("any" | "inet" | "inet6") => f,
        _ => return None,
    };
    let timeout = match value(config, "connecttimeout").unwrap_or("none") {
        "none" => "none".to_string(),
        t => t.parse::<u32>().ok()?.to_string(),
    };
    let attempts = value(config, "connectionattempts")
        .unwrap_or("1")
        .parse::<u32>()
        .ok()?;
    let keepalive = match value(config, "tcpkeepalive").unwrap_or("yes") {
        k @ ("yes" | "no") => k,
        _ => return None,
    };
    // ssh runs the command with the user's shell (`exec …`) after expanding its `%`
    // tokens: the path is quoted for the one and its `%` doubled for the other.
    let exe = exe.to_str()?;
    let quoted = shlex::try_quote(exe).ok()?.replace('%', "%%");
    Some(format!(
        "{quoted} {} {family} {timeout} {attempts} {keepalive} %h %p",
        super::connect::FLAG
    ))
}

/// What to ask for, given `ssh -G`'s output: AES-GCM first where the list is the default.
fn reorder(config: &str) -> Option<&'static str> {
    let line = config.lines().find_map(|l| l.strip_prefix("ciphers "))?;
    (line.trim() == OPENSSH_DEFAULT).then_some(AES_FIRST)
}

/// Whether this CPU has the instructions that make AES-GCM cheap.
fn aes_is_cheap() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("aes")
            && std::arch::is_x86_feature_detected!("pclmulqdq")
    }
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("aes")
            && std::arch::is_aarch64_feature_detected!("pmull")
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_default_list_is_reordered_and_nothing_is_added() {
        let g = |ciphers: &str| format!("user root\nport 22\nciphers {ciphers}\nmacs x\n");
        assert_eq!(reorder(&g(OPENSSH_DEFAULT)), Some(AES_FIRST));
        // The same ciphers, no more and no fewer.
        let set = |s: &str| {
            let mut v: Vec<&str> = s.split(',').collect();
            v.sort();
            v.join(",")
        };
        assert_eq!(set(AES_FIRST), set(OPENSSH_DEFAULT));
        // A user's own list, even one that only reorders the default, is theirs.
        assert_eq!(reorder(&g("chacha20-poly1305@openssh.com")), None);
        assert_eq!(
            reorder(&g(
                "chacha20-poly1305@openssh.com,aes128-gcm@openssh.com,aes256-gcm@openssh.com"
            )),
            None
        );
        assert_eq!(reorder(&g(AES_FIRST)), None);
        // Not OpenSSH's -G output at all.
        assert_eq!(reorder("usage: ssh [-46AaCf...]\n"), None);
    }

    /// What `ssh -G` prints for a host nothing configures (OpenSSH 9.2, abridged).
    const PLAIN: &str = "user root\nhostname 127.0.0.1\nport 2299\naddressfamily any\n\
                         canonicalizehostname false\ncheckhostip no\nproxyusefdpass no\n\
                         tcpkeepalive yes\nconnectionattempts 1\nconnecttimeout none\n";

    #[test]
    fn a_direct_connection_is_made_by_this_binary_with_what_ssh_would_use() {
        let exe = std::path::Path::new("/opt/x sync/bin/xsync");
        assert_eq!(
            direct(PLAIN, exe).as_deref(),
            Some("'/opt/x sync/bin/xsync' --xsync-connect any none 1 yes %h %p")
        );
        let with = |from: &str, to: &str| PLAIN.replace(from, to);
        assert_eq!(
            direct(
                &with("addressfamily any", "addressfamily inet6")
                    .replace("connecttimeout none", "connecttimeout 7")
                    .replace("connectionattempts 1", "connectionattempts 3")
                    .replace("tcpkeepalive yes", "tcpkeepalive no"),
                std::path::Path::new("/usr/bin/xsync"),
            )
            .as_deref(),
            Some("/usr/bin/xsync --xsync-connect inet6 7 3 no %h %p")
        );
        // ssh's own `%` tokens are expanded in the command: a `%` of the path is doubled.
        assert_eq!(
            direct(PLAIN, std::path::Path::new("/tmp/50%/xsync")).as_deref(),
            Some("'/tmp/50%%/xsync' --xsync-connect any none 1 yes %h %p")
        );
    }

    #[test]
    fn a_connection_the_user_configured_is_left_to_ssh() {
        let exe = std::path::Path::new("/usr/bin/xsync");
        for extra in [
            "proxycommand nc %h %p",
            "proxyjump bastion",
            "bindaddress 10.0.0.1",
            "bindinterface eth1",
        ] {
            assert_eq!(direct(&format!("{PLAIN}{extra}\n"), exe), None, "{extra}");
        }
        for (from, to) in [
            ("checkhostip no", "checkhostip yes"),
            ("canonicalizehostname false", "canonicalizehostname true"),
            ("proxyusefdpass no", "proxyusefdpass yes"),
            ("addressfamily any", "addressfamily bogus"),
            ("connecttimeout none", "connecttimeout soon"),
        ] {
            assert_eq!(direct(&PLAIN.replace(from, to), exe), None, "{to}");
        }
        // Not OpenSSH's -G output at all.
        assert_eq!(direct("usage: ssh [-46AaCf...]\n", exe), None);
    }
}
