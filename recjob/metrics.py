"""Rating baselines and error metrics computed in Spark (nothing collected but the results)."""
from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from recjob.schema import ITEM_IDX, USER_IDX

RATING = "rating"


def rmse_mae(df: DataFrame, prediction: str, label: str = RATING) -> tuple[float, float]:
    row = df.agg(F.sqrt(F.avg(F.pow(F.col(prediction) - F.col(label), 2))).alias("rmse"),
                 F.avg(F.abs(F.col(prediction) - F.col(label))).alias("mae")).first()
    return float(row["rmse"]), float(row["mae"])


def bias_baseline(train: DataFrame, reg: float = 10.0, user: str = USER_IDX, item: str = ITEM_IDX,
                  label: str = RATING) -> tuple[float, DataFrame, DataFrame]:
    """Regularised biases (Koren 2010, eq. 2 and 3): b_i = sum(r - mu) / (reg + n_i), then
    b_u = sum(r - mu - b_i) / (reg + n_u). Returns (mu, item biases, user biases)."""
    mu = float(train.agg(F.avg(label)).first()[0])
    bi = train.groupBy(item).agg((F.sum(F.col(label) - mu) / (reg + F.count(F.lit(1)))).alias("b_i"))
    bu = (train.join(bi, item).groupBy(user)
          .agg((F.sum(F.col(label) - mu - F.col("b_i")) / (reg + F.count(F.lit(1)))).alias("b_u")))
    return mu, bi, bu


def baseline_errors(train: DataFrame, test: DataFrame, label: str = RATING) -> dict[str, float]:
    """RMSE / MAE of the global mean and of the bias baseline on ``test`` (unknown ids get bias 0)."""
    mu, bi, bu = bias_baseline(train, label=label)
    pred = (test.join(bi, ITEM_IDX, "left").join(bu, USER_IDX, "left")
            .withColumn("p_mean", F.lit(mu))
            .withColumn("p_bias", F.lit(mu) + F.coalesce("b_i", F.lit(0.0)) + F.coalesce("b_u", F.lit(0.0))))
    g_rmse, g_mae = rmse_mae(pred, "p_mean", label)
    b_rmse, b_mae = rmse_mae(pred, "p_bias", label)
    return {"global_mean": mu, "global_mean_rmse": g_rmse, "global_mean_mae": g_mae,
            "bias_rmse": b_rmse, "bias_mae": b_mae}
