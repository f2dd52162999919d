"""The model registry, and the Keras kinds against numpy references: the softmax loss, its sampled variant,
the seq model's user factor, saving and loading."""
import re
from types import SimpleNamespace

import numpy as np
import pytest

from recjob import config, models
from recjob.models import keras_fit
from recjob.models.base import HIST_IN, ITEM_IN, USER_IN, TrainingData
from recjob.models.keras_fit import HIST_EMB, ITEM_BIAS


def data(n_users, n_items, mean=0.0):
    return TrainingData("file:///train", "file:///validation", 100, n_users, n_items, mean, 10)


def _softmax(n_users=4, n_items=6, **overrides):
    cfg = config.load(None, ["train.model=softmax", "train.factors=3",
                             *[f"train.{'softmax.' if k == 'negatives' else ''}{k}={v}" for k, v in overrides.items()]]).train
    return models.get("softmax").build(data(n_users, n_items), cfg), cfg


def test_every_kind_declares_what_the_stages_ask():
    from recjob.models.base import COMMON_DEFAULTS

    assert models.names() == ("softmax", "bpr", "seq", "sasrec", "dot", "mlp", "bpmf")
    for name, kind in models.KINDS.items():
        assert kind.name == name and kind.summary
        assert {"factors", "l2", "bias_l2"} <= set(kind.defaults) <= {"factors", "l2", "bias_l2", *COMMON_DEFAULTS}
        assert type(kind).fit is not models.ModelKind.fit  # trains somehow
        cfg = config.load(None, [f"train.model={name}", "shards.split=temporal"]).train
        assert {k: getattr(cfg, k) for k in kind.settings()} == {**COMMON_DEFAULTS, **kind.defaults}
    assert {n for n, k in models.KINDS.items() if k.predicts_ratings} == {"dot", "mlp", "bpmf"}
    assert {n for n, k in models.KINDS.items() if k.needs_item_histories} == {"seq", "sasrec"}
    with pytest.raises(ValueError, match="unknown model kind 'als'"):
        models.get("als")


def test_a_setting_given_overrides_the_kind_default_and_none_means_unset():
    cfg = config.load(None, ["train.model=bpmf", "train.factors=7", "train.l2=null"]).train
    assert cfg.factors == 7 and cfg.l2 == models.get("bpmf").defaults["l2"]


def test_the_readme_models_table_is_the_registry(capsys):
    from pathlib import Path

    from recjob import cli

    assert cli.main(["models"]) == 0
    printed = capsys.readouterr().out.strip()
    assert printed == models.markdown_table() and printed.count("\n") == 1 + len(models.KINDS)
    assert printed in (Path(__file__).resolve().parents[1] / "README.md").read_text(), \
        "README.md's model table differs from the registry: paste the output of `recjob models`"


def test_full_softmax_loss_matches_numpy():
    model, _ = _softmax(negatives=2048, l2=0.5)
    f = keras_fit.factors(model)
    rng = np.random.default_rng(0)
    f["item_bias"][:] = rng.normal(size=6)
    model.get_layer(ITEM_BIAS).set_weights([f["item_bias"][:, None].astype(np.float32)])
    u, i = np.array([0, 1, 3, 3], np.int32), np.array([5, 0, 2, 5], np.int32)
    loss, total = model.batch_loss({USER_IN: u, ITEM_IN: i})
    logits = f["user"][u] @ f["item"].T + f["item_bias"][None, :]
    ref = np.mean(np.log(np.exp(logits).sum(axis=1)) - logits[np.arange(4), i])
    reg = np.mean((f["user"][u] ** 2).sum(axis=1) + (f["item"][i] ** 2).sum(axis=1))
    assert float(loss) == pytest.approx(ref, rel=1e-5)
    assert float(total) == pytest.approx(ref + 0.5 * reg, rel=1e-5)
    scores = model({USER_IN: u, ITEM_IN: i}).numpy()
    np.testing.assert_allclose(scores, logits[np.arange(4), i], rtol=1e-5)


def test_sampled_softmax_masks_the_positive_and_learns():
    # 2 negatives out of 6 items: a different loss than the full softmax, finite, and training on a fixed
    # user -> item pattern makes each user's own item score first
    model, _ = _softmax(negatives=2, learning_rate=0.1, l2=0.0)
    x = {USER_IN: np.repeat(np.arange(4, dtype=np.int32), 8), ITEM_IN: np.repeat(np.arange(4, dtype=np.int32), 8)}
    first, _ = model.batch_loss(x)
    assert np.isfinite(float(first))
    model.fit(x, np.zeros(32, np.float32), epochs=60, batch_size=32, verbose=0)
    f = keras_fit.factors(model)
    scores = f["user"] @ f["item"].T + f["item_bias"]
    assert (scores.argmax(axis=1) == np.arange(4)).all()


def test_softmax_model_saves_and_loads(tmp_path):
    import keras

    model, _ = _softmax()
    path = str(tmp_path / "m.keras")
    model.save(path)
    back = keras.saving.load_model(path)
    np.testing.assert_array_equal(keras_fit.factors(back)["item"], keras_fit.factors(model)["item"])


def test_a_saved_model_loads_in_a_fresh_process(tmp_path):
    """model.keras, trained with lazy Adam and the row-reading embedding, loads where no recjob class was built."""
    import subprocess
    import sys

    model, _ = _softmax(negatives=2, learning_rate=0.1, l2=0.0)
    model.compile(optimizer=keras_fit.optimizer(config.load(None, ["train.optimizer=lazy_adam"]).train, _tables(4, 6)))
    x = {USER_IN: np.arange(4, dtype=np.int32), ITEM_IN: np.arange(4, dtype=np.int32)}
    model.fit(x, np.zeros(4, np.float32), epochs=1, batch_size=4, verbose=0)
    path = tmp_path / "model.keras"
    model.save(str(path))
    np.save(tmp_path / "item.npy", keras_fit.factors(model)["item"])
    code = ("import numpy as np, sys; from recjob import models; from recjob.models import keras_fit; "
            "m = models.load_keras_model(sys.argv[1]); "
            "assert type(m.optimizer).__name__ == 'LazyAdam', type(m.optimizer); "
            "np.testing.assert_array_equal(keras_fit.factors(m)['item'], np.load(sys.argv[2])); print('loaded')")
    out = subprocess.run([sys.executable, "-c", code, str(path), str(tmp_path / "item.npy")], capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0 and "loaded" in out.stdout, out.stderr[-3000:]


def test_batch_shrinks_on_small_data_only():
    cfg = config.load(None, []).train
    assert keras_fit.batch_size(1_000_000, cfg) == 1024
    assert keras_fit.batch_size(4_000, cfg) == 200  # 20 steps per epoch
    assert keras_fit.batch_size(100, cfg) == 32


def test_an_epoch_is_whole_executions_within_a_32nd_of_one_pass():
    cfg = config.load(None, []).train
    assert keras_fit.epoch_steps(2_000_000, 1024, cfg) == (1952, 16)  # 1,954 steps a pass: 122 executions of 16
    assert keras_fit.epoch_steps(4_000, 200, cfg) == (20, 1)  # small data: one step per call, the exact pass
    assert keras_fit.epoch_steps(100 * 1024, 1024, cfg) == (102, 6)  # at most 1/16 of a pass per execution
    for rows in (5_000, 77_777, 1_234_567):
        steps, per = keras_fit.epoch_steps(rows, 256, cfg)
        one_pass = -(-rows // 256)
        assert steps % per == 0 and 1 <= per <= cfg.steps_per_execution and abs(steps - one_pass) <= one_pass / 32
    one = config.load(None, ["train.steps_per_execution=1"]).train
    assert keras_fit.epoch_steps(2_000_000, 1024, one) == (1954, 1)
    with pytest.raises(config.ConfigError, match="steps_per_execution"):
        config.load(None, ["train.steps_per_execution=0"])


def _seq(n_items=6, **overrides):
    cfg = config.load(None, ["train.model=seq", "train.factors=4", "shards.history_length=4", "train.seq.markov_order=2",
                             "shards.split=temporal", *[f"train.{k}={v}" for k, v in overrides.items()]]).train
    return models.get("seq").build(data(0, n_items), cfg), cfg


def test_seq_user_factor_in_numpy_matches_the_model():
    model, _ = _seq()
    model.markov_weight.assign(np.array([1.5, -0.5], np.float32))
    pad = 6
    h = np.array([[3, 1, 0, 2], [5, pad, pad, pad], [pad, pad, pad, pad], [2, 2, 4, pad]], np.int32)
    x = {USER_IN: np.zeros(4, np.int32), ITEM_IN: np.array([0, 1, 2, 3], np.int32), HIST_IN: h}
    tf_u = model.user_vector(x).numpy()
    e = model.get_layer(HIST_EMB).get_weights()[0]
    ref = np.zeros((4, 4), np.float32)
    for r, row in enumerate(h):
        valid = [j for j in row if j < pad]
        if valid:
            ref[r] = e[valid].sum(axis=0) / np.sqrt(len(valid))
        for k, w in enumerate([1.5, -0.5]):
            if row[k] < pad:
                ref[r] += w * e[row[k]]
    np.testing.assert_allclose(tf_u, ref, rtol=1e-5, atol=1e-6)
    f = keras_fit.factors(model, h)
    np.testing.assert_allclose(f["user"], ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(f["user"][2], 0)  # no history: the item bias alone ranks
    with pytest.raises(ValueError, match="histories"):
        keras_fit.factors(model)


def test_seq_learns_what_follows_the_last_item():
    # every user walks the catalogue in order: after item j comes j + 1, whatever came before
    model, _ = _seq(n_items=6, learning_rate=0.05, l2=0.0)
    pad = 6
    rng = np.random.default_rng(0)
    hist, nxt = [], []
    for _ in range(400):
        end = int(rng.integers(1, 6))
        start = max(0, end - int(rng.integers(1, 5)))
        seq = list(range(start, end))[::-1]
        hist.append(seq + [pad] * (4 - len(seq)))
        nxt.append(end)
    x = {USER_IN: np.zeros(400, np.int32), ITEM_IN: np.array(nxt, np.int32), HIST_IN: np.array(hist, np.int32)}
    model.fit(x, np.zeros(400, np.float32), epochs=40, batch_size=50, verbose=0)
    probe = np.array([[j] + [pad] * 3 for j in range(5)], np.int32)
    f = keras_fit.factors(model, probe)
    scores = f["user"] @ f["item"].T + f["item_bias"]
    assert (scores.argmax(axis=1) == np.arange(1, 6)).all()


def test_seq_model_saves_and_loads(tmp_path):
    import keras

    model, _ = _seq()
    path = str(tmp_path / "s.keras")
    model.save(path)
    back = keras.saving.load_model(path)
    h = np.array([[1, 2, 6, 6]], np.int32)
    np.testing.assert_array_equal(keras_fit.factors(back, h)["user"], keras_fit.factors(model, h)["user"])
    assert back.markov == 2


def _adam_rows(w, m, v, g, step, lr=0.1, b1=0.9, b2=0.999, eps=1e-7):
    """Adam's update of the given rows in numpy (Keras's form of it)."""
    m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
    alpha = lr * np.sqrt(1 - b2 ** step) / (1 - b1 ** step)
    return w - alpha * m / (np.sqrt(v) + eps), m, v


def test_lazy_adam_updates_only_the_looked_up_rows_and_sums_repeated_ones():
    import keras
    import tensorflow as tf

    emb = keras_fit.embedding(6, 2, "t", seed=3)
    emb.build((None,))
    opt = keras_fit.optimizer(config.TrainConfig(learning_rate=0.1, optimizer="lazy_adam"), _tables(6, 0))
    w0 = emb.get_weights()[0].copy()

    def step(ids, coef):
        with tf.GradientTape() as tape:
            out = emb(tf.constant(ids))
            loss = tf.reduce_sum(out * tf.constant(coef, tf.float32)[:, None])
        grads = tape.gradient(loss, emb.trainable_variables)
        assert isinstance(grads[0], tf.IndexedSlices)  # the lookup's gradient is a set of rows
        opt.apply(grads, emb.trainable_variables)

    step([1, 4, 1], [1.0, -2.0, 0.5])  # row 1 twice: its gradient is 1.5 per column
    w1 = emb.get_weights()[0]
    m, v = np.zeros_like(w0), np.zeros_like(w0)
    expected = w0.copy()
    g = np.zeros_like(w0)
    g[1], g[4] = 1.5, -2.0
    for r in (1, 4):
        expected[r], m[r], v[r] = _adam_rows(w0[r], m[r], v[r], g[r], 1)
    np.testing.assert_allclose(w1, expected, rtol=1e-4, atol=1e-6)  # float32 against float64
    step([2], [3.0])  # rows 1 and 4 are not in this batch: unchanged (Keras's Adam would move them on)
    w2 = emb.get_weights()[0]
    np.testing.assert_array_equal(w2[[0, 1, 3, 4, 5]], w1[[0, 1, 3, 4, 5]])
    expected2, _, _ = _adam_rows(w1[2], m[2], v[2], np.full(2, 3.0, np.float32), 2)
    np.testing.assert_allclose(w2[2], expected2, rtol=1e-4, atol=1e-6)  # float32 against float64
    dense = keras_fit.optimizer(config.TrainConfig(learning_rate=0.1, optimizer="adam"), _tables(10**7, 0))
    assert type(dense) is keras.optimizers.Adam


def _tables(n_users, n_items):
    return SimpleNamespace(n_users=n_users, n_items=n_items)


def test_train_optimizer_auto_is_adam_on_small_tables_only():
    cfg = config.load(None, []).train
    assert cfg.optimizer == "auto"
    assert keras_fit.optimizer_name(cfg, _tables(943, 1682)) == "adam"  # ML-100k
    assert keras_fit.optimizer_name(cfg, _tables(3_366_674, 159_838)) == "lazy_adam"
    assert keras_fit.optimizer_name(config.load(None, ["train.optimizer=adam"]).train, _tables(10**7, 1)) == "adam"
    with pytest.raises(config.ConfigError, match="train.optimizer='sgd' is not one of auto, lazy_adam, adam, adamax"):
        config.load(None, ["train.optimizer=sgd"])


def test_train_optimizer_adamax_is_keras_adamax_at_the_learning_rate():
    import keras

    cfg = config.load(None, ["train.optimizer=adamax", "train.learning_rate=0.002"]).train
    opt = keras_fit.optimizer(cfg, _tables(10**7, 1))  # never resolved to lazy_adam, however large the tables
    assert type(opt) is keras.optimizers.Adamax
    assert float(opt.learning_rate) == pytest.approx(0.002)


def test_a_long_epoch_logs_its_steps_with_speed_and_eta(caplog):
    cb = keras_fit._validation(lambda m: {}, [], 1000, 40, steps_per_epoch=10, batch=100, every_s=0.0)
    cb.on_train_begin()
    cb.on_epoch_begin(2)
    with caplog.at_level("INFO", logger="recjob.train"):
        cb.on_train_batch_end(4)
    assert "train: epoch 3/40: step 5/10 (50%)" in caplog.text and "examples/s, epoch ETA" in caplog.text
    quiet = keras_fit._validation(lambda m: {}, [], 1000, 40, steps_per_epoch=10, batch=100, every_s=3600.0)
    quiet.on_train_begin()
    quiet.on_epoch_begin(0)
    caplog.clear()
    with caplog.at_level("INFO", logger="recjob.train"):
        quiet.on_train_batch_end(4)
    assert caplog.text == ""  # a short epoch: only the epoch's own line


NEW_KIND = '''
from dataclasses import dataclass

from recjob.models.base import ModelKind


@dataclass(frozen=True)
class Settings:
    """constant's own settings."""

    value: float = 1.0  # every item's score


class Constant(ModelKind):
    name = "constant"
    summary = "every item the same score"
    defaults = {"factors": 1, "l2": 0.0, "bias_l2": 0.0}
    Settings = Settings

    def check(self, own, cfg):
        return [] if own.value > 0 else ["train.constant.value must be > 0"]


KIND = Constant()
'''


def test_a_new_kind_is_one_module_with_its_own_settings(tmp_path, monkeypatch):
    """A module in the registry's package is a kind: the configuration, its check, the settings reference and the
    kinds' table know it, and no other module changes."""
    import sys

    from recjob.config import ConfigError, reference

    (tmp_path / "constant.py").write_text(NEW_KIND)
    monkeypatch.setattr(models, "__path__", [*models.__path__, str(tmp_path)])
    monkeypatch.setattr(models, "KINDS", dict(models.KINDS))
    monkeypatch.delitem(sys.modules, "recjob.models.constant", raising=False)
    try:
        models.discover()
        cfg = config.load(None, ["train.model=constant", "train.constant.value=2"])
        assert cfg.train.params.value == 2.0 and cfg.train.factors == 1
        assert cfg.train.record()["constant"] == {"value": 2.0}
        with pytest.raises(ConfigError, match="train.constant.value must be > 0"):
            config.load(None, ["train.model=constant", "train.constant.value=-1"])
        assert "| `train.constant.value` | `1.0` | every item's score |" in reference.full_reference()
        assert "`constant`" in models.markdown_table() and "constant" in models.names()
        assert config.load(None, ["train.constant.value=3"]).train.model == "softmax"  # other kinds' sections kept
    finally:
        sys.modules.pop("recjob.models.constant", None)


def test_warm_start_carries_each_old_row_and_keeps_new_rows_fresh(tmp_path):
    """train.warm_start: the ids are stable, so row i of the published model's tables is the same user or item
    today; tables that grew keep their new rows' fresh start, weights of the same shape come over whole."""
    old, _ = _softmax(n_users=4, n_items=6)
    path = str(tmp_path / "old.keras")
    old.save(path)
    new, _ = _softmax(n_users=6, n_items=9, seed=7)
    fresh = {v.path: v.numpy().copy() for v in new.weights}
    done = keras_fit.warm_start(new, lambda: models.load_keras_model(path))
    assert done == {"rows": {"user_embedding/embeddings": 4, "item_embedding/embeddings": 6,
                             "item_bias/embeddings": 6}}
    for v in new.weights:
        before = {w.path: w.numpy() for w in old.weights}[v.path]
        np.testing.assert_array_equal(v.numpy()[:len(before)], before)  # every old row carried over
        np.testing.assert_array_equal(v.numpy()[len(before):], fresh[v.path][len(before):])  # new rows fresh


def test_warm_start_keeps_the_padding_row_last_and_refuses_another_width(tmp_path):
    old, _ = _seq(n_items=6)
    path = str(tmp_path / "old.keras")
    old.save(path)
    new, _ = _seq(n_items=8, seed=3)
    fresh = new.get_layer(HIST_EMB).get_weights()[0].copy()
    done = keras_fit.warm_start(new, lambda: models.load_keras_model(path), models.get("seq").padded_weights)
    assert done["rows"]["history_embedding/embeddings"] == 6
    before, after = old.get_layer(HIST_EMB).get_weights()[0], new.get_layer(HIST_EMB).get_weights()[0]
    np.testing.assert_array_equal(after[:6], before[:6])
    np.testing.assert_array_equal(after[8], before[6])  # the padding row stays the padding row
    np.testing.assert_array_equal(after[6:8], fresh[6:8])  # the two new items start fresh
    np.testing.assert_array_equal(new.markov_weight.numpy(), old.markov_weight.numpy())  # a model-level weight

    wider, _ = _seq(n_items=8, **{"factors": 5})
    untouched = wider.get_layer(HIST_EMB).get_weights()[0].copy()
    done = keras_fit.warm_start(wider, lambda: models.load_keras_model(path))
    assert re.search(r"embeddings: \(\d+, 4\) in the previous model, \(\d+, 5\) in this one", done["cold"])
    np.testing.assert_array_equal(wider.get_layer(HIST_EMB).get_weights()[0], untouched)  # nothing copied


def test_only_kinds_that_can_warm_start_say_so():
    assert {n for n, k in models.KINDS.items() if k.can_warm_start} == {"softmax", "bpr", "seq", "sasrec", "dot", "mlp"}
    assert all(k.warm_start_file for k in models.KINDS.values() if k.can_warm_start)


def test_a_warm_start_that_no_epoch_beats_is_kept_and_one_that_an_epoch_beats_is_not():
    """With a warm start the starting weights are epoch 0 of early stopping: a fit that only makes them worse
    stops after train.patience epochs and ends with them; an epoch that beats them is the one kept."""
    import keras

    def fit(figures):
        keras.utils.set_random_seed(1)
        model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
        model.compile(keras.optimizers.SGD(0.1), "mse")
        start = [w.copy() for w in model.get_weights()]
        values = iter(figures)

        class Monitor(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                logs["val_ndcg@10"] = next(values)

        stop = keras_fit._early_stopping("val_ndcg@10", "max", 2, (0.5, start))
        model.fit(np.ones((8, 2)), np.full(8, 5.0), epochs=len(figures), callbacks=[Monitor(), stop], verbose=0)
        kept = all(np.array_equal(a, b) for a, b in zip(model.get_weights(), start))
        return stop.best_epoch + 1, stop.stopped_epoch + 1, kept

    assert fit([0.4, 0.3, 0.2, 0.1]) == (0, 2, True)  # stopped after 2 epochs, the start restored
    best, _, kept = fit([0.4, 0.6, 0.2, 0.1, 0.1])
    assert best == 2 and not kept
