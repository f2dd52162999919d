import math

import numpy as np
import pandas as pd
import pytest

from recjob import metrics
from recjob.config import GateConfig
from recjob.stages.publish import gate


def reference(recs: dict, relevant: dict, k: int, n_items: int) -> dict:
    out = {m: [] for m in ("hr", "precision", "recall", "ndcg", "map")}
    for u, rel in relevant.items():
        top = recs.get(u, [])[:k]
        hits = [i for i in top if i in rel]
        out["hr"].append(float(bool(hits)))
        out["precision"].append(len(hits) / k)
        out["recall"].append(len(hits) / len(rel))
        dcg = sum(1 / math.log2(r + 2) for r, i in enumerate(top) if i in rel)
        idcg = sum(1 / math.log2(r + 2) for r in range(min(len(rel), k)))
        out["ndcg"].append(dcg / idcg)
        ap, h = 0.0, 0
        for r, i in enumerate(top):
            if i in rel:
                h += 1
                ap += h / (r + 1)
        out["map"].append(ap / min(len(rel), k))
    res = {m: float(np.mean(v)) for m, v in out.items()}
    res.update({f"{m}_se": float(np.std(v, ddof=1) / np.sqrt(len(v))) for m, v in out.items()})
    res["coverage"] = len({i for lst in recs.values() for i in lst[:k]}) / n_items
    return res


@pytest.mark.parametrize("seed", [0, 1])
def test_ranking_metrics_match_numpy_reference(spark, seed):
    rng = np.random.default_rng(seed)
    n_users, n_items, k = 60, 40, 5
    recs = {u: list(rng.choice(n_items, rng.integers(0, 8), replace=False)) for u in range(n_users)}
    relevant = {u: set(rng.choice(n_items, rng.integers(1, 6), replace=False).tolist())
                for u in range(n_users) if rng.random() < 0.8}
    rec_rows = [(u, int(i), r + 1) for u, lst in recs.items() for r, i in enumerate(lst)]
    rel_rows = [(u, int(i)) for u, s in relevant.items() for i in s]
    got = metrics.ranking_metrics(spark.createDataFrame(pd.DataFrame(rec_rows, columns=["user_idx", "item_idx", "rank"])),
                                  spark.createDataFrame(pd.DataFrame(rel_rows, columns=["user_idx", "item_idx"])),
                                  k, n_items)
    want = reference(recs, relevant, k, n_items)
    assert got["users"] == len(relevant)
    for m, v in want.items():
        assert got[m] == pytest.approx(v, abs=1e-9), m
    # the in-memory NDCG (validation during training) is the same definition
    users = sorted(relevant)
    lists = np.array([(recs[u] + [-1] * k)[:k] for u in users])
    assert metrics.ndcg_of_lists(lists, [relevant[u] for u in users], k).mean() == pytest.approx(got["ndcg"], abs=1e-9)


def test_gate_decisions():
    cfg = GateConfig(min_ndcg_vs_popularity=1.0, max_rmse_vs_bias=1.0)
    good = {"model": {"ndcg@10": 0.2, "rmse": 0.9}, "popularity": {"ndcg@10": 0.1}, "bias": {"rmse": 0.95}}
    assert gate(good, True, cfg, 10) == []
    assert gate({**good, "model": {"ndcg@10": 0.05, "rmse": 0.9}}, False, cfg, 10)[0].startswith("validation ndcg@10")
    worse_rmse = {**good, "model": {"ndcg@10": 0.2, "rmse": 1.0}}
    assert gate(worse_rmse, True, cfg, 10) and gate(worse_rmse, False, cfg, 10) == []  # RMSE only for rating models
    assert "run the evaluate stage" in gate({}, False, cfg, 10)[0]


def test_publish_checks_refuse_broken_lists(spark):
    from recjob.stages.publish import check

    cols = "reviewerID string, rank int, asin string, title string, score float"

    def problems(rows):
        return check(spark.createDataFrame(rows, cols))

    good = [("u", 1, "a", None, 0.9), ("u", 2, "b", "B", 0.5), ("v", 1, "a", "A", 0.3)]
    assert problems(good) == []
    assert problems(good[1:]) == ["1 users have gaps or duplicates in their ranks or items"]  # u starts at 2
    assert problems(good + [("v", 2, "a", "A", 0.1)])[0].startswith("1 users")  # item twice
    assert problems(good + [("v", 1, "c", "C", 0.1)])[0].startswith("1 users")  # rank twice
    assert problems([("u", 1, "a", None, float("nan"))]) == ["some scores are null or NaN"]


def test_sampled_evaluation_is_a_seeded_subset_close_to_the_exact_one(spark, monkeypatch):
    from recjob import schema as S
    from recjob.config import EvaluateConfig
    from recjob.stages import evaluate

    rng = np.random.default_rng(3)
    n_users, n_items = 400, 60
    popular = rng.zipf(1.6, size=6000) % n_items
    pairs = pd.DataFrame({S.USER_IDX: rng.integers(0, n_users, 6000), S.ITEM_IDX: popular}).drop_duplicates()
    pairs[S.LABEL] = 4.0
    held = rng.random(len(pairs)) < 0.2
    train, heldout = spark.createDataFrame(pairs[~held]), spark.createDataFrame(pairs[held])
    seen = train.select(S.USER_IDX, S.ITEM_IDX)

    def metrics_with(max_users):
        cand = {"popularity": evaluate.popularity_factors(train, train.select(S.USER_IDX).distinct())}
        rows = evaluate.evaluate_split(spark, "validation", heldout, seen, cand, n_items,
                                       EvaluateConfig(max_users=max_users, k=5), 64)
        return {metric: value for _, _, metric, value in rows}

    exact, everyone = metrics_with(0), metrics_with(10_000)
    n = int(exact["users"])
    assert n > 200 and everyone == exact  # max_users above the count: the exact evaluation
    sampled, again = metrics_with(100), metrics_with(100)
    assert sampled["users"] == 100 and sampled == again  # seeded: the same users every time
    # the sampled users are scored as the exact evaluation of those users alone scores them (every seen item of
    # theirs still excluded)
    chosen, _ = evaluate.user_sample(heldout.select(S.USER_IDX).distinct(), 100, EvaluateConfig().seed)
    popularity = {"popularity": evaluate.popularity_factors(train, train.select(S.USER_IDX).distinct())}
    alone = evaluate.evaluate_split(spark, "validation", heldout.join(chosen, S.USER_IDX, "left_semi"), seen,
                                    popularity, n_items, EvaluateConfig(max_users=0, k=5), 64)
    assert {metric: pytest.approx(value, rel=1e-9) for _, _, metric, value in alone} == sampled
    # and none of their lists holds an item they have seen (the items listed are items others of them have seen,
    # so a lost exclusion would show)
    lists = []
    real_top = evaluate._top
    monkeypatch.setattr(evaluate, "_top", lambda *a, **kw: lists.append(real_top(*a, **kw)) or lists[-1])
    metrics_with(100)
    pairs = lists[0].select(S.USER_IDX, S.ITEM_IDX)
    assert pairs.select(S.USER_IDX).distinct().count() == 100
    assert pairs.join(seen, [S.USER_IDX, S.ITEM_IDX]).count() == 0
    listed = pairs.select(S.ITEM_IDX).distinct()
    assert train.join(chosen, S.USER_IDX, "left_semi").join(listed, S.ITEM_IDX).count() > 0
    for metric in ("ndcg@5", "hr@5", "recall@5"):
        assert abs(sampled[metric] - exact[metric]) < 4 * sampled[metric + "_se"], metric
        # the standard error shrinks with the users evaluated
        assert exact[metric + "_se"] < sampled[metric + "_se"]
    sample, sampled_any = evaluate.user_sample(heldout.select(S.USER_IDX).distinct(), 100, 42)
    repartitioned, _ = evaluate.user_sample(heldout.select(S.USER_IDX).distinct().repartition(5), 100, 42)
    assert sampled_any and sample.count() == 100
    assert set(r[0] for r in sample.collect()) == set(r[0] for r in repartitioned.collect())
    assert evaluate.user_sample(heldout.select(S.USER_IDX).distinct(), n, 42)[1] is False
