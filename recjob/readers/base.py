"""What every input format shares: the reasons a line is quarantined whatever its format, the latest time
accepted, and ``Reader``, what a format declares to ingest and to the configuration check. Spark-free: the
configuration check imports it."""
from __future__ import annotations

import datetime as dt
from typing import Any, Callable

# Reasons a line is quarantined that every line-based reader shares.
NOT_UTF8 = "not UTF-8 text"
BLANK = "blank line"
HEADER = "header line (input.header)"
# The latest time accepted: fixed, not the run date, so a backfill (an early ds over today's file) keeps its
# data and a rerun gives the same rows; seconds since 1970 in milliseconds are past it from 1971 on.
MAX_REVIEW_TIME = int(dt.datetime(2100, 1, 1, tzinfo=dt.timezone.utc).timestamp())

CSV_SETTINGS = ("columns", "delimiter", "header")  # input.* settings that only delimited files take


class Reader:
    """An input format (``input.format``). A line reader turns the lines ingest reads (a DataFrame of the raw
    bytes, the file and a line id) into parsed rows: the review fields + file, _line, reason, raw (and _pos for
    many interactions on one line); ingest then finds duplicates, accounts for every line and writes the tables.
    A whole-file reader (``whole_files``) reads its files itself and returns (reviews, items or None,
    quarantine). ``input.metadata``, for line readers, is Amazon metadata JSON lines."""

    name: str = ""
    summary: str = ""  # one line for the docs and the configuration check's message
    whole_files: bool = False

    def problems(self, inp: Any) -> list[str]:
        """What is wrong with the ``input`` settings for this format (empty: nothing)."""
        given = [k for k in CSV_SETTINGS if getattr(inp, k)]
        if given:
            return [f"input.{', input.'.join(given)} describe input.format=csv files, not input.format={self.name}"]
        return []

    def has_times(self, inp: Any) -> bool:
        """Whether the rows carry times (else a user's rows in file order are their time order)."""
        return True

    def has_ratings(self, inp: Any) -> bool:
        """Whether the rows carry ratings (else every row is 1.0)."""
        return True

    def parser(self, inp: Any) -> Callable:
        """Line readers: lines DataFrame -> parsed rows."""
        raise NotImplementedError(f"input.format={self.name} reads whole files")

    def read(self, spark: Any, reviews_path: str, metadata_path: str | None) -> tuple:
        """Whole-file readers: (reviews, items or None, quarantine) of the files."""
        raise NotImplementedError(f"input.format={self.name} reads lines")
