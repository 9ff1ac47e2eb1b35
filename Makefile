# nfkv: `make` builds nfkv.ko against KDIR (default: the cached test kernel,
# built on first use), `make client` the CLI; `make demo` and `make check` are
# the README's two commands. See README.md.

# KERNEL names a test kernel (scripts/lib.sh): 6.12, 6.12-debug, 7.3,
# 7.3-debug (`base`/`debug`: 6.12), or debian (Debian's own kernel from
# trixie-backports, scripts/distro-kernel). KDIR=/any/rust/tree overrides it.
KERNEL ?= 6.12
KDIR ?=
KERNEL_RUSTC ?= /usr/bin/rustc
# The kernel tree: KDIR, or the cached test kernel $(KERNEL), built if missing.
kdir = kdir="$(KDIR)"; [ -n "$$kdir" ] || kdir=$$($(CURDIR)/scripts/build-kernel $(KERNEL)) || exit 1
# make in that tree with the LLVM and rustc that built it, on the module's
# own object directory for that tree (scripts/module-tree).
KMAKE = obj=$$($(CURDIR)/scripts/module-tree "$$kdir") && KERNEL_RUSTC_OVERRIDE=$(KERNEL_RUSTC) \
	flock "$$obj/.lock" $(CURDIR)/scripts/kmake "$$kdir" M="$$obj"
# Where the module built for kernel $(KERNEL) is kept.
OUT := $(CURDIR)/out/$(KERNEL)
export PATH := $(HOME)/.cargo/bin:$(PATH)

# Userspace binaries are static so they run in any guest.
TARGET := x86_64-unknown-linux-gnu
CARGO_STATIC = RUSTFLAGS='-C target-feature=+crt-static' cargo build --release --locked --target $(TARGET)
BIN := $(CURDIR)/target/$(TARGET)/release
SHARE := $(BIN)/share

.PHONY: all module client python install setup kernel demo check bench fuzz lint clean
all: module

module:
	@$(kdir); $(CURDIR)/scripts/check-kdir "$$kdir" $(KERNEL_RUSTC) && $(KMAKE) modules && \
	$(CURDIR)/scripts/check-symbols "$$kdir" "$$obj/nfkv.ko" && \
	mkdir -p $(OUT) && cp "$$obj/nfkv.ko" $(OUT)/nfkv.ko

client:
	$(CARGO_STATIC) --workspace --bins
	$(CC) -static -O2 -Wall -Wextra -Werror -Iinclude -o $(BIN)/nfkv-example examples/c/nfkv_example.c
	@mkdir -p $(SHARE)
	$(BIN)/nfkv completions bash > $(SHARE)/nfkv.bash
	$(BIN)/nfkv completions zsh > $(SHARE)/_nfkv
	$(BIN)/nfkv completions fish > $(SHARE)/nfkv.fish
	$(BIN)/nfkv manpage > $(SHARE)/nfkv.1

# The Python package (python/) built and installed with pytest into
# target/python-venv-X.Y, where the VM's Python suite imports it.
python:
	scripts/python-env

# `make install [DESTDIR=] [PREFIX=/usr/local]`: the module into
# /lib/modules/<release>/extra (then depmod), the CLI, its completions and
# man page, and the UAPI header.
PREFIX ?= /usr/local
DESTDIR ?=
install: module client
	@$(kdir); $(KMAKE) INSTALL_MOD_PATH=$(abspath $(DESTDIR)) INSTALL_MOD_DIR=extra DEPMOD=/sbin/depmod modules_install
	install -D -m 0755 $(BIN)/nfkv $(DESTDIR)$(PREFIX)/bin/nfkv
	install -D -m 0644 $(SHARE)/nfkv.bash $(DESTDIR)$(PREFIX)/share/bash-completion/completions/nfkv
	install -D -m 0644 $(SHARE)/_nfkv $(DESTDIR)$(PREFIX)/share/zsh/site-functions/_nfkv
	install -D -m 0644 $(SHARE)/nfkv.fish $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d/nfkv.fish
	install -D -m 0644 $(SHARE)/nfkv.1 $(DESTDIR)$(PREFIX)/share/man/man1/nfkv.1
	install -D -m 0644 include/nfkv.h $(DESTDIR)$(PREFIX)/include/linux/nfkv.h

setup:
	scripts/setup

kernel:
	scripts/build-kernel $(KERNEL)

demo: setup
	$(MAKE) module client
	tests/vm/run --kernel $(KERNEL) --no-load -- tests/demo.sh

check: setup
	tests/run-all

bench: setup
	tests/bench/run

# Coverage-guided fuzzing on the debug kernel (KCOV): grows the corpus that
# `make check` replays, tests/fuzz/corpus, for FUZZ_SECONDS; writes the
# module's coverage by function to out/fuzz/coverage.txt and fails if an
# unreached edge has no reason in tests/fuzz/unreached-reasons
# (tests/fuzz/README.md).
FUZZ_SECONDS ?= 600
fuzz: setup
	mkdir -p out/fuzz
	kdir=$$(scripts/build-kernel 6.12-debug) && scripts/kmake "$$kdir" -s M=$(CURDIR)/tests/gate modules
	tests/vm/run --kernel 6.12-debug --rwdir tests/fuzz/corpus --rwdir out/fuzz -- \
		env NFKV_COVERAGE_SECONDS=$(FUZZ_SECONDS) NFKV_COVERAGE_REPORT=$(CURDIR)/out/fuzz/coverage \
		nfkv-vmtests coverage
	c++filt < out/fuzz/coverage | sed -E "s/\[[0-9a-f]{16}\]//g" > out/fuzz/coverage.txt
	c++filt < out/fuzz/coverage.unreached | sed -E "s/\[[0-9a-f]{16}\]//g" > out/fuzz/unreached.txt
	@echo "coverage by function (edges reached, edges, function): out/fuzz/coverage.txt"
	tests/fuzz/classify out/6.12-debug/nfkv.ko out/fuzz/coverage.unreached > out/fuzz/unreached-by-kind.txt; \
		rc=$$?; cat out/fuzz/unreached-by-kind.txt; exit $$rc

# Style gates: kernel clippy (Debian's clippy-driver, matching the kernel's
# rustc), the kernel's rustfmt config for the module, cargo clippy/fmt for
# the userspace crates.
lint:
	@$(kdir); $(KMAKE) CLIPPY=1 CLIPPY_DRIVER=/usr/bin/clippy-driver modules 2>&1 | tee /dev/stderr | (! grep -q '^warning\|^error\|: warning:\|: error:')
	@$(kdir); $(KMAKE) clean >/dev/null
	/usr/bin/rustfmt --edition 2021 --check module/nfkv.rs
	cargo fmt --all --check
	cargo clippy --workspace --all-targets --locked -- -D warnings
	cargo fmt --manifest-path python/Cargo.toml --check
	cargo clippy --manifest-path python/Cargo.toml --all-targets --locked -- -D warnings

clean:
	-@$(kdir); $(KMAKE) clean
	rm -rf out
	cargo clean
