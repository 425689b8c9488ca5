"""The README's examples run as written: every fenced shell, Python and SQL block, in README order, in one
directory that holds a demo dataset (``avgrid-out``: ``python -m pipeline.demo``, plus ``clip.mp4`` annotated
with a media origin, so wall-clock examples have rows) and the files the examples name (``clip.mp4``,
``archive/``, ``more/``). YAML blocks must parse; SQL runs in DuckDB.

A block that cannot run here (a camera, a cluster, a download, the Makefile targets that run this test)
has ``<!-- readme-test: skip (why) -->`` on the line before its fence and is reported as skipped with that
reason. Any other block that fails, fails the test: so a README section added later is covered too."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
SHELL, PYTHON, SQL, YAML = ("bash", "sh", "shell", "console"), ("python", "py"), ("sql",), ("yaml", "yml")
_SKIP = re.compile(r"<!--\s*readme-test:\s*skip\s*(.*?)\s*-->")


@dataclass(frozen=True)
class Block:
    line: int          # of the opening fence, 1-based
    lang: str
    code: str
    skip: str | None   # the reason, when marked


def blocks(text: str) -> list[Block]:
    """Fenced code blocks with a language; a skip marker counts on the non-blank line before the fence."""
    out, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        m = re.match(r"^(```+)\s*([A-Za-z0-9_+-]*)\s*$", lines[i])
        if not m:
            i += 1
            continue
        fence, lang, start = m.group(1), m.group(2).lower(), i
        j = i + 1
        while j < len(lines) and not lines[j].startswith(fence):
            j += 1
        prev = next((lines[k] for k in range(start - 1, -1, -1) if lines[k].strip()), "")
        marker = _SKIP.search(prev)
        reason = (marker.group(1).strip("() ") or "marked skip") if marker else None
        if lang:
            out.append(Block(start + 1, lang, "\n".join(lines[start + 1:j]) + "\n", reason))
        i = j + 1
    return out


ALL = blocks(README.read_text())
RUNNABLE = [b for b in ALL if b.lang in SHELL + PYTHON + SQL + YAML]


def test_the_readme_has_examples_of_every_language_and_the_parser_sees_markers():
    langs = {b.lang for b in RUNNABLE if b.skip is None}
    assert {"bash", "python", "sql"} <= langs, langs
    assert any(b.skip for b in ALL)
    assert "../shared" not in README.read_text() and "DESIGN.md" not in README.read_text()


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The directory the examples run in: a demo dataset plus the media the examples name."""
    d = tmp_path_factory.mktemp("readme")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    r = subprocess.run([sys.executable, "-m", "pipeline.demo", "--out", "avgrid-out", "--duration", "6"], cwd=d,
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    from tests.media import MediaSpec, make_media

    spec = MediaSpec(duration_s=3.0, width=160, height=120, flashes=(1.0,), clicks=(2.0,))
    make_media(d / "clip.mp4", spec)
    # one input with a known capture time, so examples about wall-clock time have rows to show
    r = subprocess.run([sys.executable, "-m", "pipeline.cli", "annotate", "clip.mp4", "-o", "avgrid-out", "-q",
                        "--media-origin", "2026-12-01T08:00:00Z"], cwd=d, env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    (d / "archive" / "day1").mkdir(parents=True)
    make_media(d / "archive" / "day1" / "a.mp4", spec)
    (d / "more").mkdir()
    shutil.copy(d / "clip.mp4", d / "more" / "b.mp4")
    return d


def _env() -> dict:
    # `avgrid` and `python` as a user has them after `. .venv/bin/activate`, with this tree's code
    bindir = os.path.dirname(sys.executable)
    return {**os.environ, "PYTHONPATH": str(REPO), "PATH": bindir + os.pathsep + os.environ.get("PATH", ""),
            "VIRTUAL_ENV": os.path.dirname(bindir)}


@pytest.mark.parametrize("block", RUNNABLE, ids=[f"README.md:{b.line}:{b.lang}" for b in RUNNABLE])
def test_readme_block_runs(block: Block, demo):
    if block.skip:
        pytest.skip(f"README.md line {block.line}: {block.skip}")
    where = f"README.md line {block.line} ({block.lang})"
    if block.lang in YAML:
        yaml.safe_load(block.code)
        return
    if block.lang in SHELL:
        cmd = ["bash", "-euo", "pipefail", "-c", block.code]
    elif block.lang in PYTHON:
        cmd = [sys.executable, "-c", block.code]
    else:
        duckdb = pytest.importorskip("duckdb")
        con = duckdb.connect()
        cwd = os.getcwd()
        os.chdir(demo)
        try:
            for stmt in [s for s in block.code.split(";") if s.strip()]:
                try:
                    con.execute(stmt).fetchall()
                except duckdb.Error as e:
                    pytest.fail(f"{where}: {stmt.strip()[:80]}...: {e}")
        finally:
            os.chdir(cwd)
        return
    r = subprocess.run(cmd, cwd=demo, env=_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"{where} failed ({r.returncode}):\n{block.code}\n--- stdout\n{r.stdout[-3000:]}" \
                              f"\n--- stderr\n{r.stderr[-3000:]}"
    assert "Traceback" not in r.stderr, f"{where}:\n{r.stderr[-3000:]}"
