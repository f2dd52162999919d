"""ingest: raw review and metadata files -> typed ``reviews`` and ``items`` tables + ``quarantine``.

Reads ``input.format`` files (their reader: ``recjob.readers``) from a path, folder or glob on any Hadoop
filesystem; the reader parses the lines (or reads whole files), this stage accounts for them. Every
line is accounted for: it is either a clean review (item) or a quarantine row with its reason and source file;
a file that cannot be read at all is named in a one-line error, or, with ``ingest.skip_unreadable_files``,
recorded in quarantine while the other files go on.

Nothing is
replaced before it is validated: when the input is refused (no valid review, too many bad lines, no valid
metadata) the previous tables of the ds stay as they were, and the refused run's quarantine rows go to
``rejected/ds=<ds>/ingest/quarantine`` for inspection.
"""
from __future__ import annotations

import logging
import re
import urllib.parse

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from recjob import errors, readers, warehouse
from recjob import schema as S
from recjob.readers import BLANK, HEADER
from recjob.config import Config
from recjob.progress import stage_timer
from recjob.names import Table

log = logging.getLogger(__name__)

DUPLICATE = "duplicate (reviewerID, asin): a later review kept"
META_DUPLICATE = "duplicate metadata asin: first kept"
UNREADABLE = "unreadable file"

# Quarantined for these, a line is not "bad" input: it counts towards ingest.max_bad_fraction only otherwise.
NOT_BAD = (DUPLICATE, META_DUPLICATE, BLANK, HEADER)

# At most this many repeated (reviewerID, asin) pairs (asins of metadata) are broadcast, so that only their lines
# are ranked to find the duplicates; above it every clean line is ranked (a shuffle of the whole lines).
BROADCAST_REPEATED_KEYS = 1_000_000


class InputRefused(RuntimeError):
    """The input cannot make a trustworthy run (unreadable, too much bad data): retrying will not help."""


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
    reader = readers.get(cfg.input.format)
    parse = reader.parser(cfg.input)
    return parse if reader.has_times(cfg.input) else (lambda lines: with_positions(parse(lines)))


def with_positions(parsed: DataFrame) -> DataFrame:
    """The clean rows' time = their position among the user's clean rows, in file (then line) order: 0, 1, ..."""
    order = Window.partitionBy(S.USER).orderBy("file", "_line", "_pos")
    clean = parsed.where(F.col(S.REASON).isNull()).withColumn(S.TIME, (F.row_number().over(order) - 1).cast("long"))
    return clean.unionByName(parsed.where(F.col(S.REASON).isNotNull()))


def _from_lines(cfg: Config, spark: SparkSession, cached: list, review_files: list[str],
                test_files: list[str], meta_path: str | None) -> tuple:
    """(reviews, items or None, quarantine, heldout or None) of a line format, with the items' Amazon metadata
    JSON when given."""
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
        meta, meta_unreadable = read_tagged(spark, meta_files, readers.metadata_parser(), tag_metadata,
                                            "input.metadata", skip,
                                            "metadata", cached)
        items, meta_q = split_tagged(meta, "metadata", S.ITEMS_COLUMNS, S.ITEM_META.fieldNames())
        quarantine, unreadable = quarantine.unionByName(meta_q), unreadable + meta_unreadable
    if unreadable:
        quarantine = quarantine.unionByName(_unreadable_rows(spark, unreadable))
    return reviews, items, quarantine, heldout


def _untitled(reviews: DataFrame) -> DataFrame:
    """One items row per reviewed item, no title (the table stays complete without metadata)."""
    return (reviews.select(S.ITEM).distinct()
            .select(S.ITEM, *[F.lit(None).cast(t).alias(c) for c, t in
                              [(S.TITLE, "string"), ("brand", "string"), ("main_cat", "string"),
                               ("category", "array<string>"), ("price", "string")]]))


def _with_earlier_items(cfg: Config, spark: SparkSession, ds: str,
                        items: DataFrame | None) -> tuple[DataFrame | None, str | None]:
    """Incremental input: this period's metadata (if any), then the items of the newest earlier ds's ``items``
    not among them, so that every item known so far keeps its title; and that earlier ds (None: none)."""
    table = cfg.table(Table.ITEMS)
    earlier = warehouse.latest_before(spark, table, ds)
    if earlier is None:
        return items, None
    old = warehouse.read_partition(spark, table, earlier)
    if items is None:
        return old, earlier
    return items.unionByName(old.join(items.select(S.ITEM), S.ITEM, "left_anti").select(*items.columns)), earlier


def _run(cfg: Config, spark: SparkSession, ds: str, cached: list) -> dict:
    with stage_timer("ingest", ds) as record:
        reviews_path = cfg.input_path(cfg.input.reviews, ds)
        review_files = input_files(spark, reviews_path, "input.reviews")
        test_path = cfg.input_path(cfg.input.test, ds) if cfg.input.test else None
        test_files = input_files(spark, test_path, "input.test") if test_path else []
        meta_path = cfg.input_path(cfg.input.metadata, ds) if cfg.input.metadata else None
        if meta_path and not warehouse.path_exists(spark, meta_path):
            log.warning("ingest: no metadata at %s: %s", meta_path, "the items of earlier periods carry over"
                        if cfg.input.incremental else "titles will be empty")
            meta_path = None
        reader = readers.get(cfg.input.format)
        if reader.whole_files:
            reviews, items, quarantine = reader.read(spark, reviews_path, meta_path)
            heldout = None
            if test_path:
                heldout, _, test_q = reader.read(spark, test_path, None)
                reviews, quarantine = reviews.unionByName(heldout), quarantine.unionByName(test_q)
            meta_path = None  # a whole-file reader reads its own item files
        else:
            reviews, items, quarantine, heldout = _from_lines(cfg, spark, cached, review_files, test_files, meta_path)
        kept = {"reviews": reviews.count()}
        if items is not None:
            kept["metadata"] = items.count()
        counts = accounting(quarantine, kept)
        record["read"] = {"reviews": reviews_path, "mode": "period" if cfg.input.incremental else "whole dump",
                          "files": len(review_files) + len(test_files),
                          "metadata": meta_path, "lines": {s: c["lines"] for s, c in counts.items()}}
        log.info("ingest ds=%s: %s", ds, _describe(counts))
        problems = refusals(counts, cfg.ingest.max_bad_fraction, bool(meta_path))
        if problems:  # validated before anything is replaced: the ds's tables keep their previous contents
            kept_at = cfg.ds_path("rejected", ds) + "/ingest/quarantine"
            quarantine.write.mode("overwrite").parquet(kept_at)
            raise InputRefused(f"ingest: input refused for ds={ds}, tables unchanged: {'; '.join(problems)} "
                               f"[{_describe(counts)}]; the quarantined lines are in {kept_at}")
        if cfg.input.incremental:
            items, record["items_carried_over_from"] = _with_earlier_items(cfg, spark, ds, items)
        if items is None:
            items = _untitled(reviews)
        else:
            untitled = reviews.join(items.select(S.ITEM), S.ITEM, "left_anti")
            n_untitled = untitled.count()
            if n_untitled:
                log.warning("ingest: %d reviews of %d items have no metadata (no title in the published lists)",
                            n_untitled, untitled.select(S.ITEM).distinct().count())
            record["reviews_without_metadata"] = n_untitled
            if cfg.input.incremental and n_untitled:  # every item reviewed so far has its row, for later periods
                items = items.unionByName(_untitled(untitled))
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
