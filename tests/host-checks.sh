# The checks of the host-side suites (tests/ship.sh, tests/distro.sh);
# sourced, never run. Each counts into $passed/$failed and prints
# `ok   SUITE::NAME` or `FAIL SUITE::NAME: why`, SUITE being $suite.
passed=0 failed=0
t() { # t NAME COMMAND...: the command must succeed
    local name=$1 out; shift
    if out=$("$@" 2>&1); then
        passed=$((passed + 1)); echo "ok   $suite::$name"
    else
        failed=$((failed + 1)); echo "FAIL $suite::$name: $(echo "$out" | tail -n 8)"
    fi
}
# refuses NAME PATTERN COMMAND...: the command must fail, saying PATTERN in
# one `nfkv: ` line (and no rustc error).
refuses() {
    local name=$1 pattern=$2 out; shift 2
    if out=$("$@" 2>&1); then
        failed=$((failed + 1)); echo "FAIL $suite::$name: succeeded"
    elif [ "$(echo "$out" | grep -c 'nfkv: ')" = 1 ] && echo "$out" | grep -q "$pattern" && ! echo "$out" | grep -q 'error\['; then
        passed=$((passed + 1)); echo "ok   $suite::$name"
    else
        failed=$((failed + 1)); echo "FAIL $suite::$name: $(echo "$out" | tail -n 5)"
    fi
}
