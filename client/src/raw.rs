//! The ABI without the library's checks: a socket, one `setsockopt` or
//! `getsockopt`, and the wire form of one op. For tests and benchmarks that
//! send requests the library would refuse or that must not be re-encoded in
//! a timed loop; field offsets and sizes come from [`nfkv_abi::codec`].

use nfkv_abi::codec::Op;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// A PF_INET socket of `ty`/`proto` (close-on-exec).
pub fn open_socket(ty: i32, proto: i32) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall; the result is checked before use.
    let fd = unsafe { libc::socket(libc::AF_INET, ty | libc::SOCK_CLOEXEC, proto) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `setsockopt(fd, IPPROTO_IP, optname, req)`. A request longer than the
/// `int` optlen can say fails with E2BIG here instead of being truncated.
#[inline]
pub fn raw_set(fd: &OwnedFd, optname: u32, req: &[u8]) -> io::Result<()> {
    if i32::try_from(req.len()).is_err() {
        return Err(io::Error::from_raw_os_error(libc::E2BIG));
    }
    // SAFETY: `req` is valid for `req.len()` bytes for the call.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_IP,
            optname as i32,
            req.as_ptr().cast(),
            req.len() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `getsockopt(fd, IPPROTO_IP, optname, buf)`; returns the reply length. A
/// buffer longer than the `int` optlen can say is offered as `i32::MAX`
/// bytes; a reply length beyond the buffer is refused (an error without
/// errno).
#[inline]
pub fn raw_get(fd: &OwnedFd, optname: u32, buf: &mut [u8]) -> io::Result<usize> {
    let mut len = buf.len().min(i32::MAX as usize) as libc::socklen_t;
    // SAFETY: `buf` is valid for `len` bytes and `len` for writing.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_IP,
            optname as i32,
            buf.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    if len as usize > buf.len() {
        return Err(io::Error::other(format!(
            "getsockopt reported a {len}-byte reply in a {}-byte buffer",
            buf.len()
        )));
    }
    Ok(len as usize)
}

/// The wire form of one op, unchecked: header, key, value.
pub fn encode_op(op: &Op<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(op.wire_len());
    out.extend_from_slice(&op.encode_header());
    out.extend_from_slice(op.key);
    out.extend_from_slice(op.value);
    out
}
