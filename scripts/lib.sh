# Shared facts for nfkv's scripts; sourced, never run.
# Everything that is built once per machine lives in $NFKV_CACHE, outside the clone.

NFKV_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
NFKV_CACHE=${NFKV_CACHE:-$HOME/.cache/nfkv}
BINDGEN_VERSION=0.72.1
VIRTME_NG_VERSION=1.42
# The Python package's test runner (scripts/python-env; maturin and pyo3 are pinned in python/)
PYTEST_VERSION=9.2.0
# Debian's rustc-web carries the rust-src the kernel needs; rustup's rustc does not.
KERNEL_RUSTC=/usr/bin/rustc
export PATH="$HOME/.cargo/bin:$NFKV_CACHE/venv/bin:$PATH"

die() { echo "nfkv: $*" >&2; exit 1; }
say() { echo "==> $*" >&2; }

# --- The kernels nfkv supports: the one table of per-version facts. ---------
# Test kernels are named VERSION or VERSION-FLAVOR (flavor base, the default,
# or debug); `base` and `debug` alone mean the 6.12 ones.
SUPPORTED_KERNELS="6.12 7.3"
DEFAULT_KERNEL=6.12

# kernel_facts VERSION: sets KF_PKG (Debian source package), KF_SUITE (the
# Debian suite it comes from when it is not the machine's own release, else
# empty) and KF_LLVM (the LLVM major version that builds it: clang, lld and the
# libclang bindgen loads all come from that one version).
kernel_facts() {
    case $1 in
        6.12) KF_PKG=linux-source-6.12 KF_SUITE= KF_LLVM=14 KF_BOOT= ;;
        # 7.3 needs LLVM >= 17.0.1 (its scripts/min-tool-version.sh).
        # KF_BOOT: kernel parameters for the test VM. QEMU's TCG CPU offers
        # 5-level paging; with it the 7.3.4 KASAN debug kernel reports a
        # wild-memory-access of its own in an early interrupt while booting
        # (identify_cpu, 0.01 s, before userspace), 6.12 does not. With
        # 4-level paging (no5lvl) 7.3 boots clean.
        7.3) KF_PKG=linux-source-7.3 KF_SUITE=trixie-backports KF_LLVM=19 KF_BOOT=no5lvl ;;
        *) die "unknown kernel version '$1' (supported: $SUPPORTED_KERNELS)" ;;
    esac
}

# parse_kernel NAME: sets KVERSION and KFLAVOR from a test kernel's name.
# `debian` is Debian's own kernel (KFLAVOR stock, see scripts/distro-kernel).
parse_kernel() {
    case $1 in
        debian) KVERSION=debian KFLAVOR=stock KF_BOOT=; return ;;
        base | debug) KVERSION=$DEFAULT_KERNEL KFLAVOR=$1 ;;
        *-base | *-debug) KVERSION=${1%-*} KFLAVOR=${1##*-} ;;
        *) KVERSION=$1 KFLAVOR=base ;;
    esac
    kernel_facts "$KVERSION"
}


# --- Debian's stock kernel (scripts/distro-kernel). ------------------------
# The kernel of linux-image-amd64 in DISTRO_SUITE-backports, with its
# toolchain from DISTRO_SUITE, all inside a Debian root in the cache (its
# gcc and rustc need that release's libc).
DISTRO_SUITE=trixie
distro_root() { echo "$NFKV_CACHE/distro/$DISTRO_SUITE"; }
# The kernel image installed in the root (host path), and its release
# (e.g. 7.3.4+deb13-amd64).
distro_image() { echo "$(distro_root)$(cat "$(distro_root)/.nfkv-image")"; }
distro_release() { cat "$(distro_root)/.nfkv-release" 2>/dev/null || die "no Debian kernel in $(distro_root): run scripts/distro-kernel"; }

# The machine's Debian mirror, as its own apt configuration names it.
debian_mirror() {
    local mirror
    mirror=$(awk '/^URIs:/ { for (i = 2; i <= NF; i++) if ($i !~ /security/) { print $i; exit } }' \
        /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
    [ -n "$mirror" ] || mirror=$(awk '$1 == "deb" && $2 !~ /security/ { print $2; exit }' /etc/apt/sources.list 2>/dev/null || true)
    [ -n "$mirror" ] || die "cannot find the Debian mirror in the machine's apt sources"
    echo "$mirror"
}

# The Rust symbols kernel tree KDIR exports (its Module.symvers), sorted.
rust_exports() { awk '$2 ~ /^_R/ { print $2 }' "$1/Module.symvers" | sort -u; }

# kdir_sysroot KDIR: the Debian root (marked .nfkv-sysroot) holding kernel
# tree KDIR, if any: that tree is built with the root's own toolchain.
kdir_sysroot() {
    local d=$1
    while [ "$d" != / ] && [ "$d" != . ] && [ -n "$d" ]; do
        [ -f "$d/.nfkv-sysroot" ] && { echo "$d"; return 0; }
        d=$(dirname "$d")
    done
    return 1
}

# in_sysroot ROOT CMD...: runs CMD chrooted into ROOT, in a mount namespace
# of its own with /proc, /sys, /dev and this clone (at its own path) mounted.
in_sysroot() {
    local root=$1; shift
    mkdir -p "$root$NFKV_ROOT"
    unshare -m --propagation private -- /bin/sh -c '
        root=$1 clone=$2; shift 2
        mount -t proc proc "$root/proc" && mount -t sysfs sys "$root/sys" &&
        mount --rbind /dev "$root/dev" && mount --bind "$clone" "$root$clone" &&
        exec chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
            HOME=/root LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive "$@"' \
        sh "$root" "$NFKV_ROOT" "$@"
}

# The major version of the compiler a kernel build tree was configured with:
# kdir_llvm for clang (LLVM), kdir_gcc for gcc; fails for the other one.
kdir_compiler_major() {
    local v
    v=$(sed -n "s/^$2=\([0-9]*\)\$/\1/p" "$1/.config" 2>/dev/null)
    [ -n "$v" ] && [ "$v" != 0 ] || return 1
    echo $((v / 10000))
}
kdir_llvm() { kdir_compiler_major "$1" CONFIG_CLANG_VERSION; }
kdir_gcc() { kdir_compiler_major "$1" CONFIG_GCC_VERSION; }

# The source tarball of kernel VERSION (fetched on first use).
kernel_tarball() { "$NFKV_ROOT/scripts/fetch-kernel-source" "$1"; }

kernel_pkg_version() {
    kernel_facts "$1"
    if [ -n "$KF_SUITE" ]; then
        cat "$NFKV_CACHE/debs/$KF_PKG/version" 2>/dev/null || echo unfetched
    else
        dpkg-query -W -f '${Version}' "$KF_PKG" 2>/dev/null ||
            die "$KF_PKG is not installed: run scripts/setup"
    fi
}

# The unpacked Debian kernel source of VERSION, shared by its flavors.
kernel_src() { kernel_facts "$1"; echo "$NFKV_CACHE/src/$KF_PKG-$(kernel_pkg_version "$1")"; }

# Fragments making up kernel NAME: base.config, then VERSION.config (what one
# kernel version needs differently, with the reason next to it), then
# debug.config for the debug flavor.
kernel_fragments() {
    parse_kernel "$1"
    local d="$NFKV_ROOT/tests/kernel" f
    for f in base "$KVERSION" "$KFLAVOR"; do
        [ -f "$d/$f.config" ] && echo "$d/$f.config"
    done | awk '!seen[$0]++'
}

# The option lines of FRAGMENTS, the last one of each option winning.
effective_options() {
    awk '/^CONFIG_[A-Za-z0-9_]+=/ { sym = $0; sub(/=.*/, "", sym) }
         /^# CONFIG_[A-Za-z0-9_]+ is not set$/ { sym = $2 }
         sym != "" { if (!(sym in line)) order[n++] = sym; line[sym] = $0; sym = "" }
         END { for (i = 0; i < n; i++) print line[order[i]] }' "$@"
}

# Build directory of kernel NAME, keyed by the fragments' options (not their
# comments), source package version and toolchain (what decides the kernel's
# contents), so an unchanged configuration is never rebuilt.
kernel_dir() {
    local key
    parse_kernel "$1"
    key=$( {
        echo "$KF_PKG $(kernel_pkg_version "$KVERSION")"
        effective_options $(kernel_fragments "$1")
        "$KERNEL_RUSTC" --version
        "clang-$KF_LLVM" --version 2>/dev/null | head -n1
    } | sha256sum | cut -c1-16)
    echo "$NFKV_CACHE/kernel/$KVERSION-$KFLAVOR-$key"
}

# What in a guest's dmesg counts as a kernel report (tests/vm/run fails on it).
DMESG_REPORT_PATTERN='BUG:|WARNING:|Oops|KASAN:|UBSAN:|KCSAN:|general protection fault|Kernel panic|kernel BUG|possible circular locking|possible recursive locking|inconsistent lock state|lock held when returning|suspicious RCU usage|rcu: INFO: |detected stalls|soft lockup|INFO: task .* blocked|unreferenced object|suspected memory leak|list_add corruption|list_del corruption|Call Trace:'

# Taint flags a test run may add (tests/vm/run): TAINT_OOT_MODULE (12) and
# TAINT_UNSIGNED_MODULE (13), which loading nfkv.ko itself sets.
ALLOWED_TAINTS=$(( (1 << 12) | (1 << 13) ))

# KVM is broken on these machines: use it only when a probe boot of kernel
# image $1 succeeds (remembered per host boot), else TCG.
kvm_works() {
    [ -w /dev/kvm ] || return 1
    local stamp="$NFKV_CACHE/kvm-probe-$(cat /proc/sys/kernel/random/boot_id)"
    if [ ! -f "$stamp" ]; then
        if timeout 20 vng -r "$1" -- true </dev/null >/dev/null 2>&1; then
            echo yes > "$stamp"
        else
            echo no > "$stamp"
        fi
    fi
    [ "$(cat "$stamp")" = yes ]
}
