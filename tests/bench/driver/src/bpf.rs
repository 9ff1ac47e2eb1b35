//! A BPF hash map driven from userspace through bpf(2): the kernel key/value
//! table people reach for today, as the benchmark's peer. Raw syscalls with
//! the `union bpf_attr` layouts of include/uapi/linux/bpf.h (Linux 6.12),
//! one `#[repr(C)]` struct per command group; the kernel accepts an attr
//! shorter than its own and zero-fills the rest.

use crate::nf::{key, value};
use std::cell::Cell;
use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

// enum bpf_cmd
const BPF_MAP_CREATE: i32 = 0;
const BPF_MAP_LOOKUP_ELEM: i32 = 1;
const BPF_MAP_UPDATE_ELEM: i32 = 2;
const BPF_MAP_DELETE_ELEM: i32 = 3;
const BPF_MAP_LOOKUP_BATCH: i32 = 24;
const BPF_MAP_UPDATE_BATCH: i32 = 26;
const BPF_MAP_DELETE_BATCH: i32 = 27;
// enum bpf_map_type
const BPF_MAP_TYPE_HASH: u32 = 1;
/// Update flag: create or replace (the nfkv PUT without conditions).
pub const BPF_ANY: u64 = 0;

/// The BPF_MAP_CREATE part of `union bpf_attr`, up to `map_name`.
#[repr(C)]
#[derive(Default)]
struct MapCreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    inner_map_fd: u32,
    numa_node: u32,
    map_name: [u8; 16],
}

/// The BPF_MAP_*_ELEM part of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct ElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

/// The BPF_MAP_*_BATCH part of `union bpf_attr` (`batch`).
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

fn sys_bpf<A>(cmd: i32, attr: &mut A) -> io::Result<i64> {
    // SAFETY: `attr` is a valid, initialised `union bpf_attr` prefix of
    // `size_of::<A>()` bytes; every pointer inside it is valid for the
    // sizes the command implies (checked by the callers).
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd as libc::c_long,
            (attr as *mut A).cast::<libc::c_void>(),
            size_of::<A>() as libc::c_long,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(rc)
}

fn addr<T>(p: *const T) -> u64 {
    p as usize as u64
}

/// A `BPF_MAP_TYPE_HASH` with 16-byte keys, fixed-size values and the
/// default preallocation, filled with the benchmark's entries `0..n`.
pub struct BpfHash {
    fd: OwnedFd,
    pub key_len: usize,
    pub value_len: usize,
    /// Entries `0..entries` are in the map, and nothing else.
    entries: Cell<u64>,
}

impl BpfHash {
    pub fn create(max_entries: u32, key_len: usize, value_len: usize) -> io::Result<BpfHash> {
        let mut name = [0u8; 16];
        name[..10].copy_from_slice(b"nfkv_bench");
        let mut attr = MapCreateAttr {
            map_type: BPF_MAP_TYPE_HASH,
            key_size: key_len as u32,
            value_size: value_len as u32,
            max_entries,
            map_name: name,
            ..Default::default()
        };
        let fd = sys_bpf(BPF_MAP_CREATE, &mut attr)?;
        Ok(BpfHash {
            // SAFETY: a fresh descriptor that nothing else owns.
            fd: unsafe { OwnedFd::from_raw_fd(fd as i32) },
            key_len,
            value_len,
            entries: Cell::new(0),
        })
    }

    fn elem(&self, key: &[u8], value: u64, flags: u64) -> ElemAttr {
        assert_eq!(key.len(), self.key_len);
        ElemAttr {
            map_fd: self.fd.as_raw_fd() as u32,
            key: addr(key.as_ptr()),
            value,
            flags,
            ..Default::default()
        }
    }

    #[inline]
    pub fn lookup(&self, key: &[u8], value: &mut [u8]) -> io::Result<()> {
        assert_eq!(value.len(), self.value_len);
        let mut a = self.elem(key, addr(value.as_mut_ptr()), 0);
        sys_bpf(BPF_MAP_LOOKUP_ELEM, &mut a).map(drop)
    }

    #[inline]
    pub fn update(&self, key: &[u8], value: &[u8], flags: u64) -> io::Result<()> {
        assert_eq!(value.len(), self.value_len);
        let mut a = self.elem(key, addr(value.as_ptr()), flags);
        sys_bpf(BPF_MAP_UPDATE_ELEM, &mut a).map(drop)
    }

    #[inline]
    pub fn delete(&self, key: &[u8]) -> io::Result<()> {
        let mut a = self.elem(key, 0, 0);
        sys_bpf(BPF_MAP_DELETE_ELEM, &mut a).map(drop)
    }

    fn batch(&self, keys: &[u8], values: Option<&[u8]>) -> BatchAttr {
        let count = keys.len() / self.key_len;
        assert_eq!(keys.len(), count * self.key_len);
        if let Some(v) = values {
            assert_eq!(v.len(), count * self.value_len);
        }
        BatchAttr {
            keys: addr(keys.as_ptr()),
            values: values.map_or(0, |v| addr(v.as_ptr())),
            count: count as u32,
            map_fd: self.fd.as_raw_fd() as u32,
            ..Default::default()
        }
    }

    /// BPF_MAP_UPDATE_BATCH of the concatenated `keys` and `values`; fails
    /// unless every element was updated.
    #[inline]
    pub fn update_batch(&self, keys: &[u8], values: &[u8], flags: u64) -> io::Result<()> {
        let mut a = self.batch(keys, Some(values));
        a.elem_flags = flags;
        let want = a.count;
        sys_bpf(BPF_MAP_UPDATE_BATCH, &mut a)?;
        if a.count != want {
            return Err(io::Error::other(format!(
                "update batch: {} of {want}",
                a.count
            )));
        }
        Ok(())
    }

    /// BPF_MAP_DELETE_BATCH of the concatenated `keys`.
    pub fn delete_batch(&self, keys: &[u8]) -> io::Result<()> {
        let mut a = self.batch(keys, None);
        let want = a.count;
        sys_bpf(BPF_MAP_DELETE_BATCH, &mut a)?;
        if a.count != want {
            return Err(io::Error::other(format!(
                "delete batch: {} of {want}",
                a.count
            )));
        }
        Ok(())
    }

    /// Dumps the whole map with BPF_MAP_LOOKUP_BATCH, `keys.len() /
    /// key_len` elements per call, calling `visit` with each call's keys
    /// and values; returns the number of elements.
    #[inline]
    pub fn dump(
        &self,
        keys: &mut [u8],
        values: &mut [u8],
        mut visit: impl FnMut(&[u8], &[u8]),
    ) -> u64 {
        let chunk = (keys.len() / self.key_len) as u32;
        assert_eq!(values.len(), chunk as usize * self.value_len);
        // Hash maps take a 4-byte bucket cursor as the batch token.
        let (mut token_in, mut token_out) = (0u32, 0u32);
        let mut first = true;
        let mut total = 0u64;
        loop {
            let mut a = BatchAttr {
                in_batch: if first { 0 } else { addr(&token_in) },
                out_batch: addr(&mut token_out as *mut u32),
                keys: addr(keys.as_mut_ptr()),
                values: addr(values.as_mut_ptr()),
                count: chunk,
                map_fd: self.fd.as_raw_fd() as u32,
                ..Default::default()
            };
            let r = sys_bpf(BPF_MAP_LOOKUP_BATCH, &mut a);
            let n = a.count as usize;
            match &r {
                Ok(_) => {}
                // ENOENT: the end; `count` says how many came with it.
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
                Err(e) => panic!("bpf: lookup batch: {e}"),
            }
            assert!(n <= chunk as usize, "bpf: lookup batch count");
            visit(&keys[..n * self.key_len], &values[..n * self.value_len]);
            total += n as u64;
            if r.is_err() {
                return total;
            }
            token_in = token_out;
            first = false;
        }
    }

    /// Entries `0..n` in the map (values of entry `i`: `value(i)`), adding
    /// or deleting from the end of the range held now.
    pub fn ensure(&self, n: u64) {
        let have = self.entries.get();
        let range = if n > have { have..n } else { n..have };
        for lo in range.clone().step_by(4096) {
            let hi = (lo + 4096).min(range.end);
            let keys: Vec<u8> = (lo..hi).flat_map(key).collect();
            if n > have {
                let values: Vec<u8> = (lo..hi).flat_map(|i| value(i, self.value_len)).collect();
                self.update_batch(&keys, &values, BPF_ANY)
                    .expect("bpf: fill");
            } else {
                self.delete_batch(&keys).expect("bpf: shrink");
            }
        }
        self.entries.set(n);
        let mut v = vec![0u8; self.value_len];
        if n > 0 {
            self.lookup(&key(n - 1), &mut v)
                .expect("bpf: last entry present");
            assert_eq!(v[..8], (n - 1).to_le_bytes(), "bpf: last entry's value");
        }
        let e = self
            .lookup(&key(n), &mut v)
            .expect_err("bpf: entry past the end absent");
        assert_eq!(e.raw_os_error(), Some(libc::ENOENT));
    }
}
