#!/usr/bin/env bash
# Shipping like a real out-of-tree module, checked on the host: make install,
# DKMS against the test kernel tree, and the one-message refusals of a KDIR
# that cannot build nfkv. Usage: tests/ship.sh KERNEL_NAME
# Leaves the DKMS-built module in out/dkms/nfkv.ko for the VM suites to load.
set -u
. "$(dirname "$0")/../scripts/lib.sh"
cd "$NFKV_ROOT"
kdir=$(scripts/build-kernel "${1:-debug}") || exit 1
release=$(cat "$kdir/include/config/kernel.release")
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml)
passed=0 failed=0
t() { # t NAME COMMAND...: the command must succeed
    local name=$1 out; shift
    if out=$("$@" 2>&1); then
        passed=$((passed + 1)); echo "ok   ship::$name"
    else
        failed=$((failed + 1)); echo "FAIL ship::$name: $(echo "$out" | tail -n 8)"
    fi
}
# refuses NAME PATTERN COMMAND...: the command must fail, saying PATTERN in one line.
refuses() {
    local name=$1 pattern=$2 out; shift 2
    if out=$("$@" 2>&1); then
        failed=$((failed + 1)); echo "FAIL ship::$name: succeeded"
    elif [ "$(echo "$out" | grep -c 'nfkv: ')" = 1 ] && echo "$out" | grep -q "$pattern" && ! echo "$out" | grep -q 'error\['; then
        passed=$((passed + 1)); echo "ok   ship::$name"
    else
        failed=$((failed + 1)); echo "FAIL ship::$name: $(echo "$out" | tail -n 5)"
    fi
}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

t install_puts_everything_in_place bash -c "
    make -s install KDIR=$kdir DESTDIR=$tmp/root PREFIX=/usr >/dev/null 2>&1 &&
    grep -qx 'extra/nfkv.ko:' $tmp/root/lib/modules/$release/modules.dep &&
    for f in bin/nfkv share/man/man1/nfkv.1 share/bash-completion/completions/nfkv \
             share/zsh/site-functions/_nfkv share/fish/vendor_completions.d/nfkv.fish include/linux/nfkv.h; do
        test -s $tmp/root/usr/\$f || { echo missing \$f; exit 1; }
    done"
t man_page_and_completions_are_generated bash -c "
    grep -q '^.TH nfkv 1' $tmp/root/usr/share/man/man1/nfkv.1 &&
    grep -q 'restore' $tmp/root/usr/share/bash-completion/completions/nfkv"
t dkms_conf_matches_cargo_version grep -qx "PACKAGE_VERSION=\"$version\"" dkms.conf

mkdir -p "$tmp/norust" && cp "$kdir/Makefile" "$tmp/norust/" && grep -v '^CONFIG_RUST=' "$kdir/.config" > "$tmp/norust/.config"
refuses kdir_without_rust "without CONFIG_RUST" make -s module KDIR="$tmp/norust"
mkdir -p "$tmp/nometa/include/config" && cp "$kdir/Makefile" "$kdir/.config" "$tmp/nometa/"
refuses kdir_without_rust_metadata "no Rust metadata" make -s module KDIR="$tmp/nometa"
refuses kdir_with_other_rustc "KERNEL_RUSTC" make -s module KDIR="$kdir" KERNEL_RUSTC="$(command -v rustup >/dev/null && rustup which rustc 2>/dev/null || echo /nonexistent/rustc)"
refuses kdir_not_a_kernel "not a configured kernel" make -s module KDIR="$tmp"

# The version string must fit nfkv_info.module_version: a 16-byte one is a
# compile-time error, never a panic in GET_INFO.
mkdir -p "$tmp/longver/module" && cp -r Kbuild Cargo.toml include "$tmp/longver/" &&
    cp -r module/*.rs module/*.c module/kernel_ext "$tmp/longver/module/" && mkdir -p "$tmp/longver/abi/src" && cp abi/src/codec.rs "$tmp/longver/abi/src/" &&
    sed -i 's/^version = .*/version = "0.1.0-123456789a"/' "$tmp/longver/Cargo.toml"
if out=$(scripts/kmake "$kdir" M="$tmp/longver" modules 2>&1); then
    failed=$((failed + 1)); echo "FAIL ship::version_over_15_bytes_does_not_build: it built"
elif echo "$out" | grep -q 'must fit nfkv_info.module_version'; then
    passed=$((passed + 1)); echo "ok   ship::version_over_15_bytes_does_not_build"
else
    failed=$((failed + 1)); echo "FAIL ship::version_over_15_bytes_does_not_build: $(echo "$out" | grep -m3 error)"
fi

# DKMS, as a distribution would use it, against the test kernel tree.
src=/usr/src/nfkv-$version
dkms remove -m nfkv -v "$version" --all >/dev/null 2>&1
rm -rf "$src" && mkdir -p "$src"
git ls-files -z --cached --others --exclude-standard | xargs -0 cp --parents -t "$src"
t dkms_builds_the_module bash -c "
    dkms add -m nfkv -v $version >/dev/null &&
    dkms build -m nfkv -v $version -k $release --kernelsourcedir $kdir &&
    mkdir -p out/dkms && cp /var/lib/dkms/nfkv/$version/$release/x86_64/module/nfkv.ko out/dkms/nfkv.ko &&
    modinfo -F vermagic out/dkms/nfkv.ko | grep -q '^$release '"
dkms remove -m nfkv -v "$version" --all >/dev/null 2>&1
rm -rf "$src"

echo "ship: $passed passed, $failed failed"
[ "$failed" = 0 ]
