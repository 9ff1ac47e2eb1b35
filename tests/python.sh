#!/usr/bin/env bash
# The Python package's pytest suite (python/tests), inside the VM with
# nfkv.ko loaded. Uses the venv scripts/python-env made for the guest's
# Python (target/python-venv-X.Y; the guest sees the clone). Prints one line
# `python: N passed, N failed[, N skipped]` from pytest's junit XML.
set -u
root=$(cd "$(dirname "$0")/.." && pwd)
venv=$root/target/python-venv-$(/usr/bin/python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
py=$venv/bin/python
xml=$(mktemp /tmp/nfkv-pytest.XXXXXX)

if ! "$py" -c 'import nfkv, pytest' 2>/dev/null; then
    echo "FAIL python: no venv with nfkv and pytest at $venv (run scripts/python-env on the host)"
    echo "python: 0 passed, 1 failed"
    exit 1
fi
# -P: never import python/nfkv from the source tree instead of the installed package.
# A hung test must not eat the VM's time: tracebacks after 300 s in one test,
# the whole suite stopped after $NFKV_PYTEST_TIMEOUT s.
PYTHONDONTWRITEBYTECODE=1 timeout -k 10 "${NFKV_PYTEST_TIMEOUT:-1200}" \
    "$py" -P -m pytest -p no:cacheprovider -q -rfE -o faulthandler_timeout=300 \
    --junitxml="$xml" "$root/python/tests" "$@"
rc=$?
"$py" - "$xml" "$rc" <<'PY'
import sys
import xml.etree.ElementTree as ET

xml, rc = sys.argv[1], int(sys.argv[2])
try:
    root = ET.parse(xml).getroot()
except (OSError, ET.ParseError) as e:
    print(f"FAIL python: pytest exited {rc} without a report ({e})")
    print("python: 0 passed, 1 failed")
    sys.exit(1)
suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
total = sum(int(s.get("tests", 0)) for s in suites)
failed = sum(int(s.get("failures", 0)) + int(s.get("errors", 0)) for s in suites)
skipped = sum(int(s.get("skipped", 0)) for s in suites)
passed = total - failed - skipped
if rc != 0 and failed == 0:
    print(f"FAIL python: pytest exited {rc}")
    failed = 1
if total == 0 and failed == 0:
    print("FAIL python: no tests ran")
    failed = 1
print(f"python: {passed} passed, {failed} failed" + (f", {skipped} skipped" if skipped else ""))
sys.exit(1 if failed else 0)
PY
status=$?
rm -f "$xml"
exit $status
