"""Retention: the newest ds of each table and folder are kept, the rest expire whole; a killed expiry is finished
by the next one; the ds just run, the champion and a ds another run holds are never removed."""
from pathlib import Path

from pyspark.sql import functions as F

from recjob import locks, retention, warehouse
from recjob.names import Table
from recjob.web import files

DATES = ["2024-03-01", "2024-03-02", "2024-03-03", "2024-03-04", "2024-03-05"]


def _day(spark, cfg, ds):
    """What a run of ``ds`` leaves: working tables and folders, a published partition, its copy and its pages."""
    rows = spark.createDataFrame([(1, ds)], "k int, v string")
    for table in (Table.REVIEWS, Table.SCORES, Table.EVALUATION):
        warehouse.write_partition(rows, cfg.table(table), ds)
    warehouse.publish_partition(rows, cfg.table(Table.RECOMMENDATIONS), ds)
    for folder in ("shards", "models", "published"):
        warehouse.write_text(spark, cfg.ds_path(folder, ds) + "/part", ds)
    warehouse.write_text(spark, cfg.path(f"{files.WEB}/ds={ds}/stamp/part"), ds)
    files.write_index(cfg.path(""), ds, {"pages": cfg.path(f"{files.WEB}/ds={ds}/stamp")})


def _dates(spark, cfg, table):
    return sorted(r[0] for r in spark.table(cfg.table(table)).select("ds").distinct().collect())


def _folders(cfg, kind):
    parent = Path(cfg.path(kind))
    return sorted(p.name[3:] for p in parent.glob("ds=*")) if parent.exists() else []


def test_each_kind_keeps_its_newest_dates_and_the_rest_goes_whole(spark, make_cfg):
    cfg = make_cfg("retention.working=2", "retention.published=3")
    for ds in DATES:
        _day(spark, cfg, ds)
        removed = retention.expire(cfg, spark, ds)
    assert removed == {"2024-03-02": removed["2024-03-02"], "2024-03-03": removed["2024-03-03"]}  # the last expiry
    assert cfg.table(Table.RECOMMENDATIONS) in removed["2024-03-02"] and cfg.table(Table.SCORES) in removed["2024-03-03"]
    for table in (Table.REVIEWS, Table.SCORES):
        assert _dates(spark, cfg, table) == DATES[-2:]
    for kind in ("shards", "models"):
        assert _folders(cfg, kind) == DATES[-2:]
    for table in (Table.RECOMMENDATIONS, Table.EVALUATION):
        assert _dates(spark, cfg, table) == DATES[-3:]
    assert _folders(cfg, "published") == DATES[-3:] and _folders(cfg, files.WEB) == DATES[-3:]
    assert sorted(files.read_index(cfg.path(""))["ds"]) == DATES[-3:]
    versions = Path(warehouse.table_location(spark, cfg.table(Table.RECOMMENDATIONS))[len("file:"):]) / "_versions"
    assert sorted(p.name[3:] for p in versions.glob("ds=*")) == DATES[-3:]  # the files went with the partitions
    rows = spark.table(cfg.table(Table.RECOMMENDATIONS)).where(F.col("ds") == DATES[-3]).collect()
    assert [r["v"] for r in rows] == [DATES[-3]]  # what is kept still reads


def test_zero_keeps_everything_and_a_backfill_keeps_itself_and_the_newest(spark, make_cfg):
    cfg = make_cfg("retention.working=0", "retention.published=0")
    for ds in DATES[1:]:
        _day(spark, cfg, ds)
        assert retention.expire(cfg, spark, ds) == {}
    cfg = make_cfg("retention.working=2", "retention.published=2")
    _day(spark, cfg, DATES[0])  # a backfill of an earlier ds after the later ones
    retention.expire(cfg, spark, DATES[0])
    assert _dates(spark, cfg, Table.REVIEWS) == [DATES[0], *DATES[-2:]]
    assert _dates(spark, cfg, Table.RECOMMENDATIONS) == [DATES[0], *DATES[-2:]]


def test_the_champion_and_a_ds_held_by_a_live_run_are_kept(spark, make_cfg):
    cfg = make_cfg("retention.working=1", "retention.published=1")
    for ds in DATES[:3]:
        _day(spark, cfg, ds)
    with locks.ds_lock(spark, cfg.path("locks"), DATES[0], "recjob run"):  # a live run of the oldest ds
        removed = retention.expire(cfg, spark, DATES[2])
    assert DATES[0] not in removed and DATES[0] in _dates(spark, cfg, Table.REVIEWS)
    # the champion of the ds just published (the newest published ds before it) stays with its copy
    assert _dates(spark, cfg, Table.RECOMMENDATIONS) == DATES[:3]
    assert DATES[1] in _folders(cfg, "published") and DATES[1] not in _folders(cfg, "models")
    retention.expire(cfg, spark, DATES[2])  # the lock is gone: now it expires
    assert _dates(spark, cfg, Table.REVIEWS) == DATES[2:3]
    assert _dates(spark, cfg, Table.RECOMMENDATIONS) == DATES[1:3]


def test_an_expiry_killed_after_the_metastore_step_is_finished_by_the_next(spark, make_cfg):
    cfg = make_cfg("retention.working=1", "retention.published=1")
    for ds in DATES[:3]:
        _day(spark, cfg, ds)
    table = cfg.table(Table.SCORES)
    folder = Path(warehouse.table_location(spark, table)[len("file:"):]) / f"ds={DATES[0]}"
    spark.sql(f"ALTER TABLE {table} DROP PARTITION (ds='{DATES[0]}')")  # the kill: the partition is gone ...
    folder.mkdir(exist_ok=True)
    (folder / "part-00000.parquet").write_bytes(b"left behind")  # ... its files are not
    retention.expire(cfg, spark, DATES[2])
    assert not folder.exists()
    assert _dates(spark, cfg, Table.SCORES) == DATES[2:3]
    assert spark.table(table).count() == 1  # every partition left reads whole
