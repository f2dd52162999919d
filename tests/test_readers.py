"""The input formats besides Amazon JSON: delimited rating files (csv, amazon-ratings) and next-item sequence
files, through the ingest stage (quarantine rules, times from file order), and Amazon 2014 JSON."""
from __future__ import annotations

import gzip

import pandas as pd
import pytest

from recjob import config, readers
from recjob import schema as S
from recjob.readers import delimited, sequences
from recjob.stages import ingest, sample
from recjob.warehouse import partition_exists, read_partition

from conftest import shared_file

DS = "2020-01-01"


def tables(spark, cfg):
    reviews = read_partition(spark, cfg.table("reviews"), DS).toPandas().sort_values([S.USER, S.TIME])
    quarantine = (read_partition(spark, cfg.table("quarantine"), DS).toPandas()
                  if partition_exists(spark, cfg.table("quarantine"), DS) else pd.DataFrame({S.REASON: []}))
    return reviews, quarantine


# ---------------------------------------------------------------- pure parsing

def test_delimited_line_parsing():
    lay = delimited.Layout(("user", "item", "time", "rating"), ",", True)
    assert delimited.parse_line("A1,B2,2018-09-28T00:00:00,5.0", lay) == (
        [("A1", "B2", 5.0, 1538092800, None, None, None, None)], None)
    assert delimited.parse_line("A1,B2,2018-09-28,4", lay)[0][0][2:4] == (4.0, 1538092800)  # a date: midnight UTC
    assert delimited.parse_line("A1,B2,1538092800,4", lay)[0][0][3] == 1538092800  # epoch seconds
    assert delimited.parse_line("A1,B2,2018-09-28T02:00:00+02:00,4", lay)[0][0][3] == 1538092800
    assert delimited.parse_line('"A,1",B2,1538092800,4', lay)[0][0][0] == "A,1"  # quoted field with the delimiter
    for line, reason in [("A1,B2,2018-09-28", delimited.FIELDS), ("A1,B2,x,y,5", delimited.FIELDS),
                         (",B2,2018-09-28,5", delimited.BAD_USER), ("A1,,2018-09-28,5", delimited.BAD_ITEM),
                         ("A1,B2,2018-09-28,five", delimited.BAD_RATING), ("A1,B2,2018-09-28,nan", delimited.BAD_RATING),
                         ("A1,B2,28/09/2018,5", delimited.BAD_TIME), ("A1,B2,-5,5", delimited.BAD_TIME),
                         ("A1,B2,1538092800000,5", delimited.FUTURE_TIME)]:
        assert delimited.parse_line(line, lay) == ([], reason), line
    no_time = delimited.Layout(("user", "item", "_"), "\t")
    assert delimited.parse_line("1\t2\tjunk", no_time) == ([("1", "2", 1.0, None, None, None, None, None)], None)


def test_sequence_line_parsing():
    assert sequences.parse_line("u1 7 3 9\n")[0] == [("u1", i, 1.0, None, None, None, None, None) for i in "739"]
    assert sequences.parse_line("u1 7") == ([("u1", "7", 1.0, None, None, None, None, None)], None)
    assert sequences.parse_line("u1") == ([], sequences.NO_ITEMS)


def test_input_settings_are_checked():
    def problems(*sets):
        with pytest.raises(config.ConfigError) as e:
            config.load(None, list(sets))
        return str(e.value)

    assert "needs input.columns" in problems("input.format=csv")
    assert "no item column" in problems("input.format=csv", "input.columns=user,rating")
    assert "unknown role(s) stars" in problems("input.format=csv", "input.columns=user,item,stars")
    assert "one character" in problems("input.format=csv", "input.columns=user,item", "input.delimiter=;;")
    assert "not input.format=amazon" in problems("input.header=true")
    assert "train.model=bpmf predicts ratings" in problems("input.format=sequences", "train.model=bpmf")
    assert "has no rating column" in problems("input.format=csv", "input.columns=user,item,time", "train.model=dot")
    ok = config.load(None, ["input.format=csv", "input.columns=user,item,rating", "input.reviews=x/ratings.tsv.gz"])
    assert delimited.layout(ok.input).delimiter == "\t" and not readers.has_times(ok.input)
    assert readers.has_ratings(ok.input)
    tab = config.load(None, ["input.format=csv", "input.columns=user,item", "input.delimiter=\\t"])
    assert delimited.layout(tab.input).delimiter == "\t" and not readers.has_ratings(tab.input)
    preset = config.load(None, ["input.format=amazon-ratings"])
    assert delimited.layout(preset.input).columns == ("item", "user", "rating", "time")
    assert readers.has_times(preset.input) and not readers.has_times(config.load(None, ["input.format=sequences"]).input)


# ---------------------------------------------------------------- through the ingest stage

def test_csv_with_header_iso_dates_and_bad_lines(spark, tmp_path, make_cfg):
    path = tmp_path / "ratings.csv.gz"
    good = [f"U{u},I{i},2018-0{1 + i}-1{u}T00:00:00,{1 + (u + i) % 5}.0" for u in range(5) for i in range(4)]
    bad = ["U1,I1", "U2,I9,2018-01-01,great", "U3,I9,yesterday,4.0"]
    dup = ["U0,I0,2019-01-01T00:00:00,2.0"]  # the same (user, item) later: this one kept, the first quarantined
    with gzip.open(path, "wt") as f:
        f.write("\n".join(["userid,itemid,timestamp,rating", *good, *bad, *dup, ""]))
    cfg = make_cfg("input.format=csv", "input.header=true", "input.columns=user,item,time,rating",
                   f"input.reviews={path}", "input.metadata=", "ingest.max_bad_fraction=0.2")
    record = ingest.run(cfg, spark, DS)
    reviews, quarantine = tables(spark, cfg)
    assert len(reviews) == 20 and record["read"]["lines"]["reviews"] == 1 + 20 + 3 + 1
    assert sorted(quarantine[S.REASON]) == sorted([readers.HEADER, delimited.FIELDS, delimited.BAD_RATING,
                                                   delimited.BAD_TIME, ingest.DUPLICATE])
    kept = reviews[(reviews[S.USER] == "U0") & (reviews[S.ITEM] == "I0")].iloc[0]
    assert kept[S.RATING] == 2.0 and kept[S.TIME] == 1546300800
    assert set(reviews[S.ITEM]) == {"I0", "I1", "I2", "I3"}
    assert quarantine.loc[quarantine[S.REASON] == delimited.BAD_TIME, S.RAW].item() == "U3,I9,yesterday,4.0"


def test_amazon_ratings_preset(spark, tmp_path, make_cfg):
    path = tmp_path / "Movies_and_TV.csv"
    path.write_text("0000143561,A2VHSG6TZHU1OB,5.0,1378080000\n0000143561,A23EJWOW1TLENE,4.0,1410393600\n")
    cfg = make_cfg("input.format=amazon-ratings", f"input.reviews={path}", "input.metadata=")
    ingest.run(cfg, spark, DS)
    reviews = read_partition(spark, cfg.table("reviews"), DS).toPandas().sort_values(S.USER)
    assert reviews[[S.USER, S.ITEM, S.RATING, S.TIME]].values.tolist() == [
        ["A23EJWOW1TLENE", "0000143561", 4.0, 1410393600], ["A2VHSG6TZHU1OB", "0000143561", 5.0, 1378080000]]


@pytest.mark.parametrize("layout", ["s3rec", "sasrec"])
def test_sequences_file_order_is_the_time(spark, tmp_path, make_cfg, layout):
    users = {"u1": ["10", "11", "12", "13"], "u2": ["11", "10", "14"], "u3": ["12"]}
    if layout == "s3rec":
        lines = [" ".join([u, *items]) for u, items in users.items()] + ["u4", ""]
    else:  # one interaction per line, users interleaved
        lines = [f"{u} {items[k]}" for k in range(4) for u, items in users.items() if k < len(items)]
    path = tmp_path / "seq.txt"
    path.write_text("\n".join(lines) + "\n")
    cfg = make_cfg("input.format=sequences", f"input.reviews={path}", "input.metadata=",
                   "ingest.max_bad_fraction=0.5", "sample.min_user_reviews=1", "sample.min_item_reviews=1")
    ingest.run(cfg, spark, DS)
    reviews, quarantine = tables(spark, cfg)
    got = {u: g.sort_values(S.TIME)[S.ITEM].tolist() for u, g in reviews.groupby(S.USER)}
    assert got == users
    assert sorted(reviews.groupby(S.USER)[S.TIME].apply(list).sum()) == sorted([0, 1, 2, 3, 0, 1, 2, 0])
    assert (reviews[S.RATING] == 1.0).all()
    if layout == "s3rec":
        assert sorted(quarantine[S.REASON]) == [readers.BLANK, sequences.NO_ITEMS]
    # the positions are not dates: the sample stage keeps them despite the default 2018 window
    assert cfg.sample.start == "2018-01-01"
    record = sample.run(cfg, spark, DS)
    assert record["wrote"][cfg.table("interactions")] == 8


def test_real_s3rec_beauty_sequences(spark, make_cfg):
    path = shared_file("sequences/s3rec/Beauty.txt.gz")
    cfg = make_cfg("input.format=sequences", f"input.reviews={path}", "input.metadata=")
    record = ingest.run(cfg, spark, DS)
    assert record["read"]["lines"]["reviews"] == 198_502  # one row per interaction, none quarantined
    reviews = read_partition(spark, cfg.table("reviews"), DS)
    assert reviews.count() == 198_502 and reviews.select(S.USER).distinct().count() == 22_363
    # the first user's last item (the test item of leave-one-out) has the highest position
    with gzip.open(path, "rt") as f:
        first = f.readline().split()
    last = reviews.where(f"{S.USER} = '{first[0]}'").orderBy(S.TIME).collect()[-1]
    assert last[S.ITEM] == first[-1] and last[S.TIME] == len(first) - 2


def test_real_industrial_csv_and_ml1m_tsv(spark, make_cfg):
    csv_path = shared_file("amazon2018-ratings/Industrial_and_Scientific_5.csv.gz")
    cfg = make_cfg("input.format=csv", "input.header=true", "input.columns=user,item,time,rating",
                   f"input.reviews={csv_path}", "input.metadata=")
    record = ingest.run(cfg, spark, DS)
    assert record["wrote"][cfg.table("reviews")] == 72_025 and record["read"]["lines"]["reviews"] == 72_026
    tsv = shared_file("movielens/ml-1m/ratings.tsv.gz")
    cfg = make_cfg("input.format=csv", "input.columns=user,item,rating", f"input.reviews={tsv}", "input.metadata=")
    record = ingest.run(cfg, spark, DS)
    assert record["wrote"][cfg.table("reviews")] == 1_000_209
    assert record["wrote"][cfg.table("quarantine")] == 0


def test_real_amazon_2014_json_through_the_amazon_reader(spark, make_cfg):
    path = shared_file("amazon2014/reviews_Musical_Instruments_5.json.gz")
    cfg = make_cfg(f"input.reviews={path}", "input.metadata=")
    record = ingest.run(cfg, spark, DS)
    assert record["wrote"][cfg.table("reviews")] == 10_261 and record["wrote"][cfg.table("quarantine")] == 0
    reviews = read_partition(spark, cfg.table("reviews"), DS)
    assert reviews.where(F_not_null("vote")).count() == 0  # 2014 has `helpful`, not `vote`
    assert reviews.select(S.ITEM).distinct().count() == 900


def F_not_null(column):
    from pyspark.sql import functions as F

    return F.col(column).isNotNull()


def test_named_delimiters():
    for name, char in [("tab", "\t"), ("pipe", "|"), ("comma", ","), (";", ";")]:
        cfg = config.load(None, ["input.format=csv", "input.columns=user,item", f"input.delimiter={name}"])
        assert delimited.layout(cfg.input).delimiter == char


NEW_READER = '''
from pyspark.sql import functions as F

from recjob.readers.base import Reader
from recjob.readers.lines import SCHEMA, map_lines


def parse_line(text):  # "user;item" per line, no rating, no time
    user, _, item = text.partition(";")
    return ([(user, item, 1.0, None, None, None, None, None)], None) if user and item else ([], "not user;item")


class Pairs(Reader):
    name = "pairs"
    summary = "user;item per line"

    def has_times(self, inp):
        return False

    def has_ratings(self, inp):
        return False

    def parser(self, inp):
        return lambda lines: lines.mapInPandas(lambda b: map_lines(b, parse_line), SCHEMA)


READERS = (Pairs(),)
'''


def test_a_new_input_format_is_one_module(spark, tmp_path, make_cfg, monkeypatch):
    """A module with READERS in the readers' package is a format: the configuration check and ingest use it;
    ingest names no format."""
    import sys

    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "pairs.py").write_text(NEW_READER)
    monkeypatch.setattr(readers, "__path__", [*readers.__path__, str(pkg)])
    monkeypatch.setattr(readers, "READERS", dict(readers.READERS))
    try:
        readers.discover()
        from pyspark import cloudpickle  # the executors' Python cannot import a module of a tmp folder: ship it

        cloudpickle.register_pickle_by_value(sys.modules["recjob.readers.pairs"])
        data = tmp_path / "pairs.txt"
        data.write_text("u1;a\nu1;b\nu2;a\nnonsense\n")
        cfg = make_cfg("input.format=pairs", f"input.reviews={data}", "input.metadata=", "ingest.max_bad_fraction=1")
        with pytest.raises(config.ConfigError, match="predicts ratings"):
            make_cfg("input.format=pairs", f"input.reviews={data}", "train.model=dot")
        report = ingest.run(cfg, spark, "2024-01-01")
        assert report["wrote"][cfg.table("reviews")] == 3 and report["wrote"][cfg.table("quarantine")] == 1
        times = read_partition(spark, cfg.table("reviews"), "2024-01-01").where("reviewerID = 'u1'").toPandas()
        assert sorted(times["unixReviewTime"]) == [0, 1]  # no times: file order is the time
    finally:
        sys.modules.pop("recjob.readers.pairs", None)
