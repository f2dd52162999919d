"""recjob web's speed and memory on a published run: random user pages and item pages through the HTTP server.

    python bench/web.py --conf <the run's config> [--ds 2026-01-04] [--pages 1000]

Starts ``recjob web`` as its own process on the config's data_dir, requests ``--pages`` random user pages and as
many item pages (ids drawn from the published files, seeded), and prints the latency percentiles of each kind
and the server's peak resident memory (sampled every 0.1 s). Targets for the full Movies_and_TV category's run:
p50 <= 20 ms, p95 <= 100 ms, resident memory <= 1 GiB.
"""
from __future__ import annotations

import argparse
import os
import random
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import psutil
from results_entry import recorded  # bench/ is on the path: scripts run from it

from recjob import config
from recjob.web import files

RECJOB = Path(sys.executable).parent / "recjob"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ids(folder: str, key: str, n: int, rng: random.Random) -> list[str]:
    """``n`` keys drawn from the row groups of a sorted folder (a random row group, a random row of it)."""
    table = files.SortedTable(folder, key)
    out = []
    for _ in range(n):
        _, _, name, rg = rng.choice(table._groups)
        col = table._files[name].read_row_group(rg, columns=[key])[key]
        out.append(col[rng.randrange(len(col))].as_py())
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--conf", required=True)
    p.add_argument("--ds", help="default: the newest published ds")
    p.add_argument("--pages", type=int, default=1000)
    p.add_argument("--seed", type=int, default=7)
    a = p.parse_args()
    data_dir = config.load(a.conf, resolve_env=False).path("")
    index = files.read_index(data_dir)["ds"]
    ds = a.ds or max(index)
    entry, rng = index[ds], random.Random(a.seed)
    users = _ids(entry["recommendations"], "reviewerID", a.pages, rng)
    items = _ids(f"{entry['pages']}/{files.ITEMS}", "asin", a.pages, rng)
    port = _free_port()
    server = subprocess.Popen([str(RECJOB), "web", "--conf", a.conf, "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peak, stop = [0], threading.Event()

    def sample():
        proc = psutil.Process(server.pid)
        while not stop.wait(0.1):
            try:
                peak[0] = max(peak[0], proc.memory_info().rss)
            except psutil.Error:
                return

    threading.Thread(target=sample, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{port}/run/{ds}"
        for _ in range(600):
            try:
                urllib.request.urlopen(base, timeout=5).read()
                break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.1)
        print(f"ds {ds}: {a.pages} user pages and {a.pages} item pages, one client, server pid {server.pid}")
        for kind, ids in (("user", users), ("item", items)):
            times, codes = [], {}
            for i in ids:
                t0 = time.perf_counter()
                try:
                    with urllib.request.urlopen(f"{base}/{kind}/{urllib.parse.quote(i, safe='')}", timeout=60) as r:
                        r.read()
                        code = r.status
                except urllib.error.HTTPError as exc:
                    code = exc.code
                times.append(time.perf_counter() - t0)
                codes[code] = codes.get(code, 0) + 1
            ms = np.array(times) * 1000
            print(f"  {kind} pages: p50 {np.percentile(ms, 50):.1f} ms, p95 {np.percentile(ms, 95):.1f} ms, "
                  f"max {ms.max():.1f} ms; status {codes}")
        print(f"  server peak resident memory {peak[0] / 2**30:.2f} GiB")
    finally:
        stop.set()
        server.terminate()
        server.wait()


if __name__ == "__main__":
    with recorded("web"):
        main()
