import numpy as np
import pandas as pd

from recjob import schema as S
from recjob.stages import shards


def _interactions(spark, n_users=300, per_user=8, seed=0):
    rng = np.random.default_rng(seed)
    rows = [(f"U{u}", f"I{rng.integers(0, 10_000)}_{j}", float(rng.integers(1, 6)), int(rng.integers(0, 10**9)))
            for u in range(n_users) for j in range(per_user)]
    return pd.DataFrame(rows, columns=[S.USER, S.ITEM, S.RATING, S.TIME])


def test_random_split_is_seeded_and_proportional(spark):
    pdf = _interactions(spark)
    df = spark.createDataFrame(pdf)
    a = shards.random_split(df, 0.1, 0.2, seed=3).toPandas().set_index([S.USER, S.ITEM])[S.SPLIT]
    b = shards.random_split(df.repartition(7), 0.1, 0.2, seed=3).toPandas().set_index([S.USER, S.ITEM])[S.SPLIT]
    c = shards.random_split(df, 0.1, 0.2, seed=4).toPandas().set_index([S.USER, S.ITEM])[S.SPLIT]
    assert a.sort_index().equals(b.sort_index())  # independent of partitioning
    assert not a.sort_index().equals(c.sort_index())
    share = a.value_counts(normalize=True)
    assert abs(share[S.TEST] - 0.2) < 0.03 and abs(share[S.VALIDATION] - 0.1) < 0.03


def test_temporal_split_matches_reference(spark):
    pdf = _interactions(spark, n_users=50, per_user=5)
    pdf = pd.concat([pdf, pd.DataFrame([("short", "a", 5.0, 1), ("short", "b", 4.0, 2)], columns=pdf.columns)])
    assert not pdf.duplicated([S.USER, S.TIME]).any()  # ties are the next test's
    got = shards.temporal_split(spark.createDataFrame(pdf), seed=1).toPandas()
    ref = pdf.sort_values([S.USER, S.TIME], ascending=[True, False]).copy()
    ref["pos"] = ref.groupby(S.USER).cumcount()
    ref["n"] = ref.groupby(S.USER)[S.ITEM].transform("size")
    ref[S.SPLIT] = np.where(ref["n"] < 3, S.TRAIN, np.select([ref["pos"] == 0, ref["pos"] == 1],
                                                             [S.TEST, S.VALIDATION], S.TRAIN))
    merged = got.merge(ref, on=[S.USER, S.ITEM], suffixes=("", "_ref"))
    assert len(merged) == len(pdf)
    assert (merged[S.SPLIT] == merged[S.SPLIT + "_ref"]).all()
    assert set(got[got[S.USER] == "short"][S.SPLIT]) == {S.TRAIN}


def test_temporal_split_breaks_time_ties_by_seeded_hash_not_item_id(spark):
    # every user reviewed the same 3 variants at the same time: which one is held out must vary by user
    pdf = pd.DataFrame([(f"U{u}", f"V{v}", 5.0, 100) for u in range(200) for v in range(3)],
                       columns=[S.USER, S.ITEM, S.RATING, S.TIME])
    df = spark.createDataFrame(pdf)
    a = shards.temporal_split(df, seed=1).toPandas().set_index([S.USER, S.ITEM])[S.SPLIT].sort_index()
    b = shards.temporal_split(df.repartition(4), seed=1).toPandas().set_index([S.USER, S.ITEM])[S.SPLIT].sort_index()
    c = shards.temporal_split(df, seed=2).toPandas().set_index([S.USER, S.ITEM])[S.SPLIT].sort_index()
    assert a.equals(b) and not a.equals(c)
    per_user = a.groupby(level=0).value_counts().unstack(fill_value=0)
    assert (per_user[S.TEST] == 1).all() and (per_user[S.VALIDATION] == 1).all()
    held_out = a[a == S.TEST].reset_index()[S.ITEM].value_counts()
    assert len(held_out) == 3 and held_out.min() > 40  # each variant is held out for some users


def test_stratified_split_per_user_shares(spark):
    pdf = _interactions(spark, n_users=40, per_user=20)
    df = spark.createDataFrame(pdf)
    a = shards.stratified_split(df, 0.1, 0.25, seed=5).toPandas()
    b = shards.stratified_split(df.repartition(5), 0.1, 0.25, seed=5).toPandas()
    key = [S.USER, S.ITEM]
    assert a.sort_values(key)[S.SPLIT].tolist() == b.sort_values(key)[S.SPLIT].tolist()
    counts = a.groupby(S.USER)[S.SPLIT].value_counts().unstack(fill_value=0)
    assert (counts[S.TEST] == 5).all() and (counts[S.VALIDATION] == 2).all() and (counts[S.TRAIN] == 13).all()


def test_given_split_marks_exactly_the_heldout_pairs(spark):
    pdf = _interactions(spark, n_users=30, per_user=6)
    held = pdf.sample(frac=0.2, random_state=1)[[S.USER, S.ITEM]]
    got = shards.given_split(spark.createDataFrame(pdf), spark.createDataFrame(held), 0.1, seed=2).toPandas()
    test_pairs = set(map(tuple, got[got[S.SPLIT] == S.TEST][[S.USER, S.ITEM]].values))
    assert test_pairs == set(map(tuple, held.values))
    assert len(got) == len(pdf) and (got[S.SPLIT] == S.VALIDATION).any()


def test_history_holds_earlier_train_items_only_most_recent_first(spark):
    # user a: items 0..5 at times 10..60 (the last two held out); user b: items 7, 8 at the same time
    rows = [("a", f"i{j}", 5.0, 10 * (j + 1), j) for j in range(6)] + [("b", "x", 4.0, 5, 7), ("b", "y", 4.0, 5, 8)]
    pdf = pd.DataFrame(rows, columns=[S.USER, S.ITEM, S.RATING, S.TIME, S.ITEM_IDX])
    pdf[S.USER_IDX] = (pdf[S.USER] == "b").astype(int)
    df = shards.temporal_split(spark.createDataFrame(pdf), seed=1)
    train = df.where(df[S.SPLIT] == S.TRAIN)
    rows = shards.with_history(train, length=3, n_items=9, seed=1)
    latest = shards.latest_items(train, length=3, n_items=9, seed=1)
    got = {(r[S.USER], r[S.ITEM_IDX]): list(r["history"]) for r in rows.collect()}
    assert got[("a", 0)] == [9, 9, 9]
    assert got[("a", 1)] == [0, 9, 9]
    assert got[("a", 3)] == [2, 1, 0]  # items 4 and 5 are validation and test: never in a history
    assert len(got) == 6
    b_first, b_second = sorted(((k[1], v) for k, v in got.items() if k[0] == "b"), key=lambda kv: kv[1][0] == 9)[::-1]
    assert b_first[1] == [9, 9, 9] and b_second[1] == [b_first[0], 9, 9]  # a tie in time still gives an order
    final = {r[S.USER_IDX]: list(r["history"]) for r in latest.collect()}
    assert final == {0: [3, 2, 1], 1: [b_second[0], b_first[0], 9]}
    # for the published lists: the latest items of every split, the held-out ones first
    every = {r[S.USER_IDX]: list(r["history"]) for r in shards.latest_items(df, 3, 9, seed=1).collect()}
    assert every == {0: [5, 4, 3], 1: final[1]}
