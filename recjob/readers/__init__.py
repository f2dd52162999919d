"""The input formats ingest reads, in one place: their names, what each file carries, and the column layout of
delimited files. Importing this needs neither Spark nor PyYAML (the config check asks it).

Every reader maps its rows onto the review columns (reviewerID, asin, overall, unixReviewTime) so every later
stage is the same whatever the input:

- ``amazon``: Amazon Review Data JSON lines, the 2018 files and the 2014 ones (``reviews_<Category>_5.json.gz``:
  ``helpful`` instead of ``vote``, which is not kept anyway), parsed strictly by the ingest stage itself.
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

import datetime as dt
from dataclasses import dataclass

FORMATS = {
    "amazon": "Amazon Review Data JSON lines (2018 and 2014 files), item metadata optional",
    "movielens": "MovieLens u.data / ratings.dat / ratings.csv, with u.item / movies.dat / movies.csv",
    "csv": "delimited ratings: input.columns names each column's role in file order (user, item, rating, "
           "time, _ to ignore), input.delimiter, input.header",
    "amazon-ratings": "Amazon 2018 'ratings only' CSV files: item,user,rating,timestamp, no header",
    "sequences": "one user per line, 'user item1 item2 ...' in time order (S3-Rec), or 'user item' per line "
                 "(SASRec): no times, the order is the time",
}
ROLES = ("user", "item", "rating", "time")
IGNORED = "_"

# Reasons a line is quarantined that every line-based reader shares.
NOT_UTF8 = "not UTF-8 text"
BLANK = "blank line"
HEADER = "header line (input.header)"
# The latest time accepted: fixed, not the run date, so a backfill (an early ds over today's file) keeps its
# data and a rerun gives the same rows; seconds since 1970 in milliseconds are past it from 1971 on.
MAX_REVIEW_TIME = int(dt.datetime(2100, 1, 1, tzinfo=dt.timezone.utc).timestamp())


@dataclass(frozen=True)
class Layout:
    """A delimited file's layout: the role of each column in file order, the delimiter, a header line or not."""

    columns: tuple[str, ...]
    delimiter: str = ","
    header: bool = False


PRESETS = {"amazon-ratings": Layout(("item", "user", "rating", "time"), ",", False)}
# names for delimiters that are awkward on a command line (--set values are YAML: "," "|" ":" are not strings)
NAMED_DELIMITERS = {"tab": "\t", "\\t": "\t", "comma": ",", "semicolon": ";", "pipe": "|", "colon": ":",
                    "space": " "}


def layout(inp) -> Layout | None:
    """The layout of ``input`` (an ``InputConfig``) when its format is delimited, else None. Raises ValueError
    with the fix when the settings cannot describe a file."""
    if inp.format in PRESETS:
        return PRESETS[inp.format]
    if inp.format != "csv":
        return None
    columns = tuple(c.strip() for c in inp.columns.split(",")) if inp.columns.strip() else ()
    if not columns:
        raise ValueError("input.format=csv needs input.columns: the role of each column in file order, e.g. "
                         "user,item,rating,time or item,user,rating,time (_ for a column to ignore)")
    unknown = [c for c in columns if c not in ROLES + (IGNORED,)]
    repeated = sorted({c for c in columns if c != IGNORED and columns.count(c) > 1})
    missing = [r for r in ("user", "item") if r not in columns]
    if unknown or repeated or missing:
        raise ValueError(f"input.columns={inp.columns!r}: " + "; ".join(
            ([f"unknown role(s) {', '.join(unknown)} (known: {', '.join(ROLES)}, {IGNORED})"] if unknown else [])
            + ([f"{', '.join(repeated)} named twice"] if repeated else [])
            + ([f"no {' and no '.join(missing)} column"] if missing else [])))
    delimiter = NAMED_DELIMITERS.get(inp.delimiter, inp.delimiter)
    if not delimiter:
        delimiter = "\t" if ".tsv" in inp.reviews.lower() else ","
    if len(delimiter) != 1:
        raise ValueError(f"input.delimiter={inp.delimiter!r} must be one character or one of "
                         f"{', '.join(NAMED_DELIMITERS)} (empty: tab for .tsv files, else comma)")
    return Layout(columns, delimiter, bool(inp.header))


def _carries(inp, role: str) -> bool:
    if inp.format == "sequences":  # user and item only
        return False
    lay = layout(inp)
    return lay is None or role in lay.columns


def has_times(inp) -> bool:
    """Whether ``input``'s rows carry times (else their order is the time, see the module doc)."""
    return _carries(inp, "time")


def has_ratings(inp) -> bool:
    """Whether ``input``'s rows carry ratings (else every row is 1.0)."""
    return _carries(inp, "rating")


def problems(inp) -> list[str]:
    """What is wrong with the input settings (empty: nothing), for the config check."""
    if inp.format not in FORMATS:
        return [f"input.format={inp.format!r} must be one of {', '.join(FORMATS)}"]
    try:
        layout(inp)
    except ValueError as exc:
        return [str(exc)]
    if inp.format != "csv" and (inp.columns or inp.delimiter or inp.header):
        return [f"input.columns, input.delimiter and input.header describe input.format=csv files, not "
                f"input.format={inp.format}"]
    return []
