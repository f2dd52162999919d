"""The sasrec kind: its numpy forward pass (what the executors score with) against the Keras model, saving and
loading, and that it learns an order the last item alone does not give."""
import numpy as np
import pytest

from recjob import config, models
from recjob.models import keras_fit, sasrec
from recjob.models.base import HIST_IN, ITEM_IN, USER_IN, TrainingData

L = 5


def _sasrec(n_items=7, **overrides):
    cfg = config.load(None, ["train.model=sasrec", "train.factors=8", f"shards.history_length={L}",
                             "shards.split=temporal", *[f"train.{k}={v}" for k, v in overrides.items()]]).train
    data = TrainingData("file:///train", "file:///validation", 100, 0, n_items, 0.0, 10,
                        item_histories=np.full((1, L), n_items, np.int32))
    return models.get("sasrec").build(data, cfg), cfg


def test_defaults_come_from_the_kind():
    cfg = config.load(None, ["train.model=sasrec", "shards.split=temporal"]).train
    assert (cfg.factors, cfg.dropout, cfg.learning_rate, cfg.l2) == (64, 0.5, 0.001, 0.0)
    assert config.load(None, ["train.model=sasrec", "train.dropout=0.1"]).train.dropout == 0.1
    assert config.load(None, []).train.learning_rate == 0.01  # the other kinds keep theirs


def test_numpy_user_factor_matches_the_model():
    model, _ = _sasrec()
    rng = np.random.default_rng(0)
    for w in model.trainable_variables:  # move every weight off its initial value (LN gains, biases too)
        w.assign(w.numpy() + rng.normal(scale=0.3, size=w.shape).astype(np.float32))
    pad = 7
    h = np.array([[3, 1, 0, 2, 6], [5, pad, pad, pad, pad], [pad] * 5, [2, 2, 4, pad, pad], [6, 5, 4, 3, 2]],
                 np.int32)
    x = {USER_IN: np.zeros(5, np.int32), ITEM_IN: np.zeros(5, np.int32), HIST_IN: h}
    tf_u = model.user_vector(x).numpy()
    np_u = sasrec.user_factors(model.scoring_weights(), h)
    np.testing.assert_allclose(np_u, tf_u, rtol=1e-4, atol=1e-4)
    assert np.abs(tf_u[0] - tf_u[4]).max() > 1e-3  # the items and their order matter
    np.testing.assert_allclose(keras_fit.factors(model, h)["user"], np_u)
    # padding beyond the newest items changes nothing: a history of one item = that item alone
    longer = np.array([[5, pad, pad, pad, pad]], np.int32)
    np.testing.assert_allclose(sasrec.user_factors(model.scoring_weights(), longer), np_u[1:2], atol=1e-6)
    # a shorter history array (fewer columns) uses the positions of the newest items
    np.testing.assert_allclose(sasrec.user_factors(model.scoring_weights(), h[:, :3])[1], np_u[1], atol=1e-5)


def test_learns_an_order_the_last_item_does_not_give():
    # two walks share their last item 3: after 1, 3 comes 4; after 2, 3 comes 5
    model, _ = _sasrec(n_items=7, learning_rate=0.01, dropout=0.0)
    pad = 7
    rows = [([3, 1, pad, pad, pad], 4), ([3, 2, pad, pad, pad], 5), ([1, pad, pad, pad, pad], 3),
            ([2, pad, pad, pad, pad], 3)] * 100
    x = {USER_IN: np.zeros(len(rows), np.int32), ITEM_IN: np.array([r[1] for r in rows], np.int32),
         HIST_IN: np.array([r[0] for r in rows], np.int32)}
    model.fit(x, np.zeros(len(rows), np.float32), epochs=30, batch_size=40, verbose=0)
    probe = np.array([[3, 1, pad, pad, pad], [3, 2, pad, pad, pad]], np.int32)
    f = keras_fit.factors(model, probe)
    scores = f["user"] @ f["item"].T + f["item_bias"]
    assert scores.argmax(axis=1).tolist() == [4, 5]


def test_saves_and_loads(tmp_path):
    import keras

    model, _ = _sasrec()
    path = str(tmp_path / "s.keras")
    model.save(path)
    back = keras.saving.load_model(path)
    h = np.array([[1, 2, 7, 7, 7]], np.int32)
    np.testing.assert_array_equal(keras_fit.factors(back, h)["user"], keras_fit.factors(model, h)["user"])
    assert back.history_length == L and back.dropout == pytest.approx(0.5)
