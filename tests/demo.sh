#!/usr/bin/env bash
# The README's demo, run inside the VM by `make demo`: load nfkv.ko, use the
# CLI like an operator would, unload. Prints a transcript.
set -eu
run() {
    printf '\n$ %s\n' "$*"
    "$@"
}
run uname -r
run insmod "$NFKV_KO"
run sh -c 'dmesg | grep nfkv: | tail -n 1'
run nfkv info
run nfkv put greeting 'hello, kernel'
run nfkv put --create counter 1
run nfkv get greeting; echo
run nfkv get --version counter; echo
run sh -c 'v=$(nfkv get --version counter | head -n1 | cut -d" " -f2); nfkv put --if-version "$v" counter 2' 
printf 'put config/a 1\nput config/b 2\nput config/c 3\n' > /tmp/demo.batch
run cat /tmp/demo.batch
run nfkv batch /tmp/demo.batch
run nfkv list
run nfkv list --prefix config/ --json
run nfkv del greeting
run sh -c 'nfkv get greeting; echo "exit status $? (3: not found)"'
run nfkv --hex put 00ff 'c0ffee'
run nfkv --hex get 00ff
run nfkv stats
run nfkv info --json
run rmmod nfkv
run sh -c 'nfkv info; echo "exit status $? (5: not loaded)"'
