//! The receiver's applier: a delta's ops written out at explicit offsets, matched runs
//! copied in the kernel ([`crate::fs::copy_range`]).

use super::*;

/// Receiver: writes a delta's ops sequentially to `out` from `out_offset`, with explicit
/// offsets (the file position is not used, so `out` must not be `O_APPEND`). Copies go
/// through `copy_file_range`, falling back to pread/pwrite where the kernel refuses.
pub struct Applier<'a> {
    basis: BorrowedFd<'a>,
    basis_len: u64,
    out: BorrowedFd<'a>,
    out_offset: u64,
    written: u64,
    pub(super) in_kernel: bool,
    buf: Vec<u8>,
}

impl<'a> Applier<'a> {
    /// `basis_len` bounds every copy: a peer's copy past it is an error.
    pub fn new(
        basis: BorrowedFd<'a>,
        basis_len: u64,
        out: BorrowedFd<'a>,
        out_offset: u64,
    ) -> Self {
        Applier {
            basis,
            basis_len,
            out,
            out_offset,
            written: 0,
            in_kernel: true,
            buf: Vec::new(),
        }
    }

    /// Bytes written so far (the next op lands at `out_offset + written()`).
    pub fn written(&self) -> u64 {
        self.written
    }

    pub fn apply(&mut self, op: Op<'_>) -> io::Result<()> {
        match op {
            Op::Literal(data) => {
                self.write_at(data)?;
                self.written += data.len() as u64;
                Ok(())
            }
            Op::Copy { offset, len } => {
                match offset.checked_add(len) {
                    Some(end) if end <= self.basis_len => {}
                    _ => {
                        return Err(invalid(format!(
                            "copy of {len} bytes at {offset} is past the basis ({} bytes)",
                            self.basis_len
                        )));
                    }
                }
                self.copy(offset, len)
            }
        }
    }

    fn out_pos(&self) -> io::Result<u64> {
        self.out_offset
            .checked_add(self.written)
            .ok_or_else(|| invalid("output offset overflows".into()))
    }

    fn copy(&mut self, offset: u64, len: u64) -> io::Result<()> {
        let n = crate::fs::copy_range(
            self.basis,
            offset,
            self.out,
            self.out_pos()?,
            len,
            &mut self.in_kernel,
            &mut self.buf,
        )
        .map_err(|e| match e {
            crate::fs::CopyError::Read(e) | crate::fs::CopyError::Write(e) => e,
        })?;
        self.written += n;
        if n < len {
            return Err(basis_shrank());
        }
        Ok(())
    }

    /// Writes all of `data` at the current output position (does not advance it).
    fn write_at(&self, mut data: &[u8]) -> io::Result<()> {
        let mut at = self.out_pos()?;
        while !data.is_empty() {
            match rustix::io::pwrite(self.out, data, at) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    data = &data[n..];
                    at += n as u64;
                }
                Err(Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

pub(super) fn basis_shrank() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "delta: basis file is shorter than when it was signed",
    )
}
