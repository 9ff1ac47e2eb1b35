#!/usr/bin/env bash
# The nfkv CLI as a shell user meets it: exit codes, messages, encodings,
# pipes, batch and save/restore. Runs inside the VM with nfkv.ko loaded.
set -u
passed=0 failed=0
t() { # t NAME COMMAND...: the command must succeed
    local name=$1; shift
    local out
    if out=$("$@" 2>&1); then
        passed=$((passed + 1)); echo "ok   cli::$name"
    else
        failed=$((failed + 1)); echo "FAIL cli::$name: $out" | head -n 5
    fi
}
status() { "$@" >/dev/null 2>&1; echo $?; }
export -f status
tmp=$(mktemp -d)

nfkv flush
t put_get bash -c '[ "$(nfkv put k "a value"; nfkv get k)" = "a value" ]'
t put_from_stdin bash -c 'printf "line1\nline2\n" | nfkv put s && [ "$(nfkv get s | od -An -c | tr -s " ")" = "$(printf "line1\nline2\n" | od -An -c | tr -s " ")" ]'
t put_from_file bash -c "head -c 3000 /dev/urandom > $tmp/blob && nfkv put blob --file $tmp/blob && nfkv get blob > $tmp/back && cmp $tmp/blob $tmp/back"
t hex_round_trip bash -c '[ "$(nfkv --hex put 00ff10 deadbeef00 && nfkv --hex get 00ff10)" = deadbeef00 ]'
t base64_round_trip bash -c '[ "$(nfkv --base64 put AAE= AP8= && nfkv --base64 get AAE=)" = AP8= ]'
t list_escapes_binary bash -c 'nfkv list | grep -qx "\\\\x00\\\\xff\\\\x10 \\\\xde\\\\xad\\\\xbe\\\\xef\\\\x00"'
t exit_3_not_found bash -c '[ "$(status nfkv get nope)" = 3 ] && nfkv get nope 2>&1 | grep -q "key not found"'
t exit_3_delete_missing bash -c '[ "$(status nfkv del nope)" = 3 ]'
t exit_4_create_existing bash -c '[ "$(status nfkv put --create k x)" = 4 ] && [ "$(nfkv get k)" = "a value" ]'
t exit_4_stale_version bash -c '[ "$(status nfkv put --if-version 999999 k x)" = 4 ]'
t if_version_from_get bash -c 'v=$(nfkv get --version k | head -n1 | cut -d" " -f2) && nfkv put --if-version "$v" k new && [ "$(nfkv get k)" = new ]'
t exit_2_usage bash -c '[ "$(status nfkv put)" = 2 ] && [ "$(status nfkv --hex get zz)" = 2 ] && nfkv --hex get zz 2>&1 | grep -q "hex"'
t exit_6_nobody bash -c '[ "$(status setpriv --reuid 65534 --regid 65534 --clear-groups nfkv info)" = 6 ] && setpriv --reuid 65534 --regid 65534 --clear-groups nfkv info 2>&1 | grep -q CAP_NET_ADMIN'
t too_large_value bash -c 'head -c 5000 /dev/zero | nfkv put big 2>&1; [ "$(head -c 5000 /dev/zero | status nfkv put big)" = 1 ]'
t key_too_long_is_refused bash -c "[ \"\$(status nfkv put $(printf 'k%.0s' $(seq 256)) v)\" = 1 ]"
for i in $(seq 1 300); do echo "put pipe$i $i"; done > "$tmp/many"
t batch_from_stdin bash -c "nfkv batch < $tmp/many && [ \$(nfkv list --prefix pipe --keys | wc -l) = 300 ]"
t batch_is_atomic bash -c "printf 'put atom1 x\nput k y create\n' | nfkv batch; [ \$? = 4 ] && [ \"\$(status nfkv get atom1)\" = 3 ]"
t batch_bad_line_is_usage bash -c "printf 'put a\nfrob b\n' > $tmp/bad; [ \"\$(status nfkv batch $tmp/bad)\" = 2 ] && nfkv batch $tmp/bad 2>&1 | grep -q 'line 2'"
t quiet_into_head bash -c 'err=$(nfkv list 2>&1 >/dev/null | head -c0; nfkv list 2>&1 | head -n 1 >/dev/null); [ -z "$err" ] && [ -z "$(nfkv list 2>&1 | head -n 1 | grep -i "broken pipe")" ]'
t json_is_json bash -c 'for c in info stats "list" "get k"; do nfkv --json $c | python3 -c "import json,sys; json.load(sys.stdin)" || exit 1; done'
t save_rmmod_insmod_restore_round_trip bash -c "nfkv save > $tmp/saved && rmmod nfkv && insmod \$NFKV_KO && [ \"\$(nfkv list | wc -l)\" = 0 ] && nfkv restore $tmp/saved && nfkv save > $tmp/again && diff <(grep -v '^#' $tmp/saved) <(grep -v '^#' $tmp/again) && [ \$(grep -c '^put' $tmp/saved) -gt 300 ] && grep -q '^put \\\\x00\\\\xff\\\\x10 ' $tmp/saved"
t restore_flush_replaces bash -c "printf 'put only one\n' | nfkv restore --flush && [ \"\$(nfkv list)\" = 'only one' ]"
t version_shows_module bash -c 'nfkv --version | grep -q "^module 0" && nfkv --version | grep -q "ABI 1"'
t c_example_uses_only_the_header bash -c 'nfkv flush && out=$(nfkv-example) && echo "$out" | grep -q "get c-example/07 = value 7, from C" && echo "$out" | grep -q "too small, value needs" && echo "$out" | grep -Eq "listed 10 entries in [3-9] pages"'
rmmod nfkv
t exit_5_not_loaded bash -c '[ "$(status nfkv info)" = 5 ] && nfkv get k 2>&1 | grep -q "insmod nfkv.ko"'
t version_without_module bash -c 'nfkv --version | grep -q "module: nfkv.ko is not loaded"'
# The module DKMS built (tests/ship.sh), when it was built for this kernel.
dkms_ko=$(cd "$(dirname "$0")/.." && pwd)/out/dkms/nfkv.ko
if [ -f "$dkms_ko" ] && modinfo -F vermagic "$dkms_ko" | grep -q "^$(uname -r) "; then
    t dkms_built_module_loads_and_works bash -c "insmod $dkms_ko && nfkv put dkms yes && [ \"\$(nfkv get dkms)\" = yes ] && rmmod nfkv"
fi
insmod "$NFKV_KO"
rm -rf "$tmp"
echo "cli: $passed passed, $failed failed"
[ "$failed" = 0 ]
