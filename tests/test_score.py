import numpy as np
import pandas as pd

from recjob import schema as S
from recjob import topk


def test_spark_scoring_matches_numpy_reference(spark):
    rng = np.random.default_rng(4)
    n_users, n_items, k = 37, 23, 3
    # integer-valued factors give exact ties, so the asin tie-break is exercised
    uf = rng.integers(-2, 3, (n_users, k)).astype(np.float32)
    vf = rng.integers(-2, 3, (n_items, k)).astype(np.float32)
    vb = rng.integers(0, 2, n_items).astype(np.float32)
    ub = rng.normal(size=n_users).astype(np.float32)
    asins = [f"A{j:03d}" for j in rng.permutation(n_items)]  # asin order differs from index order
    items = pd.DataFrame({S.ITEM_IDX: np.arange(n_items), S.ITEM: asins, "bias": vb, "factors": list(vf)})
    matrix = topk.item_matrix(items)
    users = spark.createDataFrame(pd.DataFrame({S.USER_IDX: np.arange(n_users, dtype=np.int32),
                                                S.USER: [f"U{i}" for i in range(n_users)],
                                                "bias": ub, "factors": [list(map(float, r)) for r in uf]}))
    col_of = {a: c for c, a in enumerate(matrix["asin"])}
    seen_items = {u: rng.choice(n_items, rng.integers(0, n_items), replace=False) for u in range(n_users)}
    seen_items[0] = np.arange(n_items)  # saw everything -> no rows
    seen_items[1] = seen_items[2] = np.array([], int)  # users 1 and 2: no row in ``seen`` at all (left join: none)
    seen = spark.createDataFrame(pd.DataFrame({
        S.USER_IDX: [u for u in seen_items if u not in (1, 2)],
        "cols": [sorted(int(col_of[asins[i]]) for i in s)
                 for u, s in seen_items.items() if u not in (1, 2)]}))
    top_n, mean = 5, 3.5
    got = topk.recommend(users, seen, matrix, top_n, block=4, global_mean=mean).toPandas()

    rows = []
    for u in range(n_users):
        for i in range(n_items):
            if i not in set(seen_items[u].tolist()):
                rows.append((u, i, asins[i], float(uf[u] @ vf[i] + vb[i])))
    ref = pd.DataFrame(rows, columns=["u", "i", "asin", "s"]).sort_values(["u", "s", "asin"], ascending=[True, False, True])
    ref = ref.groupby("u").head(top_n).copy()
    ref["rank"] = ref.groupby("u").cumcount() + 1
    got = got.sort_values([S.USER_IDX, S.RANK])
    assert got[[S.USER_IDX, S.RANK, S.ITEM_IDX]].values.tolist() == ref[["u", "rank", "i"]].values.tolist()
    expected_score = ref["s"].to_numpy() + ub[ref["u"].to_numpy()] + mean
    np.testing.assert_allclose(got[S.SCORE].to_numpy(), expected_score, rtol=1e-5)
    assert 0 not in set(got[S.USER_IDX])
    assert (got[S.USER_IDX] == 1).sum() == top_n and (got[S.USER_IDX] == 2).sum() == top_n


def test_spark_mlp_scoring_matches_numpy_reference(spark):
    rng = np.random.default_rng(5)
    n_users, n_items, k = 9, 12, 3
    uf, vf = rng.normal(size=(n_users, k)).astype(np.float32), rng.normal(size=(n_items, k)).astype(np.float32)
    vb = rng.normal(size=n_items).astype(np.float32)
    weights = [(rng.normal(size=(2 * k, 4)), rng.normal(size=4)), (rng.normal(size=(4, 3)), rng.normal(size=3)),
               (rng.normal(size=(3, 1)), rng.normal(size=1))]
    items = pd.DataFrame({S.ITEM_IDX: np.arange(n_items), S.ITEM: [f"A{j:03d}" for j in range(n_items)],
                          "bias": vb, "factors": list(vf)})
    users = spark.createDataFrame(pd.DataFrame({S.USER_IDX: np.arange(n_users, dtype=np.int32),
                                                S.USER: [f"U{i}" for i in range(n_users)], "bias": np.float32(0.0),
                                                "factors": [list(map(float, r)) for r in uf]}))
    seen = spark.createDataFrame(pd.DataFrame({S.USER_IDX: [1, 2], "cols": [[0, 5], [11]]}))
    got = (topk.recommend(users, seen, topk.item_matrix(items, weights), 4, block=2, global_mean=0.0)
           .toPandas().sort_values([S.USER_IDX, S.RANK]))

    def forward(u, i):
        h = np.concatenate([uf[u], vf[i]])
        for j, (w, b) in enumerate(weights):
            h = h @ w + b
            h = np.maximum(h, 0) if j < len(weights) - 1 else h
        return float(h[0]) + vb[i]

    excluded = {1: {0, 5}, 2: {11}}
    for u in range(n_users):
        scores = {i: forward(u, i) for i in range(n_items) if i not in excluded.get(u, set())}
        ref = sorted(scores, key=lambda i: -scores[i])[:4]
        mine = got[got[S.USER_IDX] == u]
        assert mine[S.ITEM_IDX].tolist() == ref
        np.testing.assert_allclose(mine[S.SCORE].to_numpy(), [scores[i] for i in ref], rtol=1e-4, atol=1e-4)
