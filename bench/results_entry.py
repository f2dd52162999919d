"""A bench's run as a dated entry of its results file, ``bench/results/<bench>.md``.

Every bench runs its ``main`` inside ``recorded(<bench>)``: what it prints is shown as it goes and, at the end,
printed again as one Markdown entry (date, commit, machine, command, output) ready to paste under the results
file's heading (entries are newest first). With ``RECJOB_BENCH_RECORD=1`` in the environment the entry is
inserted there itself.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import io
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"


class _Tee(io.TextIOBase):
    def __init__(self, *streams):
        self.streams = streams

    def write(self, text: str) -> int:
        for s in self.streams:
            s.write(text)
        return len(text)

    def flush(self) -> None:
        for s in self.streams:
            s.flush()


def commit() -> str:
    """The checked-out commit, ``-dirty`` when the work tree differs from it."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True).stdout.strip()
        return head + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def machine() -> str:
    """Cores, memory and CPU model of this machine, Python and Java."""
    model, mem_gib = platform.processor() or platform.machine(), 0.0
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_gib = int(line.split()[1]) / 2**20
    except OSError:
        pass
    java = subprocess.run(["java", "-version"], capture_output=True, text=True).stderr.splitlines()[:1] \
        if any((Path(p) / "java").exists() for p in os.environ.get("PATH", "").split(":")) else []
    return (f"{os.cpu_count()} cores, {mem_gib:.0f} GiB, {model}; Python {platform.python_version()}"
            + (f"; {java[0]}" if java else ""))


def entry(bench: str, output: str, argv: list[str]) -> str:
    when = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    command = "python " + " ".join(shlex.quote(a) for a in [f"bench/{bench}.py", *argv[1:]])
    return (f"## {when}, commit {commit()}\n\nMachine: {machine()}.\n\n`{command}`\n\n```\n{output.strip()}\n```\n")


def insert(bench: str, text: str) -> Path:
    """Put ``text`` first among the entries of ``bench/results/<bench>.md`` (after its heading's paragraphs)."""
    path = RESULTS / f"{bench}.md"
    old = path.read_text() if path.exists() else f"# bench/{bench}.py: results\n\n"
    cut = old.find("\n## ")
    head, rest = (old, "") if cut < 0 else (old[:cut + 1], old[cut + 1:])
    path.write_text(head.rstrip("\n") + "\n\n" + text + ("\n" + rest if rest else ""))
    return path


@contextlib.contextmanager
def recorded(bench: str) -> Iterator[None]:
    buffer, stdout = io.StringIO(), sys.stdout
    sys.stdout = _Tee(stdout, buffer)
    try:
        yield
    finally:
        sys.stdout = stdout
    text = entry(bench, buffer.getvalue(), sys.argv)
    print(f"\n---- results entry for bench/results/{bench}.md (newest first) ----\n{text}", flush=True)
    if os.environ.get("RECJOB_BENCH_RECORD"):
        print(f"recorded in {insert(bench, text)}")
