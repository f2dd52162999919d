import numpy as np
import pytest

from recjob import topk


def reference(scores, k):
    idx, vals = [], []
    for row in scores:
        order = np.lexsort((np.arange(len(row)), -row))
        order = [c for c in order if np.isfinite(row[c])][:k]
        idx.append(order + [-1] * (k - len(order)))
        vals.append([row[c] for c in order] + [-np.inf] * (k - len(order)))
    return np.array(idx), np.array(vals)


@pytest.mark.parametrize("backend", ["numpy", "tensorflow"])
@pytest.mark.parametrize("seed", range(5))
def test_top_k_matches_reference_with_ties_and_exclusions(seed, backend):
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 6, (40, 30)).astype(np.float32)  # many ties
    scores[rng.random(scores.shape) < 0.3] = -np.inf  # exclusions
    scores[0, :] = -np.inf  # a user who has seen everything
    scores[1, 5:] = -np.inf  # fewer than k candidates
    for k in (1, 5, 10, 30, 35):
        idx, vals = topk.top_k(scores, k, backend=backend)
        ref_idx, ref_vals = reference(scores, k)
        assert idx.shape == (40, k)
        np.testing.assert_array_equal(idx, ref_idx)
        np.testing.assert_array_equal(vals, ref_vals)


@pytest.mark.parametrize("backend", ["numpy", "tensorflow"])
def test_continuous_scores_large_block(backend):
    rng = np.random.default_rng(9)
    scores = rng.normal(size=(64, 5000)).astype(np.float32)
    idx, vals = topk.top_k(scores, 10, backend=backend)
    ref_idx, _ = reference(scores, 10)
    np.testing.assert_array_equal(idx, ref_idx)
    assert (np.diff(vals, axis=1) <= 0).all()


def test_score_block_excludes_seen():
    rng = np.random.default_rng(1)
    u, v, b = rng.normal(size=(6, 4)), rng.normal(size=(20, 4)), rng.normal(size=20)
    seen = [np.array([0, 1, 2]), np.array([], dtype=int), np.arange(20), np.array([19]), np.arange(18), np.array([5])]
    idx, vals = topk.score_block(u, v, b, seen, 5)
    full = u @ v.T + b
    for r, s in enumerate(seen):
        got = [c for c in idx[r] if c >= 0]
        assert not set(got) & set(s.tolist())
        allowed = [c for c in np.argsort(-full[r], kind="stable") if c not in set(s.tolist())]
        assert got == allowed[:5]
