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
from functools import partial

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from recjob.readers import MAX_REVIEW_TIME, Layout
from recjob.readers.lines import FIRST, SCHEMA, map_lines, plain_id

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
