"""What the line-based readers (``delimited``, ``sequences``) share: decoding a line, the parsed rows' columns
(the review fields + where each came from + why it was quarantined), and the loop that runs in the executors."""
from __future__ import annotations

from typing import Callable, Iterator

import pandas as pd
from pyspark.sql import types as T

from recjob import schema as S
from recjob.readers.base import BLANK, HEADER, NOT_UTF8

# Besides the review fields: the source file, an id increasing along each file, the row's position on its line
# (a sequence line holds many), the quarantine reason (None: clean) and, for a quarantined line, its text.
SCHEMA = T.StructType(S.REVIEW.fields + [
    T.StructField("file", T.StringType()), T.StructField("_line", T.LongType()),
    T.StructField("_pos", T.IntegerType()), T.StructField(S.REASON, T.StringType()),
    T.StructField(S.RAW, T.StringType())])
FIRST = "_first"  # a boolean column of the lines: the file's first line (a header when input.header)

# One line's text -> (the review field tuples it holds, None) or ([], why it is quarantined).
LineParser = Callable[[str], "tuple[list[tuple], str | None]"]


def decode(line: bytes | None) -> tuple[str, str | None]:
    """(the line as text, None) or (readable text with ``\\xNN`` escapes, why it cannot be parsed)."""
    raw = line or b""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("utf-8", "backslashreplace"), NOT_UTF8
    text = text.lstrip("\ufeff")  # a byte-order mark at the start of a file (Windows exports)
    return text, (BLANK if not text.strip() else None)


def map_lines(batches: Iterator[pd.DataFrame], parse: LineParser) -> Iterator[pd.DataFrame]:
    """mapInPandas body: lines (line, file, _line[, _first]) -> ``SCHEMA`` rows, one per parsed row, one per
    quarantined line."""
    names = S.REVIEW.fieldNames()
    empty = (None,) * len(names)
    for pdf in batches:
        rows, files, ids, pos, reasons, raws = [], [], [], [], [], []
        first = pdf[FIRST].to_numpy() if FIRST in pdf else None
        for j, (line, file, line_id) in enumerate(zip(pdf["line"], pdf["file"], pdf["_line"])):
            text, reason = decode(line)
            values: list[tuple] = []
            if reason is None and first is not None and first[j]:
                reason = HEADER
            if reason is None:
                values, reason = parse(text)
            if reason is not None:
                values = [empty]
            for p, v in enumerate(values):
                rows.append(v)
                files.append(file)
                ids.append(line_id)
                pos.append(p)
                reasons.append(reason)
                raws.append(text if reason else None)
        out = pd.DataFrame(rows, columns=names)
        out["file"], out["_line"], out["_pos"] = files, ids, pos
        out[S.REASON], out[S.RAW] = reasons, raws
        yield out


def plain_id(token: str) -> bool:
    return bool(token) and token == token.strip() and token.isprintable()
