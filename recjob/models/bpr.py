"""bpr: BPR (Rendle et al. 2009), score(u, i) = <p_u, q_i> + b_i, trained so that an item the user chose scores
above a uniformly sampled one: loss = -log sigmoid(score(u, i) - score(u, j)). The model's output is the score
difference; the factors and item biases are what scoring uses."""
from __future__ import annotations

from recjob.models.base import ITEM_IN, NEG_IN, USER_IN
from recjob.models.keras_fit import ITEM_BIAS, ITEM_EMB, USER_EMB, KerasKind, embedding, optimizer


class Bpr(KerasKind):
    name = "bpr"
    summary = "Bayesian personalised ranking: a chosen item above a sampled one; ranking scores"
    defaults = {"factors": 32, "l2": 0.01, "bias_l2": 0.0}  # BPR overfits less per step than the rating models

    def build(self, data, cfg):
        import keras
        from keras import layers, regularizers

        reg = regularizers.l2(cfg.l2) if cfg.l2 > 0 else None
        breg = regularizers.l2(cfg.bias_l2) if cfg.bias_l2 > 0 else None
        u_in = keras.Input(shape=(), dtype="int32", name=USER_IN)
        i_in = keras.Input(shape=(), dtype="int32", name=ITEM_IN)
        j_in = keras.Input(shape=(), dtype="int32", name=NEG_IN)
        user_emb = embedding(data.n_users, cfg.factors, USER_EMB, cfg.seed, reg)
        item_emb = embedding(data.n_items, cfg.factors, ITEM_EMB, cfg.seed + 1, reg)
        item_bias = embedding(data.n_items, 1, ITEM_BIAS, None, breg)
        p = user_emb(u_in)
        s_pos = layers.Add()([layers.Dot(axes=1)([p, item_emb(i_in)]), item_bias(i_in)])
        s_neg = layers.Add()([layers.Dot(axes=1)([p, item_emb(j_in)]), item_bias(j_in)])
        out = layers.Reshape((), name="margin")(layers.Subtract()([s_pos, s_neg]))
        model = keras.Model({USER_IN: u_in, ITEM_IN: i_in, NEG_IN: j_in}, out, name="recjob_bpr")
        model.compile(optimizer=optimizer(cfg, data),
                      loss=keras.losses.BinaryCrossentropy(from_logits=True))
        return model

    def prepare(self, dataset, data, cfg):
        """One uniformly sampled negative item per row; the label of every pair is 1 (positive first)."""
        import tensorflow as tf

        gen = tf.random.Generator.from_seed(cfg.seed)

        def add(x, y):
            neg = gen.uniform(tf.shape(y), minval=0, maxval=data.n_items, dtype=tf.int32)
            return {**x, NEG_IN: neg}, tf.ones_like(y)

        return dataset.map(add)


KIND = Bpr()
