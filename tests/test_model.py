"""The softmax ranking model's loss against a numpy reference, its sampled variant, and saving."""
import numpy as np
import pytest

from recjob import config
from recjob import model as M
from recjob.stages import train


def _softmax(n_users=4, n_items=6, **overrides):
    cfg = config.load(None, ["train.model=softmax", "train.factors=3",
                             *[f"train.{k}={v}" for k, v in overrides.items()]]).train
    return M.build_softmax(n_users, n_items, cfg), cfg


def test_full_softmax_loss_matches_numpy():
    model, _ = _softmax(negatives=2048, l2=0.5)
    f = M.factors(model)
    rng = np.random.default_rng(0)
    f["item_bias"][:] = rng.normal(size=6)
    model.get_layer(M.ITEM_BIAS).set_weights([f["item_bias"][:, None].astype(np.float32)])
    u, i = np.array([0, 1, 3, 3], np.int32), np.array([5, 0, 2, 5], np.int32)
    loss, total = model.batch_loss({M.USER_IN: u, M.ITEM_IN: i})
    logits = f["user"][u] @ f["item"].T + f["item_bias"][None, :]
    ref = np.mean(np.log(np.exp(logits).sum(axis=1)) - logits[np.arange(4), i])
    reg = np.mean((f["user"][u] ** 2).sum(axis=1) + (f["item"][i] ** 2).sum(axis=1))
    assert float(loss) == pytest.approx(ref, rel=1e-5)
    assert float(total) == pytest.approx(ref + 0.5 * reg, rel=1e-5)
    scores = model({M.USER_IN: u, M.ITEM_IN: i}).numpy()
    np.testing.assert_allclose(scores, logits[np.arange(4), i], rtol=1e-5)


def test_sampled_softmax_masks_the_positive_and_learns():
    # 2 negatives out of 6 items: a different loss than the full softmax, finite, and training on a fixed
    # user -> item pattern makes each user's own item score first
    model, _ = _softmax(negatives=2, learning_rate=0.1, l2=0.0)
    x = {M.USER_IN: np.repeat(np.arange(4, dtype=np.int32), 8), M.ITEM_IN: np.repeat(np.arange(4, dtype=np.int32), 8)}
    first, _ = model.batch_loss(x)
    assert np.isfinite(float(first))
    model.fit(x, np.zeros(32, np.float32), epochs=60, batch_size=32, verbose=0)
    f = M.factors(model)
    scores = f["user"] @ f["item"].T + f["item_bias"]
    assert (scores.argmax(axis=1) == np.arange(4)).all()


def test_softmax_model_saves_and_loads(tmp_path):
    import keras

    model, _ = _softmax()
    path = str(tmp_path / "m.keras")
    model.save(path)
    back = keras.saving.load_model(path)
    np.testing.assert_array_equal(M.factors(back)["item"], M.factors(model)["item"])


def test_batch_shrinks_on_small_data_only():
    cfg = config.load(None, []).train
    assert train.batch_size(1_000_000, cfg) == 1024
    assert train.batch_size(4_000, cfg) == 200  # 20 steps per epoch
    assert train.batch_size(100, cfg) == 32
