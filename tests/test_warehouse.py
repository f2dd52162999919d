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
