//! The three modules under test, loaded and unloaded by the driver itself
//! (finit_module, delete_module) so that every round can swap which of
//! nfkv.ko and nfkv_cref.ko is loaded first.
//!
//! Why: the order is not neutral. nf_register_sockopt() adds each module at
//! the head of the nf_sockopt list, so the module loaded second is found
//! first by every call, and the two modules' code and data land at other
//! addresses. Under TCG the same binaries measured 0.94-0.99 (C loaded
//! second) against 1.11 (C loaded first) on "put overwrite @1", in one boot.
//! Alternating the order round by round gives each module each place equally
//! often. The floor module is always loaded last (head of the list).

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::AsRawFd;

/// Both tables get the same limits: 131072 entries, values up to 64 KiB (the
/// 16 KiB rows need more than the default 4096).
const TABLE_PARAMS: &str = "max_entries=131072 max_value_len=65536";

/// Where each module's optnames start (its `optbase` parameter).
pub const RUST_OPTBASE: u32 = 2048;
pub const C_OPTBASE: u32 = 2304;
pub const FLOOR_OPTBASE: u32 = 2560;

struct Module {
    /// The name delete_module knows it by.
    name: &'static CStr,
    path: String,
    params: String,
}

impl Module {
    fn load(&self) {
        let file = std::fs::File::open(&self.path).unwrap_or_else(|e| panic!("{}: {e}", self.path));
        let params = CString::new(self.params.as_str()).expect("module params hold no NUL");
        // SAFETY: finit_module reads the open descriptor and a NUL-terminated
        // string, both valid for the call.
        let rc =
            unsafe { libc::syscall(libc::SYS_finit_module, file.as_raw_fd(), params.as_ptr(), 0) };
        assert!(
            rc == 0,
            "insmod {} {}: {}",
            self.path,
            self.params,
            io::Error::last_os_error()
        );
    }

    /// Unloads the module if it is loaded.
    fn unload(&self) {
        // SAFETY: delete_module reads a NUL-terminated name, valid for the call.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_delete_module,
                self.name.as_ptr(),
                libc::O_NONBLOCK,
            )
        };
        let err = io::Error::last_os_error();
        assert!(
            rc == 0 || err.raw_os_error() == Some(libc::ENOENT),
            "rmmod {:?}: {err}",
            self.name
        );
    }
}

/// nfkv.ko, nfkv_cref.ko and nfkv_floor.ko, in one of two load orders.
pub struct Modules {
    rust: Module,
    c: Module,
    floor: Module,
    rust_first: Option<bool>,
}

impl Modules {
    /// The modules at these paths, none loaded yet.
    pub fn new(rust_ko: &str, c_ko: &str, floor_ko: &str) -> Modules {
        let module = |name, path: &str, params: String| Module {
            name,
            path: path.to_string(),
            params,
        };
        Modules {
            rust: module(
                c"nfkv",
                rust_ko,
                format!("optbase={RUST_OPTBASE} {TABLE_PARAMS}"),
            ),
            c: module(
                c"nfkv_cref",
                c_ko,
                format!("optbase={C_OPTBASE} {TABLE_PARAMS}"),
            ),
            floor: module(c"nfkv_floor", floor_ko, format!("optbase={FLOOR_OPTBASE}")),
            rust_first: None,
        }
    }

    /// Loads the modules with nfkv.ko first (`rust_first`) or nfkv_cref.ko
    /// first, then the floor; reloads all three if they are loaded in the
    /// other order. The tables start empty after a reload.
    pub fn arrange(&mut self, rust_first: bool) {
        if self.rust_first == Some(rust_first) {
            return;
        }
        self.unload();
        let (first, second) = if rust_first {
            (&self.rust, &self.c)
        } else {
            (&self.c, &self.rust)
        };
        first.load();
        second.load();
        self.floor.load();
        self.rust_first = Some(rust_first);
    }

    pub fn unload(&mut self) {
        for m in [&self.floor, &self.c, &self.rust] {
            m.unload();
        }
        self.rust_first = None;
    }
}
