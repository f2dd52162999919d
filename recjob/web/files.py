"""What publish leaves for pages to read without Spark or the metastore, and how they read it.

Publish writes, after each switch, ``<data_dir>/published/index.json``: per ds, where the current version of each
published partition lives (``recommendations``, ``item_neighbours``: sorted by user / item in small row groups),
the page files of that publish (``published/web/ds=<ds>/<stamp>/``: each user's reviewed items sorted by user, each
item's title and how many users got it recommended, sorted by item), the evaluation rows, the gate's verdict and
where the report's files are. The index is replaced in one rename, so a reader sees one publish or the next.

``SortedTable`` finds one key's rows in such files from the row groups' min/max statistics, held in memory (a few
bytes per row group), and reads only the row groups that can hold the key: no table is loaded into memory.
"""
from __future__ import annotations

import bisect
import json
import os
import threading
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

INDEX = "published/index.json"  # under data_dir
WEB = "published/web"  # under data_dir: web/ds=<ds>/<stamp>/{reviewed,items}
REVIEWED, ITEMS = "reviewed", "items"


def index_path(data_dir: str) -> Path:
    return Path(data_dir) / INDEX


def local(path: str) -> str:
    """A Hadoop file: URL or plain path as a local path (pages read the local filesystem)."""
    if path.startswith("file:"):
        path = path[len("file:"):]
        while path.startswith("//"):
            path = path[1:]
    return path


def read_index(data_dir: str) -> dict:
    """The published index ({"ds": {ds: entry}}), empty when nothing was published here."""
    try:
        return json.loads(index_path(data_dir).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {"ds": {}}


def write_index(data_dir: str, ds: str, entry: dict) -> None:
    """Put ``entry`` for ``ds`` in the index."""
    index = read_index(data_dir)
    index.setdefault("ds", {})[ds] = entry
    _replace_index(data_dir, index)


def _replace_index(data_dir: str, index: dict) -> None:
    """Write the index beside it, then rename it over it (readers see the old or the new one)."""
    path = index_path(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    staged = path.with_name(path.name + f".{os.getpid()}.tmp")
    staged.write_text(json.dumps(index, indent=1, sort_keys=True), encoding="utf-8")
    os.replace(staged, path)


def remove_index_entry(data_dir: str, ds: str) -> None:
    """Take ``ds`` out of the index (retention), the same way: written beside it, then renamed over it."""
    if "://" in data_dir:
        return
    index = read_index(data_dir)
    if ds in index.get("ds", {}):
        del index["ds"][ds]
        _replace_index(data_dir, index)


class SortedTable:
    """Rows of parquet files sorted by ``key`` (``warehouse.write_sorted``), found by key."""

    def __init__(self, folder: str, key: str):
        self.folder, self.key = local(folder), key
        self._lock = threading.Lock()
        groups = []  # (min, max, file, row group)
        files = sorted(p for p in Path(self.folder).glob("*.parquet"))
        self._files = {str(p): pq.ParquetFile(p, memory_map=False) for p in files}
        for name, f in self._files.items():
            col = f.schema_arrow.get_field_index(key)
            for rg in range(f.metadata.num_row_groups):
                stats = f.metadata.row_group(rg).column(col).statistics
                if f.metadata.row_group(rg).num_rows and stats is not None and stats.has_min_max:
                    groups.append((stats.min, stats.max, name, rg))
        groups.sort()
        self._groups = groups
        self._mins = [g[0] for g in groups]

    def rows(self, value: Any, columns: list[str] | None = None) -> pa.Table:
        """Every row whose key equals ``value`` (compared as values, never as a query string)."""
        end = bisect.bisect_right(self._mins, value)
        read = None if columns is None else list(dict.fromkeys([*columns, self.key]))
        parts = []
        for lo, hi, name, rg in self._groups[:end]:  # the groups whose min is <= value ...
            if hi < value:  # ... and whose max is >= value
                continue
            with self._lock:  # a ParquetFile is read by one thread at a time
                table = self._files[name].read_row_group(rg, columns=read)
            found = table.filter(pc.equal(table[self.key], value))
            parts.append(found if columns is None else found.select(columns))
        if not parts:
            return pa.table({}) if columns is None else pa.table({c: [] for c in columns})
        return pa.concat_tables(parts)
