"""Delimited rating files (``input.format=csv``, and the ``amazon-ratings`` preset): one interaction per line,
each column's role given by ``input.columns`` in file order (user, item, rating, time; ``_`` ignored).

A time is integer seconds since 1970 (UTC) or an ISO 8601 date or date-time (without an offset: UTC). Without a
rating column every row is 1.0; without a time column a user's rows in file order are their time order (see
``recjob.readers``). Every line is a row or a quarantine row with its reason, as for the JSON reader.
"""
from __future__ import annotations

import csv
import datetime as dt
import math
from dataclasses import dataclass
from functools import partial

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from recjob.readers.base import MAX_REVIEW_TIME, Reader
from recjob.readers.lines import FIRST, SCHEMA, map_lines, plain_id

ROLES = ("user", "item", "rating", "time")
IGNORED = "_"


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

FIELDS = "wrong number of fields for input.columns"
BAD_USER = "user id empty or not a plain string"
BAD_ITEM = "item id empty or not a plain string"
BAD_RATING = "rating not a finite number"
BAD_TIME = "time not integer seconds since 1970 or an ISO date"
FUTURE_TIME = "time after 2100 (milliseconds? far future?)"


def parse_time(text: str) -> int | None:
    """Seconds since 1970 of an integer or an ISO 8601 date / date-time (naive: UTC); None when neither."""
    if text.isdigit():
        return int(text)
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return int(when.timestamp())


def parse_line(text: str, layout: Layout) -> tuple[list[tuple], str | None]:
    """One line -> ([the review fields], None) or ([], reason)."""
    fields = next(csv.reader([text.rstrip("\r\n")], delimiter=layout.delimiter))
    if len(fields) != len(layout.columns):
        return [], FIELDS
    get = dict(zip(layout.columns, (f.strip() for f in fields)))
    user, item = get["user"], get["item"]
    if not plain_id(user):
        return [], BAD_USER
    if not plain_id(item):
        return [], BAD_ITEM
    rating = 1.0
    if "rating" in get:
        try:
            rating = float(get["rating"])
        except ValueError:
            return [], BAD_RATING
        if not math.isfinite(rating):
            return [], BAD_RATING
    time = None
    if "time" in get:
        time = parse_time(get["time"])
        if time is None or time < 0:
            return [], BAD_TIME
        if time > MAX_REVIEW_TIME:
            return [], FUTURE_TIME
    return [(user, item, rating, time, None, None, None, None)], None


def parse(lines: DataFrame, layout: Layout) -> DataFrame:
    """Lines (line, file, _line) -> ``readers.lines.SCHEMA`` rows. With a header, each file's first line is
    quarantined as the header (accounted for, not an error)."""
    if layout.header:
        first = lines.groupBy("file").agg(F.min("_line").alias("_first_line"))
        lines = (lines.join(F.broadcast(first), "file")
                 .withColumn(FIRST, F.col("_line") == F.col("_first_line")).drop("_first_line"))
    return lines.mapInPandas(partial(map_lines, parse=partial(parse_line, layout=layout)), SCHEMA)


class Delimited(Reader):
    """Delimited rating files: ``csv`` (the layout from input.columns, .delimiter, .header) and its presets."""

    def __init__(self, name: str, summary: str):
        self.name, self.summary = name, summary

    def problems(self, inp):
        if self.name != "csv":
            return super().problems(inp)
        try:
            layout(inp)
        except ValueError as exc:
            return [str(exc)]
        return []

    def has_times(self, inp):
        return "time" in layout(inp).columns

    def has_ratings(self, inp):
        return "rating" in layout(inp).columns

    def parser(self, inp):
        return partial(parse, layout=layout(inp))


READERS = (
    Delimited("csv", "delimited ratings: input.columns names each column's role in file order (user, item, "
                     "rating, time, _ to ignore), input.delimiter, input.header"),
    Delimited("amazon-ratings", "Amazon 2018 'ratings only' CSV files: item,user,rating,timestamp, no header"),
)
