"""Training shared by the Keras kinds: the shards streamed through Petastorm into ``model.fit``, validation after
every epoch, and Keras's early stopping with the best epoch's weights restored.

Rating kinds are validated on the exact RMSE of a one-pass read of the validation shards; ranking kinds on
NDCG@k (k = evaluate.k) of a seeded sample of validation users (``RankingProbe``), their train items excluded.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import logging
import math
import os
import time

import numpy as np

from recjob import feed
from recjob.models.base import ITEM_IN, USER_IN, Fitted, ModelKind, TrainingData

if TYPE_CHECKING:
    from recjob.config import TrainConfig

log = logging.getLogger("recjob.train")

USER_EMB, ITEM_EMB, USER_BIAS, ITEM_BIAS = "user_embedding", "item_embedding", "user_bias", "item_bias"
HIST_EMB = "history_embedding"
MIN_DELTA = 1e-5  # a validation change smaller than this is no improvement


def batch_size(train_rows: int, cfg: TrainConfig) -> int:
    """cfg.batch_size, made smaller on small data so that one epoch has at least cfg.min_steps_per_epoch
    steps: early stopping checks once per epoch, and a few thousand rows in batches of 1024 would give it
    only a handful of updates between checks (never below 32 rows)."""
    return max(1, min(cfg.batch_size, max(32, train_rows // cfg.min_steps_per_epoch)))


class RankingProbe:
    """Validation NDCG@k of a model's factors on a seeded sample of validation users, train items excluded.
    Sized by the sample (its users' train rows are read with a filter), not by the data."""

    def __init__(self, data: TrainingData, cfg: TrainConfig, factors):
        val = feed.read_pairs(data.validation_url)
        users = np.unique(val[USER_IN].to_numpy())
        if len(users) > cfg.ranking_probe_users:
            users = np.sort(np.random.default_rng(cfg.seed).choice(users, cfg.ranking_probe_users, replace=False))
        self.users, self.k, self.factors = users, data.k, factors
        self.histories = None if data.item_histories is None else data.item_histories[users]
        val = val[val[USER_IN].isin(users)]
        train = feed.read_pairs(data.train_url, users)
        self.relevant = val.groupby(USER_IN)[ITEM_IN].apply(lambda s: set(s.tolist())).reindex(users).tolist()
        seen = train.groupby(USER_IN)[ITEM_IN].apply(lambda s: s.to_numpy()).reindex(users)
        self.seen = [x if isinstance(x, np.ndarray) else np.empty(0, np.int64) for x in seen.tolist()]

    def ndcg(self, model) -> float:
        from recjob import metrics, topk  # (Spark helpers beside them: imported when training, not with the registry)

        f = self.factors(model, self.histories)
        rows = f["user"] if self.histories is not None else f["user"][self.users]
        lists = [topk.score_block(rows[s:s + 512], f["item"], f["item_bias"], self.seen[s:s + 512], self.k)[0]
                 for s in range(0, len(self.users), 512)]
        return float(metrics.ndcg_of_lists(np.concatenate(lists), self.relevant, self.k).mean()) if lists else 0.0


def _validation(monitor, epoch_log: list, rows_per_epoch: int, max_epochs: int):
    """A callback that adds ``monitor(model)``'s values to the epoch's logs (before early stopping reads them),
    keeps the epoch log and logs each epoch with its speed and the time the remaining epochs would take at most."""
    import keras

    from recjob import progress

    class Validate(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.t0 = time.monotonic()

        def on_epoch_end(self, epoch, logs=None):
            logs.update(monitor(self.model))
            entry = {"epoch": epoch + 1, **{k: float(v) for k, v in logs.items()}}
            epoch_log.append(entry)
            rate, left = progress.eta((epoch + 1) * rows_per_epoch, max_epochs * rows_per_epoch,
                                      time.monotonic() - self.t0)
            log.info("train: epoch %d/%d: %s; %.0f examples/s, at most %s left (train.max_epochs)", epoch + 1,
                     max_epochs, ", ".join(f"{k} {v:.4f}" for k, v in entry.items() if k != "epoch"), rate,
                     progress.duration(left))

    return Validate()


def factors(model, histories: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The learned user/item factor matrices and biases of a Keras kind's model (the MLP's embeddings are its
    factors; a history model's user factors are computed from ``histories``)."""
    names = {layer.name for layer in model.layers}
    item = model.get_layer(ITEM_EMB).get_weights()[0]
    if hasattr(model, "user_factors"):
        if histories is None:
            raise ValueError("this model's user factors are computed from the users' item histories")
        user = model.user_factors(histories)
    else:
        user = model.get_layer(USER_EMB).get_weights()[0]
    return {"user": user, "item": item,
            "user_bias": (model.get_layer(USER_BIAS).get_weights()[0][:, 0] if USER_BIAS in names
                          else np.zeros(len(user), np.float32)),
            "item_bias": model.get_layer(ITEM_BIAS).get_weights()[0][:, 0]}


class KerasKind(ModelKind):
    """A kind trained by ``model.fit`` on the Petastorm feed; it builds the model and may transform the batches
    (``prepare``) and save files for scoring (``save_scoring_files``)."""

    def build(self, data: TrainingData, cfg: TrainConfig):
        raise NotImplementedError

    def prepare(self, dataset, data: TrainingData, cfg: TrainConfig):
        return dataset

    def save_scoring_files(self, model, workdir: str) -> None:
        pass

    def fit(self, data: TrainingData, cfg: TrainConfig, workdir: str) -> Fitted:
        import keras
        import tensorflow as tf

        keras.utils.set_random_seed(cfg.seed)
        tf.config.experimental.enable_op_determinism()
        batch = batch_size(data.train_rows, cfg)
        if batch != cfg.batch_size:
            log.info("train: batch size %d instead of %d, so that an epoch of %d rows has at least %d steps "
                     "(train.min_steps_per_epoch)", batch, cfg.batch_size, data.train_rows, cfg.min_steps_per_epoch)
        model = self.build(data, cfg)
        if self.predicts_ratings:
            key, mode = "val_rmse", "min"

            def monitor(m):
                rmse, mae, _ = feed.rating_errors(lambda x: m(x, training=False), data.validation_url, cfg.seed)
                return {"val_rmse": rmse, "val_mae": mae}
        else:
            key, mode = f"val_ndcg@{data.k}", "max"
            probe = RankingProbe(data, cfg, factors)

            def monitor(m):
                return {key: probe.ndcg(m)}
        epoch_log: list[dict] = []
        stop = keras.callbacks.EarlyStopping(monitor=key, mode=mode, patience=cfg.patience, min_delta=MIN_DELTA,
                                             restore_best_weights=True)
        with feed.reader(data.train_url, None, cfg.seed, cfg.reader_workers, shuffle=True,
                         fields=feed.columns(with_history=self.needs_item_histories)) as r:
            model.fit(self.prepare(feed.dataset(r, batch), data, cfg), epochs=cfg.max_epochs,
                      steps_per_epoch=max(1, math.ceil(data.train_rows / batch)),
                      callbacks=[_validation(monitor, epoch_log, data.train_rows, cfg.max_epochs), stop], verbose=0,
                      shuffle=False)  # rows are shuffled in the shards
        if stop.stopped_epoch:
            log.info("train: no improvement of %s for %d epochs: stopped", key, cfg.patience)
        model.save(os.path.join(workdir, "model.keras"))
        self.save_scoring_files(model, workdir)
        return Fitted(factors=factors(model, data.item_histories), epoch_log=epoch_log, best_epoch=stop.best_epoch + 1,
                      predict=(lambda x: model(x, training=False)) if self.predicts_ratings else None)


def embedding(n: int, width: int, name: str, seed: int | None, reg=None):
    """An embedding table: N(0, 0.05) initialised when ``seed`` is given, zeros otherwise."""
    import keras

    init = keras.initializers.RandomNormal(stddev=0.05, seed=seed) if seed is not None else "zeros"
    return keras.layers.Embedding(n, width, embeddings_initializer=init, activity_regularizer=reg, name=name)
