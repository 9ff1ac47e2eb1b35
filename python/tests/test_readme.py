"""The examples in the READMEs run as shown."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import nfkv

ROOT = Path(__file__).resolve().parents[2]


def test_readme_python_example_prints_what_it_shows(table: nfkv.Table) -> None:
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Python\n", 1)[1].split("\n## ", 1)[0]
    found = re.search(r"```python\n(.*?)```.*?```text\n(.*?)```", section, re.S)
    assert found, "README.md: no python example followed by its output"
    code, expected = found.groups()
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md", "exec"), {})
    assert out.getvalue() == expected


def test_package_readme_example_runs(table: nfkv.Table) -> None:
    text = (ROOT / "python" / "README.md").read_text()
    found = re.search(r"## Example\n\n```python\n(.*?)```", text, re.S)
    assert found, "python/README.md: no example"
    code = found.group(1)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "python/README.md", "exec"), {})
    assert out.getvalue().splitlines()[0] == "b'9000'"
