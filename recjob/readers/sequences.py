"""Sequence files (``input.format=sequences``): one user per line, ``user item1 item2 ...`` in time order (the
S3-Rec / ICLRec next-item files), or ``user item`` one interaction per line in time order (SASRec's files);
whitespace separated. Both are read the same way: each item token is one interaction, and a user's
interactions in file order are their time order (see ``recjob.readers``); there are no ratings (1.0).
"""
from __future__ import annotations

from pyspark.sql import DataFrame

from recjob.readers.base import Reader
from recjob.readers.lines import SCHEMA, map_lines, plain_id

NO_ITEMS = "sequence line without items"
BAD_TOKEN = "user or item id not printable"


def parse_line(text: str) -> tuple[list[tuple], str | None]:
    tokens = text.split()
    if len(tokens) < 2:
        return [], NO_ITEMS
    if not all(plain_id(t) for t in tokens):
        return [], BAD_TOKEN
    user = tokens[0]
    return [(user, item, 1.0, None, None, None, None, None) for item in tokens[1:]], None


def parse(lines: DataFrame) -> DataFrame:
    """Lines (line, file, _line) -> ``readers.lines.SCHEMA`` rows, one per item of each line."""
    return lines.mapInPandas(lambda batches: map_lines(batches, parse_line), SCHEMA)


class Sequences(Reader):
    name = "sequences"
    summary = ("one user per line, 'user item1 item2 ...' in time order (S3-Rec), or 'user item' per line "
               "(SASRec): no times, the order is the time")

    def has_times(self, inp):
        return False

    def has_ratings(self, inp):
        return False

    def parser(self, inp):
        return parse


READERS = (Sequences(),)
