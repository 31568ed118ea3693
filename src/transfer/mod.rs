//! The file-data phase of a connection, both ends.
//!
//! The receiver streams requests from one thread while it reads data on another, so
//! requests and data flow at once with no per-file round trip. A file that exists on the
//! receiver is sent as a delta against it (unless `-W`): the receiver signs its basis, the
//! sender answers with copy/literal instructions, and the receiver rebuilds the file in a
//! temporary with matched runs copied in the kernel. Files of 64 MiB and more first go
//! through one coarse exchange (strong hashes and anchors of 256 KiB blocks, all big files in
//! one round trip): the sender places equal and moved blocks, keeps that match for the
//! file's request, and only the parts it could not place are signed and searched.
//!
//! Every file ends with its digest (the blake3 of the source content, or for a coarse file
//! [`delta::coarse_digest`], which the sender gets from its one read of the source); the
//! receiver checks what it built before the rename and, on a mismatch, fetches the file
//! whole once. A coarse file's temporary is prefilled with its basis in the pass that hashes
//! the basis, so its check reads back only the blocks the delta wrote again (without a
//! prefill, a thread hashes the temporary right behind the writer).

use crate::delta::{self, Applier, CoarseMatch, CoarsePart, Op, Segment, Signature};
use crate::error::{Error, io_message, show};
use crate::exec::{Exec, Pending};
use crate::exit::ExitCode;
use crate::fs::cstr;
use crate::progress::Ticket;
use crate::protocol::{
    BATCH, CHUNK, CoarseItem, Digest, Msg, Part, Reader, Request, WireOp, Writer, check_rel_path,
    unexpected, wire_digest,
};
use crate::report::Report;
use crate::source::Tops;
use crate::tree::{Entry, Kind};
use crate::write::{StepError, TempFile};
use rayon::prelude::*;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;

/// Files up to this size are read whole (in parallel) by the sender and written whole (in
/// parallel) by the receiver; larger ones stream in chunks.
const SMALL: u64 = 1 << 20;
/// A `Get` batch ends after about this many bytes of files, so the sender's read-ahead of
/// one batch while it sends the previous one stays small (300 × 1 MB files were held whole).
const GET_BYTES: u64 = 8 << 20;
/// At most this many bytes of one batch's small files are read into memory ahead.
const PRELOAD: u64 = 16 << 20;

/// Smallest fine block inside a coarse range: measured as the best trade between
/// signature bytes and literal bytes for scattered 4 KiB edits.
const RANGE_MIN_BLOCK: u32 = 4096;

/// Longest piece of a copy applied before the verifier hears of the progress.
const VERIFY_STEP: u64 = 32 << 20;

fn stream_error(msg: impl Into<String>) -> Error {
    Error::new(
        ExitCode::StreamIo,
        format!("protocol error: {}", msg.into()),
    )
}

mod receive;
mod send;
mod spread;

pub use receive::*;
pub use send::*;
pub use spread::{Lane, Lanes, send_range, serve_lane};
use spread::{fetch_spread, spreadable};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::Meta;
    use crate::tree::virtual_dir_meta;

    #[test]
    fn a_small_file_is_read_as_the_scan_saw_it_or_streamed_when_it_grew() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        std::fs::write(&path, b"12345").expect("write");
        let read = |size: u64| {
            let fd = OwnedFd::from(std::fs::File::open(&path).expect("open"));
            read_small(&fd, size).expect("read")
        };
        assert_eq!(read(5).as_deref(), Some(&b"12345"[..]));
        // Shrank since the scan: shorter. Grew past it: None, streamed instead.
        assert_eq!(read(9).as_deref(), Some(&b"12345"[..]));
        assert_eq!(read(4), None);
        assert_eq!(read(0), None);
        std::fs::write(&path, b"").expect("write");
        assert_eq!(read(0).as_deref(), Some(&b""[..]));
    }

    #[test]
    fn the_sender_serves_only_regular_files_it_listed() {
        let node = |name: &[u8], kind: Kind| {
            Entry::new(
                name.into(),
                Meta {
                    kind,
                    ..virtual_dir_meta()
                },
            )
        };
        let mut root = node(b".", Kind::Dir);
        let mut dir = node(b"d", Kind::Dir);
        dir.children.push(node(b"f", Kind::File));
        root.children = vec![dir, node(b"file", Kind::File), node(b"link", Kind::Symlink)];
        assert!(check_served(&root, b"file").is_ok());
        assert!(check_served(&root, b"d/f").is_ok());
        for bad in [
            &b"link/passwd"[..],
            b"link",
            b"d",
            b"missing",
            b"../file",
            b"/etc/passwd",
            b"",
        ] {
            let e = check_served(&root, bad).expect_err("served");
            assert_eq!(e.code, ExitCode::StreamIo, "{bad:?}");
        }
    }
}
