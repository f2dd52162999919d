import pandas as pd
from pyspark.sql import functions as F

from recjob import schema as S
from recjob import warehouse
from recjob.stages import ids


def _df(spark, users, items):
    return spark.createDataFrame(pd.DataFrame({S.USER: users, S.ITEM: items, S.RATING: 5.0, S.TIME: 1}))


def test_first_run_is_contiguous_and_sorted(spark):
    m = ids.transform(_df(spark, ["c", "a", "b", "a"], ["x"] * 4), None, S.USER, S.USER_IDX, "d1").toPandas()
    assert m.sort_values(S.USER_IDX)[S.USER].tolist() == ["a", "b", "c"]
    assert sorted(m[S.USER_IDX]) == [0, 1, 2]


def test_second_run_keeps_old_indices_and_appends(spark):
    first = ids.transform(_df(spark, ["m", "k", "z"], ["x"] * 3), None, S.USER, S.USER_IDX, "d1")
    old = dict(first.toPandas()[[S.USER, S.USER_IDX]].values)
    # second input: drops "k", adds "a" and "q"
    second = ids.transform(_df(spark, ["m", "z", "a", "q"], ["x"] * 4), first, S.USER, S.USER_IDX, "d2").toPandas()
    new = dict(second[[S.USER, S.USER_IDX]].values)
    assert all(new[k] == v for k, v in old.items())  # old ids keep their index (k too)
    assert new["a"] == 3 and new["q"] == 4  # appended in id order after the max
    assert sorted(new.values()) == list(range(5))  # contiguous
    assert second.set_index(S.USER).loc["a", ids.FIRST_DS] == "d2"


def test_stage_is_stable_across_runs_and_reruns(spark, make_cfg):
    cfg = make_cfg()
    warehouse.write_partition(_df(spark, ["u1", "u2"], ["i1", "i2"]), cfg.table("interactions"), "2020-01-01")
    warehouse.write_partition(_df(spark, ["u3", "u2", "u0"], ["i9", "i1", "i2"]), cfg.table("interactions"), "2020-01-08")
    ids.run(cfg, spark, "2020-01-01")
    ids.run(cfg, spark, "2020-01-08")

    def read(table, ds):
        return dict(warehouse.read_partition(spark, cfg.table(table), ds).toPandas().iloc[:, :2].values)

    u1, u2 = read("user_index", "2020-01-01"), read("user_index", "2020-01-08")
    assert u1 == {"u1": 0, "u2": 1}
    assert u2 == {"u1": 0, "u2": 1, "u0": 2, "u3": 3}
    assert read("item_index", "2020-01-08") == {"i1": 0, "i2": 1, "i9": 2}
    # Rerunning the later ds gives the same map, with no duplicate rows.
    ids.run(cfg, spark, "2020-01-08")
    assert read("user_index", "2020-01-08") == u2
    assert spark.table(cfg.table("user_index")).where(F.col("ds") == "2020-01-08").count() == 4
