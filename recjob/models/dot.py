"""dot: predicted rating = mean + b_u + b_i + <p_u, q_i> (seed 002's model, with biases), trained on MSE."""
from __future__ import annotations


from recjob.models.base import ITEM_IN, TrainConfig, TrainingData, USER_IN
from recjob.models.keras_fit import ITEM_BIAS, ITEM_EMB, USER_BIAS, USER_EMB, KerasKind, embedding, optimizer



def build_rating_model(data: TrainingData, cfg: TrainConfig, mlp_layers: tuple = ()):
    """A compiled model mapping {user_idx, item_idx} -> predicted rating: mean + b_u + b_i + the interaction,
    <p_u, q_i> without ``mlp_layers``, else an MLP over [p_u, q_i] with those hidden widths (seed 004's
    concatenation network, kept with biases). The global mean is a constant, so the model predicts ratings."""
    import keras
    from keras import layers, regularizers

    # Per-example L2 on the looked-up rows (activity regularisation, averaged over the batch), as in
    # classic matrix factorisation; a weight regulariser would decay every row on every step instead.
    reg = regularizers.l2(cfg.l2) if cfg.l2 > 0 else None
    breg = regularizers.l2(cfg.bias_l2) if cfg.bias_l2 > 0 else None
    u_in = keras.Input(shape=(), dtype="int32", name=USER_IN)
    i_in = keras.Input(shape=(), dtype="int32", name=ITEM_IN)
    p = embedding(data.n_users, cfg.factors, USER_EMB, cfg.seed, reg)(u_in)
    q = embedding(data.n_items, cfg.factors, ITEM_EMB, cfg.seed + 1, reg)(i_in)
    bu = embedding(data.n_users, 1, USER_BIAS, None, breg)(u_in)
    bi = embedding(data.n_items, 1, ITEM_BIAS, None, breg)(i_in)
    if not mlp_layers:
        inter = layers.Dot(axes=1, name="dot")([p, q])
    else:
        x = layers.Concatenate(name="concat")([p, q])
        for j, width in enumerate(mlp_layers):
            x = layers.Dense(width, activation="relu", kernel_regularizer=reg, name=f"mlp_{j}")(x)
            if cfg.dropout > 0:
                x = layers.Dropout(cfg.dropout, seed=cfg.seed + 10 + j)(x)
        inter = layers.Dense(1, name="mlp_out")(x)
    out = layers.Add(name="sum")([inter, bu, bi])
    out = layers.Rescaling(1.0, offset=float(data.rating_mean), name="plus_mean")(out)
    out = layers.Reshape((), name="rating")(out)
    model = keras.Model({USER_IN: u_in, ITEM_IN: i_in}, out, name=f"recjob_{cfg.model}")
    model.compile(optimizer=optimizer(cfg, data), loss="mse",
                  metrics=[keras.metrics.RootMeanSquaredError(name="rmse")])
    return model


class Dot(KerasKind):
    name = "dot"
    summary = "dot product + user and item biases + global mean, trained on squared error: predicts ratings"
    predicts_ratings = True
    # rating models need strong per-example L2 to beat the bias baseline (docs/models.md)
    defaults = {"factors": 32, "l2": 0.15, "bias_l2": 0.001}

    def build(self, data, cfg):
        return build_rating_model(data, cfg)


KIND = Dot()
