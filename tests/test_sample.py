import numpy as np
import pandas as pd
import pytest

from recjob import schema as S
from recjob.config import SampleConfig
from recjob.stages import sample


def kcore_reference(df: pd.DataFrame, ku: int, ki: int) -> pd.DataFrame:
    while True:
        u = df[S.USER].map(df[S.USER].value_counts())
        i = df[S.ITEM].map(df[S.ITEM].value_counts())
        keep = (u >= ku) & (i >= ki)
        if keep.all():
            return df
        df = df[keep]


def _random_interactions(n=4000, users=400, items=120, seed=0):
    rng = np.random.default_rng(seed)
    u = (rng.pareto(1.2, n) * 20).astype(int) % users
    i = (rng.pareto(1.0, n) * 10).astype(int) % items
    df = pd.DataFrame({S.USER: [f"U{x}" for x in u], S.ITEM: [f"I{x}" for x in i],
                       S.RATING: rng.integers(1, 6, n).astype(float),
                       S.TIME: rng.integers(1_500_000_000, 1_560_000_000, n)})
    return df.drop_duplicates([S.USER, S.ITEM])


@pytest.mark.parametrize("ku, ki", [(1, 1), (3, 2), (5, 5), (8, 3)])
def test_k_core_matches_reference(spark, ku, ki):
    pdf = _random_interactions()
    got, _ = sample.k_core(spark.createDataFrame(pdf), ku, ki)
    got = got.toPandas().sort_values([S.USER, S.ITEM]).reset_index(drop=True)
    want = kcore_reference(pdf, ku, ki).sort_values([S.USER, S.ITEM]).reset_index(drop=True)
    assert len(want) > 0
    assert got[[S.USER, S.ITEM]].values.tolist() == want[[S.USER, S.ITEM]].values.tolist()
    if len(got):
        assert got.groupby(S.USER).size().min() >= ku and got.groupby(S.ITEM).size().min() >= ki


def test_time_window_is_half_open_utc(spark):
    jan1 = 1514764800  # 2018-01-01T00:00:00Z
    pdf = pd.DataFrame({S.USER: ["a", "b", "c", "d"], S.ITEM: ["x"] * 4, S.RATING: [5.0] * 4,
                        S.TIME: [jan1 - 1, jan1, 1546300799, 1546300800]})
    got = sample.time_window(spark.createDataFrame(pdf), "2018-01-01", "2019-01-01").toPandas()
    assert sorted(got[S.USER]) == ["b", "c"]


def test_user_sample_is_deterministic_nested_and_whole_users(spark):
    pdf = _random_interactions(n=6000, users=1000)
    df = spark.createDataFrame(pdf)
    half = sample.user_sample(df, 0.5, seed=1).toPandas()
    again = sample.user_sample(df, 0.5, seed=1).toPandas()
    quarter = sample.user_sample(df, 0.25, seed=1).toPandas()
    other = sample.user_sample(df, 0.5, seed=2).toPandas()
    n_users = pdf[S.USER].nunique()
    assert set(half[S.USER]) == set(again[S.USER])
    assert set(quarter[S.USER]) < set(half[S.USER])
    assert set(other[S.USER]) != set(half[S.USER])
    assert 0.4 < half[S.USER].nunique() / n_users < 0.6
    # a kept user keeps all their rows
    assert len(half) == pdf[pdf[S.USER].isin(set(half[S.USER]))].shape[0]


def test_transform_counts(spark):
    pdf = _random_interactions()
    df = spark.createDataFrame(pdf)
    cfg = SampleConfig(start="2017-06-01", end="2019-01-01", min_user_reviews=2, min_item_reviews=2, user_fraction=0.5)
    out, counts = sample.transform(df, cfg)
    assert counts["read"] == len(pdf)
    # the counts taken in one scan are those of each step's frame
    windowed = sample.time_window(df, cfg.start, cfg.end)
    assert counts["window"] == windowed.count() < len(pdf)
    assert counts["user_sample"] == sample.user_sample(windowed, cfg.user_fraction, cfg.seed).count() < counts["window"]
    assert counts["user_sample"] >= counts["k_core"] == out.count() > 0
    # without times (dated False) nothing is windowed
    _, undated = sample.transform(df, cfg, dated=False)
    assert undated["window"] == len(pdf)
