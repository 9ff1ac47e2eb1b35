//! The nfkv ABI at the wire level, for the benchmark: raw setsockopt and
//! getsockopt (`nfkv::raw`) on requests prebuilt with the ABI codec
//! (`nfkv_abi::codec`, the module's own), so that the timed paths do no
//! encoding. Used for nfkv.ko, nfkv_cref.ko and the floor alike.

use nfkv::raw::{self, open_socket};
use nfkv::{Batch, Condition};
use nfkv_abi::codec::{self, Info, ListRequest, Op, OpKind, Reject};
use std::cell::Cell;
use std::io;
use std::os::fd::OwnedFd;

pub use nfkv_abi::codec::cmd::{
    GET_INFO, GET_LIST, GET_VALUE, SET_BATCH, SET_DEL, SET_FLUSH, SET_PUT,
};
pub use nfkv_abi::codec::VALUE_SIZE;

/// Buffer offered to each LIST call: the most a module fills per call.
pub const LIST_PAGE: usize = 1 << 20;

/// `struct nfkv_op` + key + value: a PUT (`value` given) or a DEL.
pub fn encode_op(key: &[u8], value: Option<&[u8]>) -> Vec<u8> {
    raw::encode_op(&Op {
        kind: if value.is_some() {
            OpKind::Put
        } else {
            OpKind::Del
        },
        cond: Condition::default(),
        key,
        value: value.unwrap_or_default(),
    })
}

/// `struct nfkv_batch` + PUT records (unconditional), each padded to 8.
pub fn encode_batch<'a>(puts: impl IntoIterator<Item = (&'a [u8], &'a [u8])>) -> Vec<u8> {
    let mut b = Batch::new();
    for (k, v) in puts {
        b.put(k, v, Condition::default());
    }
    b.encode().expect("a batch within the ABI's limits")
}

/// `struct nfkv_get` + key: the start of a GET_VALUE buffer.
pub fn encode_get(key: &[u8]) -> Vec<u8> {
    let mut r = vec![0u8; codec::GET_SIZE + key.len()];
    codec::encode_get(&mut r, key);
    r
}

/// A PF_INET raw socket, as ipvsadm and iptables use.
pub fn socket() -> OwnedFd {
    open_socket(libc::SOCK_RAW, libc::IPPROTO_RAW).expect("socket")
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
        let info = nf
            .info()
            .unwrap_or_else(|e| panic!("{name}: info at optbase {base}: {e}"));
        assert_eq!(info.abi_version, nfkv::ABI_VERSION, "{name}: ABI version");
        nf
    }

    #[inline]
    pub fn set(&self, cmd: u32, req: &[u8]) -> io::Result<()> {
        raw::raw_set(&self.fd, self.base + cmd, req)
    }

    #[inline]
    pub fn get(&self, cmd: u32, buf: &mut [u8]) -> io::Result<usize> {
        raw::raw_get(&self.fd, self.base + cmd, buf)
    }

    /// GET_INFO, whole.
    fn info(&self) -> io::Result<Info> {
        let mut info = [0u8; codec::INFO_SIZE];
        let n = self.get(GET_INFO, &mut info)?;
        Info::decode(&info[..n]).map_err(|_| io::Error::other("short info reply"))
    }

    /// Entries in the table, from GET_INFO.
    pub fn entries(&self) -> u64 {
        self.info().expect("info").entries.into()
    }

    pub fn flush(&self) {
        self.set(SET_FLUSH, &[0u8; codec::FLUSH_SIZE])
            .expect("flush");
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
        let mut after = [0u8; nfkv::MAX_KEY_LEN];
        let mut after_len = 0usize;
        let mut total = 0u64;
        loop {
            ListRequest {
                after: &after[..after_len],
                prefix: b"",
            }
            .encode(buf);
            let n = self
                .get(GET_LIST, buf)
                .unwrap_or_else(|e| panic!("{}: list: {e}", self.name));
            let page = codec::decode_list_page(&buf[..n], |e| {
                visit(e.key, e.value.len());
                after[..e.key.len()].copy_from_slice(e.key);
                after_len = e.key.len();
                Ok::<(), Reject>(())
            })
            .unwrap_or_else(|_| panic!("{}: list page framing", self.name));
            assert_eq!(page.size as usize, n, "{}: list reply size", self.name);
            total += u64::from(page.count);
            if !page.more {
                return total;
            }
            assert!(page.count > 0, "{}: empty page with MORE", self.name);
        }
    }
}
