//! In-kernel callers: a module calling nf_setsockopt() passes a kernel
//! pointer in its sockptr_t, and nfkv's set path copies it as such (no
//! `copy_from_user`). tests/gate/nfkv_kcaller.ko, built for this kernel by
//! tests/run-all, sends such requests when it loads.

use crate::ensure;
use crate::harness::*;
use std::os::fd::AsRawFd;

pub fn suite() -> Vec<Test> {
    crate::tests![kernel_pointer_requests_are_copied_whole]
}

fn kernel_pointer_requests_are_copied_whole() -> TestResult {
    let kv = fresh()?;
    let ko = "tests/gate/nfkv_kcaller.ko";
    let file = std::fs::File::open(ko)
        .map_err(|e| format!("{ko}: {e} (tests/run-all builds it for the debug kernels)"))?;
    // SAFETY: finit_module reads the open descriptor and a NUL-terminated
    // string, both valid for the call.
    let r = unsafe { libc::syscall(libc::SYS_finit_module, file.as_raw_fd(), c"".as_ptr(), 0) };
    ensure!(
        r == 0,
        "insmod {ko}: {} (its dmesg line names the request)",
        std::io::Error::last_os_error()
    );
    let name = c"nfkv_kcaller";
    // SAFETY: delete_module reads a NUL-terminated name.
    let r = unsafe { libc::syscall(libc::SYS_delete_module, name.as_ptr(), libc::O_NONBLOCK) };
    ensure!(
        r == 0,
        "rmmod nfkv_kcaller: {}",
        std::io::Error::last_os_error()
    );
    let d = dump(&kv)?;
    let got: Vec<(&[u8], usize, Option<u8>)> = d
        .contents
        .iter()
        .map(|e| {
            let first = e.value.first().copied();
            let same = e.value.iter().all(|&b| Some(b) == first);
            (
                e.key.as_slice(),
                e.value.len(),
                if same { first } else { None },
            )
        })
        .collect();
    let want: Vec<(&[u8], usize, Option<u8>)> = vec![
        (b"kptr-batch1", 300, Some(b'1')),
        (b"kptr-batch2", 400, Some(b'2')),
        (b"kptr-big", 3000, Some(b'B')),
        (b"kptr-small", 10, Some(b'S')),
    ];
    ensure!(
        got == want,
        "the table holds {:?} (key, value length, the byte it repeats), not {want:?}",
        got.iter()
            .map(|(k, n, b)| (String::from_utf8_lossy(k), n, b))
            .collect::<Vec<_>>()
    );
    ck("flush", kv.flush())
}
