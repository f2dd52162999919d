"""train: parquet shards -> Keras model (read through Petastorm) + exported user/item factor tables.

``train.model=bpmf`` is not Keras: its Gibbs sampler (recjob.bpmf) reads the train split through the same
Petastorm reader in one pass, runs a fixed number of sweeps and exports the posterior average as factors.

The training loop is local to the driver (like any Keras fit) and streams the shards: Petastorm's batch
reader yields row groups, which ``rebatch`` turns into fixed-size batches. After each epoch the rating models
(dot, mlp) compute validation RMSE exactly with a fresh one-pass reader, the ranking models (softmax, bpr,
seq) validation NDCG@10 on a seeded user sample; training stops when it has not improved for ``patience``
epochs and the best weights are kept. ``seq`` also reads the train shards' ``history`` column, and its user
factors are computed from each user's latest train items (``shards/ds=.../histories``).
"""
from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import time
import warnings

import numpy as np
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from recjob import bpmf, metrics, topk, warehouse
from recjob import model as M
from recjob import schema as S
from recjob.config import Config, TrainConfig
from recjob.stages import shards, stage_timer

log = logging.getLogger(__name__)


def _fields(with_history: bool = False) -> list[str]:
    return [M.USER_IN, M.ITEM_IN, "rating"] + ([M.HIST_IN] if with_history else [])


def _reader(url: str, num_epochs: int | None, cfg: TrainConfig, shuffle: bool, fields: list[str] | None = None):
    from petastorm import make_batch_reader

    # petastorm 0.13.1 on pyarrow 14 warns about pyarrow's legacy dataset API on every reader (see README).
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"petastorm(\.|$)")

    return make_batch_reader(url, num_epochs=num_epochs, shuffle_row_groups=shuffle, seed=cfg.seed,
                             workers_count=cfg.reader_workers, reader_pool_type="thread",
                             schema_fields=fields or _fields())


def _dataset(reader, batch_size: int):
    import tensorflow as tf
    from petastorm.tf_utils import make_petastorm_dataset

    def features(b):
        x = {M.USER_IN: tf.cast(b.user_idx, tf.int32), M.ITEM_IN: tf.cast(b.item_idx, tf.int32)}
        if hasattr(b, M.HIST_IN):
            x[M.HIST_IN] = tf.cast(getattr(b, M.HIST_IN), tf.int32)
        return x, tf.cast(b.rating, tf.float32)

    ds = make_petastorm_dataset(reader).map(features)
    return ds.rebatch(batch_size).prefetch(2)


def evaluate_url(model, url: str, cfg: TrainConfig, batch_size: int = 16384) -> tuple[float, float, int]:
    """Exact RMSE and MAE of ``model`` over one pass of a shard folder."""
    sse = sae = 0.0
    n = 0
    with _reader(url, 1, cfg, shuffle=False) as reader:
        for x, y in _dataset(reader, batch_size):
            p = np.asarray(model(x, training=False), dtype=np.float64)
            err = p - y.numpy()
            sse += float(np.dot(err, err))
            sae += float(np.abs(err).sum())
            n += len(err)
    if n == 0:
        raise ValueError(f"no rows in {url}")
    return math.sqrt(sse / n), sae / n, n


class RankingProbe:
    """Validation NDCG@k of a factor model on a seeded sample of validation users, train items excluded.

    Sized by the sample (its users' train and validation rows are read with a filter), not by the data."""

    def __init__(self, train_url: str, val_url: str, cfg: TrainConfig, k: int = 10,
                 history: np.ndarray | None = None):
        import pyarrow.compute as pc
        import pyarrow.dataset as pads
        from pyarrow import fs as pafs

        def table(url, users=None):
            fs, path = pafs.FileSystem.from_uri(url)
            d = pads.dataset(path, filesystem=fs, format="parquet")
            flt = None if users is None else pc.field(M.USER_IN).isin(users)
            return d.to_table(columns=[M.USER_IN, M.ITEM_IN], filter=flt).to_pandas()

        val = table(val_url)
        users = np.unique(val[M.USER_IN].to_numpy())
        rng = np.random.default_rng(cfg.seed)
        if len(users) > cfg.ranking_probe_users:
            users = np.sort(rng.choice(users, cfg.ranking_probe_users, replace=False))
        self.users, self.k = users, k
        self.history = None if history is None else history[users]  # the seq model's, for the sample only
        val = val[val[M.USER_IN].isin(users)]
        train = table(train_url, pa_list(users))
        self.relevant = val.groupby(M.USER_IN)[M.ITEM_IN].apply(lambda s: set(s.tolist())).reindex(users).tolist()
        seen = train.groupby(M.USER_IN)[M.ITEM_IN].apply(lambda s: s.to_numpy()).reindex(users)
        self.seen = [x if isinstance(x, np.ndarray) else np.empty(0, np.int64) for x in seen.tolist()]
        self.discount = 1.0 / np.log2(np.arange(2, k + 2))

    def ndcg(self, model) -> float:
        f = M.factors(model, self.history)
        rows = f["user"] if self.history is not None else f["user"][self.users]
        total = 0.0
        for start in range(0, len(self.users), 512):
            idx, _ = topk.score_block(rows[start:start + 512], f["item"], f["item_bias"], self.seen[start:start + 512],
                                      self.k)
            for row, rel in zip(idx, self.relevant[start:start + 512]):
                gains = np.array([c in rel for c in row], dtype=np.float64)
                ideal = self.discount[:min(len(rel), self.k)].sum()
                total += float(gains @ self.discount) / ideal
        return total / max(len(self.users), 1)


def pa_list(values: np.ndarray):
    import pyarrow as pa

    return pa.array(values.astype(np.int32))


def _callback(monitor, cfg: TrainConfig):
    """Early stopping on ``monitor(model) -> (value, logs)``, to be maximised; best weights kept."""
    import keras

    class ValidateAndStop(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.best, self.best_epoch, self.best_weights, self.wait, self.history = -math.inf, 0, None, 0, []

        def on_epoch_end(self, epoch, logs=None):
            value, extra = monitor(self.model)
            logs = logs if logs is not None else {}
            logs.update(extra)
            entry = {"epoch": epoch + 1, **{k: float(v) for k, v in logs.items()}}
            self.history.append(entry)
            log.info("train: epoch %d: %s", epoch + 1, ", ".join(f"{k} {v:.4f}" for k, v in entry.items() if k != "epoch"))
            if value > self.best + 1e-5:
                self.best, self.best_epoch, self.wait = value, epoch + 1, 0
                self.best_weights = self.model.get_weights()
            else:
                self.wait += 1
                if self.wait >= cfg.patience:
                    log.info("train: no improvement for %d epochs: stopping", self.wait)
                    self.model.stop_training = True

        def on_train_end(self, logs=None):
            if self.best_weights is not None:
                self.model.set_weights(self.best_weights)

    return ValidateAndStop()


def read_histories(url: str, n_users: int, n_items: int, length: int) -> np.ndarray:
    """Every user's latest train items (users x length, most recent first, padded with n_items), from the
    folder the shards stage writes for the sequence models."""
    import pyarrow.dataset as pads
    from pyarrow import fs as pafs

    fs, path = pafs.FileSystem.from_uri(url)
    if fs.get_file_info(path).type == pafs.FileType.NotFound:
        raise FileNotFoundError(f"{url} does not exist: rerun the shards stage with train.model set to a sequence "
                                f"model ({', '.join(M.SEQUENCE_MODELS)})")
    table = pads.dataset(path, filesystem=fs, format="parquet").to_table(columns=[M.USER_IN, M.HIST_IN])
    out = np.full((n_users, length), n_items, np.int32)
    rows = table.column(M.HIST_IN).combine_chunks()
    values = rows.flatten().to_numpy(zero_copy_only=False).reshape(len(rows), -1)
    if values.shape[1] != length:
        raise ValueError(f"{url} holds histories of {values.shape[1]} items but train.history_length={length}: "
                         "rerun the shards stage")
    out[table.column(M.USER_IN).to_numpy()] = values
    return out


def fit(train_url: str, val_url: str, train_rows: int, n_users: int, n_items: int, global_mean: float,
        cfg: TrainConfig, history: np.ndarray | None = None):
    """Train a model on the shards at ``train_url``; return (model, callback with history and best epoch).
    ``history``: the users' latest train items, for the sequence models' user factors.

    Rating models stop on exact validation RMSE; ranking models on validation NDCG@10 of a user sample."""
    import keras
    import tensorflow as tf

    if cfg.model == "bpmf":  # a rating model, but not Keras: train.run calls fit_bpmf for it
        raise ValueError("train.fit trains the Keras models; bpmf is fitted by fit_bpmf")
    keras.utils.set_random_seed(cfg.seed)
    tf.config.experimental.enable_op_determinism()
    batch = batch_size(train_rows, cfg)
    if batch != cfg.batch_size:
        log.info("train: batch size %d instead of %d, so that an epoch of %d rows has at least %d steps "
                 "(train.min_steps_per_epoch)", batch, cfg.batch_size, train_rows, cfg.min_steps_per_epoch)
    steps = max(1, math.ceil(train_rows / batch))
    if cfg.model in M.RATING_MODELS:
        model = M.build(n_users, n_items, cfg, global_mean)

        def monitor(m):
            rmse, mae, _ = evaluate_url(m, val_url, cfg)
            return -rmse, {"val_rmse": rmse, "val_mae": mae}
    else:
        build = {"softmax": M.build_softmax, "bpr": M.build_bpr, "seq": M.build_seq}[cfg.model]
        model = build(n_users, n_items, cfg)
        probe = RankingProbe(train_url, val_url, cfg, history=history)

        def monitor(m):
            ndcg = probe.ndcg(m)
            return ndcg, {"val_ndcg@10": ndcg}
    cb = _callback(monitor, cfg)
    fields = _fields(with_history=cfg.model in M.SEQUENCE_MODELS)
    with _reader(train_url, None, cfg, shuffle=True, fields=fields) as reader:
        data = _dataset(reader, batch)
        if cfg.model == "bpr":
            data = data.map(_with_negatives(n_items, cfg.seed))
        model.fit(data, epochs=cfg.max_epochs, steps_per_epoch=steps,
                  callbacks=[cb], verbose=0, shuffle=False)  # rows are shuffled in the shards
    return model, cb


def read_ratings(url: str, cfg: TrainConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(user_idx, item_idx, rating) of a whole shard folder, read in one pass through Petastorm."""
    parts = []
    with _reader(url, 1, cfg, shuffle=False) as reader:
        for batch in reader:
            parts.append((np.asarray(batch.user_idx), np.asarray(batch.item_idx), np.asarray(batch.rating)))
    if not parts:
        raise ValueError(f"no rows in {url}")
    return tuple(np.concatenate([p[j] for p in parts]) for j in range(3))


class FactorPredictor:
    """Predicted ratings of a factor dict (user, item, user_bias, item_bias, mean), callable like the Keras
    models on a batch {user_idx, item_idx}."""

    def __init__(self, f: dict):
        self.f = f

    def __call__(self, x, training: bool = False) -> np.ndarray:
        return bpmf.predict(self.f, np.asarray(x[M.USER_IN]), np.asarray(x[M.ITEM_IN]))


def fit_bpmf(train_url: str, val_url: str, n_users: int, n_items: int,
             cfg: TrainConfig) -> tuple[dict, list[dict], tuple[float, float]]:
    """Gibbs-sample BPMF on the train shards (recjob.bpmf); the history has per sweep the train RMSE of the
    sample, the validation RMSE of the sample alone and of the average of the samples kept so far. Also
    returns the validation (RMSE, MAE) of the exported factors, exactly as they are scored."""
    users, items, ratings = read_ratings(train_url, cfg)
    v_users, v_items, v_ratings = read_ratings(val_url, cfg)
    total, kept = np.zeros(len(v_ratings)), 0

    def on_sweep(state: dict, keep: bool) -> dict:
        nonlocal kept
        pred = bpmf.predict(state, v_users, v_items)
        out = {"val_rmse_sample": math.sqrt(float(np.mean(np.square(pred - v_ratings))))}
        if keep:
            total[:] += pred
            kept += 1
        out["val_rmse"] = math.sqrt(float(np.mean(np.square(total / kept - v_ratings)))) if kept else math.nan
        return out

    f = bpmf.sample(users, items, ratings, n_users, n_items, cfg.factors, cfg.mcmc_burn_in, cfg.mcmc_samples,
                    cfg.mcmc_thin, cfg.seed, cfg.bpmf_implicit, cfg.mcmc_cg_iterations, cfg.bpmf_noise_prior,
                    cfg.bpmf_export_rank, on_sweep)
    err = bpmf.predict(f, v_users, v_items) - v_ratings
    return f, f.pop("history"), (math.sqrt(float(np.mean(np.square(err)))), float(np.mean(np.abs(err))))


def batch_size(train_rows: int, cfg: TrainConfig) -> int:
    """cfg.batch_size, made smaller on small data so that one epoch has at least cfg.min_steps_per_epoch
    steps: early stopping checks once per epoch, and a few thousand rows in batches of 1024 would give it
    only a handful of updates between checks (never below 32 rows)."""
    return max(1, min(cfg.batch_size, max(32, train_rows // cfg.min_steps_per_epoch)))


def _with_negatives(n_items: int, seed: int):
    """Add one uniformly sampled negative item per row; the label of every pair is 1 (positive first)."""
    import tensorflow as tf

    gen = tf.random.Generator.from_seed(seed)

    def add(x, y):
        neg = gen.uniform(tf.shape(y), minval=0, maxval=n_items, dtype=tf.int32)
        return {**x, M.NEG_IN: neg}, tf.ones_like(y)

    return add


def _write_factors(matrix: np.ndarray, bias: np.ndarray, url: str) -> None:
    """Write (idx, bias, factors) as parquet files at ``url`` (any filesystem pyarrow knows), in chunks."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from pyarrow import fs as pafs

    fs, root = pafs.FileSystem.from_uri(url)
    fs.delete_dir_contents(root, missing_dir_ok=True)
    fs.create_dir(root, recursive=True)
    k = matrix.shape[1]
    chunk = 500_000
    for part, start in enumerate(range(0, len(matrix), chunk)):
        m = np.ascontiguousarray(matrix[start:start + chunk], dtype=np.float32)
        n = len(m)
        values = pa.array(m.reshape(-1))
        offsets = pa.array(np.arange(0, (n + 1) * k, k, dtype=np.int32))
        table = pa.table({"idx": pa.array(np.arange(start, start + n, dtype=np.int32)),
                          "bias": pa.array(bias[start:start + n].astype(np.float32)),
                          "factors": pa.ListArray.from_arrays(offsets, values)})
        pq.write_table(table, f"{root}/part-{part:05d}.parquet", filesystem=fs)


MLP_FILE = "mlp.npz"
BPMF_FILE = "bpmf.npz"
SEQ_FILE = "seq.npz"


def mlp_for_scoring(cfg: Config, ds: str, model_kind: str) -> list | None:
    """The dense layers of the ds's MLP model (None for the factor models, which score by dot product)."""
    if model_kind != "mlp":
        return None
    return M.load_mlp(warehouse.read_bytes(f"{cfg.ds_path('models', ds)}/{MLP_FILE}"))


def _save_model(model, model_dir: str) -> str:
    from pyarrow import fs as pafs

    if "://" not in model_dir:
        os.makedirs(model_dir, exist_ok=True)
        path = os.path.join(model_dir, "model.keras")
        model.save(path)
        return path
    with tempfile.TemporaryDirectory() as tmp:
        local = os.path.join(tmp, "model.keras")
        model.save(local)
        fs, root = pafs.FileSystem.from_uri(model_dir)
        fs.create_dir(root, recursive=True)
        pafs.copy_files(local, f"{root}/model.keras", destination_filesystem=fs)
    return model_dir.rstrip("/") + "/model.keras"


def run(cfg: Config, spark: SparkSession, ds: str) -> dict:
    with stage_timer("train", ds) as report:
        stats = {r[S.SPLIT]: r.asDict() for r in warehouse.read_partition(spark, cfg.table("shards"), ds).collect()}
        tr, va = stats[S.TRAIN], stats[S.VALIDATION]
        n_users, n_items = int(tr["user_index_size"]), int(tr["item_index_size"])
        mean = float(tr["rating_mean"])
        t = cfg.train
        log.info("train: %s model, %d factors, %d users x %d items, %d train / %d validation rows, mean %.4f",
                 t.model, t.factors, n_users, n_items, tr["rows"], va["rows"], mean)
        t0 = time.monotonic()
        train_url, val_url = warehouse.file_url(tr["path"]), warehouse.file_url(va["path"])
        if t.model in M.SEQUENCE_MODELS and cfg.shards.split != "temporal":
            log.warning("train: train.model=%s learns which item comes next; with shards.split=%s the held-out items "
                        "are not the users' next items, so validation and the gate judge it on a task it was not "
                        "built for (use shards.split=temporal, or train.model=softmax)", t.model, cfg.shards.split)
        if t.model == "bpmf":
            f, history, (val_rmse, val_mae) = fit_bpmf(train_url, val_url, n_users, n_items, t)
            model, best_epoch = FactorPredictor(f), len(history)
        else:
            latest = None
            if t.model in M.SEQUENCE_MODELS:
                latest = read_histories(warehouse.file_url(shards.histories_path(cfg, ds)), n_users, n_items,
                                        t.history_length)
            model, cb = fit(train_url, val_url, int(tr["rows"]), n_users, n_items, mean, t, latest)
            f, history, best_epoch = M.factors(model, latest), cb.history, cb.best_epoch
        fit_seconds = time.monotonic() - t0
        best = history[best_epoch - 1] if best_epoch else {}
        result = {"model": t.model, "epochs": len(history), "best_epoch": best_epoch,
                  **{k: v for k, v in best.items() if k.startswith("val_")},
                  "fit_seconds": round(fit_seconds, 1),
                  "train_rows_per_second": round(len(history) * tr["rows"] / max(fit_seconds, 1e-9))}
        if t.model == "bpmf":  # the exported average, exactly as it is scored (float32 factors)
            result.update(val_rmse=val_rmse, val_mae=val_mae)
        if stats[S.TEST]["rows"] and t.model in M.RATING_MODELS:
            rmse, mae, _ = evaluate_url(model, warehouse.file_url(stats[S.TEST]["path"]), t)
            result.update(test_rmse=rmse, test_mae=mae)
        # Baselines on the same split, for the record (the evaluate stage compares more).
        train_df = spark.read.parquet(tr["path"])
        for split in (S.VALIDATION, S.TEST):
            if stats[split]["rows"]:
                base = metrics.baseline_errors(train_df, spark.read.parquet(stats[split]["path"]))
                result[f"{split}_baselines"] = base
        vb = result[f"{S.VALIDATION}_baselines"]
        if t.model in M.RATING_MODELS:
            log.info("train: validation rmse %.4f (best epoch %d of %d); global mean %.4f, bias-only %.4f",
                     result["val_rmse"], best_epoch, len(history), vb["global_mean_rmse"], vb["bias_rmse"])
        else:
            log.info("train: validation NDCG@10 %.4f on a user sample (best epoch %d of %d)",
                     result["val_ndcg@10"], best_epoch, len(history))

        model_dir = cfg.ds_path("models", ds)
        if t.model == "bpmf":
            model_path = f"{model_dir}/{BPMF_FILE}"
            warehouse.write_bytes(model_path, bpmf.save(f))
        else:
            model_path = _save_model(model, model_dir)
        warehouse.write_bytes(f"{model_dir}/history.json", json.dumps(
            {"config": t.__dict__, "result": result, "history": history}, indent=2, default=str).encode("utf-8"))
        if t.model == "mlp":  # scoring needs the dense layers too (topk.mlp_part)
            warehouse.write_bytes(f"{model_dir}/{MLP_FILE}", M.save_mlp(M.mlp_weights(model)))
        if t.model in M.SEQUENCE_MODELS:  # scoring computes user factors from the latest items of every split
            warehouse.write_bytes(f"{model_dir}/{SEQ_FILE}", M.seq_weights(model))
        wrote = {}
        for side, idx_col, id_col, index_table, matrix, bias in (
                ("user", S.USER_IDX, S.USER, "user_index", f["user"], f["user_bias"]),
                ("item", S.ITEM_IDX, S.ITEM, "item_index", f["item"], f["item_bias"])):
            url = warehouse.file_url(f"{model_dir}/{side}_factors")
            _write_factors(matrix, bias, url)
            trained = train_df.select(F.col(idx_col).alias("idx")).distinct()  # only ids the model saw
            ids = warehouse.read_partition(spark, cfg.table(index_table), ds).select(F.col(idx_col).alias("idx"), id_col)
            table = (spark.read.parquet(url).join(trained, "idx").join(ids, "idx")
                     .select(F.col("idx").alias(idx_col), id_col, "bias", "factors"))
            wrote[cfg.table(f"{side}_factors")] = warehouse.write_partition(table, cfg.table(f"{side}_factors"), ds)
        runs = spark.createDataFrame([(t.model, json.dumps(t.__dict__, default=str), model_path,
                                       json.dumps(result, default=str))],
                                     "model string, params string, model_path string, result string")
        warehouse.write_partition(runs, cfg.table("training_runs"), ds)
        report["read"] = {s: stats[s]["rows"] for s in S.SPLITS}
        report["result"] = {k: v for k, v in result.items() if not k.endswith("_baselines")}
        report["wrote"] = {**wrote, "model": model_path}
    return report
