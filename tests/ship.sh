#!/usr/bin/env bash
# Shipping like a real out-of-tree module, checked on the host: make install,
# DKMS against the test kernel tree, and the one-message refusals of a KDIR
# that cannot build nfkv. Usage: tests/ship.sh KERNEL_NAME
# Leaves the DKMS-built module in out/dkms/RELEASE/nfkv.ko for the VM suites to load.
set -u
. "$(dirname "$0")/../scripts/lib.sh"
cd "$NFKV_ROOT"
kdir=$(scripts/build-kernel "${1:-debug}") || exit 1
release=$(cat "$kdir/include/config/kernel.release")
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml)
suite=ship
. tests/host-checks.sh
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
mkdir -p "$tmp/longver/module" "$tmp/longver/abi/src" && cp -r Kbuild Cargo.toml include "$tmp/longver/" &&
    cp -r module/*.rs module/*.c module/kernel_ext "$tmp/longver/module/" &&
    cp abi/src/codec.rs abi/src/classifier.rs "$tmp/longver/abi/src/" &&
    sed -i 's/^version = .*/version = "0.1.0-123456789a"/' "$tmp/longver/Cargo.toml"
if out=$(scripts/kmake "$kdir" M="$tmp/longver" modules 2>&1); then
    failed=$((failed + 1)); echo "FAIL ship::version_over_15_bytes_does_not_build: it built"
elif echo "$out" | grep -q 'must fit nfkv_info.module_version'; then
    passed=$((passed + 1)); echo "ok   ship::version_over_15_bytes_does_not_build"
else
    failed=$((failed + 1)); echo "FAIL ship::version_over_15_bytes_does_not_build: $(echo "$out" | grep -m3 error)"
fi

# DKMS, as a distribution would use it, against the test kernel tree. For a
# clang-built kernel DKMS appends `CC=clang LD=ld.lld` to the build command:
# the module must still be built by the tree's own LLVM, whether no
# unversioned clang is installed or one of another LLVM version is first on
# PATH. The module's .comment section names the compiler of every object,
# so it shows which one built it (lld adds nothing to a module's .comment).
cc_text=$(sed -n 's/^CONFIG_CC_VERSION_TEXT="\(.*\)"$/\1/p' "$kdir/.config")
llvm=$(kdir_llvm "$kdir" || true)
# built_by_the_trees_toolchain KO: every C compiler named in KO's .comment is
# the tree's own.
built_by_the_trees_toolchain() {
    local comment
    comment=$(readelf -p .comment "$1" | sed -n 's/^ *\[ *[0-9a-f]*\] *//p' | sort -u)
    echo "$comment" | grep -qxF "$cc_text" || { echo "no '$cc_text' in $1's .comment: $comment"; return 1; }
    if [ -n "$llvm" ]; then
        ! echo "$comment" | grep 'clang version' | grep -v "clang version $llvm\." ||
            { echo "another LLVM built part of $1: $comment"; return 1; }
    fi
}
# path_without NAME...: $PATH with every directory that holds one of NAME
# replaced by a copy (of links) without it.
path_without() {
    local out= d n f hide
    IFS=: read -r -a dirs <<< "$PATH"
    for d in "${dirs[@]}"; do
        hide=
        for n in "$@"; do [ -e "$d/$n" ] && hide=1; done
        if [ -n "$hide" ]; then
            local farm="$tmp/path/$(echo "$d" | sha256sum | cut -c1-8)"
            mkdir -p "$farm"
            for f in "$d"/*; do
                n=${f##*/}
                case " $* " in *" $n "*) ;; *) ln -sf "$f" "$farm/$n" ;; esac
            done
            d=$farm
        fi
        out=$out${out:+:}$d
    done
    echo "$out"
}
export cc_text llvm
export -f built_by_the_trees_toolchain
src=/usr/src/nfkv-$version
dkms remove -m nfkv -v "$version" --all >/dev/null 2>&1
rm -rf "$src" && mkdir -p "$src"
git ls-files -z --cached --others --exclude-standard | xargs -0 cp --parents -t "$src"
# dkms_builds NAME PATH: dkms add + build with that PATH; the module goes to out/dkms/RELEASE.
dkms_builds() {
    t "dkms_builds_with_the_trees_toolchain[$1]" env PATH="$2" bash -c "
        dkms add -m nfkv -v $version >/dev/null &&
        { dkms build -m nfkv -v $version -k $release --kernelsourcedir $kdir ||
          { tail -n 5 /var/lib/dkms/nfkv/$version/build/make.log; exit 1; }; } &&
        mkdir -p out/dkms/$release && cp /var/lib/dkms/nfkv/$version/$release/x86_64/module/nfkv.ko out/dkms/$release/nfkv.ko &&
        modinfo -F vermagic out/dkms/$release/nfkv.ko | grep -q '^$release ' &&
        built_by_the_trees_toolchain out/dkms/$release/nfkv.ko"
    dkms remove -m nfkv -v "$version" --all >/dev/null 2>&1
}
plain_path=$(path_without clang ld.lld)
if [ -n "$llvm" ]; then
    other=
    for v in $SUPPORTED_KERNELS; do
        kernel_facts "$v"
        [ "$KF_LLVM" = "$llvm" ] || ! command -v "clang-$KF_LLVM" >/dev/null || other=$KF_LLVM
    done
    if [ -n "$other" ]; then
        mkdir -p "$tmp/other-llvm"
        ln -s "$(command -v "clang-$other")" "$tmp/other-llvm/clang"
        ln -s "$(command -v "ld.lld-$other")" "$tmp/other-llvm/ld.lld"
        dkms_builds "clang and ld.lld of LLVM $other on PATH" "$tmp/other-llvm:$plain_path"
    else
        failed=$((failed + 1)); echo "FAIL ship::dkms_with_another_llvm: no LLVM but $llvm installed (scripts/setup installs every supported kernel's)"
    fi
fi
# Last, so that out/dkms/RELEASE/nfkv.ko is this build's.
dkms_builds "no unversioned clang or ld.lld" "$plain_path"

# A gcc-built kernel (Debian's own) gets its gcc, never the clang DKMS names.
gcc_major=$(gcc -dumpversion | cut -d. -f1)
mkdir -p "$tmp/gcc-tree" && printf 'CONFIG_CC_IS_GCC=y\nCONFIG_GCC_VERSION=%d0000\nCONFIG_CLANG_VERSION=0\n' "$gcc_major" > "$tmp/gcc-tree/.config"
t kmake_uses_a_gcc_trees_gcc bash -c "
    out=\$(scripts/kmake -n $tmp/gcc-tree M=x modules CC=clang LD=ld.lld 2>/dev/null) &&
    echo \"\$out\" | grep -q ' CC=gcc-$gcc_major ' && ! echo \"\$out\" | grep -q 'clang\|LLVM\|lld' || { echo \"\$out\"; exit 1; }"
rm -rf "$src"

echo "ship: $passed passed, $failed failed"
[ "$failed" = 0 ]
