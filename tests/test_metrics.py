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


def test_paired_difference_matches_numpy(spark):
    """The champion comparison's figures: both means on the same users, the mean per-user difference and its
    paired standard error (sd of the differences / sqrt(n)), against a direct computation."""
    rng = np.random.default_rng(3)
    n_users, n_items, k = 80, 30, 5
    relevant = {u: set(rng.choice(n_items, rng.integers(1, 4), replace=False).tolist()) for u in range(n_users)}
    a = {u: list(rng.choice(n_items, k, replace=False)) for u in range(n_users)}
    b = {u: (lst if rng.random() < 0.5 else list(rng.choice(n_items, k, replace=False))) for u, lst in a.items()}
    b.pop(7)  # a user without a list counts as a zero for that recommender

    def frame(recs):
        rows = [(u, int(i), r + 1) for u, lst in recs.items() for r, i in enumerate(lst)]
        return spark.createDataFrame(pd.DataFrame(rows, columns=["user_idx", "item_idx", "rank"]))

    rel = spark.createDataFrame(pd.DataFrame([(u, i) for u, s in relevant.items() for i in s],
                                             columns=["user_idx", "item_idx"]))
    got = metrics.paired_difference(frame(a), frame(b), rel, k)

    def ndcg(recs, u):
        dcg = sum(1 / math.log2(r + 2) for r, i in enumerate(recs.get(u, [])[:k]) if i in relevant[u])
        return dcg / sum(1 / math.log2(r + 2) for r in range(min(len(relevant[u]), k)))

    va, vb = (np.array([ndcg(r, u) for u in range(n_users)]) for r in (a, b))
    d = va - vb
    assert got["users"] == n_users
    assert got["a"] == pytest.approx(va.mean(), abs=1e-9) and got["b"] == pytest.approx(vb.mean(), abs=1e-9)
    assert got["diff"] == pytest.approx(d.mean(), abs=1e-9)
    assert got["se"] == pytest.approx(d.std(ddof=1) / np.sqrt(n_users), abs=1e-9)
    assert got["se"] < np.sqrt(va.var(ddof=1) / n_users + vb.var(ddof=1) / n_users)  # pairing: smaller


def test_the_gate_refuses_a_model_far_below_the_champion():
    cfg = GateConfig(max_drop_vs_published=2.0)
    base = {"model": {"ndcg@10": 0.2}, "popularity": {"ndcg@10": 0.1}}

    def champion(diff, se):
        return {**base, "champion": {"ndcg@10": 0.2 - diff, "model_ndcg@10": 0.2, "ndcg@10_paired_diff": diff,
                                     "ndcg@10_paired_diff_se": se, "users": 1234.0}}

    refused = gate(champion(-0.03, 0.01), False, cfg, 10, "2026-01-04")
    assert len(refused) == 1 and "below the champion's 0.2300 (the model published for ds=2026-01-04, on the " \
        "same 1,234 users) by 0.0300, more than gate.max_drop_vs_published=2 standard errors" in refused[0]
    assert gate(champion(-0.015, 0.01), False, cfg, 10, "2026-01-04") == []  # within 2 SE: noise
    assert gate(champion(0.05, 0.01), False, cfg, 10, "2026-01-04") == []  # better than the champion
    assert gate(champion(-0.015, 0.01), False, GateConfig(max_drop_vs_published=1.0), 10) != []
    assert gate(base, False, cfg, 10) == []  # no champion: the baselines alone


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
        rows, _ = evaluate.evaluate_split(spark, "validation", heldout, seen, cand, n_items,
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
    alone, _ = evaluate.evaluate_split(spark, "validation", heldout.join(chosen, S.USER_IDX, "left_semi"), seen,
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
