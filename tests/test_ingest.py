import gzip
import json

import pandas as pd
import pytest
from pyspark.sql import functions as F

from recjob import schema as S
from recjob.readers import amazon
from recjob import warehouse
from recjob.stages import ingest

from conftest import shared_file


def _rec(user, item, rating, ts, text="t"):
    return {"overall": rating, "verified": True, "reviewTime": "01 1, 2018", "reviewerID": user, "asin": item,
            "style": {"Format:": " DVD"}, "reviewerName": "n", "reviewText": text, "summary": "s",
            "unixReviewTime": ts}


LINES = [
    json.dumps(_rec("U1", "I1", 5.0, 100)),
    json.dumps(_rec("U1", "I1", 3.0, 200, "newer")),  # same pair, later: kept; the first is a duplicate
    json.dumps(_rec("U2", "I1", 4.0, 150)),
    json.dumps(_rec("U2", "I2", 7.0, 150)),  # rating out of range
    json.dumps(_rec(None, "I2", 4.0, 150)),  # no user
    json.dumps(_rec("U3", "", 4.0, 150)),  # empty asin
    json.dumps(_rec("U3", "I2", 2.0, None)),  # no time
    json.dumps(_rec("U3", "I3", 1.0, 120)),
    '{"overall": 5.0, "reviewerID": "U9", "asin": "I9"',  # truncated line
    '{"overall": "five", "reviewerID": "U8", "asin": "I8", "unixReviewTime": 5}',  # wrong type
    "not json at all",
]


def _write(path, lines, gz=True):
    opener = gzip.open if gz else open
    with opener(path, "wt") as fh:
        fh.write("\n".join(lines) + "\n")
    return str(path)


def reference(lines):
    """pandas reference of ingest's rules."""
    good, bad = [], []
    for line in lines:
        try:
            r = json.loads(line)
        except ValueError:
            bad.append(amazon.MALFORMED)
            continue
        if not r.get("reviewerID"):
            bad.append(amazon.MISSING_USER)
        elif not r.get("asin"):
            bad.append(amazon.MISSING_ITEM)
        elif not isinstance(r.get("overall"), (int, float)) or not 1 <= r["overall"] <= 5:
            bad.append(amazon.BAD_RATING)
        elif r.get("unixReviewTime") is None:
            bad.append(amazon.BAD_TIME)
        else:
            good.append(r)
    df = pd.DataFrame(good).sort_values(["unixReviewTime"], ascending=False)
    dups = df.duplicated(["reviewerID", "asin"]).sum()
    clean = df.drop_duplicates(["reviewerID", "asin"])
    return clean, sorted(bad + [ingest.DUPLICATE] * int(dups))


def test_reviews_parsing_and_quarantine_match_reference(spark, tmp_path):
    path = _write(tmp_path / "r.json.gz", LINES)
    clean, quarantine = ingest.transform_reviews(amazon.parse_reviews(ingest.read_lines(spark, [path])))
    ref_clean, ref_reasons = reference(LINES)
    got = clean.toPandas().sort_values([S.USER, S.ITEM]).reset_index(drop=True)
    want = ref_clean.sort_values(["reviewerID", "asin"]).reset_index(drop=True)
    assert got[[S.USER, S.ITEM, S.RATING, S.TIME]].values.tolist() == \
        want[["reviewerID", "asin", "overall", "unixReviewTime"]].values.tolist()
    q = quarantine.toPandas()
    assert sorted(q[S.REASON]) == ref_reasons
    assert len(got) + len(q) == len(LINES)  # nothing lost
    assert q[S.RAW].notna().all() and q["file"].str.endswith("r.json.gz").all()
    assert "not json at all" in set(q[S.RAW])
    assert got.loc[(got[S.USER] == "U1"), "reviewText"].item() == "newer"


def test_run_writes_tables_and_counts(spark, tmp_path, make_cfg):
    raw = tmp_path / "raw"
    raw.mkdir()
    _write(raw / "part1.json.gz", LINES[:6])
    _write(raw / "part2.json", LINES[6:], gz=False)
    _write(raw / "meta.json.gz", [json.dumps({"asin": "I1", "title": " One "}), json.dumps({"asin": "I3", "title": ""}),
                                  json.dumps({"asin": "I1", "title": "dup"}), "{bad"])
    cfg = make_cfg(f"input.reviews={raw}/part*", f"input.metadata={raw}/meta.json.gz", "ingest.max_bad_fraction=1")
    report = ingest.run(cfg, spark, "2020-01-01")
    assert report["wrote"][cfg.table("reviews")] == 3
    assert report["wrote"][cfg.table("quarantine")] == len(LINES) - 3 + 2  # + 2 bad metadata rows
    items = warehouse.read_partition(spark, cfg.table("items"), "2020-01-01").toPandas().set_index(S.ITEM)
    assert items.loc["I1", S.TITLE] == "One" and pd.isna(items.loc["I3", S.TITLE])
    # A rerun of the same ds replaces the partition: no duplicates.
    ingest.run(cfg, spark, "2020-01-01")
    assert spark.table(cfg.table("reviews")).where(F.col("ds") == "2020-01-01").count() == 3


def test_missing_input_is_a_clear_error(spark, tmp_path, make_cfg):
    cfg = make_cfg(f"input.reviews={tmp_path}/nothing/*.json.gz")
    with pytest.raises(warehouse.MissingInputError, match="matches nothing"):
        ingest.run(cfg, spark, "2020-01-01")


def test_all_invalid_input_fails_with_quarantine_pointer(spark, tmp_path, make_cfg):
    path = _write(tmp_path / "bad.json.gz", ["garbage", "{", "[1,2]"])
    cfg = make_cfg(f"input.reviews={path}", "input.metadata=")
    with pytest.raises(ingest.InputRefused, match="no valid review"):
        ingest.run(cfg, spark, "2020-01-01")


def test_real_amazon_file_parses_completely(spark):
    path = shared_file("amazon2018/All_Beauty_5.json.gz")
    clean, quarantine = ingest.transform_reviews(amazon.parse_reviews(ingest.read_lines(spark, [str(path)])))
    n_clean, n_q = clean.count(), quarantine.count()
    assert n_clean + n_q == 5269
    reasons = {r[S.REASON] for r in quarantine.select(S.REASON).distinct().collect()}
    assert reasons <= {ingest.DUPLICATE}  # the 5-core file has repeated (user, item) pairs, nothing malformed
    assert clean.select(S.USER).distinct().count() == 991


def test_incremental_input_keeps_each_period_and_a_run_reads_every_period_up_to_its_ds(spark, tmp_path, make_cfg):
    from recjob import retention, reviews
    from recjob.names import Table
    from recjob.stages import sample

    day1, day2 = tmp_path / "incoming" / "2020-01-01", tmp_path / "incoming" / "2020-01-02"
    day1.mkdir(parents=True)
    day2.mkdir(parents=True)
    _write(day1 / "r.json.gz", [json.dumps(_rec("U1", "I1", 5.0, 100)), json.dumps(_rec("U2", "I1", 4.0, 110))])
    _write(day1 / "meta.json.gz", [json.dumps({"asin": "I1", "title": "One"})])
    _write(day2 / "r.json.gz", [json.dumps(_rec("U1", "I1", 2.0, 200)),  # U1 rates I1 again: the later one counts
                                json.dumps(_rec("U3", "I2", 3.0, 210))])
    cfg = make_cfg("input.incremental=true", f"input.reviews={tmp_path}/incoming/{{ds}}/r.json.gz",
                   f"input.metadata={tmp_path}/incoming/{{ds}}/meta.json.gz",  # day 2 has none: day 1's carry over
                   "sample.start=1970-01-01", "sample.min_user_reviews=1", "sample.min_item_reviews=1")
    ingest.run(cfg, spark, "2020-01-01")
    record = ingest.run(cfg, spark, "2020-01-02")
    assert record["wrote"][cfg.table(Table.REVIEWS)] == 2  # only the period's reviews are ingested
    assert record["items_carried_over_from"] == "2020-01-01"
    items = warehouse.read_partition(spark, cfg.table(Table.ITEMS), "2020-01-02").toPandas().set_index(S.ITEM)
    assert items.loc["I1", S.TITLE] == "One" and sorted(items.index) == ["I1", "I2"]

    def known(ds):
        return sorted(tuple(r) for r in reviews.known(cfg, spark, ds).select(S.USER, S.ITEM, S.RATING).collect())

    assert known("2020-01-02") == [("U1", "I1", 2.0), ("U2", "I1", 4.0), ("U3", "I2", 3.0)]
    assert known("2020-01-01") == [("U1", "I1", 5.0), ("U2", "I1", 4.0)]  # a backfill knows only its past
    assert reviews.periods(cfg, spark, "2020-01-02") == ["2020-01-01", "2020-01-02"]
    assert sample.run(cfg, spark, "2020-01-02")["read"][cfg.table(Table.REVIEWS)] == 3

    # a rerun of day 1 with a late file replaces day 1's period only
    _write(day1 / "r.json.gz", [json.dumps(_rec("U1", "I1", 5.0, 100)), json.dumps(_rec("U4", "I3", 1.0, 120))])
    ingest.run(cfg, spark, "2020-01-01")
    per_ds = {r["ds"]: r["count"] for r in spark.table(cfg.table(Table.REVIEWS)).groupBy("ds").count().collect()}
    assert per_ds == {"2020-01-01": 2, "2020-01-02": 2}
    assert ("U4", "I3", 1.0) in known("2020-01-02") and ("U2", "I1", 4.0) not in known("2020-01-02")
    # the periods are the input itself: retention never expires them
    assert Table.REVIEWS not in retention.working_tables(cfg)
    assert Table.REVIEWS in retention.working_tables(make_cfg())
