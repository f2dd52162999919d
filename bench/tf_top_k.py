"""TensorFlow's top-k as a selection for ``recjob.topk.top_k`` (pass the function as its backend): the benches
compare it with the group-maxima selection the scorer uses. Documented tie-break: equal elements -> lower index
first, as recjob's."""
from __future__ import annotations

import numpy as np


def tf_top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    import tensorflow as tf

    if not scores.size:
        return (np.full((len(scores), k), -1, np.int64), np.full((len(scores), k), -np.inf, scores.dtype))
    k_eff = min(k, scores.shape[1])
    res = tf.math.top_k(scores, k=k_eff, sorted=True)
    idx, vals = res.indices.numpy().astype(np.int64), res.values.numpy()
    if k_eff < k:
        idx = np.pad(idx, ((0, 0), (0, k - k_eff)), constant_values=-1)
        vals = np.pad(vals, ((0, 0), (0, k - k_eff)), constant_values=-np.inf)
    return np.where(np.isneginf(vals), -1, idx), vals
