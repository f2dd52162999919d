"""Table writes: partition replace, schema changes, empty results, litter left by killed writes."""
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from recjob import warehouse

DS, OTHER = "2024-01-07", "2024-01-14"


def _rows(spark, table, ds):
    return sorted(tuple(r) for r in spark.table(table).where(F.col("ds") == ds).drop("ds").collect())


def test_replace_one_partition_keep_the_others(spark, make_cfg):
    cfg = make_cfg()
    table = cfg.table("t")
    assert warehouse.write_partition(spark.createDataFrame([(1, "a"), (2, "b")], "k int, v string"), table, DS) == 2
    assert warehouse.write_partition(spark.createDataFrame([(3, "c")], "k int, v string"), table, OTHER) == 1
    assert warehouse.write_partition(spark.createDataFrame([("z", 9)], "v string, k int"), table, DS) == 1  # by name
    assert _rows(spark, table, DS) == [(9, "z")] and _rows(spark, table, OTHER) == [(3, "c")]


def test_an_empty_result_empties_the_partition(spark, make_cfg):
    cfg = make_cfg()
    table = cfg.table("t")
    warehouse.write_partition(spark.createDataFrame([(1, "a")], "k int, v string"), table, DS)
    assert warehouse.write_partition(spark.createDataFrame([], "k int, v string"), table, DS) == 0
    assert _rows(spark, table, DS) == []


def test_a_schema_change_is_refused_with_the_fix(spark, make_cfg):
    cfg = make_cfg()
    table = cfg.table("t")
    warehouse.write_partition(spark.createDataFrame([(1, "a")], "k int, v string"), table, DS)
    with pytest.raises(RuntimeError, match=f"DROP TABLE {table}"):
        warehouse.write_partition(spark.createDataFrame([(1, 2.0)], "k int, w double"), table, DS)
    assert _rows(spark, table, DS) == [(1, "a")]


def test_staging_litter_of_a_killed_write_is_removed_on_rerun(spark, make_cfg):
    """A killed dynamic-overwrite leaves .spark-staging-* folders; the next write of that ds removes its own,
    and leaves another ds's (which may belong to a live run)."""
    cfg = make_cfg()
    table = cfg.table("t")
    df = spark.createDataFrame([(1, "a")], "k int, v string")
    warehouse.write_partition(df, table, DS)
    root = Path(warehouse.table_location(spark, table).replace("file:", "", 1))
    mine, other, empty = (root / ".spark-staging-1111" / f"ds={DS}", root / ".spark-staging-2222" / f"ds={OTHER}",
                          root / ".spark-staging-3333")
    for folder in (mine, other, empty):
        folder.mkdir(parents=True)
    (mine / "part-00000.parquet").write_bytes(b"half written")
    warehouse.write_partition(df, table, DS)
    assert not mine.parent.exists() and not empty.exists()
    assert other.exists()
    assert _rows(spark, table, DS) == [(1, "a")]


def _published(spark, table, n, value):
    return spark.range(n).select(F.col("id").cast("int").alias("k"), F.lit(value).alias("v"))


def test_a_reader_sees_the_old_or_the_new_partition_whole_during_publishes(spark, make_cfg):
    """A second session polls the partition while it is published four times (the first over a partition that
    an ordinary overwrite wrote): every read is one complete version, never a missing or partial one."""
    import threading

    cfg = make_cfg()
    table = cfg.table("recommendations")
    versions = {1: 20_000, 2: 30_000, 3: 25_000, 4: 35_000, 5: 22_000}
    warehouse.write_partition(_published(spark, table, versions[1], 1), table, DS)
    warehouse.write_partition(_published(spark, table, 7, 0), table, OTHER)
    reader, reads, stop = spark.newSession(), [], threading.Event()

    def poll():
        while not stop.is_set():
            try:
                row = reader.sql(f"SELECT count(*) AS n, min(v) AS lo, max(v) AS hi FROM {table} WHERE ds = '{DS}'").first()
                reads.append((row["n"], row["lo"], row["hi"]))
            except Exception as exc:  # e.g. a file deleted under the query: what an in-place overwrite gives
                reads.append(("failed", type(exc).__name__, str(exc)[:200]))

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    try:
        for value in (2, 3, 4, 5):
            assert warehouse.publish_partition(_published(spark, table, versions[value], value), table, DS) == versions[value]
    finally:
        stop.set()
        thread.join(timeout=120)
    whole = {(n, v, v) for v, n in versions.items()}
    assert len(reads) >= 2 and all(r in whole for r in reads), (len(reads), sorted(set(reads) - whole, key=str))
    last = reader.sql(f"SELECT count(*) AS n, min(v) AS lo, max(v) AS hi FROM {table} WHERE ds = '{DS}'").first()
    assert tuple(last) == (versions[5], 5, 5) and _rows(spark, table, OTHER) == [(i, 0) for i in range(7)]
    # the current version and the one it replaced are kept, older ones and the plain ds folder removed
    root = Path(warehouse.table_location(spark, table).split(":", 1)[1])
    assert len(list((root / warehouse.VERSIONS / f"ds={DS}").iterdir())) == 2
    assert not (root / f"ds={DS}").exists() and (root / f"ds={OTHER}").exists()


def test_publishing_a_new_partition_adds_it(spark, make_cfg):
    cfg = make_cfg()
    table = cfg.table("recommendations")
    assert warehouse.publish_partition(_published(spark, table, 5, 1), table, DS) == 5
    assert _rows(spark, table, DS) == [(i, 1) for i in range(5)]
    assert "_versions" in warehouse.partition_location(spark, table, DS)


def test_publish_keeps_the_models_copy_before_the_switch_and_a_stop_between_is_finished(spark, make_cfg):
    """The copy of the published model is made before the partition switch; a publish stopped after the switch
    and before the copy's move is finished by the next look (its copy describes the lists analysts read), one
    stopped before the switch leaves the previous copy the published one."""
    from recjob.stages import publish

    cfg = make_cfg()
    spark.sql(f"CREATE DATABASE IF NOT EXISTS {cfg.database}")
    runs, recs = cfg.table("training_runs"), cfg.table("recommendations")
    published = cfg.ds_path("published", DS)

    def model(version):  # the ds's model outputs of one run
        warehouse.write_partition(spark.createDataFrame([(version,)], "model string"), runs, DS)

    def publish_once(version, stop=None):
        model(version)

        def keep(folder):
            publish.save_model_outputs(cfg, spark, DS, published + publish.PENDING, folder)
            if stop == "before switch":
                raise RuntimeError("stopped")
        warehouse.publish_partition(_published(spark, recs, 3, version), recs, DS, before_switch=keep)
        if stop is None:
            warehouse.replace_folder(spark, published + publish.PENDING, published)

    def copied_model():
        return spark.read.parquet(f"{published}/tables/training_runs").first()["model"]

    publish_once("v1")
    assert copied_model() == "v1"
    publish_once("v2", stop="after switch")  # the lists are v2's; the move of v2's copy never happened
    assert _rows(spark, recs, DS)[0][1] == "v2"
    assert publish.published_copy(cfg, spark, DS) == published and copied_model() == "v2"
    assert not warehouse.path_exists(spark, published + publish.PENDING)
    with pytest.raises(RuntimeError, match="stopped"):
        publish_once("v3", stop="before switch")  # v3's copy made, its lists never switched in
    assert _rows(spark, recs, DS)[0][1] == "v2"
    assert publish.published_copy(cfg, spark, DS) == published and copied_model() == "v2"
    assert not warehouse.path_exists(spark, published + publish.PENDING)
