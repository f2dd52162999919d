"""The input formats' registry: every module of this package with ``READERS`` (``base.Reader`` objects) adds
formats; ingest and the configuration check ask the registry, never a format by name. Importing it needs no
PyYAML.

Every reader maps its rows onto the review columns (reviewerID, asin, overall, unixReviewTime) so every later
stage is the same whatever the input:

- ``amazon``: Amazon Review Data JSON lines, the 2018 files and the 2014 ones (``reviews_<Category>_5.json.gz``:
  ``helpful`` instead of ``vote``, which is not kept anyway), parsed strictly (``readers.amazon``).
- ``movielens``: MovieLens ``u.data`` / ``ratings.dat`` / ``ratings.csv`` (``readers.movielens``).
- ``csv`` and its preset ``amazon-ratings``: delimited rating files; ``input.columns`` names the role of each
  column in file order (``readers.delimited``).
- ``sequences``: one user per line, ``user item1 item2 ...`` in time order (the S3-Rec / ICLRec files), or the
  SASRec ``user item`` one interaction per line (``readers.sequences``).

**Files without times** (``sequences``, or ``csv`` without a ``time`` column): a user's rows in file order are
their time order, stored as ``unixReviewTime`` = the row's position among that user's rows (0, 1, 2, ... seconds
after 1970-01-01), so the temporal leave-last-out split holds out each user's last item for test and the one
before for validation: the next-item protocol. The sample stage does not apply its time window to such input
(there are no dates to window). **Files without ratings**: every row gets ``overall`` = 1.0 (an interaction);
models that predict ratings are refused for them.
"""
from __future__ import annotations

import importlib
import pkgutil
from typing import Any, Callable

from recjob.readers.base import BLANK, HEADER, MAX_REVIEW_TIME, NOT_UTF8, Reader  # noqa: F401 (re-exported)

READERS: dict[str, Reader] = {}  # input.format -> its reader, from every module's READERS (see ``discover``)


def discover() -> dict[str, Reader]:
    """Register the readers (``READERS``, a tuple) of every module of this package and of any folder added to
    its ``__path__``: adding a format is one module."""
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if info.name in ("base", "lines") or info.name.startswith("_"):
            continue
        for reader in getattr(importlib.import_module(f"{__name__}.{info.name}"), "READERS", ()):
            if isinstance(reader, Reader):
                READERS.setdefault(reader.name, reader)
    return READERS


def get(name: str) -> Reader:
    try:
        return READERS[name]
    except KeyError:
        raise ValueError(f"input.format={name!r} must be one of {', '.join(READERS)}") from None


def formats() -> dict[str, str]:
    """Every format with its one-line summary."""
    return {name: r.summary for name, r in READERS.items()}


def problems(inp: Any) -> list[str]:
    """What is wrong with the input settings (empty: nothing), for the config check."""
    if inp.format not in READERS:
        return [f"input.format={inp.format!r} must be one of {', '.join(READERS)}"]
    return get(inp.format).problems(inp)


def has_times(inp: Any) -> bool:
    """Whether ``input``'s rows carry times (else their order is the time, see the module doc)."""
    return get(inp.format).has_times(inp)


def has_ratings(inp: Any) -> bool:
    """Whether ``input``'s rows carry ratings (else every row is 1.0)."""
    return get(inp.format).has_ratings(inp)


def metadata_parser() -> Callable:
    """Metadata lines (``input.metadata``: Amazon metadata JSON lines, whatever the reviews' format) -> parsed
    item rows."""
    from recjob.readers import amazon

    return amazon.parse_metadata


discover()
