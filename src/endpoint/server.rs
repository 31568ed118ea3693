//! `xsync --server`: the far end of a remote transfer, started by the client through the
//! remote shell. Its stdin/stdout carry the protocol; everything it would print for the
//! user is relayed to the client as `Log` frames, and its errors go to stderr, which the
//! remote shell forwards.

use crate::config::ParseWords;
use crate::error::Error;
use crate::exit::ExitCode;

use super::conn::{Conn, Wire, settle_stream};
use super::streams::Streams;
use super::{receiver, sender};
use crate::protocol::{FilterLine, Msg, Reader, Role, Writer, unexpected};
use crate::report::Report;
use std::ffi::OsString;
use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStringExt;
use std::sync::{Arc, Mutex};

/// Buffers the server's listing until it is relayed.
struct RelaySink(Arc<Mutex<Vec<u8>>>);

impl Write for RelaySink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `parse` turns the client's option words into options (the face's parser: this end
/// does not know clap).
pub fn run(stderr: &mut (dyn Write + Send), parse: ParseWords) -> ExitCode {
    let dup = |fd: std::os::fd::BorrowedFd<'_>| fd.try_clone_to_owned().map(std::fs::File::from);
    let (input, output) = match (
        dup(std::io::stdin().as_fd()),
        dup(std::io::stdout().as_fd()),
    ) {
        (Ok(i), Ok(o)) => (i, o),
        _ => {
            let _ = writeln!(stderr, "xsync: --server: cannot use stdin/stdout");
            return ExitCode::Ipc;
        }
    };
    let Conn {
        mut rd,
        mut wr,
        wire,
    } = Conn::over(input, output);
    let buf = Arc::new(Mutex::new(Vec::new()));
    let mut sink = RelaySink(buf.clone());
    let report = Report::new(&mut sink, stderr, false);
    let relay = || {
        let mut b = buf.lock().unwrap_or_else(|p| p.into_inner());
        (!b.is_empty()).then(|| String::from_utf8_lossy(&std::mem::take(&mut *b)).into_owned())
    };
    let code = match serve(&mut rd, &mut wr, &report, &relay, &wire, parse) {
        Ok(()) => report.code(),
        Err(e) => {
            // Tell the client why (it prints the message); a broken stream can't be told.
            if e.code != ExitCode::StreamIo {
                let _ = wr.send(&Msg::Abort {
                    code: e.code.code(),
                    msg: e.message().to_string(),
                });
                let _ = wr.flush();
            } else {
                report.error(e.code, e.message());
            }
            report.record(e.code);
            e.code
        }
    };
    report.flush();
    code
}

/// The remote shell's `~` rule for a path argument, which rsync's remote paths get by passing
/// through that shell (`host:~/backup/`, `host:~ann/www/`): xsync's paths travel inside the
/// protocol instead, so the server expands a leading `~` or `~user` itself. As in a shell,
/// an unknown user leaves the path as it is.
fn expand_tilde(path: Vec<u8>, home: &dyn Fn(Option<&str>) -> Option<String>) -> Vec<u8> {
    if path.first() != Some(&b'~') {
        return path;
    }
    let end = path.iter().position(|&b| b == b'/').unwrap_or(path.len());
    let user = match std::str::from_utf8(&path[1..end]) {
        Ok("") => None,
        Ok(u) => Some(u),
        Err(_) => return path,
    };
    match home(user) {
        Some(h) => {
            let mut out = h.into_bytes();
            out.extend_from_slice(&path[end..]);
            out
        }
        None => path,
    }
}

/// `--old-args`: rsync before 3.2.4 handed remote paths to the remote shell unquoted, which
/// split them at blanks (`host:'a b'` named `a` and `b`). The paths travel inside the
/// protocol here, so the server splits them as that shell would (quotes and backslashes
/// are not interpreted).
fn split_words(paths: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    paths
        .iter()
        .flat_map(|p| p.split(|b| matches!(b, b' ' | b'\t' | b'\n')))
        .filter(|w| !w.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

/// `$HOME` for the login's own `~` (what the shell uses), else the passwd entry.
fn home_of(user: Option<&str>) -> Option<String> {
    match user {
        None => std::env::var("HOME")
            .ok()
            .filter(|h| !h.is_empty())
            .or_else(|| crate::ids::home_dir(None)),
        Some(u) => crate::ids::home_dir(Some(u)),
    }
}

fn serve<R: std::io::Read + Send, W: Write + Send>(
    rd: &mut Reader<R>,
    wr: &mut Writer<W>,
    report: &Report<'_>,
    relay: sender::Relay<'_>,
    wire: &Wire,
    parse: ParseWords,
) -> Result<(), Error> {
    crate::protocol::handshake(rd, wr)?;
    let (role, args, paths, filter_lines, files) = match rd.recv()? {
        Msg::Start {
            role,
            args,
            paths,
            filters,
            files,
        } => (role, args, paths, filters, files),
        other => return Err(unexpected(&other, "Start")),
    };
    let mut argv: Vec<OsString> = vec!["xsync".into()];
    argv.extend(args.into_iter().map(|a| OsString::from_vec(a.into_vec())));
    let mut opts = parse(argv)?;
    opts.listed_as_sent = role == Role::Receiver;
    if let Some(utf8) = opts.client_utf8 {
        crate::error::set_client_utf8(utf8);
    }
    crate::fs::set_open_noatime(opts.open_noatime);
    if opts.json {
        report.relay_json();
    }
    if opts.log_format.is_some() {
        report.relay_log();
    }
    opts.filters = FilterLine::to_filters(&filter_lines)?;
    if opts.files_from.is_some() {
        for n in &files {
            n.check()?;
        }
        opts.files_from = Some(files);
    }
    // rsync passes --timeout and --bwlimit to its server: a pull's data is paced here, and
    // a client that hangs does not hold this end forever.
    settle_stream(rd, wr, wire, &opts, role)?;
    // What the remote shell would have done to rsync's path arguments: `~` for every path,
    // wildcards for sources only (a destination is one place).
    let mut words: Vec<Vec<u8>> = paths.into_iter().map(|p| p.into_vec()).collect();
    if opts.old_args {
        words = split_words(words);
        if role == Role::Receiver && words.len() != 1 {
            return Err(Error::usage(format!(
                "--old-args: the remote destination splits into {} words at the remote shell; a destination is one path",
                words.len()
            )));
        }
    }
    let paths: Vec<OsString> = words
        .into_iter()
        .map(|p| expand_tilde(p, &|u| home_of(u)))
        .flat_map(|p| match role {
            Role::Sender => crate::source::expand_wildcards(&p),
            Role::Receiver => vec![p],
        })
        .map(OsString::from_vec)
        .collect();
    let streams = Streams::server(&opts);
    match role {
        Role::Sender => {
            sender::send(rd, wr, &opts, &paths, report, relay, false, &streams)?;
        }
        Role::Receiver => {
            let dst = paths
                .first()
                .ok_or_else(|| Error::new(ExitCode::Protocol, "no destination from the client"))?;
            let lanes = streams.enabled().then_some(&streams as _);
            receiver::receive(rd, wr, &opts, dst, report, relay, None, lanes)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{expand_tilde, split_words};

    #[test]
    fn old_args_split_remote_paths_at_blanks_as_a_shell_would() {
        let w = |p: &[&str]| {
            split_words(p.iter().map(|s| s.as_bytes().to_vec()).collect())
                .into_iter()
                .map(|v| String::from_utf8(v).unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(w(&["a b/c"]), ["a", "b/c"]);
        assert_eq!(w(&["  a\t\tb  ", "c"]), ["a", "b", "c"]);
        assert_eq!(w(&["plain"]), ["plain"]);
    }

    #[test]
    fn a_leading_tilde_is_the_home_as_a_shell_has_it() {
        let home = |u: Option<&str>| match u {
            None => Some("/home/me".to_string()),
            Some("ann") => Some("/home/ann".to_string()),
            Some(_) => None,
        };
        let x = |p: &str| String::from_utf8(expand_tilde(p.as_bytes().to_vec(), &home)).unwrap();
        assert_eq!(x("~"), "/home/me");
        assert_eq!(x("~/"), "/home/me/");
        assert_eq!(x("~/b/c/"), "/home/me/b/c/");
        assert_eq!(x("~ann"), "/home/ann");
        assert_eq!(x("~ann/www"), "/home/ann/www");
        // Unknown users, tildes elsewhere and plain paths are left alone.
        assert_eq!(x("~bob/x"), "~bob/x");
        assert_eq!(x("a/~/b"), "a/~/b");
        assert_eq!(x("./~"), "./~");
        assert_eq!(x("/abs"), "/abs");
    }
}
