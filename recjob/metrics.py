"""Rating baselines and error metrics computed in Spark (nothing collected but the results)."""
from __future__ import annotations

import math

import numpy as np
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from recjob.schema import ITEM_IDX, LABEL, USER_IDX


def rmse_mae(df: DataFrame, prediction: str, label: str = LABEL) -> tuple[float, float]:
    row = df.agg(F.sqrt(F.avg(F.pow(F.col(prediction) - F.col(label), 2))).alias("rmse"),
                 F.avg(F.abs(F.col(prediction) - F.col(label))).alias("mae")).first()
    return float(row["rmse"]), float(row["mae"])


BIAS_REG = 10.0  # the bias baseline's damping: each bias is shrunk as if by this many ratings at the mean


def bias_baseline(train: DataFrame, reg: float = BIAS_REG, user: str = USER_IDX, item: str = ITEM_IDX,
                  label: str = LABEL) -> tuple[float, DataFrame, DataFrame]:
    """Regularised biases (Koren 2010, eq. 2 and 3): b_i = sum(r - mu) / (reg + n_i), then
    b_u = sum(r - mu - b_i) / (reg + n_u). Returns (mu, item biases, user biases)."""
    mu = float(train.agg(F.avg(label)).first()[0])
    bi = train.groupBy(item).agg((F.sum(F.col(label) - mu) / (reg + F.count(F.lit(1)))).alias("b_i"))
    bu = (train.join(bi, item).groupBy(user)
          .agg((F.sum(F.col(label) - mu - F.col("b_i")) / (reg + F.count(F.lit(1)))).alias("b_u")))
    return mu, bi, bu


def baseline_errors(train: DataFrame, test: DataFrame, label: str = LABEL) -> dict[str, float]:
    """RMSE / MAE of the global mean and of the bias baseline on ``test`` (unknown ids get bias 0)."""
    mu, bi, bu = bias_baseline(train, label=label)
    pred = (test.join(bi, ITEM_IDX, "left").join(bu, USER_IDX, "left")
            .withColumn("p_mean", F.lit(mu))
            .withColumn("p_bias", F.lit(mu) + F.coalesce("b_i", F.lit(0.0)) + F.coalesce("b_u", F.lit(0.0))))
    g_rmse, g_mae = rmse_mae(pred, "p_mean", label)
    b_rmse, b_mae = rmse_mae(pred, "p_bias", label)
    return {"global_mean": mu, "global_mean_rmse": g_rmse, "global_mean_mae": g_mae,
            "bias_rmse": b_rmse, "bias_mae": b_mae}


def ideal_dcg(m: int) -> float:
    """IDCG of m relevant items: sum_{i=1..m} 1/log2(i+1)."""
    return float(sum(1.0 / math.log2(i + 1) for i in range(1, m + 1)))


def ndcg_of_lists(recommended: np.ndarray, relevant: list[set], k: int) -> np.ndarray:
    """Per-user NDCG@k of top-k lists held in memory (users x k item ids, -1 where a list is short), with the
    definition of ``ranking_metrics``: sum over hits of 1/log2(rank+1) / IDCG(min(|R_u|, k)). For the small
    samples validated after each training epoch; ``ranking_metrics`` computes the same in Spark."""
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    out = np.zeros(len(relevant))
    for u, (row, rel) in enumerate(zip(recommended, relevant)):
        if rel:
            gains = np.fromiter((c in rel for c in row[:k]), dtype=np.float64, count=min(len(row), k))
            out[u] = float(gains @ discount[:len(gains)]) / ideal_dcg(min(len(rel), k))
    return out


def ranking_metrics(recs: DataFrame, relevant: DataFrame, k: int, n_items: int,
                    user: str = USER_IDX, item: str = ITEM_IDX, rank: str = "rank") -> dict[str, float]:
    """Top-k metrics averaged over the users that have at least one relevant item, with their standard errors
    (``<metric>_se``).

    ``recs``: (user, item, rank 1..), ``relevant``: (user, item) held-out pairs. Users with relevant items
    but no recommendations count as zeros. Definitions, per user u with relevant set R_u and hits at ranks r:
    HR = [any hit]; Precision = hits / k; Recall = hits / |R_u|; NDCG = sum 1/log2(r+1) / IDCG(min(|R_u|, k));
    MAP = sum over hits of precision@r / min(|R_u|, k). Coverage = distinct recommended items / n_items.
    """
    # cached: the metrics and the coverage below are two Spark jobs over the same lists, computed once (users x k rows)
    top = recs.where(F.col(rank) <= k).select(user, item, rank).cache()
    try:
        return _ranking_metrics(top, relevant, k, n_items, user, item, rank)
    finally:
        top.unpersist()


def _per_user(top: DataFrame, relevant: DataFrame, k: int, user: str, item: str, rank: str) -> DataFrame:
    """One row per user with a relevant item: the per-user value of every metric (columns named as in
    PER_USER), zero for a user without recommendations."""
    rel = relevant.select(user, item).distinct()
    n_rel = rel.groupBy(user).agg(F.count(F.lit(1)).alias("n_rel"))
    hits = top.join(rel, [user, item], "inner")
    # precision at each hit's rank = (number of hits at or before it) / rank
    w = Window.partitionBy(user).orderBy(rank)
    hits = hits.withColumn("hits_so_far", F.row_number().over(w))
    per_user = hits.groupBy(user).agg(
        F.count(F.lit(1)).alias("hits"),
        F.sum(1.0 / F.log2(F.col(rank) + 1.0)).alias("dcg"),
        F.sum(F.col("hits_so_far") / F.col(rank)).alias("ap_sum"))
    # IDCG(m) = sum_{i=1..m} 1/log2(i+1), looked up from a small table
    idcg = per_user.sparkSession.createDataFrame([(m, ideal_dcg(m)) for m in range(1, k + 1)], "m int, idcg double")
    users = (n_rel.join(per_user, user, "left").na.fill(0, ["hits", "dcg", "ap_sum"])
             .withColumn("m", F.least(F.col("n_rel"), F.lit(k)).cast("int"))
             .join(F.broadcast(idcg), "m"))
    values = {"hr": (F.col("hits") > 0).cast("double"), "precision": F.col("hits") / k,
              "recall": F.col("hits") / F.col("n_rel"), "ndcg": F.col("dcg") / F.col("idcg"),
              "map": F.col("ap_sum") / F.col("m")}
    return users.select(user, *[v.alias(name) for name, v in values.items()])


PER_USER = ("hr", "precision", "recall", "ndcg", "map")


def paired_difference(recs_a: DataFrame, recs_b: DataFrame, relevant: DataFrame, k: int, metric: str = "ndcg",
                      user: str = USER_IDX, item: str = ITEM_IDX, rank: str = "rank") -> dict[str, float]:
    """Two recommenders on the same users (those of ``relevant``): their mean ``metric``@k, the mean of the
    per-user difference a - b and its standard error (the paired SE: sd of the differences / sqrt(users)),
    which is much smaller than either mean's SE when the two rank alike."""
    a = _per_user(recs_a.where(F.col(rank) <= k), relevant, k, user, item, rank).select(user, F.col(metric).alias("a"))
    b = _per_user(recs_b.where(F.col(rank) <= k), relevant, k, user, item, rank).select(user, F.col(metric).alias("b"))
    d = F.col("a") - F.col("b")
    row = a.join(b, user).agg(F.count(F.lit(1)).alias("users"), F.avg("a").alias("a"), F.avg("b").alias("b"),
                              F.avg(d).alias("diff"), F.stddev_samp(d).alias("sd")).first()
    n = int(row["users"])
    return {"users": n, "a": float(row["a"] or 0.0), "b": float(row["b"] or 0.0), "diff": float(row["diff"] or 0.0),
            "se": float(row["sd"] or 0.0) / math.sqrt(n) if n > 1 else 0.0}


def _ranking_metrics(top: DataFrame, relevant: DataFrame, k: int, n_items: int, user: str, item: str,
                     rank: str) -> dict[str, float]:
    users = _per_user(top, relevant, k, user, item, rank)
    per_user_values = {name: F.col(name) for name in PER_USER}
    row = users.agg(F.count(F.lit(1)).alias("users"),
                    *[F.avg(v).alias(name) for name, v in per_user_values.items()],
                    *[F.stddev_samp(v).alias(f"{name}_sd") for name, v in per_user_values.items()]).first()
    coverage = top.select(item).distinct().count() / max(n_items, 1)
    n = int(row["users"])
    out = {name: float(row[name] or 0.0) for name in per_user_values}
    # the standard error of each mean over users (sample sd / sqrt(users)): what separates a real difference
    # from the noise of which users were evaluated
    out.update({f"{name}_se": float(row[f"{name}_sd"] or 0.0) / math.sqrt(n) if n > 1 else 0.0
                for name in per_user_values})
    out.update(users=n, coverage=float(coverage), k=k)
    return out
