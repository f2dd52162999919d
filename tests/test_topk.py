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


@pytest.mark.parametrize("backend", ["numpy", "chunked", "auto"])
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


@pytest.mark.parametrize("backend", ["numpy", "chunked", "auto"])
def test_continuous_scores_large_block(backend):
    rng = np.random.default_rng(9)
    scores = rng.normal(size=(64, 5000)).astype(np.float32)
    idx, vals = topk.top_k(scores, 10, backend=backend)
    ref_idx, _ = reference(scores, 10)
    np.testing.assert_array_equal(idx, ref_idx)
    assert (np.diff(vals, axis=1) <= 0).all()


@pytest.mark.parametrize("seed", range(8))
def test_group_maxima_selection_is_exact_with_ties_exclusions_and_a_ragged_tail(seed):
    """The group-maxima path against the reference on shapes that exercise it: groups of 2..40 columns, a last
    group shorter than the others, rows with tied group maxima (rounded scores), excluded columns, a row with
    everything excluded and one with fewer than k candidates."""
    rng = np.random.default_rng(100 + seed)
    n_cols = int(rng.integers(300, 2000))
    scores = rng.normal(size=(50, n_cols)).astype(np.float32)
    if seed % 2:
        scores = np.round(scores, 1)  # ties everywhere, within and across groups
    scores[rng.random(scores.shape) < 0.2] = -np.inf
    scores[0, :] = -np.inf
    scores[1, 7:] = -np.inf
    scores[2, :] = 1.0  # every column tied
    for k in (1, 3, 10):
        for group in (2, 7, 40):
            idx, vals = topk.top_k_chunked(scores, k, group=group)
            ref_idx, ref_vals = reference(scores, k)
            np.testing.assert_array_equal(idx, ref_idx, err_msg=f"k={k} group={group}")
            np.testing.assert_array_equal(vals, ref_vals)


@pytest.mark.parametrize("seed", range(8))
def test_chunked_product_selection_is_exact_with_ties_exclusions_and_padding(seed):
    """top_k_product (the product one chunk of columns at a time, group maxima per chunk) against the reference
    on the same scores: several chunks with a padded last one, integer factors (exact ties within and across
    chunks), seen pairs in every chunk, a user who has seen everything, one with fewer than k candidates, one
    with zero factors (scores = item biases), a reused buffer with more rows than the block."""
    rng = np.random.default_rng(200 + seed)
    n_items, n_users, rank = int(rng.integers(150, 1500)), 40, 3
    if seed % 2:
        u, v = rng.integers(-2, 3, (n_users, rank)), rng.integers(-2, 3, (n_items, rank))
        b = rng.integers(0, 2, n_items)
    else:
        u, v, b = rng.normal(size=(n_users, rank)), rng.normal(size=(n_items, rank)), rng.normal(size=n_items)
    u, v, b = u.astype(np.float32), v.astype(np.float32), b.astype(np.float32)
    u[2] = 0.0  # a user without factors: every item by its bias
    seen = [rng.choice(n_items, size=int(rng.integers(0, n_items // 3)), replace=False) for _ in range(n_users)]
    seen[0] = np.arange(n_items)
    seen[1] = np.delete(np.arange(n_items), [3, 100 % n_items])
    rows = np.repeat(np.arange(n_users), [len(x) for x in seen])
    cols = np.concatenate(seen).astype(np.int64)
    scores = topk.with_ones(u) @ topk.with_bias(v, b).T
    scores[rows, cols] = -np.inf
    for group, chunk_columns in ((2, 16), (7, 100), (16, 64), (64, 4096)):
        chunks = topk.item_chunks(topk.with_bias(v, b), group, chunk_columns)
        n_chunks, width = len(chunks.factors), chunks.columns
        assert width % group == 0 and n_chunks * width >= n_items
        buf = chunks.buffer(n_users + 5)
        for k in (1, 3, 10):
            idx, vals = topk.top_k_product(topk.with_ones(u), chunks, k, rows, cols, buf, group)
            ref_idx, ref_vals = reference(scores, k)
            np.testing.assert_array_equal(idx, ref_idx, err_msg=f"k={k} group={group} chunk={chunk_columns}")
            np.testing.assert_allclose(vals, ref_vals, rtol=1e-6)  # the product sums in BLAS's order: float32 rounding


@pytest.mark.parametrize("seed", range(6))
def test_product_skips_chunks_that_cannot_reach_the_top_k_and_stays_exact(seed):
    """Items whose biases spread far more than their factor scores (popular items, as trained models have):
    most users skip most chunks (``counts``), and the lists still equal the reference's, exact ties across
    chunks (integer biases, zero factors for some items: a tie on the bound itself) included, with seen items."""
    rng = np.random.default_rng(300 + seed)
    n_items, n_users, rank, k = 3000, 70, 4, 10
    u = rng.normal(size=(n_users, rank)).astype(np.float32)
    v = (0.3 * rng.normal(size=(n_items, rank))).astype(np.float32)
    b = rng.normal(scale=3.0, size=n_items).astype(np.float32)
    if seed % 2:  # exact ties: many items with the same bias and zero factors, every one reaching its bound
        b = np.round(b).astype(np.float32)
        v[rng.random(n_items) < 0.5] = 0.0
        u[5] = 0.0  # a user without factors: every item by its bias, ties everywhere
    seen = [rng.choice(n_items, size=int(rng.integers(0, 60)), replace=False) for _ in range(n_users)]
    seen[0] = np.argsort(-b, kind="stable")[:200]  # the most popular items seen: reached only in later chunks
    rows = np.repeat(np.arange(n_users), [len(x) for x in seen])
    cols = np.concatenate(seen).astype(np.int64)
    scores = topk.with_ones(u) @ topk.with_bias(v, b).T
    scores[rows, cols] = -np.inf
    chunks = topk.item_chunks(topk.with_bias(v, b), 8, 256)
    bounds = topk.chunk_bounds(np.linalg.norm(u, axis=1), chunks)
    stored = scores[:, chunks.column[chunks.column < n_items]]
    padded = np.full((n_users, len(chunks.factors) * chunks.columns), -np.inf, np.float32)
    padded[:, :n_items] = stored
    assert (padded.reshape(n_users, len(chunks.factors), -1).max(axis=2) <= bounds).all()
    for k_ in (1, k):
        counts = {}
        idx, vals = topk.top_k_product(topk.with_ones(u), chunks, k_, rows, cols, group=8, counts=counts)
        ref_idx, ref_vals = reference(scores, k_)
        np.testing.assert_array_equal(idx, ref_idx)
        np.testing.assert_allclose(vals, ref_vals, rtol=1e-6)  # the product sums in BLAS's order: float32 rounding
        assert counts["skipped"] > counts["computed"], counts  # most of the product skipped
    # A bound with no margin at all (a user without factors, items of bias 0): the chunks whose bound equals the
    # k-th score hold tied items of lower columns, and must be computed.
    b0 = -rng.integers(0, 3, n_items).astype(np.float32)
    b0[-1] = 1.0  # one item above the rest: the k-th score (0) is below the best one
    chunks0 = topk.item_chunks(topk.with_bias(v, b0), 8, 256)
    zero = np.zeros((3, rank), np.float32)
    idx, _ = topk.top_k_product(topk.with_ones(zero), chunks0, k, np.empty(0, np.int64), np.empty(0, np.int64), group=8)
    expected = np.concatenate([[n_items - 1], np.flatnonzero(b0 == 0)[:k - 1]])
    np.testing.assert_array_equal(idx, np.broadcast_to(expected, (3, k)))


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


def test_mlp_scoring_matches_the_keras_model():
    from recjob import config, models
    from recjob.models import keras_fit, mlp
    from recjob.models.base import ITEM_IN, USER_IN, TrainingData

    cfg = config.load(None, ["train.model=mlp", "train.factors=3", "train.mlp.layers=[5, 4]"]).train
    net = models.get("mlp").build(TrainingData("", "", 100, 6, 9, 3.5, 10), cfg)
    rng = np.random.default_rng(1)
    for name in (keras_fit.USER_BIAS, keras_fit.ITEM_BIAS):
        w = net.get_layer(name).get_weights()[0]
        net.get_layer(name).set_weights([rng.normal(size=w.shape).astype(np.float32)])
    out = net.get_layer("mlp_out")
    out.set_weights([rng.normal(size=w.shape).astype(np.float32) for w in out.get_weights()])
    f = keras_fit.factors(net)
    weights = mlp.load_weights(mlp.save_weights(mlp.dense_weights(net)))
    assert [w.shape for w, _ in weights] == [(6, 5), (5, 4), (4, 1)]
    users, items = np.repeat(np.arange(6), 9).astype(np.int32), np.tile(np.arange(9), 6).astype(np.int32)
    want = net.predict({USER_IN: users, ITEM_IN: items}, verbose=0).reshape(6, 9)
    layers = topk.layers_part(weights, f["item"])
    got = topk.layered_scores(f["user"], layers, max_cells=20) + f["item_bias"] + f["user_bias"][:, None] + 3.5
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)  # also in sub-blocks of 1 user (max_cells)
    seen = [np.array([0, 1]), np.array([], np.int64), np.array([8]), np.array([]), np.array([2]), np.array([3])]
    idx, _ = topk.score_block(f["user"], f["item"], f["item_bias"], seen, 4, layers)
    for r in range(6):
        ref = [c for c in np.argsort(-want[r], kind="stable") if c not in set(seen[r].tolist())][:4]
        assert idx[r].tolist() == ref


def test_arrow_scorer_blocks_seen_items_and_biases_like_score_block():
    """The executors' function (Arrow in and out, users in sub-blocks) against score_block on the whole batch:
    seen lists that cross sub-block boundaries, null lists (nothing seen), a user who has seen every item,
    user biases and the global mean added to the score."""
    import pandas as pd
    import pyarrow as pa

    from recjob import schema as S

    rng = np.random.default_rng(3)
    n_users, n_items, rank, k = 23, 300, 5, 7
    u, v = rng.normal(size=(n_users, rank)).astype(np.float32), rng.normal(size=(n_items, rank)).astype(np.float32)
    item_bias, user_bias = rng.normal(size=n_items).astype(np.float32), rng.normal(size=n_users).astype(np.float32)
    matrix = topk.item_matrix(pd.DataFrame({S.ITEM_IDX: np.arange(n_items, dtype=np.int32) + 1000,
                                            S.ITEM: [f"{i:05d}" for i in range(n_items)], "bias": item_bias,
                                            "factors": list(v)}))
    seen = [rng.choice(n_items, size=int(rng.integers(0, 40)), replace=False) for _ in range(n_users)]
    seen[4] = np.arange(n_items)
    cols = [None if r % 5 == 0 and r != 0 else s.tolist() for r, s in enumerate(seen)]
    batch = pa.RecordBatch.from_pydict({
        S.USER_IDX: pa.array(np.arange(n_users, dtype=np.int32)), S.USER: [f"u{r}" for r in range(n_users)],
        "bias": pa.array(user_bias), "factors": pa.array([list(map(float, f)) for f in u], pa.list_(pa.float32())),
        "cols": pa.array(cols, pa.list_(pa.int32()))})
    out = pa.Table.from_batches(list(topk.arrow_scorer(lambda: matrix, k, 4, 2.5)(iter([batch])))).to_pandas()
    want_idx, want_val = topk.score_block(u, v, item_bias, [np.array(c or [], np.int64) for c in cols], k)
    assert not (out[S.USER_IDX] == 4).any()  # nothing left to recommend
    for r in range(n_users):
        got = out[out[S.USER_IDX] == r].sort_values(S.RANK)
        ok = want_idx[r] >= 0
        assert got[S.RANK].tolist() == list(range(1, ok.sum() + 1))
        assert got[S.ITEM_IDX].tolist() == (want_idx[r][ok] + 1000).tolist()
        assert (got[S.USER] == f"u{r}").all()
        np.testing.assert_allclose(got[S.SCORE], want_val[r][ok] + user_bias[r] + 2.5, rtol=1e-5, atol=1e-5)
    arrays = batch.columns[:3] + [pa.array([[1.0, 2.0]] * n_users, pa.list_(pa.float32())), batch.column("cols")]
    short = pa.RecordBatch.from_arrays(arrays, names=batch.schema.names)
    with pytest.raises(ValueError, match="every user needs 5 factors"):
        list(topk.arrow_scorer(lambda: matrix, k, 4, 0.0)(iter([short])))


def test_laid_out_reuses_the_layout_of_the_same_matrix_only():
    """The executors' per-process layout: the same item matrix (the broadcast's array) is laid out once; another
    matrix gets its own (a stale layout would score the other matrix's items)."""
    rng = np.random.default_rng(7)
    first = topk.with_bias(rng.normal(size=(300, 4)).astype(np.float32), np.zeros(300, np.float32))
    second = first.copy()
    second[:, 0] += 1.0
    chunks, buf = topk.laid_out(first, 16)
    assert buf.size >= len(chunks.factors) * chunks.columns * 16
    again, buf_again = topk.laid_out(first, 16)
    assert again is chunks and buf_again is buf
    other, _ = topk.laid_out(second, 16)
    assert other is not chunks
    np.testing.assert_array_equal(other.factors, topk.item_chunks(second).factors)
    assert topk.laid_out(first, 16)[0] is not other
    assert topk.laid_out(first, 32)[1].size >= len(chunks.factors) * chunks.columns * 32
