//! The nfkv ABI at the wire level, for the benchmark: raw setsockopt and
//! getsockopt on prebuilt requests, laid out from `include/nfkv.h` (through
//! the bindgen view in `nfkv_abi::uapi`) so that the timed paths do no
//! encoding and depend on nothing but the ABI. Used for nfkv.ko, nfkv_cref.ko
//! and the floor alike.

use nfkv_abi::uapi as u;
use std::cell::Cell;
use std::io;
use std::mem::{offset_of, size_of};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

pub const OP_SIZE: usize = size_of::<u::nfkv_op>();
pub const GET_SIZE: usize = size_of::<u::nfkv_get>();
pub const VALUE_SIZE: usize = size_of::<u::nfkv_value>();
const LIST_SIZE: usize = size_of::<u::nfkv_list>();
const LIST_REPLY_SIZE: usize = size_of::<u::nfkv_list_reply>();
const LIST_ENTRY_SIZE: usize = size_of::<u::nfkv_list_entry>();
const INFO_SIZE: usize = size_of::<u::nfkv_info>();
const BATCH_SIZE: usize = size_of::<u::nfkv_batch>();
const FLUSH_SIZE: usize = size_of::<u::nfkv_flush>();
const ALIGN: usize = u::NFKV_ALIGN as usize;
/// Buffer offered to each LIST call: the most a module fills per call.
pub const LIST_PAGE: usize = 1 << 20;

/// Command offsets from the optname base.
pub const SET_PUT: u32 = u::NFKV_SO_SET_PUT - u::NFKV_BASE_CTL;
pub const SET_DEL: u32 = u::NFKV_SO_SET_DEL - u::NFKV_BASE_CTL;
pub const SET_FLUSH: u32 = u::NFKV_SO_SET_FLUSH - u::NFKV_BASE_CTL;
pub const SET_BATCH: u32 = u::NFKV_SO_SET_BATCH - u::NFKV_BASE_CTL;
pub const GET_INFO: u32 = u::NFKV_SO_GET_INFO - u::NFKV_BASE_CTL;
pub const GET_VALUE: u32 = u::NFKV_SO_GET_VALUE - u::NFKV_BASE_CTL;
pub const GET_LIST: u32 = u::NFKV_SO_GET_LIST - u::NFKV_BASE_CTL;

fn put16(b: &mut [u8], off: usize, v: u16) {
    b[off..off + 2].copy_from_slice(&v.to_ne_bytes());
}
fn put32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_ne_bytes());
}
fn rd16(b: &[u8], off: usize) -> u16 {
    u16::from_ne_bytes(b[off..off + 2].try_into().unwrap())
}
fn rd32(b: &[u8], off: usize) -> u32 {
    u32::from_ne_bytes(b[off..off + 4].try_into().unwrap())
}

fn align_up(n: usize) -> usize {
    n.div_ceil(ALIGN) * ALIGN
}

/// `struct nfkv_op` + key + value: a PUT (`value` given) or a DEL.
pub fn encode_op(key: &[u8], value: Option<&[u8]>) -> Vec<u8> {
    let v = value.unwrap_or(&[]);
    let mut r = vec![0u8; OP_SIZE + key.len() + v.len()];
    let op = if value.is_some() {
        u::NFKV_OP_PUT
    } else {
        u::NFKV_OP_DEL
    };
    put16(&mut r, offset_of!(u::nfkv_op, op), op as u16);
    put16(&mut r, offset_of!(u::nfkv_op, key_len), key.len() as u16);
    put32(&mut r, offset_of!(u::nfkv_op, value_len), v.len() as u32);
    r[OP_SIZE..OP_SIZE + key.len()].copy_from_slice(key);
    r[OP_SIZE + key.len()..].copy_from_slice(v);
    r
}

/// `struct nfkv_batch` + PUT records (unconditional), each padded to 8.
pub fn encode_batch<'a>(puts: impl IntoIterator<Item = (&'a [u8], &'a [u8])>) -> Vec<u8> {
    let mut r = vec![0u8; BATCH_SIZE];
    let mut count = 0u32;
    for (k, v) in puts {
        let rec = encode_op(k, Some(v));
        let start = r.len();
        r.extend_from_slice(&rec);
        r.resize(start + align_up(rec.len()), 0);
        count += 1;
    }
    put32(&mut r, offset_of!(u::nfkv_batch, count), count);
    r
}

/// `struct nfkv_get` + key: the start of a GET_VALUE buffer.
pub fn encode_get(key: &[u8]) -> Vec<u8> {
    let mut r = vec![0u8; GET_SIZE + key.len()];
    put16(&mut r, offset_of!(u::nfkv_get, key_len), key.len() as u16);
    r[GET_SIZE..].copy_from_slice(key);
    r
}

/// A PF_INET raw socket, as ipvsadm and iptables use.
pub fn socket() -> OwnedFd {
    // SAFETY: plain syscall; the result is checked before use.
    let fd = unsafe {
        libc::socket(
            libc::AF_INET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::IPPROTO_RAW,
        )
    };
    assert!(fd >= 0, "socket: {}", io::Error::last_os_error());
    // SAFETY: `fd` is a fresh descriptor that nothing else owns.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// `setsockopt(fd, IPPROTO_IP, optname, req)`.
pub fn raw_set(fd: &OwnedFd, optname: u32, req: &[u8]) -> io::Result<()> {
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

/// `getsockopt(fd, IPPROTO_IP, optname, buf)`; the reply length.
pub fn raw_get(fd: &OwnedFd, optname: u32, buf: &mut [u8]) -> io::Result<usize> {
    let mut len = buf.len() as libc::socklen_t;
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
    Ok(len as usize)
}

/// The key of entry `i`: 16 bytes, spread over the key space.
pub fn key(i: u64) -> Vec<u8> {
    format!("k{:015}", i.wrapping_mul(0x9e37_79b9) % 1_000_000_000_000).into_bytes()
}

/// The value of entry `i`: `len` bytes, the first 8 of them `i`.
pub fn value(i: u64, len: usize) -> Vec<u8> {
    let mut v = vec![b'v'; len];
    v[..8].copy_from_slice(&i.to_le_bytes());
    v
}

/// One module (nfkv.ko or nfkv_cref.ko) through one socket.
pub struct Nf {
    pub name: &'static str,
    pub base: u32,
    fd: OwnedFd,
    /// (entries, value length) as last filled by [`Nf::fill`].
    filled: Cell<Option<(u64, usize)>>,
}

impl Nf {
    pub fn open(name: &'static str, base: u32) -> Nf {
        let nf = Nf {
            name,
            base,
            fd: socket(),
            filled: Cell::new(None),
        };
        let mut info = [0u8; INFO_SIZE];
        let n = nf
            .get(GET_INFO, &mut info)
            .unwrap_or_else(|e| panic!("{name}: info at optbase {base}: {e}"));
        assert_eq!(n, INFO_SIZE, "{name}: info length");
        let abi = rd32(&info, offset_of!(u::nfkv_info, abi_version));
        assert_eq!(abi, u::NFKV_ABI_VERSION, "{name}: ABI version");
        nf
    }

    #[inline]
    pub fn set(&self, cmd: u32, req: &[u8]) -> io::Result<()> {
        raw_set(&self.fd, self.base + cmd, req)
    }

    #[inline]
    pub fn get(&self, cmd: u32, buf: &mut [u8]) -> io::Result<usize> {
        raw_get(&self.fd, self.base + cmd, buf)
    }

    /// Entries in the table, from GET_INFO.
    pub fn entries(&self) -> u64 {
        let mut info = [0u8; INFO_SIZE];
        self.get(GET_INFO, &mut info).expect("info");
        rd32(&info, offset_of!(u::nfkv_info, entries)).into()
    }

    pub fn flush(&self) {
        self.set(SET_FLUSH, &[0u8; FLUSH_SIZE]).expect("flush");
        self.filled.set(Some((0, 0)));
        assert_eq!(self.entries(), 0, "{}: entries after flush", self.name);
    }

    /// Empties the table and puts entries `0..n` with values of `len` bytes,
    /// in batches of at most about 1 MiB.
    pub fn fill(&self, n: u64, len: usize) {
        self.flush();
        let chunk = ((1 << 20) / (len + 48)).clamp(1, 4096) as u64;
        let mut i = 0;
        while i < n {
            let end = (i + chunk).min(n);
            let kv: Vec<(Vec<u8>, Vec<u8>)> = (i..end).map(|j| (key(j), value(j, len))).collect();
            let req = encode_batch(kv.iter().map(|(k, v)| (&k[..], &v[..])));
            self.set(SET_BATCH, &req)
                .unwrap_or_else(|e| panic!("{}: fill: {e}", self.name));
            i = end;
        }
        assert_eq!(self.entries(), n, "{}: entries after fill", self.name);
        self.filled.set(Some((n, len)));
    }

    /// [`Nf::fill`] unless the table already holds what it would.
    pub fn ensure(&self, n: u64, len: usize) {
        if self.filled.get() != Some((n, len)) || self.entries() != n {
            self.fill(n, len);
        }
    }

    /// GET_VALUE of the prebuilt request `req` into `buf` (exactly the
    /// reply's size); checks the reply's length and that the value is entry
    /// `index`'s.
    #[inline]
    pub fn get_checked(&self, req: &[u8], buf: &mut [u8], index: u64) {
        buf[..req.len()].copy_from_slice(req);
        let n = self
            .get(GET_VALUE, buf)
            .unwrap_or_else(|e| panic!("{}: get: {e}", self.name));
        assert_eq!(n, buf.len(), "{}: GET reply length", self.name);
        assert_eq!(
            buf[VALUE_SIZE..VALUE_SIZE + 8],
            index.to_le_bytes(),
            "{}: GET value",
            self.name
        );
    }

    /// Lists the whole table page by page into `buf` (at least
    /// [`LIST_PAGE`] bytes), calling `visit` with each entry's key and value
    /// length; returns the number of entries. Checks every page's framing.
    #[inline]
    pub fn list_all(&self, buf: &mut [u8], mut visit: impl FnMut(&[u8], usize)) -> u64 {
        let mut after = [0u8; u::NFKV_MAX_KEY_LEN as usize];
        let mut after_len = 0usize;
        let mut total = 0u64;
        loop {
            buf[..LIST_SIZE].fill(0);
            put16(buf, offset_of!(u::nfkv_list, after_len), after_len as u16);
            buf[LIST_SIZE..LIST_SIZE + after_len].copy_from_slice(&after[..after_len]);
            let n = self
                .get(GET_LIST, buf)
                .unwrap_or_else(|e| panic!("{}: list: {e}", self.name));
            let count = rd32(buf, offset_of!(u::nfkv_list_reply, count));
            let flags = rd32(buf, offset_of!(u::nfkv_list_reply, flags));
            let size = rd32(buf, offset_of!(u::nfkv_list_reply, size)) as usize;
            assert_eq!(size, n, "{}: list reply size", self.name);
            let mut off = LIST_REPLY_SIZE;
            for _ in 0..count {
                let klen = rd16(buf, off + offset_of!(u::nfkv_list_entry, key_len)) as usize;
                let vlen = rd32(buf, off + offset_of!(u::nfkv_list_entry, value_len)) as usize;
                let k = &buf[off + LIST_ENTRY_SIZE..off + LIST_ENTRY_SIZE + klen];
                visit(k, vlen);
                after[..klen].copy_from_slice(k);
                after_len = klen;
                off += align_up(LIST_ENTRY_SIZE + klen + vlen);
            }
            assert_eq!(off, n, "{}: list page framing", self.name);
            total += u64::from(count);
            if flags & u::NFKV_LIST_F_MORE == 0 {
                return total;
            }
            assert!(count > 0, "{}: empty page with MORE", self.name);
        }
    }
}
