# Shared facts for nfkv's scripts; sourced, never run.
# Everything that is built once per machine lives in $NFKV_CACHE, outside the clone.

NFKV_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
NFKV_CACHE=${NFKV_CACHE:-$HOME/.cache/nfkv}
KERNEL_PKG=linux-source-6.12
BINDGEN_VERSION=0.72.1
VIRTME_NG_VERSION=1.42
# Debian's rustc-web carries the rust-src the kernel needs; rustup's rustc does not.
KERNEL_RUSTC=/usr/bin/rustc
export PATH="$HOME/.cargo/bin:$NFKV_CACHE/venv/bin:$PATH"

die() { echo "nfkv: $*" >&2; exit 1; }
say() { echo "==> $*" >&2; }

kernel_pkg_version() {
    dpkg-query -W -f '${Version}' "$KERNEL_PKG" 2>/dev/null ||
        die "$KERNEL_PKG is not installed: run scripts/setup"
}

# The unpacked Debian kernel source, shared by every kernel we build.
kernel_src() { echo "$NFKV_CACHE/src/$KERNEL_PKG-$(kernel_pkg_version)"; }

# Fragments making up kernel NAME: base for everything, plus NAME.config.
kernel_fragments() {
    local name=$1
    echo "$NFKV_ROOT/tests/kernel/base.config"
    [ "$name" = base ] || echo "$NFKV_ROOT/tests/kernel/$name.config"
}

# Build directory of kernel NAME, keyed by fragment contents, source package
# version and toolchain (what decides the kernel's contents), so an unchanged
# configuration is never rebuilt.
kernel_dir() {
    local name=$1 key
    [ -f "$NFKV_ROOT/tests/kernel/$name.config" ] || die "no kernel config tests/kernel/$name.config"
    key=$( {
        kernel_pkg_version
        cat $(kernel_fragments "$name")
        "$KERNEL_RUSTC" --version
        clang --version | head -n1
    } | sha256sum | cut -c1-16)
    echo "$NFKV_CACHE/kernel/$name-$key"
}

kernel_make_flags() { echo "LLVM=1 RUSTC=$KERNEL_RUSTC"; }

# What in a guest's dmesg counts as a kernel report (tests/vm/run fails on it).
DMESG_REPORT_PATTERN='BUG:|WARNING:|Oops|KASAN:|UBSAN:|general protection fault|Kernel panic|kernel BUG|possible circular locking|possible recursive locking|inconsistent lock state|lock held when returning|suspicious RCU usage|INFO: task .* blocked|unreferenced object|suspected memory leak|list_add corruption|list_del corruption|Call Trace:'

# KVM is broken on these machines: use it only when a probe boot succeeds
# (remembered per host boot), else TCG.
kvm_works() {
    [ -w /dev/kvm ] || return 1
    local stamp="$NFKV_CACHE/kvm-probe-$(cat /proc/sys/kernel/random/boot_id)"
    if [ ! -f "$stamp" ]; then
        if timeout 20 vng -r "$(kernel_dir base)/arch/x86/boot/bzImage" -- true </dev/null >/dev/null 2>&1; then
            echo yes > "$stamp"
        else
            echo no > "$stamp"
        fi
    fi
    [ "$(cat "$stamp")" = yes ]
}
