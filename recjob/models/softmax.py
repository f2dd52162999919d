"""softmax: score(u, i) = <p_u, q_i> + b_i, trained with the softmax over items of the chosen item's score
(the retrieval objective of YouTube DNN / two-tower models). The softmax runs over the whole catalogue when it
has at most ``train.negatives`` items, else over that many items sampled uniformly per batch (shared by its
rows; the chosen item is masked out of them, and the sampled logits get the log(n_items / negatives)
correction of sampled softmax)."""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from recjob.models.base import ITEM_IN, USER_IN
from recjob.models.keras_fit import (
    ITEM_BIAS,
    ITEM_EMB,
    USER_EMB,
    KerasKind,
    embedding,
    optimizer,
)


@functools.cache
def model_class():
    """The Keras class of the softmax model (built on first use: importing recjob.models needs no TensorFlow;
    registered with Keras, so a saved model loads with keras.saving.load_model once this has been called)."""
    import keras
    import tensorflow as tf

    @keras.saving.register_keras_serializable(package="recjob")
    class SoftmaxModel(keras.Model):
        def __init__(self, n_users, n_items, factors, l2, negatives, seed, **kwargs):
            super().__init__(**kwargs)
            self.n_users, self.n_items, self.n_factors = n_users, n_items, factors
            self.l2, self.negatives, self.seed = float(l2), int(negatives), int(seed)
            if n_users:  # 0: no user embedding (a subclass computes the user factor)
                self.user_embedding = embedding(n_users, factors, USER_EMB, seed)
                self.user_embedding.build((None,))
            self.item_embedding = embedding(n_items, factors, ITEM_EMB, seed + 1)
            self.item_bias = embedding(n_items, 1, ITEM_BIAS, None)
            self.sampler = keras.random.SeedGenerator(seed + 2)
            self.loss_tracker = keras.metrics.Mean(name="loss")
            self.item_embedding.build((None,))
            self.item_bias.build((None,))
            self.built = True

        def user_vector(self, x, training=False):
            return self.user_embedding(x[USER_IN])

        def call(self, x):
            """The score of each (user, item) pair."""
            p = self.user_vector(x)
            return tf.reduce_sum(p * self.item_embedding(x[ITEM_IN]), axis=1) + self.item_bias(x[ITEM_IN])[:, 0]

        def batch_loss(self, x):
            i = x[ITEM_IN]
            p, q = self.user_vector(x, training=True), self.item_embedding(i)
            pos = tf.reduce_sum(p * q, axis=1) + self.item_bias(i)[:, 0]
            if self.negatives >= self.n_items:
                cand, correction = tf.range(self.n_items, dtype=i.dtype), 0.0
            else:
                cand = keras.random.randint((self.negatives,), 0, self.n_items, dtype="int32", seed=self.sampler)
                cand, correction = tf.cast(cand, i.dtype), float(np.log(self.n_items / self.negatives))
            logits = (tf.matmul(p, self.item_embedding(cand), transpose_b=True) + self.item_bias(cand)[:, 0][None, :]
                      + correction)
            logits = tf.where(tf.equal(i[:, None], cand[None, :]), tf.constant(-1e9, logits.dtype), logits)
            loss = tf.reduce_mean(tf.reduce_logsumexp(tf.concat([pos[:, None], logits], axis=1), axis=1) - pos)
            reg = tf.reduce_mean(tf.reduce_sum(p * p, axis=1) + tf.reduce_sum(q * q, axis=1))
            return loss, loss + self.l2 * reg

        def train_step(self, data):
            x = data[0] if isinstance(data, tuple) else data
            with tf.GradientTape() as tape:
                loss, total = self.batch_loss(x)
            grads = tape.gradient(total, self.trainable_variables)
            self.optimizer.apply(grads, self.trainable_variables)
            self.loss_tracker.update_state(loss)
            return {"loss": self.loss_tracker.result()}

        @property
        def metrics(self):
            return [self.loss_tracker]

        def get_config(self):
            return {**super().get_config(), "n_users": self.n_users, "n_items": self.n_items,
                    "factors": self.n_factors, "l2": self.l2, "negatives": self.negatives, "seed": self.seed}

    return SoftmaxModel


@dataclass(frozen=True)
class Settings:
    """The softmax objective's own settings (train.softmax.*; the next-item kinds share them)."""

    # items in each batch's softmax: the whole catalogue when it has at most this many, else this many sampled
    # uniformly per batch (the log(n_items / negatives) correction applied)
    negatives: int = 2048


def check_negatives(kind: str, own: Settings) -> list[str]:
    return [f"train.{kind}.negatives={own.negatives} must be >= 1"] if own.negatives < 1 else []


class Softmax(KerasKind):
    name = "softmax"
    summary = "softmax over items (sampled above train.softmax.negatives items): ranking scores for top-N lists"
    defaults = {"factors": 32, "l2": 0.06, "bias_l2": 0.0}
    Settings = Settings

    def check(self, own, cfg):
        return check_negatives(self.name, own)

    def build(self, data, cfg):
        model = model_class()(n_users=data.n_users, n_items=data.n_items, factors=cfg.factors, l2=cfg.l2,
                              negatives=cfg.params.negatives, seed=cfg.seed, name="recjob_softmax")
        model.compile(optimizer=optimizer(cfg, data))
        return model


KIND = Softmax()
