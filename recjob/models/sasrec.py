"""sasrec: a self-attention next-item model (SASRec, Kang and McAuley 2018) trained with the softmax objective of
``softmax`` (the whole catalogue, or ``train.sasrec.negatives`` sampled items) instead of SASRec's one sampled negative
per positive: the cross-entropy version is the stronger one (Klenitskiy and Vasilev, RecSys 2023; Petrov and
Macdonald, RecSys 2023).

The user factor is computed from the user's latest L items (the shards' item histories, L =
``shards.history_length``), oldest to newest, the newest at the last position:

    x_t = E[h_t] sqrt(d) + P[t]                       (padding positions zero; dropout in training)
    each of ATTENTION_BLOCKS blocks (pre-norm):
        x = x + Attention(LN(x))                      (one head, causal, padding keys masked)
        x = x + W2 relu(W1 LN(x) + b1) + b2
    u = LN(x_newest)                                  score(u, i) = <u, E[i]> + b_i

E is the item embedding of the output layer too (shared, as in SASRec). Each training row predicts its item from
the items the user had before it, so only the newest position's output is needed: the last block attends from
that position alone. Scoring needs the same forward pass without TensorFlow: ``user_factors`` is it in numpy
(``sasrec.npz`` holds the weights), run in the executors; a test checks it against the Keras model.
"""
from __future__ import annotations

import functools
import io
import os

import numpy as np

from recjob.models import softmax
from recjob.models.base import HIST_IN
from recjob.models.keras_fit import KerasKind, optimizer

FILE = "sasrec.npz"
ATTENTION_BLOCKS = 2
EPS = 1e-6  # layer normalisation
BLOCK_WEIGHTS = ("ln1_g", "ln1_b", "wq", "wk", "wv", "wo", "ln2_g", "ln2_b", "w1", "b1", "w2", "b2")


def _layer_norm(x: np.ndarray, g: np.ndarray, b: np.ndarray) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + EPS) * g + b


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


def user_factors(weights: dict, histories: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """The user factors (``SasrecModel.user_vector`` in numpy) for item histories (users x L, most recent first,
    padded with n_items)."""
    emb, pos = weights["item_embedding"], weights["position_embedding"]
    n_items, d = emb.shape
    out = np.empty((len(histories), d), np.float32)
    for s in range(0, len(histories), chunk):
        h = histories[s:s + chunk, ::-1].astype(np.int64)  # oldest first: the newest at the last position
        L = h.shape[1]
        mask = (h < n_items).astype(np.float32)
        x = (emb[np.minimum(h, n_items - 1)] * np.sqrt(d) + pos[-L:]) * mask[:, :, None]
        key_bias = (1.0 - mask)[:, None, :] * -1e9
        causal = np.triu(np.full((L, L), -1e9, np.float32), 1)
        for b in range(ATTENTION_BLOCKS):
            w = {k: weights[f"block{b}_{k}"] for k in BLOCK_WEIGHTS}
            last = b == ATTENTION_BLOCKS - 1
            y = _layer_norm(x, w["ln1_g"], w["ln1_b"])
            q = (y[:, -1:] if last else y) @ w["wq"]
            att = q @ np.swapaxes(y @ w["wk"], 1, 2) / np.sqrt(d) + key_bias + (0.0 if last else causal)
            x = (x[:, -1:] if last else x) + _softmax(att) @ (y @ w["wv"]) @ w["wo"]
            y = _layer_norm(x, w["ln2_g"], w["ln2_b"])
            x = (x + np.maximum(y @ w["w1"] + w["b1"], 0.0) @ w["w2"] + w["b2"]) * (mask[:, -1:, None] if last
                                                                                    else mask[:, :, None])
        out[s:s + chunk] = _layer_norm(x[:, -1], weights["final_g"], weights["final_b"])
    return out


@functools.cache
def model_class():
    import keras
    import tensorflow as tf

    @keras.saving.register_keras_serializable(package="recjob")
    class SasrecModel(softmax.model_class()):
        def __init__(self, n_users, n_items, factors, l2, negatives, seed, history_length, dropout, **kwargs):
            super().__init__(n_users=0, n_items=n_items, factors=factors, l2=l2, negatives=negatives, seed=seed,
                             **kwargs)
            self.n_users, self.history_length, self.dropout = n_users, int(history_length), float(dropout)
            d = factors
            normal = keras.initializers.RandomNormal(stddev=0.05, seed=seed + 3)
            self.position_embedding = self.add_weight(shape=(self.history_length, d), initializer=normal,
                                                      name="position_embedding")
            self.blocks = []
            for b in range(ATTENTION_BLOCKS):
                glorot = [keras.initializers.GlorotUniform(seed=seed + 10 * (b + 1) + j) for j in range(6)]
                shapes = {"ln1_g": ((d,), "ones"), "ln1_b": ((d,), "zeros"), "wq": ((d, d), glorot[0]),
                          "wk": ((d, d), glorot[1]), "wv": ((d, d), glorot[2]), "wo": ((d, d), glorot[3]),
                          "ln2_g": ((d,), "ones"), "ln2_b": ((d,), "zeros"), "w1": ((d, d), glorot[4]),
                          "b1": ((d,), "zeros"), "w2": ((d, d), glorot[5]), "b2": ((d,), "zeros")}
                self.blocks.append({k: self.add_weight(shape=s, initializer=i, name=f"block{b}_{k}")
                                    for k, (s, i) in shapes.items()})
            self.final_g = self.add_weight(shape=(d,), initializer="ones", name="final_g")
            self.final_b = self.add_weight(shape=(d,), initializer="zeros", name="final_b")
            self.dropout_seed = keras.random.SeedGenerator(seed + 4)

        def _drop(self, x, training):
            return keras.random.dropout(x, self.dropout, seed=self.dropout_seed) if training and self.dropout else x

        @staticmethod
        def _layer_norm(x, g, b):
            mean, var = tf.nn.moments(x, axes=[-1], keepdims=True)
            return (x - mean) / tf.sqrt(var + EPS) * g + b

        def user_vector(self, x, training=False):
            h = tf.reverse(tf.cast(x[HIST_IN], tf.int32), axis=[1])  # oldest first
            length = tf.shape(h)[1]
            mask = tf.cast(h < self.n_items, tf.float32)
            emb = self.item_embedding.embeddings
            d = float(self.n_factors)
            pos = self.position_embedding[self.history_length - length:]
            x = (tf.gather(emb, tf.minimum(h, self.n_items - 1)) * d ** 0.5 + pos[None]) * mask[:, :, None]
            x = self._drop(x, training)
            key_bias = (1.0 - mask)[:, None, :] * -1e9
            causal = (1.0 - tf.linalg.band_part(tf.ones((length, length)), -1, 0)) * -1e9
            for b, w in enumerate(self.blocks):
                last = b == len(self.blocks) - 1
                y = self._layer_norm(x, w["ln1_g"], w["ln1_b"])
                q = tf.matmul(y[:, -1:] if last else y, w["wq"])
                att = tf.matmul(q, tf.matmul(y, w["wk"]), transpose_b=True) / d ** 0.5 + key_bias
                att = tf.nn.softmax(att if last else att + causal, axis=-1)
                a = tf.matmul(tf.matmul(self._drop(att, training), tf.matmul(y, w["wv"])), w["wo"])
                x = (x[:, -1:] if last else x) + self._drop(a, training)
                y = self._layer_norm(x, w["ln2_g"], w["ln2_b"])
                f = tf.matmul(self._drop(tf.nn.relu(tf.matmul(y, w["w1"]) + w["b1"]), training), w["w2"]) + w["b2"]
                x = (x + self._drop(f, training)) * (mask[:, -1:, None] if last else mask[:, :, None])
            return self._layer_norm(x[:, -1], self.final_g, self.final_b)

        def scoring_weights(self) -> dict:
            out = {"item_embedding": self.item_embedding.get_weights()[0],
                   "position_embedding": np.asarray(self.position_embedding.numpy()),
                   "final_g": np.asarray(self.final_g.numpy()), "final_b": np.asarray(self.final_b.numpy())}
            for b, w in enumerate(self.blocks):
                out.update({f"block{b}_{k}": np.asarray(v.numpy()) for k, v in w.items()})
            return out

        def user_factors(self, histories: np.ndarray) -> np.ndarray:
            return user_factors(self.scoring_weights(), histories)

        def get_config(self):
            return {**super().get_config(), "n_users": self.n_users, "history_length": self.history_length,
                    "dropout": self.dropout}

    return SasrecModel


class Sasrec(KerasKind):
    name = "sasrec"
    summary = ("next-item model: causal self-attention over the latest items (SASRec), softmax objective; "
               "ranking scores")
    needs_item_histories = True
    # SASRec's settings for the sparse Amazon data (dropout 0.5, Adam 0.001), no L2 (dropout regularises); it
    # improves slowly while the per-epoch validation probe moves by about its standard error: a patience of 10
    # epochs (3 stopped Industrial_and_Scientific at epoch 5, the training loss still falling fast)
    defaults = {"factors": 64, "l2": 0.0, "bias_l2": 0.0, "dropout": 0.5, "learning_rate": 0.001, "patience": 10}
    Settings = softmax.Settings  # train.sasrec.negatives

    def check(self, own, cfg):
        return softmax.check_negatives(self.name, own)

    def build(self, data, cfg):
        model = model_class()(n_users=data.n_users, n_items=data.n_items, factors=cfg.factors, l2=cfg.l2,
                              negatives=cfg.params.negatives, seed=cfg.seed, history_length=data.item_histories.shape[1],
                              dropout=cfg.dropout, name="recjob_sasrec")
        model.compile(optimizer=optimizer(cfg, data))
        return model

    def save_scoring_files(self, model, workdir):
        np.savez(os.path.join(workdir, FILE), **model.scoring_weights())

    def history_encoder(self, load):
        z = np.load(io.BytesIO(load(FILE)))
        return functools.partial(user_factors, {k: z[k] for k in z.files})  # picklable: broadcast to executors


KIND = Sasrec()
