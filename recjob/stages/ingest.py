"""ingest: raw review and metadata files -> typed ``reviews`` and ``items`` tables + ``quarantine``.

Reads ``input.format`` files (``recjob.readers``: Amazon JSON lines, 2018 and 2014, by default; MovieLens,
delimited rating files, next-item sequence files) from a path, folder or glob on any Hadoop filesystem. Every
line is accounted for: it is either a clean review (item) or a quarantine row with its reason and source file;
a file that cannot be read at all is named in a one-line error, or, with ``ingest.skip_unreadable_files``,
recorded in quarantine while the other files go on.

Lines (of JSON, delimited and sequence files) are parsed strictly in Python (``mapInPandas``), not by Spark's
JSON reader, which would stringify an id given as a number or an object, accept a ``[{...}]`` array as rows,
drop a second object on the same line and turn non-UTF-8 bytes into replacement characters. Nothing is
replaced before it is validated: when the input is refused (no valid review, too many bad lines, no valid
metadata) the previous tables of the ds stay as they were, and the refused run's quarantine rows go to
``rejected/ds=<ds>/ingest/quarantine`` for inspection.
"""
from __future__ import annotations

import json
import logging
import math
import re
import urllib.parse
from functools import partial
from typing import Any, Iterator

import pandas as pd
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from recjob import errors, readers, warehouse
from recjob import schema as S
from recjob.readers import HEADER, MAX_REVIEW_TIME, delimited, movielens, sequences
from recjob.readers.lines import decode
from recjob.config import Config
from recjob.stages import stage_timer
from recjob.names import Table

log = logging.getLogger(__name__)

# Reasons a line is quarantined: whole lines (the first two shared with every line reader, as is HEADER) ...
NOT_UTF8, BLANK = readers.NOT_UTF8, readers.BLANK
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
DUPLICATE = "duplicate (reviewerID, asin): a later review kept"
# ... metadata fields ...
META_MISSING_ITEM = "metadata without asin"
META_BAD_ITEM = "metadata asin not a plain string (a number, list or object, or padded with spaces)"
META_BAD_FIELD = "metadata title, brand, main_cat, category or price of the wrong type"
META_DUPLICATE = "duplicate metadata asin: first kept"
# ... and whole files.
UNREADABLE = "unreadable file"

# Quarantined for these, a line is not "bad" input: it counts towards ingest.max_bad_fraction only otherwise.
NOT_BAD = (DUPLICATE, META_DUPLICATE, BLANK, HEADER)

# At most this many repeated (reviewerID, asin) pairs (asins of metadata) are broadcast, so that only their lines
# are ranked to find the duplicates; above it every clean line is ranked (a shuffle of the whole lines).
BROADCAST_REPEATED_KEYS = 1_000_000

_TRACE = [T.StructField("file", T.StringType()), T.StructField("_line", T.LongType()),
          T.StructField(S.REASON, T.StringType()), T.StructField(S.RAW, T.StringType())]


class InputRefused(RuntimeError):
    """The input cannot make a trustworthy run (unreadable, too much bad data): retrying will not help."""


# ---------------------------------------------------------------- strict parsing of one line (pure Python)

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


# ---------------------------------------------------------------- Spark: files, lines, transforms

def input_files(spark: SparkSession, pattern: str, key: str) -> list[str]:
    """The files a path, folder (recursively) or glob names, as Spark would read them (names starting with
    ``_`` or ``.`` are skipped); a clear error when it names none."""
    fs, hpath = warehouse.hadoop_fs(spark, pattern)
    # a name that exists is that file or folder, even when it holds glob characters (part[1].json)
    statuses = [fs.getFileStatus(hpath)] if fs.exists(hpath) else (fs.globStatus(hpath) or [])
    if not statuses:
        raise warehouse.MissingInputError(f"ingest: no files at {pattern} ({key}): the path or glob matches nothing")
    files = []
    for status in statuses:
        if status.isDirectory():
            it = fs.listFiles(status.getPath(), True)
            while it.hasNext():
                path = it.next().getPath()
                parts = str(path)[len(str(status.getPath())):].split("/")
                if not any(p.startswith(("_", ".")) for p in parts if p):
                    files.append(str(path))
        else:
            files.append(str(status.getPath()))
    if not files:
        raise warehouse.MissingInputError(f"ingest: no files at {pattern} ({key}): the folder is empty")
    return sorted(files)


GLOB_CHARS = re.compile(r"([{}\[\]*?\\])")


def glob_escaped(path: str) -> str:
    """A file name as a Hadoop glob that matches only itself (``part[1].json`` -> ``part\\[1\\].json``)."""
    return GLOB_CHARS.sub(r"\\\1", path)


def same_file(a: str, b: str) -> bool:
    """Whether two names of a file are the same: Spark's ``input_file_name`` percent-encodes (file:///a%20b),
    Hadoop's listing does not (file:/a b)."""
    def norm(path: str) -> str:
        return urllib.parse.unquote(path).split(":", 1)[-1].lstrip("/") if path.startswith("file:") \
            else urllib.parse.unquote(path)
    return norm(a) == norm(b)


def silent_files(spark: SparkSession, parsed: DataFrame, files: list[str]) -> dict[str, str]:
    """The files of ``files`` that hold bytes but gave no line, with why: read as nothing, they would be lost
    without a trace (a compression Hadoop's codecs do not decode, such as an lz4 frame file)."""
    seen = [r["file"] for r in parsed.select("file").distinct().collect()]
    out = {}
    for path in files:
        if any(same_file(path, s) for s in seen):
            continue
        fs, hpath = warehouse.hadoop_fs(spark, path)
        size = fs.getFileStatus(hpath).getLen()
        if size > 0 and not _empty_by_content(fs, hpath, path, size):
            out[path] = (f"{size:,} bytes but no line read: a compression Hadoop does not decode (an lz4 frame "
                         f"file, say: decompress it first)?")
    return out


def _empty_by_content(fs, hpath, path: str, size: int) -> bool:  # noqa: ANN001 (Hadoop objects)
    """A file that rightly gives no line: a gzip file (Hadoop's gzip codec decoded it: it holds nothing), or a
    few bytes of byte-order mark and blanks."""
    stream = fs.open(hpath)
    try:
        head = bytes(stream.read() & 0xFF for _ in range(min(size, 64)))
    finally:
        stream.close()
    if path.endswith(".gz") and head[:2] == b"\x1f\x8b":
        return True
    return size <= 64 and not head.replace(b"\xef\xbb\xbf", b"").strip()


def read_lines(spark: SparkSession, files: list[str]) -> DataFrame:
    """One row per line: the raw bytes (invalid UTF-8 kept as is), the file, an id increasing along each file.
    Fewer read tasks than cores (one gzip file is one task: gzip does not split) are spread over the cores by
    the line id, so that the parsing after them runs on every core."""
    lines = (spark.read.text([glob_escaped(f) for f in files])  # Spark expands globs in every path it reads
             .select(F.col("value").cast("binary").alias("line"), F.input_file_name().alias("file"))
             .withColumn("_line", F.monotonically_increasing_id()))
    cores = spark.sparkContext.defaultParallelism
    if lines.rdd.getNumPartitions() < cores:
        lines = lines.repartition(cores, "_line")
    return lines


def parse_reviews(lines: DataFrame) -> DataFrame:
    schema = T.StructType(S.REVIEW.fields + _TRACE)
    return lines.mapInPandas(partial(_parse_batches, check=check_review, names=S.REVIEW.fieldNames()), schema)


def parse_metadata(lines: DataFrame) -> DataFrame:
    schema = T.StructType(S.ITEM_META.fields + _TRACE)
    return lines.mapInPandas(partial(_parse_batches, check=check_metadata, names=S.ITEM_META.fieldNames()), schema)


def tag_reviews(parsed: DataFrame, cached: list | None = None) -> DataFrame:
    """Every parsed review line with its reason, duplicates included: of the clean lines of one (reviewerID,
    asin) the latest by unixReviewTime is kept (ties: the highest rating, the longest text, then file order).
    ``cached``: see ``_tag_duplicates``."""
    order = Window.partitionBy(S.USER, S.ITEM).orderBy(
        F.col(S.TIME).desc(), F.col(S.RATING).desc(), F.length(F.coalesce("reviewText", F.lit(""))).desc(),
        F.col("file"), F.col("_line"))
    return _tag_duplicates(parsed, [S.USER, S.ITEM], order, DUPLICATE, cached)


def tag_metadata(parsed: DataFrame, cached: list | None = None) -> DataFrame:
    """Every parsed metadata line with its reason; of one asin's clean lines the first in file order is kept."""
    return _tag_duplicates(parsed, [S.ITEM], Window.partitionBy(S.ITEM).orderBy("file", "_line"), META_DUPLICATE,
                           cached)


def _tag_duplicates(parsed: DataFrame, keys: list[str], order: Window, reason: str,
                    cached: list | None = None) -> DataFrame:
    """The clean rows after the first by ``order`` among those of equal ``keys`` get ``reason``. With a
    ``cached`` list (``parsed`` is cached): the repeated keys are found first (a shuffle of the key columns
    only), cached and appended to it; when there are at most ``BROADCAST_REPEATED_KEYS``, only their rows are
    ranked (the keys broadcast), so the whole rows are never shuffled."""
    good = parsed.where(F.col(S.REASON).isNull())
    bad = parsed.where(F.col(S.REASON).isNotNull())
    if cached is not None:
        repeated = (good.groupBy(*keys).agg(F.count(F.lit(1)).alias("_n")).where(F.col("_n") > 1)
                    .select(*keys, F.lit(True).alias("_repeated")).cache())
        cached.append(repeated)
        if repeated.count() <= BROADCAST_REPEATED_KEYS:
            flagged = good.join(F.broadcast(repeated), keys, "left")
            single = flagged.where(F.col("_repeated").isNull()).drop("_repeated")
            good = flagged.where(F.col("_repeated").isNotNull()).drop("_repeated")
            return single.unionByName(_rank_duplicates(good, order, reason)).unionByName(bad)
    return _rank_duplicates(good, order, reason).unionByName(bad)


def _rank_duplicates(good: DataFrame, order: Window, reason: str) -> DataFrame:
    ranked = good.withColumn("_n", F.row_number().over(order))
    return ranked.withColumn(S.REASON, F.when(F.col("_n") > 1, F.lit(reason))).drop("_n")


def split_tagged(tagged: DataFrame, source: str, columns: list[str], fields: list[str]) -> tuple[DataFrame, DataFrame]:
    """(the kept rows' columns, the quarantined rows: source, reason, file, raw line or the fields as JSON)."""
    clean = tagged.where(F.col(S.REASON).isNull()).select(*columns)
    raw = F.coalesce(F.col(S.RAW), F.to_json(F.struct(*fields)))
    bad = tagged.where(F.col(S.REASON).isNotNull())
    return clean, bad.select(F.lit(source).alias(S.SOURCE), S.REASON, "file", raw.alias(S.RAW))


def transform_reviews(parsed: DataFrame) -> tuple[DataFrame, DataFrame]:
    """Parsed review lines -> (clean reviews, one per (reviewerID, asin); quarantined lines with a reason)."""
    return split_tagged(tag_reviews(parsed), "reviews", S.REVIEWS_COLUMNS, S.REVIEW.fieldNames())


def transform_metadata(parsed: DataFrame) -> tuple[DataFrame, DataFrame]:
    """Parsed metadata lines -> (one row per asin, titles trimmed; quarantined lines with a reason)."""
    return split_tagged(tag_metadata(parsed), "metadata", S.ITEMS_COLUMNS, S.ITEM_META.fieldNames())


def _unreadable(spark: SparkSession, files: list[str]) -> dict[str, str]:
    """Read each file alone (only after a read of all of them failed): {file: why it cannot be read}."""
    out = {}
    for path in files:
        try:
            spark.read.text(path).count()
        except Exception as exc:  # noqa: BLE001 (the Java error is the information)
            out[path] = errors.root_cause(exc)
    return out


def read_tagged(spark: SparkSession, files: list[str], parse, tag, key: str, skip_unreadable: bool,
                source: str, cached: list) -> tuple[DataFrame, list[tuple]]:
    """``tag(parse(lines))`` of the files, the parsed lines cached (appended to ``cached``) and counted once. A
    file that cannot be read stops the stage with its name, or, when ``skip_unreadable``, is left out and
    returned as a quarantine row."""
    parsed = parse(read_lines(spark, files)).cache()
    try:
        parsed.count()
    except Exception as exc:  # noqa: BLE001
        parsed.unpersist()
        broken = _unreadable(spark, files)
        if not broken:
            raise
        _refuse_unreadable(broken, key, skip_unreadable, exc)
    else:
        broken = silent_files(spark, parsed, files)
        if not broken:
            cached.append(parsed)
            return tag(parsed, cached), []
        _refuse_unreadable(broken, key, skip_unreadable, None)
        parsed.unpersist()
    for path, why in broken.items():
        log.warning("ingest: skipping unreadable file %s: %s", path, why)
    rows = [(source, f"{UNREADABLE}: {why}", path, None) for path, why in broken.items()]
    rest = [f for f in files if f not in broken]
    if not rest:
        return spark.createDataFrame([], parsed.schema), rows
    parsed = parse(read_lines(spark, rest)).cache()
    parsed.count()
    cached.append(parsed)
    return tag(parsed, cached), rows


def _refuse_unreadable(broken: dict[str, str], key: str, skip_unreadable: bool, exc: BaseException | None) -> None:
    """Stop the stage naming the first file that cannot be read, unless the user chose to skip such files."""
    if skip_unreadable:
        return
    path, why = next(iter(broken.items()))
    more = f" (and {len(broken) - 1} more)" if len(broken) > 1 else ""
    hint = "" if why.endswith("?") else "." if any(m in why for m in errors.DENIED_MARKERS) else \
        "; a truncated or corrupt gzip, or not gzip despite its name?"
    raise InputRefused(f"ingest: cannot read {path}{more} ({key}): {why}{hint} Set ingest.skip_unreadable_files=true "
                       f"to skip such files (recorded in quarantine)") from exc


def _unreadable_rows(spark: SparkSession, rows: list[tuple]) -> DataFrame:
    return spark.createDataFrame(rows, T.StructType([T.StructField(c, T.StringType()) for c in S.QUARANTINE_COLUMNS]))


def accounting(quarantine: DataFrame, kept: dict[str, int]) -> dict[str, dict]:
    """Per source: lines kept, quarantined per reason, bad lines (not duplicates or blank) and their fraction,
    and the files skipped as unreadable (not lines: their lines are unknown; the user chose to skip them)."""
    out = {src: {"kept": n, "quarantined": {}, "bad": 0, "unreadable_files": 0} for src, n in kept.items()}
    for row in quarantine.groupBy(S.SOURCE, S.REASON).count().collect():
        entry = out.setdefault(row[S.SOURCE], {"kept": 0, "quarantined": {}, "bad": 0, "unreadable_files": 0})
        if row[S.REASON].startswith(UNREADABLE):
            entry["unreadable_files"] += row["count"]
            continue
        entry["quarantined"][row[S.REASON]] = row["count"]
        if row[S.REASON] not in NOT_BAD:
            entry["bad"] += row["count"]
    for entry in out.values():
        entry["lines"] = entry["kept"] + sum(entry["quarantined"].values())
        entry["bad_fraction"] = entry["bad"] / entry["lines"] if entry["lines"] else 0.0
    return out


def refusals(counts: dict[str, dict], max_bad_fraction: float, metadata_given: bool) -> list[str]:
    """Why this input must not replace the ds's tables (empty: it may)."""
    problems = []
    reviews = counts.get("reviews", {"kept": 0})
    if reviews["kept"] == 0:
        problems.append("no valid review")
    if metadata_given and counts.get("metadata", {"kept": 0})["kept"] == 0:
        problems.append("no valid metadata record (a metadata file of another format?)")
    for source, entry in sorted(counts.items()):
        if entry["lines"] and entry["bad_fraction"] > max_bad_fraction:
            problems.append(f"{entry['bad']:,} of {entry['lines']:,} {source} lines are invalid "
                            f"({entry['bad_fraction']:.2%} > ingest.max_bad_fraction {max_bad_fraction:.2%})")
    return problems


def _describe(counts: dict[str, dict]) -> str:
    parts = []
    for source, entry in sorted(counts.items()):
        reasons = ", ".join(f"{n:,} {r}" for r, n in sorted(entry["quarantined"].items(), key=lambda kv: -kv[1]))
        skipped = f", {entry['unreadable_files']} unreadable files skipped" if entry["unreadable_files"] else ""
        parts.append(f"{source}: {entry['lines']:,} lines, {entry['kept']:,} kept{skipped}"
                     + (f"; quarantined: {reasons}" if reasons else ""))
    return "; ".join(parts)


def run(cfg: Config, spark: SparkSession, ds: str) -> dict:
    cached: list[DataFrame] = []
    try:
        return _run(cfg, spark, ds, cached)
    finally:
        for df in cached:
            df.unpersist()


def line_parser(cfg: Config):
    """lines -> parsed rows (the review fields + file, _line, reason, raw) for ``input.format``'s line reader;
    for input without times, each user's position in file order becomes the time (see ``recjob.readers``)."""
    lay = readers.layout(cfg.input)
    if lay is not None:
        parse = partial(delimited.parse, layout=lay)
    elif cfg.input.format == "sequences":
        parse = sequences.parse
    else:
        return parse_reviews
    return parse if readers.has_times(cfg.input) else (lambda lines: with_positions(parse(lines)))


def with_positions(parsed: DataFrame) -> DataFrame:
    """The clean rows' time = their position among the user's clean rows, in file (then line) order: 0, 1, ..."""
    order = Window.partitionBy(S.USER).orderBy("file", "_line", "_pos")
    clean = parsed.where(F.col(S.REASON).isNull()).withColumn(S.TIME, (F.row_number().over(order) - 1).cast("long"))
    return clean.unionByName(parsed.where(F.col(S.REASON).isNotNull()))


def _from_lines(cfg: Config, spark: SparkSession, cached: list, review_files: list[str],
                test_files: list[str], meta_path: str | None) -> tuple:
    """(reviews, items or None, quarantine, heldout or None) of a line format (amazon, csv, sequences), with the
    items' Amazon metadata JSON when given."""
    skip = cfg.ingest.skip_unreadable_files
    parse = line_parser(cfg)
    heldout = None
    if test_files:  # the given test split (e.g. ml-100k u1.test), used by shards.split=given
        test, _ = read_tagged(spark, test_files, parse, tag_reviews, "input.test", skip, "reviews", cached)
        heldout = split_tagged(test, "reviews", S.REVIEWS_COLUMNS, S.REVIEW.fieldNames())[0]
    tagged, unreadable = read_tagged(spark, review_files + test_files, parse, tag_reviews, "input.reviews", skip,
                                     "reviews", cached)
    reviews, quarantine = split_tagged(tagged, "reviews", S.REVIEWS_COLUMNS, S.REVIEW.fieldNames())
    items = None
    if meta_path:
        meta_files = input_files(spark, meta_path, "input.metadata")
        meta, meta_unreadable = read_tagged(spark, meta_files, parse_metadata, tag_metadata, "input.metadata", skip,
                                            "metadata", cached)
        items, meta_q = split_tagged(meta, "metadata", S.ITEMS_COLUMNS, S.ITEM_META.fieldNames())
        quarantine, unreadable = quarantine.unionByName(meta_q), unreadable + meta_unreadable
    if unreadable:
        quarantine = quarantine.unionByName(_unreadable_rows(spark, unreadable))
    return reviews, items, quarantine, heldout


def _run(cfg: Config, spark: SparkSession, ds: str, cached: list) -> dict:
    with stage_timer("ingest", ds) as record:
        reviews_path = cfg.path(cfg.input.reviews)
        review_files = input_files(spark, reviews_path, "input.reviews")
        test_path = cfg.path(cfg.input.test) if cfg.input.test else None
        test_files = input_files(spark, test_path, "input.test") if test_path else []
        meta_path = cfg.path(cfg.input.metadata) if cfg.input.metadata else None
        if meta_path and not warehouse.path_exists(spark, meta_path):
            log.warning("ingest: no metadata at %s: titles will be empty", meta_path)
            meta_path = None
        if cfg.input.format == "movielens":
            reviews, items, quarantine = movielens.read(spark, reviews_path, meta_path)
            heldout = None
            if test_path:
                heldout, _, test_q = movielens.read(spark, test_path, None)
                reviews, quarantine = reviews.unionByName(heldout), quarantine.unionByName(test_q)
            meta_path = None  # the MovieLens reader keeps every movie row
        else:
            reviews, items, quarantine, heldout = _from_lines(cfg, spark, cached, review_files, test_files, meta_path)
        kept = {"reviews": reviews.count()}
        if items is not None:
            kept["metadata"] = items.count()
        counts = accounting(quarantine, kept)
        record["read"] = {"reviews": reviews_path, "files": len(review_files) + len(test_files),
                          "metadata": meta_path, "lines": {s: c["lines"] for s, c in counts.items()}}
        log.info("ingest ds=%s: %s", ds, _describe(counts))
        problems = refusals(counts, cfg.ingest.max_bad_fraction, bool(meta_path))
        if problems:  # validated before anything is replaced: the ds's tables keep their previous contents
            kept_at = cfg.ds_path("rejected", ds) + "/ingest/quarantine"
            quarantine.write.mode("overwrite").parquet(kept_at)
            raise InputRefused(f"ingest: input refused for ds={ds}, tables unchanged: {'; '.join(problems)} "
                               f"[{_describe(counts)}]; the quarantined lines are in {kept_at}")
        if items is None:  # keep the table complete: one row per reviewed item, no title
            items = (reviews.select(S.ITEM).distinct()
                     .select(S.ITEM, *[F.lit(None).cast(t).alias(c) for c, t in
                                       [(S.TITLE, "string"), ("brand", "string"), ("main_cat", "string"),
                                        ("category", "array<string>"), ("price", "string")]]))
        elif kept.get("metadata"):
            untitled = reviews.join(items.select(S.ITEM), S.ITEM, "left_anti")
            n_untitled = untitled.count()
            if n_untitled:
                log.warning("ingest: %d reviews of %d items have no metadata (no title in the published lists)",
                            n_untitled, untitled.select(S.ITEM).distinct().count())
            record["reviews_without_metadata"] = n_untitled
        n_reviews = warehouse.write_partition(reviews, cfg.table(Table.REVIEWS), ds)
        n_items = warehouse.write_partition(items, cfg.table(Table.ITEMS), ds)
        n_bad = warehouse.write_partition(quarantine, cfg.table(Table.QUARANTINE), ds)
        if heldout is not None:
            record["heldout"] = warehouse.write_partition(heldout.select(S.USER, S.ITEM).distinct(),
                                                          cfg.table(Table.HELDOUT), ds)
        for source, entry in sorted(counts.items()):
            for reason, n in sorted(entry["quarantined"].items()):
                log.warning("ingest: quarantined %d %s lines: %s", n, source, reason)
        record["wrote"] = {cfg.table(Table.REVIEWS): n_reviews, cfg.table(Table.ITEMS): n_items,
                           cfg.table(Table.QUARANTINE): n_bad}
    return record
