"""Keras models over user and item embeddings (seeds 002/004): dot product + biases + global mean, and an MLP."""
from __future__ import annotations

import functools

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
HIST_EMB, MARKOV_W = "history_embedding", "markov_weight"
RATING_MODELS = ("dot", "mlp", "bpmf")  # bpmf: recjob.bpmf (Gibbs sampling, not Keras)
RANKING_MODELS = ("softmax", "bpr", "seq")
HIST_IN = "history"
SEQUENCE_MODELS = ("seq",)  # their user factor is computed from the user's latest items (a history column)


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


def build_softmax(n_users: int, n_items: int, cfg: TrainConfig):
    """Softmax over items (the retrieval objective of YouTube DNN / two-tower models): score(u, i) =
    <p_u, q_i> + b_i, loss = -log softmax over items of the chosen item's score. The softmax runs over the
    whole catalogue when it has at most ``cfg.negatives`` items, else over ``cfg.negatives`` items sampled
    uniformly per batch (shared by its rows; the chosen item is masked out of them, and the sampled logits
    get the log(n_items / negatives) correction of sampled softmax)."""
    import keras

    model = softmax_model_class()(n_users=n_users, n_items=n_items, factors=cfg.factors, l2=cfg.l2,
                                  negatives=cfg.negatives, seed=cfg.seed, name="recjob_softmax")
    model.compile(optimizer=keras.optimizers.Adam(cfg.learning_rate))
    return model


@functools.cache
def softmax_model_class():
    """The Keras class of the softmax model (built on first use: importing recjob.model needs no TensorFlow;
    registered with Keras, so a saved model loads with keras.saving.load_model once this has been called)."""
    import keras
    import tensorflow as tf
    from keras import layers

    @keras.saving.register_keras_serializable(package="recjob")
    class SoftmaxModel(keras.Model):
        def __init__(self, n_users, n_items, factors, l2, negatives, seed, **kwargs):
            super().__init__(**kwargs)
            self.n_users, self.n_items, self.n_factors = n_users, n_items, factors
            self.l2, self.negatives, self.seed = float(l2), int(negatives), int(seed)
            if n_users:  # 0: no user embedding (a subclass computes the user factor)
                self.user_embedding = layers.Embedding(n_users, factors, name=USER_EMB,
                                                       embeddings_initializer=keras.initializers.RandomNormal(stddev=0.05, seed=seed))
                self.user_embedding.build((None,))
            self.item_embedding = layers.Embedding(n_items, factors, name=ITEM_EMB,
                                                   embeddings_initializer=keras.initializers.RandomNormal(stddev=0.05, seed=seed + 1))
            self.item_bias = layers.Embedding(n_items, 1, name=ITEM_BIAS, embeddings_initializer="zeros")
            self.sampler = keras.random.SeedGenerator(seed + 2)
            self.loss_tracker = keras.metrics.Mean(name="loss")
            self.item_embedding.build((None,))
            self.item_bias.build((None,))
            self.built = True

        def user_vector(self, x):
            return self.user_embedding(x[USER_IN])

        def call(self, x):
            """The score of each (user, item) pair."""
            p = self.user_vector(x)
            return tf.reduce_sum(p * self.item_embedding(x[ITEM_IN]), axis=1) + self.item_bias(x[ITEM_IN])[:, 0]

        def batch_loss(self, x):
            i = x[ITEM_IN]
            p, q = self.user_vector(x), self.item_embedding(i)
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


def build_seq(n_users: int, n_items: int, cfg: TrainConfig):
    """A sequence-aware softmax model (Fossil, He and McAuley 2016, trained with the softmax objective): the
    user factor is computed from the user's latest items h_1 (most recent) .. h_L, not looked up:

        u = sum_j P[h_j] / sqrt(n) + sum_{k <= K} w_k P[h_k],   score(u, i) = <u, q_i> + b_i

    the first term the user's long-term taste (FISM's average of item vectors over the whole history window),
    the second the Markov part (the last K items, weighted by learnt w_k). The loss is the softmax one of
    ``build_softmax``, each training row predicting its item from the items the user had before it. As the
    user factor depends on the history alone, a user is scored from their latest items after training."""
    import keras

    model = seq_model_class()(n_users=n_users, n_items=n_items, factors=cfg.factors, l2=cfg.l2,
                              negatives=cfg.negatives, seed=cfg.seed, markov=cfg.markov_order, name="recjob_seq")
    model.compile(optimizer=keras.optimizers.Adam(cfg.learning_rate))
    return model


@functools.cache
def seq_model_class():
    import keras
    import tensorflow as tf
    from keras import layers

    @keras.saving.register_keras_serializable(package="recjob")
    class SeqModel(softmax_model_class()):
        def __init__(self, n_users, n_items, factors, l2, negatives, seed, markov, **kwargs):
            super().__init__(n_users=0, n_items=n_items, factors=factors, l2=l2, negatives=negatives, seed=seed,
                             **kwargs)
            self.n_users, self.markov = n_users, int(markov)
            # row n_items is the padding of short histories (masked out)
            self.history_embedding = layers.Embedding(
                n_items + 1, factors, name=HIST_EMB,
                embeddings_initializer=keras.initializers.RandomNormal(stddev=0.05, seed=seed + 3))
            self.history_embedding.build((None,))
            self.markov_weight = self.add_weight(shape=(self.markov,), initializer="ones", name=MARKOV_W)

        def user_vector(self, x):
            h = x[HIST_IN]
            mask = tf.cast(h < self.n_items, tf.float32)
            e = self.history_embedding(h) * mask[:, :, None]
            n = tf.reduce_sum(mask, axis=1, keepdims=True)
            u = tf.reduce_sum(e, axis=1) / tf.sqrt(tf.maximum(n, 1.0))
            return u + tf.einsum("k,bkf->bf", self.markov_weight, e[:, :self.markov])

        def get_config(self):
            return {**super().get_config(), "n_users": self.n_users, "markov": self.markov}

    return SeqModel


def seq_weights(model) -> bytes:
    """What computing the seq model's user factors needs (history embedding, Markov weights), as npz bytes:
    the score stage reads this instead of loading Keras."""
    import io

    buf = io.BytesIO()
    np.savez(buf, history_embedding=model.get_layer(HIST_EMB).get_weights()[0],
             markov_weight=np.asarray(model.markov_weight.numpy()))
    return buf.getvalue()


def load_seq_weights(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    import io

    z = np.load(io.BytesIO(data))
    return z["history_embedding"], z["markov_weight"]


def seq_user_factors(history_embedding: np.ndarray, markov_weight: np.ndarray, history: np.ndarray,
                     chunk: int = 100_000) -> np.ndarray:
    """The seq model's user factors (``SeqModel.user_vector`` in numpy) for histories (users x L, most recent
    first, padded with n_items = the last row of ``history_embedding``)."""
    n_items = len(history_embedding) - 1
    k = len(markov_weight)
    out = np.empty((len(history), history_embedding.shape[1]), np.float32)
    for s in range(0, len(history), chunk):
        h = history[s:s + chunk]
        mask = (h < n_items).astype(np.float32)
        e = history_embedding[h] * mask[:, :, None]
        n = np.sqrt(np.maximum(mask.sum(1, keepdims=True), 1.0))
        out[s:s + chunk] = e.sum(1) / n + np.einsum("k,bkf->bf", markov_weight, e[:, :k])
    return out


def mlp_weights(model) -> list[tuple[np.ndarray, np.ndarray]]:
    """(kernel, bias) of the MLP model's dense layers in order (the input is [p_u, q_i]); the last is linear."""
    dense = sorted((layer for layer in model.layers if layer.name.startswith("mlp_") and layer.name != "mlp_out"),
                   key=lambda layer: int(layer.name.split("_")[1]))
    return [tuple(layer.get_weights()) for layer in [*dense, model.get_layer("mlp_out")]]


def save_mlp(weights: list[tuple[np.ndarray, np.ndarray]]) -> bytes:
    import io

    buf = io.BytesIO()
    np.savez(buf, **{f"{kind}_{j}": arr for j, (w, b) in enumerate(weights) for kind, arr in (("w", w), ("b", b))})
    return buf.getvalue()


def load_mlp(data: bytes) -> list[tuple[np.ndarray, np.ndarray]]:
    import io

    z = np.load(io.BytesIO(data))
    return [(z[f"w_{j}"], z[f"b_{j}"]) for j in range(len(z.files) // 2)]


def factors(model, history: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The learned user/item factor matrices and biases (the MLP's embeddings are its factors; the seq
    model's user factors are computed from ``history``, every user's latest items)."""
    names = {layer.name for layer in model.layers}
    item = model.get_layer(ITEM_EMB).get_weights()[0]
    if HIST_EMB in names:
        if history is None:
            raise ValueError("the seq model's user factors need the users' histories")
        user = seq_user_factors(model.get_layer(HIST_EMB).get_weights()[0],
                                np.asarray(model.markov_weight.numpy()), history)
    else:
        user = model.get_layer(USER_EMB).get_weights()[0]
    return {
        "user": user,
        "item": item,
        "user_bias": (model.get_layer(USER_BIAS).get_weights()[0][:, 0] if USER_BIAS in names
                      else np.zeros(len(user), np.float32)),
        "item_bias": model.get_layer(ITEM_BIAS).get_weights()[0][:, 0],
    }
