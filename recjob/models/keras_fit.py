"""Training shared by the Keras kinds: the shards streamed through Petastorm into ``model.fit``, validation after
every epoch, and Keras's early stopping with the best epoch's weights restored.

Rating kinds are validated on the exact RMSE of a one-pass read of the validation shards; ranking kinds on
NDCG@k (k = evaluate.k) of a seeded sample of validation users (``RankingProbe``), their train items excluded.
"""
from __future__ import annotations


import functools
import logging
import math
import os
import time

import numpy as np

from recjob import feed
from recjob.models.base import Fitted, ITEM_IN, ModelKind, TrainConfig, TrainingData, USER_IN


log = logging.getLogger("recjob.train")

USER_EMB, ITEM_EMB, USER_BIAS, ITEM_BIAS = "user_embedding", "item_embedding", "user_bias", "item_bias"
HIST_EMB = "history_embedding"
MIN_DELTA = 1e-5  # a validation change smaller than this is no improvement


def batch_size(train_rows: int, cfg: TrainConfig) -> int:
    """cfg.batch_size, made smaller on small data so that one epoch has at least cfg.min_steps_per_epoch
    steps: early stopping checks once per epoch, and a few thousand rows in batches of 1024 would give it
    only a handful of updates between checks (never below 32 rows)."""
    return max(1, min(cfg.batch_size, max(32, train_rows // cfg.min_steps_per_epoch)))


def epoch_steps(train_rows: int, batch: int, cfg: TrainConfig) -> tuple[int, int]:
    """(steps of an epoch, steps per execution). Keras runs whole executions, so the steps of an epoch are a
    multiple of the steps per execution: cfg.steps_per_execution, at most 1/16 of one pass over the rows, and the
    pass's steps rounded to the nearest multiple of it (an epoch is within 1/32 of one pass; the reader reads
    the shards over and over, so no row is left out, only an epoch's end moves)."""
    steps = max(1, math.ceil(train_rows / batch))
    per = max(1, min(cfg.steps_per_execution, steps // 16))
    return max(per, round(steps / per) * per), per


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


MODEL_FILE = "model.keras"  # a Keras kind's saved model (recjob.models.load_keras_model loads it)
PROGRESS_EVERY_S = 60.0  # an epoch longer than this logs its progress within the epoch this often


def _validation(monitor, epoch_log: list, rows_per_epoch: int, max_epochs: int, steps_per_epoch: int,
                batch: int, every_s: float = PROGRESS_EVERY_S):
    """A callback that adds ``monitor(model)``'s values to the epoch's logs (before early stopping reads them),
    keeps the epoch log and logs each epoch with its speed and the time the remaining epochs would take at most;
    within an epoch longer than ``every_s``, the steps done with their speed and the epoch's ETA."""
    import keras

    from recjob import progress

    class Validate(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.t0 = self.epoch_ended = time.monotonic()

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch, self.epoch_t0 = epoch, time.monotonic()
            self.next_log = self.epoch_t0 + every_s

        def on_train_batch_end(self, step, logs=None):
            now = time.monotonic()
            if now < self.next_log:
                return
            self.next_log = now + every_s
            rate, left = progress.eta(step + 1, steps_per_epoch, now - self.epoch_t0)
            log.info("train: epoch %d/%d: step %d/%d (%.0f%%), %.0f examples/s, epoch ETA %s", self.epoch + 1,
                     max_epochs, step + 1, steps_per_epoch, 100.0 * (step + 1) / steps_per_epoch, rate * batch,
                     progress.duration(left))

        def on_epoch_end(self, epoch, logs=None):
            logs.update(monitor(self.model))
            entry = {"epoch": epoch + 1, **{k: float(v) for k, v in logs.items()}}
            epoch_log.append(entry)
            rate, left = progress.eta((epoch + 1) * rows_per_epoch, max_epochs * rows_per_epoch,
                                      time.monotonic() - self.t0)
            log.info("train: epoch %d/%d: %s; %.0f examples/s, at most %s left (train.max_epochs)", epoch + 1,
                     max_epochs, ", ".join(f"{k} {v:.4f}" for k, v in entry.items() if k != "epoch"), rate,
                     progress.duration(left))
            self.epoch_ended = time.monotonic()

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


class WarmStartMismatch(ValueError):
    """The previous model's weights do not fit this one (another architecture): it trains from its fresh start."""


def warm_start_weights(model, previous, padded: tuple[str, ...] = ()) -> dict[str, int]:
    """Copy ``previous``'s weights into ``model`` (the same kind, both built), matched by their path within the
    model: a weight of the same shape whole; a table whose rows differ (users or items added since: the ids are
    stable, so row i is the same user or item in both) row by row, the new rows keeping their fresh start, and
    a trailing padding row (a table whose path contains one of ``padded``) kept last. Returns {table: rows
    carried over} for the tables that grew; raises WarmStartMismatch, copying nothing, when the two differ
    otherwise (a weight missing on either side, or another width)."""
    import keras

    def key(owner, v) -> str:  # a model-level weight's path starts with the model's name, numbered per process
        return v.path[len(owner.name) + 1:] if v.path.startswith(owner.name + "/") else v.path

    old = {key(previous, v): v for v in previous.weights}
    new = {key(model, v): v for v in model.weights}
    if set(old) != set(new):
        raise WarmStartMismatch(f"weights only in the previous model: {sorted(set(old) - set(new))[:5]}, only in "
                                f"this one: {sorted(set(new) - set(old))[:5]}")
    plan, carried = [], {}
    for name, v in new.items():
        before = keras.ops.convert_to_numpy(old[name])
        shape = tuple(v.shape)
        if shape == before.shape:
            plan.append((v, before))
            continue
        if len(shape) != before.ndim or shape[1:] != before.shape[1:]:
            raise WarmStartMismatch(f"{name}: {before.shape} in the previous model, {shape} in this one")
        value = keras.ops.convert_to_numpy(v).copy()
        pad = any(p in name for p in padded)
        rows = min(shape[0], before.shape[0]) - (1 if pad else 0)
        value[:rows] = before[:rows]
        if pad:
            value[-1] = before[-1]
        plan.append((v, value))
        carried[name] = rows
    for v, value in plan:
        v.assign(value)
    return carried


def warm_start(model, load_previous, padded: tuple[str, ...] = ()) -> dict:
    """Put the weights of the model ``load_previous()`` returns into ``model`` (warm_start_weights; the kinds'
    models are built when made) and return what was done: {"rows": ...}, or {"cold": why} when the saved model
    does not fit this one, which then trains from its fresh start (one log line)."""
    try:
        rows = warm_start_weights(model, load_previous(), padded)
    except WarmStartMismatch as exc:
        log.info("train: the published model does not fit this one (%s): trains from a fresh start", exc)
        return {"cold": str(exc)}
    log.info("train: warm start: the published model's weights in (%s)",
             ", ".join(f"{name}: {n} rows carried over" for name, n in rows.items()) or "every weight the same shape")
    return {"rows": rows}


def _early_stopping(key: str, mode: str, patience: int, start: tuple[float, list] | None = None):
    """Keras's early stopping with the best epoch's weights restored; with ``start`` (the monitored value and
    the weights before the first epoch, a warm start's), those are the best until an epoch beats them, so a
    fit that only makes a warm-started model worse ends with the weights it started from (best epoch 0)."""
    import keras

    class Stop(keras.callbacks.EarlyStopping):
        def on_train_begin(self, logs=None):
            super().on_train_begin(logs)
            if start is not None:
                self.best, self.best_weights, self.best_epoch = start[0], start[1], -1

    return Stop(monitor=key, mode=mode, patience=patience, min_delta=MIN_DELTA, restore_best_weights=True)


class KerasKind(ModelKind):
    """A kind trained by ``model.fit`` on the Petastorm feed; it builds the model and may transform the batches
    (``prepare``) and save files for scoring (``save_scoring_files``)."""

    can_warm_start = True
    warm_start_file = MODEL_FILE  # the file of a published model that a warm start reads
    padded_weights: tuple[str, ...] = ()  # tables ending in a padding row (warm_start_weights keeps it last)

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
        warm = warm_start(model, data.warm_start, self.padded_weights) if data.warm_start else {}
        if self.predicts_ratings:
            key, mode = "val_rmse", "min"

            def monitor(m):
                rmse, mae, _ = feed.rating_errors(lambda x: m(x, training=False), data.validation_url)
                return {"val_rmse": rmse, "val_mae": mae}
        else:
            key, mode = f"val_ndcg@{data.k}", "max"
            probe = RankingProbe(data, cfg, factors)

            def monitor(m):
                return {key: probe.ndcg(m)}
        epoch_log: list[dict] = []
        start = None
        if "rows" in warm:  # warm-started: the starting weights are a candidate too (epoch 0)
            start = (float(monitor(model)[key]), model.get_weights())
            log.info("train: warm start: %s %.4f before the first epoch; kept unless an epoch beats it", key, start[0])
        stop = _early_stopping(key, mode, cfg.patience, start)
        steps, model.steps_per_execution = epoch_steps(data.train_rows, batch, cfg)  # what compile() sets
        log.info("train: batch size %d, %d steps an epoch (%d rows), steps per call of the compiled train loop: %d "
                 "(train.steps_per_execution %d)", batch, steps, data.train_rows, model.steps_per_execution,
                 cfg.steps_per_execution)
        validate = _validation(monitor, epoch_log, steps * batch, cfg.max_epochs, steps, batch)
        with feed.reader(data.train_url, cfg.seed, cfg.reader_workers, shuffle=True,
                         fields=feed.columns(with_history=self.needs_item_histories)) as r:
            model.fit(self.prepare(feed.dataset(r, batch), data, cfg), epochs=cfg.max_epochs,
                      steps_per_epoch=steps, callbacks=[validate, stop],
                      verbose=0, shuffle=False)  # rows are shuffled in the shards
            returned = time.monotonic()
        log.info("train: fit returned %.1f s after the last epoch's end, the reader stopped in %.1f s",
                 returned - validate.epoch_ended, time.monotonic() - returned)
        if stop.stopped_epoch:
            log.info("train: no improvement of %s for %d epochs: stopped", key, cfg.patience)
        model.save(os.path.join(workdir, MODEL_FILE))
        self.save_scoring_files(model, workdir)
        return Fitted(factors=factors(model, data.item_histories), epoch_log=epoch_log, best_epoch=stop.best_epoch + 1,
                      predict=(lambda x: model(x, training=False)) if self.predicts_ratings else None,
                      result={"warm_start_weights": warm, **({"start": {key: start[0]}} if start else {})}
                      if data.warm_start else {})


@functools.cache
def lazy_adam_class():
    """Adam that updates only the rows of an embedding table that are in the batch ("lazy" Adam, as in
    TensorFlow Addons' LazyAdam): an embedding's gradient is a set of rows (``tf.IndexedSlices``), and Keras's
    Adam turns it into a dense update of the whole table, its two moment tables included, at every step, so a
    step's cost grows with the users; with this optimizer and ``row_embedding_class``'s lookup it does not
    (bench/results/pipeline.md). Dense variables (the MLP's layers, sasrec's
    attention) get Adam's update unchanged; a row's moments decay only when the row is in a batch. Registered
    with Keras, so saved models load."""
    import keras
    import tensorflow as tf

    @keras.saving.register_keras_serializable(package="recjob")
    class LazyAdam(keras.optimizers.Adam):
        def update_step(self, gradient, variable, learning_rate):
            if not isinstance(gradient, tf.IndexedSlices):
                return super().update_step(gradient, variable, learning_rate)
            rows, at = tf.unique(gradient.indices)  # a row looked up twice in a batch: its gradients summed
            g = tf.math.unsorted_segment_sum(tf.cast(gradient.values, variable.dtype), at, tf.shape(rows)[0])
            step = tf.cast(self.iterations + 1, variable.dtype)
            b1, b2 = tf.cast(self.beta_1, variable.dtype), tf.cast(self.beta_2, variable.dtype)
            alpha = tf.cast(learning_rate, variable.dtype) * tf.sqrt(1 - b2 ** step) / (1 - b1 ** step)
            m = self._momentums[self._get_variable_index(variable)]
            v = self._velocities[self._get_variable_index(variable)]
            # sparse_read: only these rows (a tf.gather of the variable would read the whole table first)
            m_rows = b1 * m.value.sparse_read(rows) + (1 - b1) * g
            v_rows = b2 * v.value.sparse_read(rows) + (1 - b2) * tf.square(g)
            self.assign(m, tf.IndexedSlices(m_rows, rows))
            self.assign(v, tf.IndexedSlices(v_rows, rows))
            self.assign_sub(variable, tf.IndexedSlices(alpha * m_rows / (tf.sqrt(v_rows) + self.epsilon), rows))

    return LazyAdam


LAZY_ADAM_ROWS = 100_000  # train.optimizer=auto: lazy_adam when the user and item tables have more rows


def optimizer_name(cfg: TrainConfig, data: TrainingData) -> str:
    """``train.optimizer``, with auto resolved: Keras's Adam for small tables (the quality figures of
    bench/results/quality.md are on such data: ML-100k, ML-1M, Beauty, Sports all have under 100,000 users +
    items), lazy_adam above LAZY_ADAM_ROWS, where Adam's dense step grows with the tables."""
    if cfg.optimizer != "auto":
        return cfg.optimizer
    return "lazy_adam" if data.n_users + data.n_items > LAZY_ADAM_ROWS else "adam"


def optimizer(cfg: TrainConfig, data: TrainingData):
    """The optimizer of every Keras kind (``optimizer_name``) at the kind's learning rate."""
    import keras

    name = optimizer_name(cfg, data)
    log.info("train: optimizer %s (train.optimizer=%s), learning rate %g", name, cfg.optimizer, cfg.learning_rate)
    kind = {"lazy_adam": lazy_adam_class(), "adam": keras.optimizers.Adam, "adamax": keras.optimizers.Adamax}[name]
    return kind(cfg.learning_rate)


def embedding(n: int, width: int, name: str, seed: int | None, reg=None):
    """An embedding table: N(0, 0.05) initialised when ``seed`` is given, zeros otherwise."""
    import keras

    init = keras.initializers.RandomNormal(stddev=0.05, seed=seed) if seed is not None else "zeros"
    return row_embedding_class()(n, width, embeddings_initializer=init, activity_regularizer=reg, name=name)


@functools.cache
def row_embedding_class():
    """keras.layers.Embedding whose lookup reads only the looked-up rows of the table (TensorFlow's sparse read
    of the variable). Keras's own lookup reads the whole table as a tensor first, and the optimizer's write to
    the table then copies all of it, as that tensor is still held. Registered with Keras, so saved models load."""
    import keras
    import tensorflow as tf

    @keras.saving.register_keras_serializable(package="recjob")
    class RowEmbedding(keras.layers.Embedding):
        def call(self, inputs):
            ids = inputs if inputs.dtype in (tf.int32, tf.int64) else tf.cast(inputs, tf.int32)
            return tf.nn.embedding_lookup(self.embeddings.value, ids)

    return RowEmbedding
