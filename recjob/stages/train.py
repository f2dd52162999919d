"""train: parquet shards -> a trained model (its files, the epoch log) + the user and item factor tables.

The model kind (``train.model``, a module of ``recjob.models``) trains itself from the shards, read outside
Spark through Petastorm (the Keras kinds stream them into ``model.fit`` with validation and early stopping after
every epoch; bpmf reads them once and Gibbs-samples). This stage reads the shard statistics, hands the kind its
data, and writes: the model folder (``models/ds=...``: the kind's files and ``epoch_log.json``), the
``user_factors`` and ``item_factors`` tables (original ids, only the users and items the model was trained on)
and a ``training_runs`` row with the settings and the result (validation figures at the best epoch, test
RMSE/MAE for rating kinds, and the global-mean and bias baselines on the same split for the record).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import tempfile
import time

import numpy as np
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from recjob import artifacts, feed, metrics, models, retention, warehouse
from recjob import schema as S
from recjob.artifacts import Artifacts, reader_url
from recjob.config import Config
from recjob.progress import stage_timer
from recjob.names import Table

log = logging.getLogger(__name__)

FACTOR_CHUNK = 500_000  # rows per parquet file of the exported factors


def training_data(stats: dict, store: Artifacts, cfg: Config, needs_item_histories: bool) -> models.TrainingData:
    """What a model kind trains from, from the ``shards`` table's rows (by split) and the artefact store."""
    tr = stats[S.TRAIN]
    n_users, n_items = int(tr["user_index_size"]), int(tr["item_index_size"])
    histories = (feed.read_item_histories(reader_url(store.item_histories), n_users, n_items,
                                          cfg.shards.history_length) if needs_item_histories else None)
    return models.TrainingData(train_url=reader_url(tr["path"]), validation_url=reader_url(stats[S.VALIDATION]["path"]),
                               train_rows=int(tr["rows"]), n_users=n_users, n_items=n_items,
                               rating_mean=float(tr["rating_mean"]), k=cfg.evaluate.k, item_histories=histories)


def warm_start_source(cfg: Config, spark: SparkSession, ds: str, kind: models.ModelKind, store: Artifacts,
                      workdir: str) -> tuple[str | None, dict]:
    """(a local copy of the model file to start from, or None; what the run records about it). The source is
    the model published for the latest earlier ds (the champion: a backfill starts only from an older ds), used
    when train.warm_start is on, the kind can warm start and the published model is of the same kind and
    factor count; otherwise the run trains from a fresh start and says why, in one log line."""
    t = cfg.train
    if not t.warm_start:
        return None, {"cold": "train.warm_start=false"}
    if not kind.can_warm_start:
        reason = f"a {kind.name} model cannot warm start (the models registry)"
        log.info("train: from a fresh start: %s", reason)
        return None, {"cold": reason}
    found = retention.champion_ds(cfg, spark, ds)
    if found is None:
        return None, {"cold": f"no model was published for a ds before {ds}"}
    copy = artifacts.published_dir(cfg, found)
    runs = artifacts.saved_table(copy, Table.TRAINING_RUNS)
    source = f"{artifacts.saved_folder(copy, 'models')}/{kind.warm_start_file}"
    if not (warehouse.path_exists(spark, runs) and warehouse.path_exists(spark, source)):
        reason = f"the copy of the model published for ds={found} has no training_runs or {kind.warm_start_file}"
        log.info("train: from a fresh start: %s", reason)
        return None, {"cold": reason}
    row = spark.read.parquet(runs).first()
    factors = json.loads(row["params"]).get("factors")
    if row["model"] != kind.name or factors != t.factors:
        reason = (f"the model published for ds={found} is {row['model']} with {factors} factors, this run "
                  f"{kind.name} with {t.factors}")
        log.info("train: from a fresh start: %s", reason)
        return None, {"cold": reason}
    local = store.get_file(source, os.path.join(workdir, kind.warm_start_file))
    log.info("train: warm start from the %s model published for ds=%s (%s)", kind.name, found, source)
    return local, {"from_ds": found, "model": kind.name}


def summarise(fitted: models.Fitted, kind: models.ModelKind, train_rows: int, fit_seconds: float) -> dict:
    """The run's result: the validation figures of the best epoch (or the kind's own, measured on what it
    exports), epochs, time and speed."""
    # best epoch 0: a warm start's weights, better than every epoch (kept unchanged)
    best = fitted.epoch_log[fitted.best_epoch - 1] if fitted.epoch_log and fitted.best_epoch else \
        fitted.result.get("start", {})
    return {"model": kind.name, "epochs": len(fitted.epoch_log), "best_epoch": fitted.best_epoch,
            **{k: v for k, v in best.items() if k.startswith("val_")}, **fitted.result,
            "fit_seconds": round(fit_seconds, 1),
            "train_rows_per_second": round(len(fitted.epoch_log) * train_rows / max(fit_seconds, 1e-9))}


def write_factor_files(matrix: np.ndarray, bias: np.ndarray, folder: str) -> None:
    """(idx, bias, factors) as parquet files in a local folder, in chunks of FACTOR_CHUNK rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    os.makedirs(folder, exist_ok=True)
    k = matrix.shape[1]
    for part, start in enumerate(range(0, len(matrix), FACTOR_CHUNK)):
        m = np.ascontiguousarray(matrix[start:start + FACTOR_CHUNK], dtype=np.float32)
        n = len(m)
        offsets = pa.array(np.arange(0, (n + 1) * k, k, dtype=np.int32))
        pq.write_table(pa.table({"idx": pa.array(np.arange(start, start + n, dtype=np.int32)),
                                 "bias": pa.array(bias[start:start + n].astype(np.float32)),
                                 "factors": pa.ListArray.from_arrays(offsets, pa.array(m.reshape(-1)))}),
                       f"{folder}/part-{part:05d}.parquet")


def factor_table(factors: DataFrame, trained: DataFrame, ids: DataFrame, idx_col: str, id_col: str) -> DataFrame:
    """(idx, original id, bias, factors) of the users or items the model was trained on."""
    return (factors.join(trained.select(F.col(idx_col).alias("idx")).distinct(), "idx")
            .join(ids.select(F.col(idx_col).alias("idx"), id_col), "idx")
            .select(F.col("idx").alias(idx_col), id_col, "bias", "factors"))


def run(cfg: Config, spark: SparkSession, ds: str) -> dict:
    with stage_timer("train", ds) as record:
        store, t = Artifacts(cfg, spark, ds), cfg.train
        kind = models.get(t.model)
        stats = {r[S.SPLIT]: r.asDict() for r in warehouse.read_partition(spark, cfg.table(Table.SHARDS), ds).collect()}
        data = training_data(stats, store, cfg, kind.needs_item_histories)
        warm_dir = tempfile.TemporaryDirectory()
        warm_file, warm = warm_start_source(cfg, spark, ds, kind, store, warm_dir.name)
        data = dataclasses.replace(data, warm_start=(lambda: models.load_keras_model(warm_file)) if warm_file else None)
        log.info("train: %s model, %d factors, %d users x %d items, %d train / %d validation rows, mean %.4f",
                 kind.name, t.factors, data.n_users, data.n_items, data.train_rows, stats[S.VALIDATION]["rows"],
                 data.rating_mean)
        with tempfile.TemporaryDirectory() as workdir:
            model_dir = os.path.join(workdir, "model")
            os.makedirs(model_dir)
            t0 = time.monotonic()
            try:
                fitted = kind.fit(data, t, model_dir)
            finally:
                warm_dir.cleanup()
            result = summarise(fitted, kind, data.train_rows, time.monotonic() - t0)
            result["warm_start"] = {**warm, **result.pop("warm_start_weights", {})}
            if stats[S.TEST]["rows"] and fitted.predict is not None:
                rmse, mae, _ = feed.rating_errors(fitted.predict, reader_url(stats[S.TEST]["path"]))
                result.update(test_rmse=rmse, test_mae=mae)
            train_df = spark.read.parquet(stats[S.TRAIN]["path"])
            for split in (S.VALIDATION, S.TEST):  # for the record; the evaluate stage compares more
                if stats[split]["rows"]:
                    result[f"{split}_baselines"] = metrics.baseline_errors(train_df, spark.read.parquet(stats[split]["path"]))
            key = "val_rmse" if kind.predicts_ratings else f"val_ndcg@{data.k}"
            log.info("train: validation %s %.4f (best epoch %d of %d); bias baseline rmse %.4f", key, result[key],
                     fitted.best_epoch, len(fitted.epoch_log), result[f"{S.VALIDATION}_baselines"]["bias_rmse"])
            for side in ("user", "item"):
                write_factor_files(fitted.factors[side], fitted.factors[f"{side}_bias"],
                                   os.path.join(model_dir, f"{side}_factors"))
            kept = sorted(os.listdir(model_dir))
            store.clear_models()
            store.put_model_files(model_dir)
        epoch_log = store.write_epoch_log({"config": t.record(), "result": result, "epoch_log": fitted.epoch_log})
        wrote = {}
        for side, idx_col, id_col in (("user", S.USER_IDX, S.USER), ("item", S.ITEM_IDX, S.ITEM)):
            ids = warehouse.read_partition(spark, cfg.table(Table.USER_INDEX if side == "user" else Table.ITEM_INDEX), ds)
            table = factor_table(spark.read.parquet(store.factors(side)), train_df, ids, idx_col, id_col)
            wrote[cfg.table(Table.USER_FACTORS if side == "user" else Table.ITEM_FACTORS)] = warehouse.write_partition(table, cfg.table(Table.USER_FACTORS if side == "user" else Table.ITEM_FACTORS), ds)
        runs = spark.createDataFrame([(kind.name, json.dumps(t.record(), default=str), store.model_dir, json.dumps(result, default=str))],
                                     "model string, params string, model_path string, result string")
        warehouse.write_partition(runs, cfg.table(Table.TRAINING_RUNS), ds)
        record["read"] = {s: stats[s]["rows"] for s in S.SPLITS}
        record["result"] = {k: v for k, v in result.items() if not k.endswith("_baselines")}
        record["wrote"] = {**wrote, "model files": kept, "epoch log": epoch_log}
    return record
