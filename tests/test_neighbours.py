"""Items like an item: the factor method equals a numpy cosine sort, the co-occurrence method a pandas Jaccard
reference (ties to the lower asin, the item itself never among its neighbours), and publish picks the method
that is better on validation."""
import numpy as np
import pandas as pd
import pytest

from recjob import models, neighbours
from recjob import schema as S
from recjob.stages import publish


def _items(n):
    # asins in an order that differs from item_idx, so the tie-break on asin is seen
    return pd.DataFrame({S.ITEM_IDX: np.arange(n, dtype=np.int32), S.ITEM: [f"A{(7 * i) % n:03d}" for i in range(n)]})


def test_factor_neighbours_are_the_exact_cosine_top_n_without_the_item(spark):
    rng = np.random.default_rng(3)
    n, top = 40, 5
    items = _items(n)
    f = rng.normal(size=(n, 4)).astype(np.float32)
    f[5] = f[6] * 2.0  # 5 and 6 point the same way: cosine 1, each other's first neighbour
    f[7] = f[8]  # equal vectors: ties broken by asin
    vectors = models.get("softmax").similarity_factors(f, np.zeros(n, np.float32))
    got = neighbours.by_factors(spark, items, vectors, top, block=8).toPandas()
    assert set(got["method"]) == {neighbours.FACTORS} and len(got) == n * top
    cos = vectors @ vectors.T
    asin = items[S.ITEM].to_numpy()
    for i in range(n):
        order = sorted((j for j in range(n) if j != i), key=lambda j: (-round(float(cos[i, j]), 5), asin[j]))[:top]
        mine = got[got[S.ITEM_IDX] == i].sort_values(S.RANK)
        assert mine[neighbours.NEIGHBOUR_IDX].tolist() == order, i
        np.testing.assert_allclose(mine[S.SCORE], cos[i, order], rtol=1e-5, atol=1e-6)
    assert got[(got[S.ITEM_IDX] == 5) & (got[S.RANK] == 1)][neighbours.NEIGHBOUR_IDX].item() == 6


def test_cooccurrence_neighbours_are_jaccard_over_each_users_latest_items(spark):
    n_items, top, cap = 6, 3, 3
    items = _items(n_items)
    histories = {0: [0, 1, 2], 1: [1, 2], 2: [2, 3, 0, 5], 3: [4], 4: [0, 1]}  # user 2: only its latest 3 count
    rows = [(u, h + [n_items] * (5 - len(h))) for u, h in histories.items()]
    df = spark.createDataFrame(rows, f"{S.USER_IDX} int, {S.HISTORY} array<int>")
    got = neighbours.by_cooccurrence(df, spark.createDataFrame(items), n_items, top, cap).toPandas()
    users = {i: {u for u, h in histories.items() if i in h[:cap]} for i in range(n_items)}
    asin = dict(zip(items[S.ITEM_IDX], items[S.ITEM]))
    for i in range(n_items):
        ref = [(j, len(users[i] & users[j]) / len(users[i] | users[j])) for j in range(n_items)
               if j != i and users[i] & users[j]]
        ref = sorted(ref, key=lambda p: (-p[1], asin[p[0]]))[:top]
        mine = got[got[S.ITEM_IDX] == i].sort_values(S.RANK)
        assert mine[neighbours.NEIGHBOUR_IDX].tolist() == [j for j, _ in ref], i
        np.testing.assert_allclose(mine[S.SCORE], [v for _, v in ref], rtol=1e-6)
    assert 5 not in set(got[neighbours.NEIGHBOUR_IDX])  # user 2's 4th latest item is past the cap


def test_the_item_to_item_lists_are_the_last_train_items_neighbours(spark):
    table = spark.createDataFrame([("factors", 1, r, 10 + r, 1.0 / r) for r in (1, 2)] +
                                  [("cooccurrence", 1, 1, 20, 0.5)], neighbours.COLUMNS)
    hist = spark.createDataFrame([(7, [1, 3, 99]), (8, [99, 99, 99])], f"{S.USER_IDX} int, {S.HISTORY} array<int>")
    last = neighbours.last_items(hist, 99)
    assert [tuple(r) for r in last.collect()] == [(7, 1)]  # user 8 has no train item
    lists = neighbours.ranking_inputs(table, last, "factors").orderBy(S.RANK).collect()
    assert [(r[S.USER_IDX], r[S.ITEM_IDX], r[S.RANK]) for r in lists] == [(7, 11, 1), (7, 12, 2)]


@pytest.mark.parametrize("factors, cooc, chosen", [(0.2, 0.3, "cooccurrence"), (0.3, 0.2, "factors"),
                                                    (0.3, 0.3, "factors"), (0.3, None, "factors"),
                                                    (None, None, "factors")])
def test_publish_picks_the_method_better_on_validation(factors, cooc, chosen):
    evaluation = {}
    for method, v in (("factors", factors), ("cooccurrence", cooc)):
        if v is not None:
            evaluation[neighbours.evaluated_name(method)] = {"ndcg@10": v}
    assert publish.neighbours_method(evaluation, 10) == chosen
