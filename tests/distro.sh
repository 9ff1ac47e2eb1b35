#!/usr/bin/env bash
# Debian's own kernel, checked on the host before its VM run: the Rust
# artifacts scripts/distro-kernel installed into its headers, the module
# built against them, the refusal of a module of another rustc, and DKMS in
# the Debian root as a Debian user runs it. Leaves the DKMS-built module in
# out/dkms/RELEASE/nfkv.ko, which the CLI suite loads in the VM.
# Usage: tests/distro.sh [OTHER]: OTHER, a test kernel built with the
# machine's rustc (default 6.12-debug), provides a module of another rustc.
set -u
. "$(dirname "$0")/../scripts/lib.sh"
cd "$NFKV_ROOT"
other=${1:-6.12-debug}
kdir=$(scripts/distro-kernel) || { echo "FAIL distro::artifacts: scripts/distro-kernel failed"; echo "distro: 0 passed, 1 failed"; exit 1; }
root=$(distro_root)
release=$(distro_release)
headers=${kdir#"$root"}
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml)
kernel_rustc=$(sed -n 's/^CONFIG_RUSTC_VERSION_TEXT="\(.*\)"$/\1/p' "$kdir/.config")
suite=distro
. tests/host-checks.sh

# What the headers lacked is there, built by the kernel's own rustc.
t headers_have_the_rust_artifacts bash -c "
    for f in rust/libkernel.rmeta rust/libcore.rmeta rust/libmacros.so scripts/target.json; do
        test -s $kdir/\$f || { echo missing \$f; exit 1; }
    done
    grep -qxF '$kernel_rustc' $kdir/rust/.nfkv-artifacts"

# The module make builds for it: the kernel's release, compiled by the
# kernel's gcc and rustc (gcc writes "GCC: " and its version text without
# the command name into .comment), every Rust symbol it needs exported.
cc_text=$(sed -n 's/^CONFIG_CC_VERSION_TEXT="\(.*\)"$/\1/p' "$kdir/.config")
module_matches() { # module_matches KO
    local comment
    modinfo -F vermagic "$1" | grep -q "^$release " || { echo "vermagic: $(modinfo -F vermagic "$1")"; return 1; }
    comment=$(readelf -p .comment "$1" | sed -n 's/^ *\[ *[0-9a-f]*\] *//p' | sort -u)
    [ "$comment" = "$(printf '%s\n' "GCC: ${cc_text#* }" "rustc version ${kernel_rustc#rustc }" | sort -u)" ] ||
        { echo ".comment: $comment"; return 1; }
    scripts/check-symbols "$kdir" "$1"
}
export -f module_matches
export release cc_text kernel_rustc kdir
t module_is_built_by_the_kernels_toolchain bash -c "
    make -s module KERNEL=debian >/dev/null && module_matches out/debian/nfkv.ko"

# A module of another rustc is refused before insmod, naming both versions:
# the module for test kernel OTHER (built by the machine's rustc) against
# Debian's exports.
other_ko=out/$other/nfkv.ko
other_rustc=$("$KERNEL_RUSTC" --version)
make -s module KERNEL="$other" >/dev/null 2>&1
refuses module_of_another_rustc_is_refused "built with '$other_rustc', the kernel with '$kernel_rustc'" \
    scripts/check-symbols "$kdir" "$other_ko"

# DKMS in the Debian root, as there: add, build, install for the kernel's
# release (its headers are /lib/modules/RELEASE/build).
src=/usr/src/nfkv-$version
rm -rf "$root$src" && mkdir -p "$root$src"
git ls-files -z --cached --others --exclude-standard | xargs -0 cp --parents -t "$root$src"
in_sysroot "$root" dkms remove -m nfkv -v "$version" --all >/dev/null 2>&1
t dkms_install_in_the_debian_root bash -c "
    . scripts/lib.sh
    in_sysroot $root dkms install -m nfkv -v $version -k $release ||
        { tail -n 8 $root/var/lib/dkms/nfkv/$version/build/make.log; exit 1; }
    ko=\$(ls $root/lib/modules/$release/updates/dkms/nfkv.ko*) &&
    mkdir -p out/dkms/$release && rm -f out/dkms/$release/nfkv.ko &&
    case \$ko in *.xz) xz -dc \$ko ;; *.zst) zstd -dc \$ko ;; *) cat \$ko ;; esac > out/dkms/$release/nfkv.ko &&
    module_matches out/dkms/$release/nfkv.ko"
in_sysroot "$root" dkms remove -m nfkv -v "$version" --all >/dev/null 2>&1
rm -rf "$root$src"

echo "distro: $passed passed, $failed failed"
[ "$failed" = 0 ]
