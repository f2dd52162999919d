"""Keras models over user and item embeddings (seeds 002/004): dot product + biases + global mean, and an MLP."""
from __future__ import annotations

import numpy as np

from recjob.config import TrainConfig

USER_IN, ITEM_IN = "user_idx", "item_idx"
USER_EMB, ITEM_EMB, USER_BIAS, ITEM_BIAS = "user_embedding", "item_embedding", "user_bias", "item_bias"


def build(n_users: int, n_items: int, cfg: TrainConfig, global_mean: float):
    """A compiled model mapping {user_idx, item_idx} -> predicted rating.

    dot: mean + b_u + b_i + <p_u, q_i> (the global mean is a constant, so the model predicts ratings).
    mlp: mean + b_u + b_i + MLP([p_u, q_i]) (seed 004's concatenation network, kept with biases).
    """
    import keras
    from keras import layers, regularizers

    # Per-example L2 on the looked-up rows (activity regularisation, averaged over the batch), as in
    # classic matrix factorisation; a weight regulariser would decay every row on every step instead.
    reg = regularizers.l2(cfg.l2) if cfg.l2 > 0 else None
    breg = regularizers.l2(cfg.bias_l2) if cfg.bias_l2 > 0 else None
    init = keras.initializers.RandomNormal(stddev=0.05, seed=cfg.seed)
    u_in = keras.Input(shape=(), dtype="int32", name=USER_IN)
    i_in = keras.Input(shape=(), dtype="int32", name=ITEM_IN)
    p = layers.Embedding(n_users, cfg.factors, embeddings_initializer=init, activity_regularizer=reg, name=USER_EMB)(u_in)
    q = layers.Embedding(n_items, cfg.factors, embeddings_initializer=keras.initializers.RandomNormal(stddev=0.05, seed=cfg.seed + 1),
                         activity_regularizer=reg, name=ITEM_EMB)(i_in)
    bu = layers.Embedding(n_users, 1, embeddings_initializer="zeros", activity_regularizer=breg, name=USER_BIAS)(u_in)
    bi = layers.Embedding(n_items, 1, embeddings_initializer="zeros", activity_regularizer=breg, name=ITEM_BIAS)(i_in)
    if cfg.model == "dot":
        inter = layers.Dot(axes=1, name="dot")([p, q])
    else:
        x = layers.Concatenate(name="concat")([p, q])
        for j, width in enumerate(cfg.mlp_layers):
            x = layers.Dense(width, activation="relu", kernel_regularizer=reg, name=f"mlp_{j}")(x)
            if cfg.dropout > 0:
                x = layers.Dropout(cfg.dropout, seed=cfg.seed + 10 + j)(x)
        inter = layers.Dense(1, name="mlp_out")(x)
    out = layers.Add(name="sum")([inter, bu, bi])
    out = layers.Rescaling(1.0, offset=float(global_mean), name="plus_mean")(out)
    out = layers.Reshape((), name="rating")(out)
    model = keras.Model({USER_IN: u_in, ITEM_IN: i_in}, out, name=f"recjob_{cfg.model}")
    model.compile(optimizer=keras.optimizers.Adam(cfg.learning_rate), loss="mse",
                  metrics=[keras.metrics.RootMeanSquaredError(name="rmse")])
    return model


NEG_IN = "neg_idx"
RATING_MODELS = ("dot", "mlp")


def build_bpr(n_users: int, n_items: int, cfg: TrainConfig):
    """BPR (Rendle et al. 2009): score(u, i) = <p_u, q_i> + b_i, trained so that an item the user chose
    scores above a sampled one: loss = -log sigmoid(score(u, i) - score(u, j)). The model's output is the
    score difference; the factors and item biases are what scoring uses."""
    import keras
    from keras import layers, regularizers

    reg = regularizers.l2(cfg.l2) if cfg.l2 > 0 else None
    breg = regularizers.l2(cfg.bias_l2) if cfg.bias_l2 > 0 else None
    u_in = keras.Input(shape=(), dtype="int32", name=USER_IN)
    i_in = keras.Input(shape=(), dtype="int32", name=ITEM_IN)
    j_in = keras.Input(shape=(), dtype="int32", name=NEG_IN)
    user_emb = layers.Embedding(n_users, cfg.factors, name=USER_EMB, activity_regularizer=reg,
                                embeddings_initializer=keras.initializers.RandomNormal(stddev=0.05, seed=cfg.seed))
    item_emb = layers.Embedding(n_items, cfg.factors, name=ITEM_EMB, activity_regularizer=reg,
                                embeddings_initializer=keras.initializers.RandomNormal(stddev=0.05, seed=cfg.seed + 1))
    item_bias = layers.Embedding(n_items, 1, name=ITEM_BIAS, embeddings_initializer="zeros", activity_regularizer=breg)
    p = user_emb(u_in)
    s_pos = layers.Add()([layers.Dot(axes=1)([p, item_emb(i_in)]), item_bias(i_in)])
    s_neg = layers.Add()([layers.Dot(axes=1)([p, item_emb(j_in)]), item_bias(j_in)])
    out = layers.Reshape((), name="margin")(layers.Subtract()([s_pos, s_neg]))
    model = keras.Model({USER_IN: u_in, ITEM_IN: i_in, NEG_IN: j_in}, out, name="recjob_bpr")
    model.compile(optimizer=keras.optimizers.Adam(cfg.learning_rate),
                  loss=keras.losses.BinaryCrossentropy(from_logits=True))
    return model


def factors(model) -> dict[str, np.ndarray]:
    """The learned user/item factor matrices and biases (the MLP's embeddings are its factors)."""
    names = {layer.name for layer in model.layers}
    item = model.get_layer(ITEM_EMB).get_weights()[0]
    user = model.get_layer(USER_EMB).get_weights()[0]
    return {
        "user": user,
        "item": item,
        "user_bias": (model.get_layer(USER_BIAS).get_weights()[0][:, 0] if USER_BIAS in names
                      else np.zeros(len(user), np.float32)),
        "item_bias": model.get_layer(ITEM_BIAS).get_weights()[0][:, 0],
    }
