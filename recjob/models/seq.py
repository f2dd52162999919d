"""seq: a sequence-aware softmax model (Fossil, He and McAuley 2016, trained with the softmax objective): the
user factor is computed from the user's latest items h_1 (most recent) .. h_L, not looked up:

    u = sum_j P[h_j] / sqrt(n) + sum_{k <= K} w_k P[h_k],   score(u, i) = <u, q_i> + b_i

the first term the user's long-term taste (FISM's average of item vectors over the whole history window), the
second the Markov part (the last K = train.seq.markov_order items, weighted by learnt w_k). The loss is the softmax
one of ``softmax``, each training row predicting its item from the items the user had before it (the train
shards' ``history`` column). As the user factor depends on the item history alone, scoring computes it from
each user's latest items of every split (``seq.npz`` holds what that needs), in the executors.
"""
from __future__ import annotations

import functools
import io
import os
from dataclasses import dataclass

import numpy as np

from recjob.models import softmax
from recjob.models.base import HIST_IN
from recjob.models.keras_fit import HIST_EMB, KerasKind, embedding, optimizer

FILE = "seq.npz"
MARKOV_W = "markov_weight"


def user_factors(history_embedding: np.ndarray, markov_weight: np.ndarray, histories: np.ndarray,
                 chunk: int = 100_000) -> np.ndarray:
    """The user factors (``SeqModel.user_vector`` in numpy) for item histories (users x L, most recent first,
    padded with n_items = the last row of ``history_embedding``)."""
    n_items = len(history_embedding) - 1
    k = len(markov_weight)
    out = np.empty((len(histories), history_embedding.shape[1]), np.float32)
    for s in range(0, len(histories), chunk):
        h = histories[s:s + chunk]
        mask = (h < n_items).astype(np.float32)
        e = history_embedding[h] * mask[:, :, None]
        n = np.sqrt(np.maximum(mask.sum(1, keepdims=True), 1.0))
        out[s:s + chunk] = e.sum(1) / n + np.einsum("k,bkf->bf", markov_weight, e[:, :k])
    return out


@functools.cache
def model_class():
    import keras
    import tensorflow as tf

    @keras.saving.register_keras_serializable(package="recjob")
    class SeqModel(softmax.model_class()):
        def __init__(self, n_users, n_items, factors, l2, negatives, seed, markov, **kwargs):
            super().__init__(n_users=0, n_items=n_items, factors=factors, l2=l2, negatives=negatives, seed=seed,
                             **kwargs)
            self.n_users, self.markov = n_users, int(markov)
            # row n_items is the padding of short histories (masked out)
            self.history_embedding = embedding(n_items + 1, factors, HIST_EMB, seed + 3)
            self.history_embedding.build((None,))
            self.markov_weight = self.add_weight(shape=(self.markov,), initializer="ones", name=MARKOV_W)

        def user_vector(self, x, training=False):
            h = x[HIST_IN]
            mask = tf.cast(h < self.n_items, tf.float32)
            e = self.history_embedding(h) * mask[:, :, None]
            n = tf.reduce_sum(mask, axis=1, keepdims=True)
            u = tf.reduce_sum(e, axis=1) / tf.sqrt(tf.maximum(n, 1.0))
            return u + tf.einsum("k,bkf->bf", self.markov_weight, e[:, :self.markov])

        def scoring_weights(self) -> tuple[np.ndarray, np.ndarray]:
            return self.history_embedding.get_weights()[0], np.asarray(self.markov_weight.numpy())

        def user_factors(self, histories: np.ndarray) -> np.ndarray:
            return user_factors(*self.scoring_weights(), histories)

        def get_config(self):
            return {**super().get_config(), "n_users": self.n_users, "markov": self.markov}

    return SeqModel


@dataclass(frozen=True)
class Settings(softmax.Settings):
    """seq's own settings (train.seq.*): the softmax objective's, and the Markov part's length."""

    markov_order: int = 3  # of the latest items, those that also enter with their own learnt weight


class Seq(KerasKind):
    name = "seq"
    Settings = Settings
    padded_weights = (HIST_EMB,)  # row n_items pads short histories

    def check(self, own, cfg):
        problems = softmax.check_negatives(self.name, own)
        if not 1 <= own.markov_order <= cfg.shards.history_length:
            problems.append(f"train.seq.markov_order={own.markov_order} must be in 1..shards.history_length="
                            f"{cfg.shards.history_length}")
        return problems

    summary = ("next-item model: the user factor computed from their latest items (long-term average + Markov "
               "part), softmax objective; ranking scores")
    needs_item_histories = True
    defaults = {"factors": 32, "l2": 0.06, "bias_l2": 0.0}

    def build(self, data, cfg):
        model = model_class()(n_users=data.n_users, n_items=data.n_items, factors=cfg.factors, l2=cfg.l2,
                              negatives=cfg.params.negatives, seed=cfg.seed, markov=cfg.params.markov_order,
                              name="recjob_seq")
        model.compile(optimizer=optimizer(cfg, data))
        return model

    def save_scoring_files(self, model, workdir):
        emb, markov = model.scoring_weights()
        np.savez(os.path.join(workdir, FILE), history_embedding=emb, markov_weight=markov)

    def history_encoder(self, load):
        z = np.load(io.BytesIO(load(FILE)))
        emb, markov = z["history_embedding"], z["markov_weight"]
        return functools.partial(user_factors, emb, markov)  # picklable: broadcast to the executors


KIND = Seq()
