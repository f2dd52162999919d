"""mlp: predicted rating = mean + b_u + b_i + MLP([p_u, q_i]) (seed 004's network), trained on MSE.

Scoring runs the MLP over every (user, item) pair of a block (``topk.layers_part``): the dense layers are saved
as ``mlp.npz`` so that the executors need numpy only."""
from __future__ import annotations

import io
import os
from dataclasses import dataclass

import numpy as np

from recjob.models.dot import Dot, build_rating_model

FILE = "mlp.npz"


def dense_weights(model) -> list[tuple[np.ndarray, np.ndarray]]:
    """(kernel, bias) of the MLP model's dense layers in order (the input is [p_u, q_i]); the last is linear."""
    dense = sorted((layer for layer in model.layers if layer.name.startswith("mlp_") and layer.name != "mlp_out"),
                   key=lambda layer: int(layer.name.split("_")[1]))
    return [tuple(layer.get_weights()) for layer in [*dense, model.get_layer("mlp_out")]]


def save_weights(weights: list[tuple[np.ndarray, np.ndarray]]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **{f"{kind}_{j}": arr for j, (w, b) in enumerate(weights) for kind, arr in (("w", w), ("b", b))})
    return buf.getvalue()


def load_weights(data: bytes) -> list[tuple[np.ndarray, np.ndarray]]:
    z = np.load(io.BytesIO(data))
    return [(z[f"w_{j}"], z[f"b_{j}"]) for j in range(len(z.files) // 2)]


@dataclass(frozen=True)
class Settings:
    """mlp's own settings (train.mlp.*)."""

    layers: tuple = (64, 32)  # the hidden dense layers' widths, first to last


class Mlp(Dot):
    """dot's kind (its defaults, a rating model) with the MLP as the interaction."""

    name = "mlp"
    summary = "user and item embeddings through dense layers (train.mlp.layers) + biases + mean: predicts ratings"
    Settings = Settings

    def check(self, own, cfg):
        return [] if own.layers and min(own.layers) >= 1 else [f"train.mlp.layers={list(own.layers)} must be "
                                                              f"one or more widths >= 1"]

    def build(self, data, cfg):
        return build_rating_model(data, cfg, tuple(cfg.params.layers))

    def save_scoring_files(self, model, workdir):
        with open(os.path.join(workdir, FILE), "wb") as fh:
            fh.write(save_weights(dense_weights(model)))

    def scoring_layers(self, load):
        return load_weights(load(FILE))


KIND = Mlp()
