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
t batch_is_atomic bash -c "printf 'put atom1 x\nput --create k y\n' | nfkv batch; [ \$? = 4 ] && [ \"\$(status nfkv get atom1)\" = 3 ]"
t batch_old_flag_syntax_is_refused bash -c "printf 'put k y create\n' > $tmp/old; [ \"\$(status nfkv batch $tmp/old)\" = 2 ] && nfkv batch $tmp/old 2>&1 | grep -q 'options go before the key' && [ \"\$(nfkv get k)\" = new ]"
t batch_bad_line_is_usage bash -c "printf 'put a\nfrob b\n' > $tmp/bad; [ \"\$(status nfkv batch $tmp/bad)\" = 2 ] && nfkv batch $tmp/bad 2>&1 | grep -q 'line 2'"
# A listing of 1.2 MB, far more than a pipe holds: head exits after one
# line, and nfkv must die of SIGPIPE (exit 141) saying nothing, like other
# Unix tools. Exit 0 would mean it never wrote into the closed pipe.
wide=$(printf 'x%.0s' $(seq 4000))
for i in $(seq 1 300); do echo "put wide$i $wide"; done > "$tmp/wide"
nfkv batch "$tmp/wide"
t quiet_into_head bash -c "nfkv list --prefix wide 2>$tmp/err | head -n 1 >/dev/null; rc=\${PIPESTATUS[0]}
    [ \$rc = 141 ] && [ ! -s $tmp/err ] || { echo \"exit \$rc, stderr: \$(head -c 300 $tmp/err)\"; exit 1; }"
sed 's/^put \(wide[0-9]*\) .*/del \1/' "$tmp/wide" | nfkv batch
t json_is_json bash -c 'for c in info stats "list" "get k"; do nfkv --json $c | python3 -c "import json,sys; json.load(sys.stdin)" || exit 1; done'
t save_rmmod_insmod_restore_round_trip bash -c "nfkv save > $tmp/saved && rmmod nfkv && insmod \$NFKV_KO && [ \"\$(nfkv list | wc -l)\" = 0 ] && nfkv restore $tmp/saved && nfkv save > $tmp/again && diff <(grep -v '^#' $tmp/saved) <(grep -v '^#' $tmp/again) && [ \$(grep -c '^put' $tmp/saved) -gt 300 ] && grep -q '^put \\\\x00\\\\xff\\\\x10 ' $tmp/saved"
t restore_flush_replaces bash -c "printf 'put only one\n' | nfkv restore --flush && [ \"\$(nfkv list)\" = 'only one' ]"

# Save/restore must reproduce every byte of every key and value, whatever
# the bytes spell (flag words, option-like tokens, comment marks, escapes),
# in every encoding, with restore reading the encoding from the file.
flag_words() {
    python3 - "$1" <<'PY'
import sys
words = [b"create", b"replace", b"if-version=3", b"--create", b"--", b"-", b"-x",
         b"flush", b"put", b"del", b"#c", b"a\\b", b"\\x41", b"sp ace", bytes(range(256))[:255]]
values = words + [b"", bytes(range(256))]
with open(sys.argv[1], "w") as f:
    for i, k in enumerate(words):
        for j in range(len(values)):
            key = k if j == 0 else k[:250] + b".%d" % j
            f.write("put %s %s\n" % (key.hex(), values[(i + j) % len(values)].hex()))
PY
}
save_restore_exact() { # save_restore_exact ENCODING-FLAG...
    nfkv flush && nfkv --hex batch "$tmp/words" && nfkv --hex list > "$tmp/before" &&
    [ "$(wc -l < "$tmp/before")" = 255 ] &&
    nfkv "$@" save > "$tmp/saved" && nfkv put extra x &&
    nfkv restore --flush "$tmp/saved" && nfkv --hex list > "$tmp/after" &&
    diff "$tmp/before" "$tmp/after"
}
flag_words "$tmp/words"
t save_restore_flag_words_text save_restore_exact
t save_restore_flag_words_hex save_restore_exact --hex
t save_restore_flag_words_base64 save_restore_exact --base64
t restore_refuses_a_conflicting_encoding bash -c "nfkv --hex save > $tmp/h && [ \"\$(status nfkv --base64 restore $tmp/h)\" = 2 ] && nfkv --base64 restore $tmp/h 2>&1 | grep -q 'encoding hex'"
prefix_restore() {
    nfkv flush && printf 'put a/1 1\nput a/2 2\nput b/1 3\n' | nfkv batch &&
    nfkv save --prefix a/ > "$tmp/pre" && nfkv put a/3 new && nfkv del a/1 && nfkv put a/2 changed &&
    nfkv restore --flush "$tmp/pre" &&
    [ "$(nfkv list | tr '\n' ' ')" = "a/1 1 a/2 2 b/1 3 " ]
}
t prefix_save_flush_restore_keeps_other_keys prefix_restore
escapes_typed_back() {
    nfkv flush && nfkv put 'a\x20b' v1 && nfkv put 'back\\slash' v2 && nfkv put -- -dash v3 &&
    [ "$(nfkv get 'a b')" = v1 ] &&
    for key in $(nfkv list --keys); do nfkv get "$key" > /dev/null || exit 1; done &&
    [ "$(nfkv list --keys --prefix 'a\x20')" = 'a\x20b' ] &&
    nfkv del "$(nfkv list --keys --prefix 'a\x20')" && [ "$(status nfkv get 'a b')" = 3 ] &&
    nfkv list --keys | grep -qxF 'back\\slash' && nfkv list --keys | grep -qxF '\x2ddash' &&
    nfkv del '\x2ddash' && [ "$(status nfkv put 'C:\dir' x)" = 2 ]
}
t arguments_take_the_escapes_list_prints escapes_typed_back
v1_file() {
    nfkv flush &&
    printf '# nfkv save: 3 entries, generation 5, encoding text\nput create v1\nput k replace\nput e \n' > "$tmp/v1" &&
    nfkv restore "$tmp/v1" && [ "$(nfkv get create)" = v1 ] && [ "$(nfkv get k)" = replace ] &&
    [ -z "$(nfkv get e)" ] && [ "$(nfkv list --keys | wc -l)" = 3 ] &&
    [ "$(status nfkv restore --flush "$tmp/v1")" = 2 ] && nfkv restore --flush "$tmp/v1" 2>&1 | grep -q 'first save format'
}
t first_format_save_files_restore_as_written v1_file

# Entry expiry (TTL): put --ttl, --keep-ttl, the time left in get/list/
# --json, bad durations, and save/restore of entries that expire.
ttl_shown() { # ttl_shown KEY: the ttl_ms of KEY, or null
    nfkv --json get "$1" | python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin)["ttl_ms"]))'
}
export -f ttl_shown
ttl_put_get_list() {
    nfkv flush && nfkv put short v --ttl 30s && nfkv put forever w || return 1
    # get --ttl: "expires 29.9s" (a little under 30 s; under TCG and a
    # debug kernel whole seconds may pass between steps), then the value.
    nfkv get --ttl short | head -n 1 | grep -Eqx 'expires ([12]?[0-9](\.[0-9]+)?s|30s)' &&
    [ "$(nfkv get --ttl short | tail -n 1)" = v ] &&
    [ "$(nfkv get --ttl forever)" = "$(printf 'expires never\nw')" ] &&
    [ "$(nfkv get --version --ttl forever | head -n 2 | tail -n 1)" = 'expires never' ] &&
    ms=$(ttl_shown short) && [ "$ms" -gt 0 ] && [ "$ms" -le 30000 ] &&
    [ "$(ttl_shown forever)" = null ] &&
    listed=$(nfkv list) && { printf '%s\n' "$listed" | grep -Eqx 'short v expires ([12]?[0-9](\.[0-9]+)?s|30s)' ||
        { echo "nfkv list printed: $listed"; false; }; } && printf '%s\n' "$listed" | grep -qx 'forever w' &&
    [ "$(nfkv list --keys)" = "$(printf 'forever\nshort')" ] &&
    nfkv --json list | python3 -c '
import json, sys
e = {x["key"]: x for x in json.load(sys.stdin)["entries"]}
assert e["forever"]["ttl_ms"] is None, e
assert 0 < e["short"]["ttl_ms"] <= 30000, e
assert sorted(e["short"]) == ["key", "ttl_ms", "value", "version"], e
' &&
    # The forms nft and ipset users type; a bare number is seconds.
    nfkv put a x --ttl 1h30m && ms=$(ttl_shown a) && [ "$ms" -gt 5380000 ] && [ "$ms" -le 5400000 ] &&
    nfkv put a x --ttl 90 && ms=$(ttl_shown a) && [ "$ms" -gt 80000 ] && [ "$ms" -le 90000 ] &&
    nfkv put a x --ttl 1d && ms=$(ttl_shown a) && [ "$ms" -gt 86390000 ] &&
    nfkv put a x --ttl 49d17h2m47.295s && [ "$(ttl_shown a)" -gt 4294960000 ] &&
    # A put without --ttl makes the entry permanent again.
    nfkv put a y && [ "$(ttl_shown a)" = null ]
}
t ttl_put_get_list ttl_put_get_list
ttl_expires() {
    nfkv flush && nfkv put gone v --ttl 1s && [ "$(nfkv get gone)" = v ] || return 1
    sleep 1.5
    [ "$(status nfkv get gone)" = 3 ] && [ -z "$(nfkv list)" ] &&
    # Absent at once: --create succeeds over it.
    nfkv put --create gone again && [ "$(nfkv get gone)" = again ] && [ "$(ttl_shown gone)" = null ] &&
    # Reaped within ~1-2 s: nfkv info stops counting it.
    nfkv put reaped v --ttl 100ms && sleep 3 &&
    [ "$(nfkv --json info | python3 -c 'import json,sys; print(json.load(sys.stdin)["entries"])')" = 1 ]
}
t ttl_entry_is_gone_after_expiry ttl_expires
ttl_keep() {
    # 10 s: the steps before the sleep take seconds on a busy host.
    nfkv flush && nfkv put k 1 --ttl 10s && nfkv put k 2 --keep-ttl &&
    ms=$(ttl_shown k) && [ "$ms" -le 10000 ] &&
    # --keep-ttl with --ttl: the ttl only where the key is absent.
    nfkv put k 3 --keep-ttl --ttl 1h && ms=$(ttl_shown k) && [ "$ms" -le 10000 ] &&
    nfkv put new 1 --keep-ttl --ttl 1h && [ "$(ttl_shown new)" -gt 3500000 ] &&
    nfkv put perm 1 && nfkv put perm 2 --keep-ttl --ttl 5s && [ "$(ttl_shown perm)" = null ] || return 1
    sleep 10
    [ "$(status nfkv get k)" = 3 ] && [ "$(nfkv get new)" = 1 ] && [ "$(nfkv get perm)" = 2 ]
}
t ttl_keep_ttl_keeps_the_deadline ttl_keep
ttl_bad_durations() {
    for bad in 0 0s 5x 5sec 1h30 30m1h -5s '' 50d 1.2.3s abc; do
        [ "$(status nfkv put k v --ttl "$bad")" = 2 ] || { echo "--ttl '$bad' did not exit 2"; return 1; }
    done
    nfkv put k v --ttl 5x 2>&1 | grep -qF "invalid value '5x' for '--ttl <DURATION>': bad duration \"5x\": unknown unit \"x\" (write e.g. 500ms, 30s, 5m, 2h, 1d, 1h30m; a bare number is seconds)" &&
    nfkv put k v --ttl 0 2>&1 | grep -qF 'a TTL must be at least 1ms' &&
    nfkv put k v --ttl 50d 2>&1 | grep -qF 'is over the longest, 49d17h2m47.295s' &&
    nfkv put k v --ttl 30m1h 2>&1 | grep -qF 'out of order' &&
    [ "$(status nfkv del k --ttl 5s)" = 2 ] &&
    printf 'put k v\nput --ttl=5x j v\n' > "$tmp/badttl" && [ "$(status nfkv batch "$tmp/badttl")" = 2 ] &&
    nfkv batch "$tmp/badttl" 2>&1 | grep -qF 'line 2: bad duration "5x"' &&
    printf 'del --ttl=5s k\n' > "$tmp/badttl" && nfkv batch "$tmp/badttl" 2>&1 | grep -qF 'del takes only --if-version' &&
    [ "$(status nfkv get j)" = 3 ]
}
t ttl_bad_durations_fail_clearly ttl_bad_durations
ttl_batch() {
    nfkv flush && nfkv put kept old --ttl 50s &&
    printf 'put --ttl=30s a 1\nput b 2\nput --keep-ttl kept new\nput --ttl=1h --create c 3\n' | nfkv batch &&
    [ "$(ttl_shown b)" = null ] && ms=$(ttl_shown a) && [ "$ms" -gt 0 ] && [ "$ms" -le 30000 ] &&
    ms=$(ttl_shown kept) && [ "$ms" -le 50000 ] && [ "$ms" -gt 0 ] && [ "$(nfkv get kept)" = new ] &&
    [ "$(ttl_shown c)" -gt 3500000 ]
}
t ttl_batch_records_carry_their_ttl ttl_batch
ttl_save_restore() {
    # "short" outlives the save (a command takes up to ~0.5 s in the
    # debug VM, more on a busy host) but not the 8 s before the restore.
    nfkv flush && nfkv put short 1 --ttl 6s && nfkv put long 2 --ttl 60s && nfkv put forever 3 &&
    nfkv save > "$tmp/ttlsave" || return 1
    cat "$tmp/ttlsave"
    head -n 1 "$tmp/ttlsave" | grep -Eq '^# nfkv save v3 encoding=text prefix= entries=3 generation=[0-9]+ time_ms=[0-9]{13}$' &&
    grep -qx 'put forever 3' "$tmp/ttlsave" && grep -Eqx 'put --ttl=[0-9]+ms long 2' "$tmp/ttlsave" &&
    grep -Eqx 'put --ttl=[0-9]+ms short 1' "$tmp/ttlsave" || return 1
    sleep 8
    nfkv flush && nfkv restore "$tmp/ttlsave" 2> "$tmp/err" || { cat "$tmp/err"; return 1; }
    cat "$tmp/err"
    grep -qx 'nfkv: 1 entry of the save expired since it was taken: not restored' "$tmp/err" &&
    [ "$(status nfkv get short)" = 3 ] && [ "$(ttl_shown forever)" = null ] &&
    ms=$(ttl_shown long) && [ "$ms" -le 52000 ] && [ "$ms" -gt 20000 ] || return 1
    # An older save (v2, no TTLs) restores as it did.
    printf '# nfkv save v2 encoding=text prefix= entries=1 generation=3\nput old v\n' > "$tmp/v2" &&
    nfkv restore --flush "$tmp/v2" 2> "$tmp/err" && [ ! -s "$tmp/err" ] && [ "$(nfkv list)" = 'old v' ] &&
    # A save of a prefix, restored with --flush: the key whose saved entry
    # expired in between is deleted, not left as written since.
    nfkv flush && nfkv put p/short saved --ttl 3s && nfkv put p/other x && nfkv save --prefix p/ > "$tmp/psave" &&
    grep -q 'p/short' "$tmp/psave" && sleep 4 && nfkv put p/short 'written since' && nfkv restore --flush "$tmp/psave" 2>/dev/null &&
    [ "$(nfkv list --prefix p/)" = 'p/other x' ]
}
t ttl_save_restore_counts_the_time_since ttl_save_restore
t version_shows_module bash -c 'nfkv --version | grep -q "^module 0" && nfkv --version | grep -q "ABI 4"'
t c_example_uses_only_the_header bash -c 'nfkv flush && out=$(nfkv-example) && echo "$out" | grep -q "get c-example/07 = value 7, from C" && echo "$out" | grep -q "too small, value needs" && echo "$out" | grep -Eq "listed 10 entries in ([3-9]|10) pages"'

# Each limit's refusal names it, and `nfkv info` shows its use: an
# unprivileged user (unshare -r -n) filling its table with 4 KiB values meets
# the shared budget (each entry charged its 8 KiB allocation); the host's
# table meets max_bytes_mib.
refusals_name_the_limit() {
    rmmod nfkv && insmod "$NFKV_KO" userns_budget_mib=1 max_bytes_mib=1 || return 1
    head -c 4096 /dev/zero | tr '\0' v > "$tmp/v4k"
    unshare -r -n bash -c "i=0; while nfkv put k\$i --file $tmp/v4k 2>/dev/null; do i=\$((i + 1)); done
        echo stored \$i; nfkv put k\$i --file $tmp/v4k; echo exit \$?; nfkv info; nfkv --json info" > "$tmp/out" 2>&1
    cat "$tmp/out"
    grep -qx 'stored 128' "$tmp/out" && grep -qx 'exit 1' "$tmp/out" &&
    grep -q 'shared budget full: .* userns_budget_mib (see `nfkv info`)' "$tmp/out" &&
    grep -qx 'charged: *1048576 (to the shared budget)' "$tmp/out" &&
    grep -qx 'shared budget: *1048576 of 1048576 (all unprivileged namespaces)' "$tmp/out" &&
    grep -q '"charged_to_budget":true' "$tmp/out" || return 1
    i=0; while nfkv put h$i --file "$tmp/v4k" 2>/dev/null; do i=$((i + 1)); done
    nfkv put h$i --file "$tmp/v4k" 2>&1 | tee /dev/stderr | grep -q 'max_bytes_mib' &&
    used=$(nfkv info | sed -n 's/^bytes used: *\([0-9]*\) of 1048576$/\1/p') &&
    [ -n "$used" ] && [ "$used" -le 1048576 ] && [ $((used + 4100)) -gt 1048576 ] &&
    nfkv info | grep -qx 'charged: *not charged (initial user namespace)'
}
t refusals_name_the_limit refusals_name_the_limit
rmmod nfkv && insmod "$NFKV_KO" && nfkv flush

# Restores bigger than one BATCH (65536 records or 64 MiB): applied in
# several batches; a failure says what the table holds.
big_restore_bytes() {
    rmmod nfkv && insmod "$NFKV_KO" max_value_len=65536 max_entries=2000 &&
    python3 -c '
import sys
print("# nfkv save v2 encoding=text prefix= entries=1040 generation=1")
v = "v" * 65536
for i in range(1040):
    print("put big%05d %s" % (i, v))' > "$tmp/big" &&
    nfkv put outside x && nfkv restore --flush "$tmp/big" &&
    [ "$(nfkv --json info | python3 -c 'import json,sys; print(json.load(sys.stdin)["entries"])')" = 1040 ] &&
    nfkv save | tail -n +2 > "$tmp/big.again" && tail -n +2 "$tmp/big" | cmp - "$tmp/big.again"
}
t restore_over_64_mib_in_several_batches big_restore_bytes
rm -f "$tmp/big" "$tmp/big.again"
entries() { nfkv --json info | python3 -c 'import json,sys; print(json.load(sys.stdin)["entries"])'; }
many() { python3 -c "
for i in range($1): print('put m%06d %d' % (i, i))"; }
big_restore_records() {
    rmmod nfkv && insmod "$NFKV_KO" max_entries=66000 || return 1
    many 66000 > "$tmp/many66" && nfkv restore --flush "$tmp/many66" && [ "$(entries)" = 66000 ] || return 1
    [ "$(nfkv --hex save | tail -n +2 | wc -l)" = 66000 ] || return 1
    # Without --flush, into a table with one more key: the second batch hits max_entries.
    nfkv flush && nfkv put zzz x || return 1
    nfkv restore "$tmp/many66" 2> "$tmp/err" && return 1
    cat "$tmp/err"
    grep -qF 'restore stopped at batch 2 of 2 (records 65537..66000 of 66000, lines 65537..66000): table full' "$tmp/err" &&
    grep -qF 'the table holds records 1..65536 of the file besides what it held before' "$tmp/err" &&
    [ "$(entries)" = 65537 ] && [ "$(nfkv get zzz)" = x ] && [ "$(status nfkv get m065536)" = 3 ] || return 1
    # With --flush: flushed, then the same failure.
    many 66001 > "$tmp/many66" || return 1
    nfkv restore --flush "$tmp/many66" 2> "$tmp/err" && return 1
    cat "$tmp/err"
    grep -qF 'the table was flushed and holds records 1..65536 of the file and nothing else' "$tmp/err" &&
    [ "$(entries)" = 65536 ] && [ "$(status nfkv get zzz)" = 3 ]
}
t restore_over_65536_records_and_its_failure_report big_restore_records
# A restore of several batches whose first batch fails changes nothing.
restore_fails_in_its_first_batch() {
    nfkv flush && python3 -c "
for i in range(1000): print('put other%04d x' % i)" | nfkv batch || return 1
    nfkv restore "$tmp/many66" 2> "$tmp/err" && return 1
    cat "$tmp/err"
    grep -qF 'restore stopped at batch 1 of 2 (records 1..65536 of 66001, lines 1..65536): table full' "$tmp/err" &&
    grep -qF 'the table is unchanged' "$tmp/err" &&
    [ "$(entries)" = 1000 ] && [ "$(status nfkv get m000000)" = 3 ]
}
t restore_fails_in_its_first_batch restore_fails_in_its_first_batch
# A prefix restore whose deletes fill a batch of their own, then whose
# records fail: the deletes stay applied, and the report says so.
restore_fails_after_its_delete_batch() {
    nfkv flush && nfkv put outside x && python3 -c "
for i in range(65540): print('put p/%06d %d' % (i, i))" > "$tmp/prefixed" &&
    nfkv restore "$tmp/prefixed" || return 1
    printf '# nfkv save v2 encoding=text prefix=p/ entries=2 generation=1\nput p/new 1\nput --if-version=7 p/000001 v\n' > "$tmp/pre2"
    nfkv restore --flush "$tmp/pre2" 2> "$tmp/err" && return 1
    cat "$tmp/err"
    grep -qF 'restore stopped at batch 2 of 2 (records 1..2 of 2, lines 2..3)' "$tmp/err" &&
    grep -qF '65536 of the 65540 keys under prefix p/ to delete were deleted; the table holds no record of the file besides what it held before' "$tmp/err" &&
    [ "$(entries)" = 5 ] && [ "$(nfkv get outside)" = x ] && [ "$(status nfkv get p/new)" = 3 ] &&
    [ "$(nfkv list --keys --prefix p/ | wc -l)" = 4 ]
}
t restore_fails_after_its_delete_batch restore_fails_after_its_delete_batch
rm -f "$tmp/many66" "$tmp/prefixed"
rmmod nfkv && insmod "$NFKV_KO"

# Classifiers: the table in the packet path (nfkv classifier, nfkv element).
cls_cleanup() {
    for name in $(nfkv classifier list | cut -d' ' -f1); do nfkv classifier delete "$name"; done
    nfkv flush
}
classifier_add_list_delete() {
    nfkv classifier add bl --hook input --match saddr --prefix bl/ &&
    nfkv classifier list | grep -Eqx 'bl family inet hook input match saddr prefix bl/ priority 0 packets [0-9]+ unkeyed [0-9]+ drop [0-9]+ accept [0-9]+ mark [0-9]+' &&
    [ "$(status nfkv classifier add bl --hook output --match daddr --prefix other/)" = 4 ] &&
    nfkv classifier add bl --hook output --match daddr --prefix other/ 2>&1 | grep -qx 'nfkv: a classifier named bl exists' &&
    nfkv classifier delete bl && [ -z "$(nfkv classifier list)" ] &&
    [ "$(status nfkv classifier delete bl)" = 3 ] &&
    nfkv classifier delete bl 2>&1 | grep -qx 'nfkv: no classifier named bl'
}
t classifier_add_list_delete classifier_add_list_delete
cls_cleanup
classifier_list_json() {
    nfkv classifier add steer --hook prerouting --family ip --match daddr --prefix st/ --ipv4-bits 24 --priority -5 &&
    nfkv classifier add ports --hook input --family ip6 --match dport --prefix pt/ &&
    nfkv classifier list --json | python3 -c '
import json, sys
cls = json.load(sys.stdin)["classifiers"]
got = sorted((c["name"], c["family"], c["hook"], c["match"], c["prefix"], c["priority"], c["ipv4_bits"], c["ipv6_bits"]) for c in cls)
assert got == [("ports", "ip6", "input", "dport", "pt/", 0, 0, 0),
               ("steer", "ip", "prerouting", "daddr", "st/", -5, 24, 0)], got
for c in cls:
    assert sorted(c["counters"]) == ["accept", "drop", "mark", "packets", "unkeyed"], c
    assert all(isinstance(v, int) for v in c["counters"].values()), c
'
}
t classifier_list_json classifier_list_json
cls_cleanup
classifier_elements() {
    nfkv classifier add bl --hook input --match saddr --prefix bl/ &&
    nfkv classifier add steer --hook prerouting --match saddr --prefix st/ --ipv4-bits 24 &&
    nfkv classifier add ports --hook input --family ip --match dport --prefix pt/ || return 1
    nfkv element add bl 192.0.2.7 drop && nfkv element add bl 2001:db8::1 accept &&
    nfkv element add steer 10.1.2.0/24 mark 0x10 && nfkv element add steer 10.9.0.0 mark 0x10/0xff &&
    nfkv element add ports tcp/80 drop && nfkv element add ports 17/53 accept || return 1
    # In key order; subnets shown with the classifier's length.
    [ "$(nfkv element list bl)" = "$(printf '2001:db8::1 accept\n192.0.2.7 drop')" ] &&
    [ "$(nfkv element list steer)" = "$(printf '10.1.2.0/24 mark 0x10\n10.9.0.0/24 mark 0x10/0xff')" ] &&
    [ "$(nfkv element list ports)" = "$(printf 'tcp/80 drop\nudp/53 accept')" ] || return 1
    # The entries themselves: prefix + address, struct nfkv_action (x86: little-endian).
    nfkv --hex list --prefix 626c2f | grep -qx '626c2fc0000207 01000000000000000000000000000000' &&
    nfkv --hex list --prefix 70742f | grep -qx '70742f060050 01000000000000000000000000000000' || return 1
    nfkv element list steer --json | python3 -c '
import json, sys
got = json.load(sys.stdin)
assert got == {"elements": [
    {"target": "10.1.2.0/24", "action": "mark", "mark": 16, "mask": 4294967295, "ttl_ms": None},
    {"target": "10.9.0.0/24", "action": "mark", "mark": 16, "mask": 255, "ttl_ms": None}]}, got
' || return 1
    nfkv element add bl 192.0.2.7 accept && nfkv element list bl | grep -qx '192.0.2.7 accept' &&
    nfkv element delete bl 192.0.2.7 && [ "$(nfkv element list bl)" = '2001:db8::1 accept' ] &&
    [ "$(status nfkv element delete bl 192.0.2.7)" = 3 ] &&
    nfkv element delete bl 192.0.2.7 2>&1 | grep -qx 'nfkv: classifier bl has no element 192.0.2.7' &&
    [ "$(status nfkv element add nosuch 192.0.2.7 drop)" = 3 ] &&
    nfkv element add nosuch 192.0.2.7 drop 2>&1 | grep -qx 'nfkv: no classifier named nosuch' &&
    [ "$(status nfkv element list nosuch)" = 3 ]
}
t classifier_elements classifier_elements
# Elements that expire, as ipset elements with a timeout.
classifier_element_ttl() {
    nfkv element add bl 198.51.100.9 drop --ttl 10m && nfkv element add bl 198.51.100.10 drop --ttl 300ms &&
    nfkv element list bl | grep -Eqx '198\.51\.100\.9 drop expires 9m5[0-9](\.[0-9]+)?s|198\.51\.100\.9 drop expires 10m' &&
    nfkv element list bl --json | python3 -c '
import json, sys
e = {x["target"]: x for x in json.load(sys.stdin)["elements"]}
assert 590000 < e["198.51.100.9"]["ttl_ms"] <= 600000, e
assert e["2001:db8::1"]["ttl_ms"] is None, e
' || return 1
    nfkv element add bl 198.51.100.9 accept --keep-ttl && nfkv element list bl | grep -q '^198\.51\.100\.9 accept expires 9m' &&
    [ "$(status nfkv element add bl 198.51.100.9 drop --ttl 5x)" = 2 ] || return 1
    sleep 1.5
    ! nfkv element list bl | grep -q '198\.51\.100\.10' &&
    nfkv element delete bl 198.51.100.9
}
t classifier_element_ttl classifier_element_ttl
# A value under a classifier's prefix must be an action: put and batch fail
# with EBADMSG's message, and nothing is written.
classifier_values_must_be_actions() {
    [ "$(status nfkv put bl/xxxx somevalue)" = 1 ] &&
    nfkv put bl/xxxx somevalue 2>&1 | grep -qF "value under a classifier's prefix is not a valid action (struct nfkv_action, docs/ABI.md)" &&
    [ "$(status nfkv get bl/xxxx)" = 3 ] &&
    printf 'put fine 1\nput bl/yyyy junk\n' > "$tmp/badaction" &&
    [ "$(status nfkv batch "$tmp/badaction")" = 1 ] && [ "$(status nfkv get fine)" = 3 ] &&
    nfkv put outside/xxxx somevalue && nfkv del outside/xxxx &&
    # Adding a classifier over such a value fails the same way.
    nfkv put later/x junk && [ "$(status nfkv classifier add later --hook input --match saddr --prefix later/)" = 1 ] &&
    nfkv classifier add later --hook input --match saddr --prefix later/ 2>&1 | grep -qF 'not a valid action' &&
    nfkv del later/x && nfkv classifier add later --hook input --match saddr --prefix later/
}
t classifier_values_must_be_actions classifier_values_must_be_actions
# Bad hook, target or action: exit 2 and a message saying what is wrong.
classifier_usage_errors() {
    [ "$(status nfkv classifier add x --hook ingress --match saddr --prefix x/)" = 2 ] &&
    nfkv classifier add x --hook ingress --match saddr --prefix x/ 2>&1 | grep -q 'unknown hook "ingress"' &&
    [ "$(status nfkv classifier add x --hook input --match sport --prefix x/)" = 2 ] &&
    [ "$(status nfkv classifier add x --hook input --match dport --prefix x/ --ipv4-bits 8)" = 2 ] &&
    [ "$(status nfkv classifier add much-too-long-name --hook input --match saddr --prefix x/)" = 2 ] &&
    [ "$(status nfkv element add bl foo drop)" = 2 ] &&
    nfkv element add bl foo drop 2>&1 | grep -q 'target "foo": not an address' &&
    [ "$(status nfkv element add ports tcp/70000 drop)" = 2 ] &&
    [ "$(status nfkv element add bl tcp/80 drop)" = 2 ] &&
    nfkv element add bl tcp/80 drop 2>&1 | grep -q 'classifier bl matches addresses (saddr)' &&
    [ "$(status nfkv element add steer 10.1.2.3/24 drop)" = 2 ] &&
    nfkv element add steer 10.1.2.3/24 drop 2>&1 | grep -q 'bits set past the first 24' &&
    [ "$(status nfkv element add steer 10.1.0.0/16 drop)" = 2 ] &&
    [ "$(status nfkv element add bl 192.0.2.8 reject)" = 2 ] &&
    nfkv element add bl 192.0.2.8 reject 2>&1 | grep -q 'an action is drop, accept, or mark' &&
    [ "$(status nfkv element add bl 192.0.2.8 mark 0x10/0x0f)" = 2 ] &&
    nfkv element add bl 192.0.2.8 mark 0x10/0x0f 2>&1 | grep -q 'bits outside its mask' &&
    [ "$(status nfkv element add bl 192.0.2.8)" = 2 ] &&
    [ "$(status nfkv get 'bl/\xc0\x00\x02\x08')" = 3 ]
}
t classifier_usage_errors classifier_usage_errors
cls_cleanup
classifier_limit() {
    for i in $(seq 1 16); do nfkv classifier add "c$i" --hook input --match saddr --prefix "c$i/" || return 1; done
    [ "$(nfkv classifier list | wc -l)" = 16 ] &&
    [ "$(status nfkv classifier add c17 --hook input --match saddr --prefix c17/)" = 1 ] &&
    nfkv classifier add c17 --hook input --match saddr --prefix c17/ 2>&1 | grep -qx 'nfkv: the namespace has 16 classifiers, the most it may have'
}
t classifier_limit classifier_limit
cls_cleanup
# The README's example runs as shown.
readme_classifier_example() {
    sed -n '/^## Classifying packets$/,/^## /p' "$root/README.md" | sed -n '/^```sh$/,/^```$/p' | grep '^nfkv ' > "$tmp/readme.sh" &&
    [ "$(wc -l < "$tmp/readme.sh")" = 5 ] && bash -e "$tmp/readme.sh" > "$tmp/readme.out" &&
    grep -q '^blocklist family inet hook input match saddr prefix bl/ priority 0 packets' "$tmp/readme.out" &&
    grep -q '^steer family inet hook prerouting match saddr prefix st/ priority 0 ipv4-bits 24 packets' "$tmp/readme.out" &&
    [ "$(nfkv element list blocklist)" = '192.0.2.7 drop' ] &&
    [ "$(nfkv element list steer)" = '10.1.2.0/24 mark 0x10' ]
}
root=$(cd "$(dirname "$0")/.." && pwd)
t readme_classifier_example readme_classifier_example
cls_cleanup

# Watching changes (nfkv watch). A namespace's first watch makes its change
# log; watch_ready makes sure it exists and prints the generation after
# which every change is logged, for --since: a watch started in the
# background then sees every change whenever it starts.
generation() { nfkv --json info | python3 -c 'import json,sys; print(json.load(sys.stdin)["generation"])'; }
watch_ready() { nfkv watch --timeout 0 >/dev/null && generation; }
watch_lines() {
    nfkv flush && g=$(watch_ready) || return 1
    timeout 30 nfkv watch --since "$g" --count 3 > "$tmp/watch" & pid=$!
    sleep 0.5
    nfkv put a 1 && nfkv put 'b c' 2 && nfkv del a && wait $pid || return 1
    cat "$tmp/watch"
    [ "$(cat "$tmp/watch")" = "$(printf '%s\n' "$((g + 1)) $((g + 1)) put a" "$((g + 2)) $((g + 2)) put b\x20c" "$((g + 3)) $((g + 3)) delete a")" ] &&
    # A put's generation is the entry's version.
    nfkv put v x && [ "$(nfkv watch --since "$((g + 3))" --count 1 | cut -d' ' -f1)" = "$(nfkv get --version v | head -n 1 | cut -d' ' -f2)" ]
}
t watch_prints_each_change_as_it_happens watch_lines
watch_json() {
    nfkv put k x && g=$(watch_ready) && nfkv flush && nfkv put k old && nfkv put k new && nfkv put d x && nfkv del d || return 1
    nfkv --json watch --since "$g" --values --count 5 > "$tmp/watch" && cat "$tmp/watch" &&
    python3 - "$tmp/watch" "$g" <<'PY'
import json, sys
g = int(sys.argv[2])
lines = [json.loads(l) for l in open(sys.argv[1])]
assert lines == [
    {"generation": g + 1, "last": g + 1, "type": "flush"},
    {"generation": g + 2, "last": g + 2, "type": "put", "key": "k"},
    {"generation": g + 3, "last": g + 3, "type": "put", "key": "k", "value": "new"},
    {"generation": g + 4, "last": g + 4, "type": "put", "key": "d"},
    {"generation": g + 5, "last": g + 5, "type": "delete", "key": "d"},
], lines
PY
}
t watch_json_lines watch_json
watch_prefix_values_encodings() {
    nfkv flush && g=$(watch_ready) || return 1
    nfkv put p/1 x && nfkv put q/1 y && nfkv flush && nfkv put p/2 z && nfkv put p/2 w || return 1
    [ "$(nfkv watch --prefix p/ --since "$g" --timeout 1s | cut -d' ' -f3-)" = "$(printf 'put p/1\nflush\nput p/2\nput p/2')" ] &&
    # --values: the replaced entry's value is gone: -.
    [ "$(nfkv watch --prefix p/2 --since "$g" --values --timeout 1s | cut -d' ' -f3-)" = "$(printf 'flush\nput p/2 -\nput p/2 w')" ] &&
    nfkv put p/3 '\x2dv' && [ "$(nfkv watch --since "$((g + 5))" --values --count 1 | cut -d' ' -f3-)" = 'put p/3 \x2dv' ] &&
    [ "$(nfkv --hex watch --prefix 702f33 --since "$g" --values --timeout 1s | cut -d' ' -f3-)" = "$(printf 'flush\nput 702f33 2d76')" ] &&
    [ "$(nfkv --base64 watch --prefix cC8z --since "$((g + 5))" --count 1 | cut -d' ' -f3-)" = 'put cC8z' ]
}
t watch_prefix_values_and_encodings watch_prefix_values_encodings
watch_batch() {
    nfkv flush && nfkv put old x && g=$(watch_ready) || return 1
    printf 'flush\nput a 1\nput b 2\ndel a\n' | nfkv batch && nfkv put c 3 || return 1
    nfkv watch --since "$g" --count 5 > "$tmp/watch" && cat "$tmp/watch" &&
    # The batch's changes share LAST, its last change's generation; its flush comes first.
    [ "$(cut -d' ' -f2- "$tmp/watch")" = "$(printf '%s\n' "$((g + 4)) flush" "$((g + 4)) put a" "$((g + 4)) put b" "$((g + 4)) delete a" "$((g + 5)) put c")" ] &&
    [ "$(cut -d' ' -f1 "$tmp/watch" | tr '\n' ' ')" = "$((g + 1)) $((g + 2)) $((g + 3)) $((g + 4)) $((g + 5)) " ]
}
t watch_batch_lines_share_last watch_batch
watch_expiry() {
    nfkv flush && g=$(watch_ready) && nfkv put t v --ttl 200ms || return 1
    # The reaper removes it within a second or so of its deadline.
    out=$(nfkv watch --since "$g" --count 2 --timeout 10s) && echo "$out" &&
    [ "$(echo "$out" | cut -d' ' -f3-)" = "$(printf 'put t\nexpire t')" ] &&
    [ "$(echo "$out" | tail -n 1 | cut -d' ' -f1,2)" = "$((g + 2)) $((g + 2))" ]
}
t watch_expiry_line watch_expiry
watch_ends() {
    g=$(watch_ready) || return 1
    start=$(date +%s%N)
    out=$(nfkv watch --timeout 300ms) && [ -z "$out" ] || return 1
    ms=$((($(date +%s%N) - start) / 1000000))
    echo "--timeout 300ms took ${ms} ms"
    [ "$ms" -ge 300 ] && [ "$ms" -lt 5000 ] &&
    [ -z "$(nfkv watch --count 0)" ] &&
    # Ctrl-C ends a waiting watch at once (128 + SIGINT).
    start=$(date +%s%N) && { timeout --preserve-status -k 5 -s INT 1 nfkv watch; rc=$?; } &&
    ms=$((($(date +%s%N) - start) / 1000000)) && echo "SIGINT: exit $rc after ${ms} ms" &&
    [ "$rc" = 130 ] && [ "$ms" -lt 5000 ] &&
    [ "$(status nfkv watch --timeout 5x)" = 2 ] && [ "$(status nfkv watch --count -1)" = 2 ] &&
    [ "$(status nfkv watch --since $((g + 1000)) --timeout 0)" = 1 ] &&
    nfkv watch --since $((g + 1000)) --timeout 0 2>&1 | grep -q 'EINVAL'
}
t watch_count_timeout_ctrl_c_and_errors watch_ends
# A log of 4 KiB: a burst of writes outruns it, and watch resyncs from a
# snapshot, saying so on standard error.
watch_resync() {
    rmmod nfkv && insmod "$NFKV_KO" watch_log_kib=4 || return 1
    nfkv put r/a 1 && nfkv put r/b 2 && g=$(watch_ready) || return 1
    long=$(printf 'k%.0s' $(seq 100))
    for i in $(seq 1 100); do echo "put big/$i/$long x"; done | nfkv batch &&
    nfkv del r/b && nfkv put r/c 3 && G=$(generation) || return 1
    nfkv watch --prefix r/ --since "$g" --values --timeout 1s > "$tmp/watch" 2> "$tmp/err"
    cat "$tmp/watch" "$tmp/err"
    grep -qx "nfkv: the change log no longer held the changes after generation $g: resynchronised from a snapshot of the table at generation $G (its entries follow as puts)" "$tmp/err" &&
    [ "$(cut -d' ' -f2- "$tmp/watch")" = "$(printf '%s\n' "$G resync" "$G put r/a 1" "$G put r/c 3")" ] &&
    [ "$(head -n 1 "$tmp/watch" | cut -d' ' -f1)" = "$G" ] &&
    [ "$(sed -n 2p "$tmp/watch" | cut -d' ' -f1)" = "$(nfkv get --version r/a | head -n 1 | cut -d' ' -f2)" ] &&
    # Then on from the snapshot's generation; JSON says resync the same way.
    nfkv put r/d 4 && [ "$(nfkv watch --since "$G" --count 1)" = "$((G + 1)) $((G + 1)) put r/d" ] &&
    nfkv --json watch --prefix r/ --since "$g" --timeout 1s 2>/dev/null | head -n 1 | grep -qx "{\"generation\":$((G + 1)),\"type\":\"resync\"}"
}
t watch_resyncs_when_the_log_outran_it watch_resync
rmmod nfkv; insmod "$NFKV_KO"
# The README's example runs as shown (generations aside).
readme_watch_example() {
    sed -n '/^### Watching changes$/,/^## /p' "$root/README.md" > "$tmp/section" &&
    sed -n '/^```sh$/,/^```$/p' "$tmp/section" | grep '^nfkv watch' > "$tmp/watchcmd" &&
    sed -n '/^```sh$/,/^```$/p' "$tmp/section" | grep -v '^nfkv watch' | grep -v '^```' > "$tmp/readme.sh" &&
    sed -n '/^```text$/,/^```$/p' "$tmp/section" | grep -v '^```' > "$tmp/expected" &&
    [ "$(wc -l < "$tmp/watchcmd")" = 1 ] && [ "$(wc -l < "$tmp/readme.sh")" = 2 ] || return 1
    n=$(wc -l < "$tmp/expected")
    nfkv flush && g=$(watch_ready) || return 1
    timeout 30 bash -c "$(cat "$tmp/watchcmd") --since $g --count $n" > "$tmp/got" & pid=$!
    sleep 0.5
    bash -e "$tmp/readme.sh" && wait $pid || return 1
    # Generations relative to the first line's (64-bit: not awk's doubles).
    rel() { local b= gen last rest; while read -r gen last rest; do b=${b:-$gen}; echo "$((gen - b)) $((last - b)) $rest"; done < "$1"; }
    cat "$tmp/got" && diff <(rel "$tmp/expected") <(rel "$tmp/got")
}
t readme_watch_example readme_watch_example
nfkv flush

rmmod nfkv
t exit_5_not_loaded bash -c '[ "$(status nfkv info)" = 5 ] && nfkv get k 2>&1 | grep -q "insmod nfkv.ko"'
t version_without_module bash -c 'nfkv --version | grep -q "module: nfkv.ko is not loaded"'
# The module DKMS built for this kernel (tests/ship.sh, tests/distro.sh).
dkms_ko=$(cd "$(dirname "$0")/.." && pwd)/out/dkms/$(uname -r)/nfkv.ko
if [ -f "$dkms_ko" ] && modinfo -F vermagic "$dkms_ko" | grep -q "^$(uname -r) "; then
    # Unloaded whatever the checks say: the next suites need nfkv.ko itself.
    t dkms_built_module_loads_and_works bash -c "insmod $dkms_ko || exit 1; nfkv put dkms yes && [ \"\$(nfkv get dkms)\" = yes ]; rc=\$?; rmmod nfkv; exit \$rc"
fi
insmod "$NFKV_KO"
rm -rf "$tmp"
echo "cli: $passed passed, $failed failed"
[ "$failed" = 0 ]
