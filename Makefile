# nfkv: `make` builds nfkv.ko against KDIR (default: the cached test kernel,
# built on first use), `make client` the CLI; `make demo` and `make check` are
# the README's two commands. See README.md.

KERNEL ?= base
KDIR ?=
KERNEL_RUSTC ?= /usr/bin/rustc
# The kernel tree: KDIR, or the cached test kernel $(KERNEL), built if missing.
kdir = kdir="$(KDIR)"; [ -n "$$kdir" ] || kdir=$$($(CURDIR)/scripts/build-kernel $(KERNEL)) || exit 1
KMAKE = $(MAKE) -C "$$kdir" M=$(CURDIR) LLVM=1 RUSTC=$(KERNEL_RUSTC)
# Where the module built for kernel $(KERNEL) is kept, so base and debug
# builds can sit side by side.
OUT := $(CURDIR)/out/$(KERNEL)
export PATH := $(HOME)/.cargo/bin:$(PATH)

# Userspace binaries are static so they run in any guest.
TARGET := x86_64-unknown-linux-gnu
CARGO_STATIC = RUSTFLAGS='-C target-feature=+crt-static' cargo build --release --locked --target $(TARGET)
BIN := $(CURDIR)/target/$(TARGET)/release

.PHONY: all module client setup kernel demo check clean
all: module

module:
	@$(kdir); $(KMAKE) modules
	@mkdir -p $(OUT) && cp nfkv.ko $(OUT)/nfkv.ko

client:
	$(CARGO_STATIC) --workspace --bins

setup:
	scripts/setup

kernel:
	scripts/build-kernel $(KERNEL)

demo: setup
	$(MAKE) module client
	tests/vm/run --no-load -- tests/demo.sh

check: setup
	tests/run-all

clean:
	-@$(kdir); $(KMAKE) clean
	rm -rf out
	cargo clean
