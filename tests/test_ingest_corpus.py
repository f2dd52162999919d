"""A corpus of bad input, generated here, each kind with its expected outcome; every line is accounted for.

Lines: one file holds every kind of line; the test checks each line's outcome (kept, or quarantined with
its reason), that lines in = kept + quarantined per reason, and that the quarantine table reads back with
pandas/pyarrow even where the raw line was not UTF-8. Files: each kind of broken file alone and beside a valid
one, with the one-line error or, with ingest.skip_unreadable_files, the quarantine row.
"""
import gzip
import json
from collections import Counter

import pyarrow.parquet as pq
import pytest
from pyspark.sql import functions as F

from recjob import warehouse
from recjob import readers
from recjob.readers import amazon
from recjob.stages import ingest

DS = "2020-06-01"
T0 = 1_500_000_000  # 2017-07-14
KEPT = "kept"


def rec(user="U", item="I", **fields):
    out = {"reviewerID": user, "asin": item, "overall": 4.0, "unixReviewTime": T0, "reviewText": "fine",
           "summary": "ok", "verified": True}
    out.update(fields)
    return out


def line(user="U", item="I", **fields) -> bytes:
    return json.dumps(rec(user, item, **fields)).encode()


# (kind, line bytes, expected outcome); users are unique per kind so that kept lines can be told apart.
LINES = [
    ("valid", line("V1"), KEPT),
    ("valid with every 2018 field", json.dumps({
        **rec("V2"), "reviewTime": "07 14, 2017", "style": {"Format:": " DVD"}, "reviewerName": "n",
        "vote": "3", "image": ["http://x/y.jpg"]}).encode(), KEPT),
    ("Amazon 2014 record (helpful instead of vote)", json.dumps({
        "reviewerID": "V3", "asin": "I", "reviewerName": "n", "helpful": [2, 3], "reviewText": "t",
        "overall": 5.0, "summary": "s", "unixReviewTime": T0, "reviewTime": "07 14, 2017"}).encode(), KEPT),
    ("unknown extra fields", json.dumps({**rec("V4"), "mood": "happy", "nested": {"a": [1, 2]}}).encode(), KEPT),
    ("integer rating", line("V5", overall=3), KEPT),
    ("vote as a number", line("V6", vote=12), KEPT),
    ("byte-order mark before the line", b"\xef\xbb\xbf" + line("V7"), KEPT),
    ("10 MB reviewText", line("V8", reviewText="x" * 10_000_000), KEPT),
    ("CRLF line ending", line("V9") + b"\r", KEPT),
    ("unicode text", line("V10", reviewText="très bien ★ 映画"), KEPT),
    ("malformed JSON", b'{"reviewerID": "M1", "asin": "I", overall: 5}', amazon.MALFORMED),
    ("truncated JSON line", line("M2")[:40], amazon.MALFORMED),
    ("not JSON at all", b"hello world", amazon.MALFORMED),
    ("bare NaN rating", line("M3").replace(b'"overall": 4.0', b'"overall": NaN'), amazon.MALFORMED),
    ("bare Infinity rating", line("M4").replace(b'"overall": 4.0', b'"overall": Infinity'), amazon.MALFORMED),
    ("JSON array of a review", b"[" + line("M5") + b"]", amazon.NOT_OBJECT),
    ("JSON scalar", b"42", amazon.NOT_OBJECT),
    ("JSON string", b'"a review"', amazon.NOT_OBJECT),
    ("JSON null", b"null", amazon.NOT_OBJECT),
    ("two objects on one line", line("M6") + line("M7"), amazon.TRAILING),
    ("two objects separated by a space", line("M8") + b" " + line("M9"), amazon.TRAILING),
    ("blank line", b"", readers.BLANK),
    ("spaces only", b"   \t ", readers.BLANK),
    ("non-UTF-8 byte in the text", line("N1").replace(b'"fine"', b'"caf\xe9"'), readers.NOT_UTF8),
    ("non-UTF-8 byte in an id", line("N2").replace(b'"N2"', b'"N\xff2"'), readers.NOT_UTF8),
    ("whole Latin-1 line", json.dumps(rec("N3", reviewText="déjà vu")).encode().decode("unicode_escape")
     .encode("latin-1"), readers.NOT_UTF8),
    ("missing reviewerID", json.dumps({k: v for k, v in rec("X").items() if k != "reviewerID"}).encode(),
     amazon.MISSING_USER),
    ("null reviewerID", line(None), amazon.MISSING_USER),
    ("empty reviewerID", line(""), amazon.MISSING_USER),
    ("missing asin", json.dumps({k: v for k, v in rec("A1").items() if k != "asin"}).encode(), amazon.MISSING_ITEM),
    ("null asin", line("A2", None), amazon.MISSING_ITEM),
    ("reviewerID a number", line(12345), amazon.BAD_USER),
    ("reviewerID a list", line(["A3"]), amazon.BAD_USER),
    ("reviewerID an object", line({"id": "A4"}), amazon.BAD_USER),
    ("reviewerID with a control character", line("A5\x07"), amazon.BAD_USER),
    ("asin a number", line("A6", 1234567890), amazon.BAD_ITEM),
    ("asin a list", line("A7", ["I"]), amazon.BAD_ITEM),
    ("asin padded with spaces", line("A8", " I "), amazon.BAD_ITEM),
    ("missing overall", json.dumps({k: v for k, v in rec("R1").items() if k != "overall"}).encode(),
     amazon.BAD_RATING),
    ("null overall", line("R2", overall=None), amazon.BAD_RATING),
    ("overall above 5", line("R3", overall=7.0), amazon.BAD_RATING),
    ("overall 0", line("R4", overall=0), amazon.BAD_RATING),
    ("overall negative", line("R5", overall=-1.0), amazon.BAD_RATING),
    ("overall a word", line("R6", overall="five"), amazon.BAD_RATING),
    ("overall a numeric string", line("R7", overall="5.0"), amazon.BAD_RATING),
    ("overall the string NaN", line("R8", overall="NaN"), amazon.BAD_RATING),
    ("overall the string Infinity", line("R9", overall="Infinity"), amazon.BAD_RATING),
    ("overall a boolean", line("R10", overall=True), amazon.BAD_RATING),
    ("overall a list", line("R11", overall=[5]), amazon.BAD_RATING),
    ("overall overflowing a double", line("R12").replace(b'"overall": 4.0', b'"overall": 1e400'),
     amazon.BAD_RATING),
    ("missing time", json.dumps({k: v for k, v in rec("T1").items() if k != "unixReviewTime"}).encode(),
     amazon.BAD_TIME),
    ("null time", line("T2", unixReviewTime=None), amazon.BAD_TIME),
    ("time a word", line("T3", unixReviewTime="yesterday"), amazon.BAD_TIME),
    ("time a numeric string", line("T4", unixReviewTime=str(T0)), amazon.BAD_TIME),
    ("time a float", line("T5", unixReviewTime=T0 + 0.5), amazon.BAD_TIME),
    ("time negative", line("T6", unixReviewTime=-5), amazon.BAD_TIME),
    ("time a boolean", line("T7", unixReviewTime=True), amazon.BAD_TIME),
    ("time in milliseconds", line("T8", unixReviewTime=T0 * 1000), amazon.FUTURE_TIME),
    ("time in the year 3000", line("T9", unixReviewTime=32_503_680_000), amazon.FUTURE_TIME),
    ("time overflowing 64 bits", line("T10", unixReviewTime=10 ** 30), amazon.FUTURE_TIME),
    ("verified a string", line("F1", verified="yes"), amazon.BAD_FIELD),
    ("reviewText a number", line("F2", reviewText=5), amazon.BAD_FIELD),
    ("CSV line where JSON is expected", b"F3,I,5.0,1500000000", amazon.MALFORMED),
]
# Duplicates: the same (user, item) more than once; the latest is kept, the others quarantined.
DUPLICATES = [
    ("exact duplicate", line("D1"), KEPT), ("exact duplicate", line("D1"), ingest.DUPLICATE),
    ("near duplicate: a later review", line("D2", unixReviewTime=T0 + 60, reviewText="updated"), KEPT),
    ("near duplicate: the earlier review", line("D2", reviewText="first"), ingest.DUPLICATE),
]
META = [
    ("metadata", {"asin": "I", "title": " The Title "}, KEPT),
    ("metadata of an item nobody reviewed", {"asin": "NOREVIEWS", "title": "Unseen"}, KEPT),
    ("metadata with every field", {"asin": "J", "title": "J", "brand": "b", "main_cat": "Movies & TV",
                                   "category": ["Movies & TV", "Drama"], "price": "$9.99", "also_buy": ["K"]}, KEPT),
    ("metadata duplicate asin", {"asin": "I", "title": "second"}, ingest.META_DUPLICATE),
    ("metadata without asin", {"title": "orphan"}, amazon.META_MISSING_ITEM),
    ("metadata asin a number", {"asin": 7, "title": "seven"}, amazon.META_BAD_ITEM),
    ("metadata title a list", {"asin": "L", "title": ["a"]}, amazon.META_BAD_FIELD),
]
ORPHAN = ("review of an item without metadata", line("O1", "NOMETA"), KEPT)


def write(path, lines, gz=True):
    data = b"\n".join(lines) + b"\n"
    path.write_bytes(gzip.compress(data) if gz else data)
    return str(path)


@pytest.fixture(scope="module")
def corpus(spark, tmp_path_factory):
    from recjob import config

    base = tmp_path_factory.mktemp("corpus")
    entries = LINES + DUPLICATES + [ORPHAN]
    reviews = write(base / "reviews.json.gz", [raw for _, raw, _ in entries])
    meta = write(base / "meta.json", [json.dumps(m).encode() for _, m, _ in META], gz=False)
    cfg = config.load(None, [f"data_dir={base}", "database=corpus", f"input.reviews={reviews}",
                             f"input.metadata={meta}", "ingest.max_bad_fraction=1"])
    report = ingest.run(cfg, spark, DS)
    kept = warehouse.read_partition(spark, cfg.table("reviews"), DS).toPandas()
    quarantine = warehouse.read_partition(spark, cfg.table("quarantine"), DS).toPandas()
    items = warehouse.read_partition(spark, cfg.table("items"), DS).toPandas()
    location = warehouse.table_location(spark, cfg.table("quarantine"))
    return cfg, entries, report, kept, quarantine, items, location


def test_the_corpus_has_at_least_thirty_kinds():
    kinds = {k for k, _, _ in LINES + DUPLICATES + META + [ORPHAN]}
    assert len(kinds) >= 30, len(kinds)


def test_every_line_is_accounted_for(corpus):
    _, entries, report, kept, quarantine, items, _ = corpus
    expected = Counter(outcome for _, _, outcome in entries)
    got = Counter(quarantine.loc[quarantine["source"] == "reviews", "reason"])
    assert got == Counter({r: n for r, n in expected.items() if r != KEPT})
    assert len(kept) == expected[KEPT]
    assert report["read"]["lines"]["reviews"] == len(entries) == len(kept) + got.total()
    meta_expected = Counter(outcome for _, _, outcome in META)
    assert Counter(quarantine.loc[quarantine["source"] == "metadata", "reason"]) == \
        Counter({r: n for r, n in meta_expected.items() if r != KEPT})
    assert len(items) == meta_expected[KEPT] and report["read"]["lines"]["metadata"] == len(META)


@pytest.mark.parametrize("kind, raw, outcome", LINES + [ORPHAN], ids=[k for k, _, _ in LINES + [ORPHAN]])
def test_each_kind_of_line(corpus, kind, raw, outcome):
    _, _, _, kept, quarantine, _, _ = corpus
    text = raw.decode("utf-8", "backslashreplace")
    if outcome == KEPT:
        user = json.loads(raw.decode("utf-8").lstrip("\ufeff"))["reviewerID"]
        row = kept[kept["reviewerID"] == user]
        assert len(row) == 1, kind
        assert row["overall"].item() == json.loads(raw.decode("utf-8").lstrip("\ufeff"))["overall"]
        assert not quarantine["raw"].eq(text).any()
    else:
        reasons = set(quarantine.loc[quarantine["raw"] == text, "reason"])
        assert reasons == {outcome}, (kind, reasons)


def test_values_are_kept_as_given_not_coerced(corpus):
    _, _, _, kept, _, items, _ = corpus
    by_user = kept.set_index("reviewerID")
    assert by_user.loc["V6", "vote"] == "12" and by_user.loc["V2", "vote"] == "3"
    assert len(by_user.loc["V8", "reviewText"]) == 10_000_000
    assert by_user.loc["V10", "reviewText"] == "très bien ★ 映画"
    assert by_user.loc["D2", "reviewText"] == "updated"  # the later of the near duplicates
    assert set(kept["asin"]) == {"I", "NOMETA"}  # no stringified number or list became an item
    assert items.set_index("asin").loc["I", "title"] == "The Title"  # trimmed, the first of the duplicates


def test_missing_metadata_is_counted(corpus):
    report = corpus[2]
    assert report["reviews_without_metadata"] == 1


def test_quarantine_reads_back_with_pyarrow_and_pandas(corpus):
    """Raw lines with non-UTF-8 bytes are stored escaped: the files are readable outside Spark."""
    location = corpus[6]
    table = pq.read_table(location.replace("file:", "", 1) + f"/ds={DS}")
    frame = table.to_pandas()
    latin = [r for r in frame["raw"] if r and "\\xe9" in r]
    assert latin, "the Latin-1 lines keep their byte as an escape"
    assert len(frame) == len(corpus[4])


# ---------------------------------------------------------------- whole files

GOOD = [line(f"G{i}", f"I{i % 3}") for i in range(20)]


def _file(kind, folder):
    valid_gz = gzip.compress(b"\n".join(GOOD) + b"\n")
    path = folder / {"truncated gzip": "t.json.gz", "not gzip despite the name": "n.json.gz",
                     "empty file": "e.json", "empty gzip": "e.json.gz", "BOM only": "b.json",
                     "blank only": "w.json", "CSV where JSON is expected": "c.json"}[kind]
    data = {"truncated gzip": valid_gz[: len(valid_gz) // 2],
            "not gzip despite the name": b"\n".join(GOOD) + b"\n",
            "empty file": b"", "empty gzip": gzip.compress(b""), "BOM only": b"\xef\xbb\xbf",
            "blank only": b"\n\n  \n", "CSV where JSON is expected": b"user,item,rating\nU,I,5\nV,I,4\n"}[kind]
    path.write_bytes(data)
    return path


UNREADABLE = ["truncated gzip", "not gzip despite the name"]


@pytest.mark.parametrize("kind", UNREADABLE)
def test_an_unreadable_file_is_named_in_one_line(spark, tmp_path, make_cfg, kind):
    good = write(tmp_path / "good.json.gz", GOOD)
    bad = _file(kind, tmp_path)
    cfg = make_cfg(f"input.reviews={tmp_path}/*.json.gz", "input.metadata=")
    with pytest.raises(ingest.InputRefused) as caught:
        ingest.run(cfg, spark, DS)
    message = str(caught.value)
    assert "\n" not in message and bad.name in message and "skip_unreadable_files" in message
    assert "Py4J" not in message
    assert not warehouse.table_exists(spark, cfg.table("reviews"))  # nothing written
    # with the setting, the valid file goes on and the bad one is recorded
    cfg = make_cfg(f"input.reviews={tmp_path}/*.json.gz", "input.metadata=", "ingest.skip_unreadable_files=true")
    ingest.run(cfg, spark, DS)
    assert warehouse.read_partition(spark, cfg.table("reviews"), DS).count() == len(GOOD)
    q = warehouse.read_partition(spark, cfg.table("quarantine"), DS).toPandas()
    assert len(q) == 1 and q["reason"].item().startswith(ingest.UNREADABLE) and q["file"].item().endswith(bad.name)
    assert good  # the valid file beside it was read in full


@pytest.mark.parametrize("kind, reasons", [
    ("empty file", {}), ("empty gzip", {}), ("BOM only", {}),  # Hadoop's line reader drops a file's BOM
    ("blank only", {readers.BLANK: 3}),
    ("CSV where JSON is expected", {amazon.MALFORMED: 3})])
def test_odd_files_beside_a_valid_one_are_accounted_for(spark, tmp_path, make_cfg, kind, reasons):
    write(tmp_path / "good.json", GOOD, gz=False)
    _file(kind, tmp_path)
    cfg = make_cfg(f"input.reviews={tmp_path}", "input.metadata=", "ingest.max_bad_fraction=1")
    report = ingest.run(cfg, spark, DS)
    q = spark.table(cfg.table("quarantine")).where(F.col("ds") == DS).toPandas()
    assert Counter(q["reason"]) == Counter(reasons)
    assert report["read"]["lines"]["reviews"] == len(GOOD) + sum(reasons.values())
    assert report["wrote"][cfg.table("reviews")] == len(GOOD)


@pytest.mark.parametrize("kind", ["empty file", "BOM only", "blank only", "CSV where JSON is expected"])
def test_an_input_with_nothing_valid_is_refused(spark, tmp_path, make_cfg, kind):
    _file(kind, tmp_path)
    cfg = make_cfg(f"input.reviews={tmp_path}", "input.metadata=")
    with pytest.raises(ingest.InputRefused, match="no valid review"):
        ingest.run(cfg, spark, DS)


def test_missing_inputs_are_clear_errors(spark, tmp_path, make_cfg):
    (tmp_path / "empty").mkdir()
    for pattern, message in [(f"{tmp_path}/empty", "the folder is empty"),
                             (f"{tmp_path}/nothing-*.json.gz", "matches nothing")]:
        cfg = make_cfg(f"input.reviews={pattern}")
        with pytest.raises(warehouse.MissingInputError, match=message):
            ingest.run(cfg, spark, DS)


def test_too_much_bad_data_is_refused_and_the_good_partition_kept(spark, tmp_path, make_cfg):
    """A failed ingest replaces nothing: the ds's previous reviews stay; the refused lines are kept apart."""
    good = write(tmp_path / "good.json.gz", GOOD)
    cfg = make_cfg(f"input.reviews={good}", "input.metadata=")
    ingest.run(cfg, spark, DS)
    before = warehouse.read_partition(spark, cfg.table("reviews"), DS).count()
    mixed = write(tmp_path / "mixed.json.gz", GOOD + [b"garbage"])  # 1 of 21 lines bad: 4.8 % > 1 %
    empty = write(tmp_path / "empty.json", [b""], gz=False)
    csv_meta = _file("CSV where JSON is expected", tmp_path)
    for overrides, message in [([f"input.reviews={mixed}"], "1 of 21 reviews lines are invalid"),
                               ([f"input.reviews={empty}"], "no valid review"),
                               ([f"input.reviews={good}", f"input.metadata={csv_meta}"], "no valid metadata")]:
        cfg2 = make_cfg("input.metadata=", *overrides)
        with pytest.raises(ingest.InputRefused, match=message) as caught:
            ingest.run(cfg2, spark, DS)
        assert "tables unchanged" in str(caught.value)
        assert warehouse.read_partition(spark, cfg.table("reviews"), DS).count() == before
        assert spark.read.parquet(cfg.ds_path("rejected", DS) + "/ingest/quarantine").count() >= 1
    # within the bound it goes through
    cfg3 = make_cfg(f"input.reviews={mixed}", "input.metadata=", "ingest.max_bad_fraction=0.05")
    ingest.run(cfg3, spark, DS)
    assert spark.table(cfg.table("reviews")).where(F.col("ds") == DS).count() == len(GOOD)


# `lz4 r.json r.json.lz4` of two valid reviews: the lz4 frame format, which Hadoop's Lz4Codec (block format)
# reads as no line at all
LZ4_FRAME = bytes.fromhex(
    "04224d186440a759000000f00d7b2272657669657765724944223a225531222c226173696e223a22490c00f1046f766572616c6c22"
    "3a352e302c22756e6978523000a254696d65223a3135323001002c7d0a4a001f324a00051f344a0008503030317d0a00000000a23a"
    "5dea")


def test_a_file_with_bytes_but_no_line_is_never_read_as_nothing(spark, tmp_path, make_cfg):
    write(tmp_path / "good.json.gz", GOOD)
    lz4 = tmp_path / "more.json.lz4"
    lz4.write_bytes(LZ4_FRAME)
    cfg = make_cfg(f"input.reviews={tmp_path}", "input.metadata=")
    with pytest.raises(ingest.InputRefused) as caught:
        ingest.run(cfg, spark, DS)
    message = str(caught.value)
    assert lz4.name in message and "no line read" in message and "\n" not in message
    assert not warehouse.table_exists(spark, cfg.table("reviews"))
    cfg = make_cfg(f"input.reviews={tmp_path}", "input.metadata=", "ingest.skip_unreadable_files=true")
    ingest.run(cfg, spark, DS)
    q = warehouse.read_partition(spark, cfg.table("quarantine"), DS).toPandas()
    assert len(q) == 1 and q["file"].item().endswith(lz4.name) and "no line read" in q["reason"].item()
    assert warehouse.read_partition(spark, cfg.table("reviews"), DS).count() == len(GOOD)


@pytest.mark.parametrize("name", ["part[1].json", "a b {x}.json", "it's ünïcode?.json"])
def test_file_names_with_glob_characters_spaces_and_quotes_are_read(spark, tmp_path, make_cfg, name):
    folder = tmp_path / "in [x]"
    folder.mkdir()
    write(folder / name, GOOD, gz=False)
    for given in (folder, folder / name):  # the folder, and the file named literally
        cfg = make_cfg(f"input.reviews={given}", "input.metadata=")
        report = ingest.run(cfg, spark, DS)
        assert report["wrote"][cfg.table("reviews")] == len(GOOD)
