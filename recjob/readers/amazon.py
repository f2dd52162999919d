"""Amazon Review Data JSON lines (``input.format=amazon``): the 2018 files and the 2014 ones
(``reviews_<Category>_5.json.gz``: ``helpful`` instead of ``vote``, which is not kept anyway), and the item
metadata JSON lines (``meta_<Category>.json.gz``) that ``input.metadata`` names for every line format.

Lines are parsed strictly in Python (``mapInPandas``), not by Spark's JSON reader, which would stringify an id
given as a number or an object, accept a ``[{...}]`` array as rows, drop a second object on the same line and
turn non-UTF-8 bytes into replacement characters. Every line is a clean row or a reason.
"""
from __future__ import annotations

import json
import math
from functools import partial
from typing import Any, Iterator

import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import types as T

from recjob import schema as S
from recjob.readers.base import MAX_REVIEW_TIME, Reader
from recjob.readers.lines import decode

_TRACE = [T.StructField("file", T.StringType()), T.StructField("_line", T.LongType()),
          T.StructField(S.REASON, T.StringType()), T.StructField(S.RAW, T.StringType())]

# Reasons a line is quarantined (besides those every line reader shares: readers.base): whole lines ...
MALFORMED = "malformed JSON"
NOT_OBJECT = "not a JSON object (an array, a scalar or null)"
TRAILING = "more than one JSON value on the line"
# ... review fields ...
MISSING_USER = "missing reviewerID"
MISSING_ITEM = "missing asin"
BAD_USER = "reviewerID not a plain string (a number, list or object, or padded with spaces)"
BAD_ITEM = "asin not a plain string (a number, list or object, or padded with spaces)"
BAD_RATING = "overall missing or not a number in 1..5"
BAD_TIME = "unixReviewTime missing, not an integer or negative"
FUTURE_TIME = "unixReviewTime after 2100 (milliseconds? far future?)"
BAD_FIELD = "verified, vote, summary or reviewText of the wrong type"
# ... metadata fields ...
META_MISSING_ITEM = "metadata without asin"
META_BAD_ITEM = "metadata asin not a plain string (a number, list or object, or padded with spaces)"
META_BAD_FIELD = "metadata title, brand, main_cat, category or price of the wrong type"




def _no_constants(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


_DECODER = json.JSONDecoder(parse_constant=_no_constants)  # NaN, Infinity are not JSON


def parse_line(line: bytes | None) -> tuple[dict | None, str | None, str]:
    """One line -> (the JSON object, None, text) or (None, reason, text). ``text`` is the line as readable
    text: non-UTF-8 bytes are kept as ``\\xNN`` escapes, so the quarantine table stays readable."""
    text, reason = decode(line)
    if reason:
        return None, reason, text
    try:
        start = len(text) - len(text.lstrip())
        obj, end = _DECODER.raw_decode(text, start)
    except (ValueError, RecursionError):
        return None, MALFORMED, text
    if text[end:].strip():
        return None, TRAILING, text
    if not isinstance(obj, dict):
        return None, NOT_OBJECT, text
    return obj, None, text


def _id(value: Any, missing: str, bad: str) -> str | None:
    """None when the id is a plain string, else the reason."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return missing
    if not isinstance(value, str) or value != value.strip() or not value.isprintable():
        return bad
    return None


def _text(value: Any) -> bool:
    return value is None or isinstance(value, str)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_review(obj: dict, max_time: int = MAX_REVIEW_TIME) -> tuple[tuple | None, str | None]:
    """A parsed review -> (its ``S.REVIEW`` values, None) or (None, reason)."""
    user, item = obj.get(S.USER), obj.get(S.ITEM)
    reason = _id(user, MISSING_USER, BAD_USER) or _id(item, MISSING_ITEM, BAD_ITEM)
    if reason:
        return None, reason
    rating, time = obj.get(S.RATING), obj.get(S.TIME)
    if not _number(rating) or not 1.0 <= rating <= 5.0:
        return None, BAD_RATING
    if not isinstance(time, int) or isinstance(time, bool) or time < 0:
        return None, BAD_TIME
    if time > max_time:
        return None, FUTURE_TIME
    verified, vote = obj.get("verified"), obj.get("vote")
    if isinstance(vote, int) and not isinstance(vote, bool):
        vote = str(vote)  # a count written as a number rather than the usual "12"
    if not (verified is None or isinstance(verified, bool)) or not all(
            _text(v) for v in (vote, obj.get("summary"), obj.get("reviewText"))):
        return None, BAD_FIELD
    return (user, item, float(rating), time, verified, vote, obj.get("summary"), obj.get("reviewText")), None


def check_metadata(obj: dict) -> tuple[tuple | None, str | None]:
    """A parsed metadata record -> (its ``S.ITEM_META`` values, None) or (None, reason). Titles are trimmed."""
    reason = _id(obj.get(S.ITEM), META_MISSING_ITEM, META_BAD_ITEM)
    if reason:
        return None, reason
    title, category, price = obj.get(S.TITLE), obj.get("category"), obj.get("price")
    if _number(price):
        price = str(price)
    if not all(_text(obj.get(k)) for k in (S.TITLE, "brand", "main_cat")) or not _text(price) or not (
            category is None or (isinstance(category, list) and all(isinstance(c, str) for c in category))):
        return None, META_BAD_FIELD
    title = title.strip() or None if isinstance(title, str) else None
    return (obj[S.ITEM], title, obj.get("brand"), obj.get("main_cat"), category, price), None


def _parse_batches(batches: Iterator[pd.DataFrame], check, names: list[str]) -> Iterator[pd.DataFrame]:
    """mapInPandas body: (line bytes, file, _line) -> the typed fields + file, _line, reason, raw."""
    for pdf in batches:
        rows, reasons, raws = [], [], []
        empty = (None,) * len(names)
        for line in pdf["line"]:
            obj, reason, text = parse_line(line)
            values = None
            if reason is None:
                values, reason = check(obj)
            rows.append(values or empty)
            reasons.append(reason)
            raws.append(text if reason else None)  # clean rows need no copy of their line
        out = pd.DataFrame(rows, columns=names)
        out["file"], out["_line"] = pdf["file"].to_numpy(), pdf["_line"].to_numpy()
        out[S.REASON], out[S.RAW] = reasons, raws
        yield out


def parse_reviews(lines: DataFrame) -> DataFrame:
    schema = T.StructType(S.REVIEW.fields + _TRACE)
    return lines.mapInPandas(partial(_parse_batches, check=check_review, names=S.REVIEW.fieldNames()), schema)


def parse_metadata(lines: DataFrame) -> DataFrame:
    schema = T.StructType(S.ITEM_META.fields + _TRACE)
    return lines.mapInPandas(partial(_parse_batches, check=check_metadata, names=S.ITEM_META.fieldNames()), schema)


class Amazon(Reader):
    name = "amazon"
    summary = "Amazon Review Data JSON lines (2018 and 2014 files), item metadata optional"

    def parser(self, inp):
        return parse_reviews


READERS = (Amazon(),)
