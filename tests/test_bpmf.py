"""The Gibbs sampler of recjob.bpmf against dense reference formulas and on planted data."""
import math

import numpy as np
import pytest

from recjob import bpmf


def _ratings(n_users=120, n_items=60, k=3, per_user=25, noise=0.3, seed=0):
    """Ratings from a planted low-rank + bias model; returns (train, test) arrays and the noise sd."""
    rng = np.random.default_rng(seed)
    p, q = rng.normal(0, 0.8, (n_users, k)), rng.normal(0, 0.8, (n_items, k))
    bu, bi = rng.normal(0, 0.5, n_users), rng.normal(0, 0.5, n_items)
    users = np.repeat(np.arange(n_users), per_user)
    items = np.concatenate([rng.choice(n_items, per_user, replace=False) for _ in range(n_users)])
    r = 3.5 + bu[users] + bi[items] + np.einsum("ij,ij->i", p[users], q[items]) + rng.normal(0, noise, len(users))
    test = rng.random(len(users)) < 0.2
    return (users[~test], items[~test], r[~test]), (users[test], items[test], r[test])


def test_cg_solves_spd_systems_column_by_column():
    rng = np.random.default_rng(1)
    m = rng.normal(size=(40, 40))
    a = m @ m.T + 0.5 * np.eye(40)
    rhs = rng.normal(size=(40, 3))
    x = bpmf.cg(lambda v: a @ v, rhs, np.zeros_like(rhs), 200, tol=1e-10)
    np.testing.assert_allclose(x, np.linalg.solve(a, rhs), atol=1e-6)


def _dense_f(side: bpmf.Side) -> np.ndarray:
    return side.f.toarray()


def test_implicit_matrix_rows_are_normalised_rated_items():
    users, items = np.array([0, 0, 1, 2, 2, 2]), np.array([1, 2, 0, 0, 1, 2])
    side = bpmf.Side(users, items, 4, 3)
    f = _dense_f(side)
    np.testing.assert_allclose(f[0], [0, 1 / math.sqrt(2), 1 / math.sqrt(2)])
    np.testing.assert_allclose(f[2], np.full(3, 1 / math.sqrt(3)))
    assert not f[3].any()  # a user without rows has no implicit feedback
    b = np.arange(6.0).reshape(3, 2)
    np.testing.assert_allclose(side.f_times(b), f @ b)
    np.testing.assert_allclose(side.ft_times(np.ones((4, 2))), f.T @ np.ones((4, 2)))


def test_vector_draws_follow_the_conjugate_posterior():
    """Mean and covariance of many draws of one user's vector against the closed form."""
    rng = np.random.default_rng(2)
    d, n_items = 3, 8
    side = bpmf.Side(np.zeros(n_items, np.int64), np.arange(n_items), 1, n_items)
    design = np.concatenate([rng.normal(size=(n_items, d - 1)), np.ones((n_items, 1))], 1)
    y = rng.normal(size=n_items)
    lam = np.array([[2.0, 0.3, 0.0], [0.3, 1.5, 0.2], [0.0, 0.2, 1.0]])
    prior = np.array([[1.5, -2.0, 2.5]])  # strong enough to matter next to the data
    alpha = 0.3
    draws = np.array([side.draw(rng, y, design, prior, lam, alpha)[0] for _ in range(6000)])
    precision = lam + alpha * design.T @ design
    cov = np.linalg.inv(precision)
    mean = cov @ (alpha * design.T @ y + lam @ prior[0])
    np.testing.assert_allclose(draws.mean(0), mean, atol=0.03)
    np.testing.assert_allclose(np.cov(draws.T), cov, atol=0.03)


def test_link_draws_follow_the_matrix_normal_posterior():
    """B | X ~ vec-normal with precision Lambda (x) (F'F + lambda_B I) and mean (F'F + lambda_B I)^-1 F'(X - mu)."""
    rng = np.random.default_rng(3)
    n, m, d = 12, 4, 2
    users = np.repeat(np.arange(n), 2)
    items = rng.integers(0, m, len(users))
    side = bpmf.Side(users, items, n, m)
    f = _dense_f(side)
    x, mu = rng.normal(size=(n, d)), np.array([0.2, -0.1])
    lam = np.array([[1.5, 0.4], [0.4, 0.8]])
    link = bpmf.Link(side, d, cg_iterations=100)
    draws = []
    for _ in range(4000):
        link.lam = 0.7  # the draw also resamples lambda_B; hold it for the check
        link.draw(rng, x, mu, lam)
        draws.append(link.b.copy())
    draws = np.array(draws)
    a = f.T @ f + 0.7 * np.eye(m)
    np.testing.assert_allclose(draws.mean(0), np.linalg.solve(a, f.T @ (x - mu)), atol=0.05)
    # Cov(B[:, j], B[:, l]) = (Lambda^-1)[j, l] * A^-1
    cov = np.cov(draws.reshape(len(draws), -1).T)  # row-major vec: index = row * d + col
    expected = np.kron(np.linalg.inv(a), np.linalg.inv(lam))
    np.testing.assert_allclose(cov, expected, atol=0.05)


@pytest.mark.parametrize("implicit", [True, False])
def test_sampler_recovers_planted_ratings(implicit):
    (u, i, r), (tu, ti, tr) = _ratings()
    sweeps = []
    f = bpmf.sample(u, i, r, 120, 60, k=3, burn_in=20, samples=20, thin=2, seed=5, implicit=implicit,
                    on_sweep=lambda state, keep: sweeps.append(keep) or {"extra": 1.0})
    assert f["user"].shape == (120, 3 * 20) and f["item"].shape == (60, 3 * 20)
    assert len(sweeps) == 60 and sum(sweeps) == 20 and not any(sweeps[:20])
    assert [h["epoch"] for h in f["sweep_log"]] == list(range(1, 61)) and f["sweep_log"][0]["extra"] == 1.0
    rmse = math.sqrt(np.mean((bpmf.predict(f, tu, ti) - tr) ** 2))
    bias_only = dict(f, user=np.zeros_like(f["user"]))
    rmse_bias = math.sqrt(np.mean((bpmf.predict(bias_only, tu, ti) - tr) ** 2))
    assert rmse < 0.5 and rmse < 0.6 * rmse_bias, (rmse, rmse_bias)


def test_export_is_the_average_of_the_kept_samples():
    (u, i, r), _ = _ratings(n_users=30, n_items=20, per_user=10)
    kept = []

    def record(state, keep):
        if keep:
            kept.append(bpmf.predict(state, np.arange(30).repeat(20), np.tile(np.arange(20), 30)))
        return {}

    f = bpmf.sample(u, i, r, 30, 20, k=2, burn_in=3, samples=5, thin=2, seed=0, on_sweep=record)
    assert len(kept) == 5
    np.testing.assert_allclose(bpmf.predict(f, np.arange(30).repeat(20), np.tile(np.arange(20), 30)),
                               np.mean(kept, axis=0), atol=1e-4)


def test_same_seed_same_model_and_save_load_roundtrip():
    (u, i, r), _ = _ratings(n_users=30, n_items=20, per_user=10)
    a = bpmf.sample(u, i, r, 30, 20, k=2, burn_in=2, samples=3, thin=1, seed=9)
    b = bpmf.sample(u, i, r, 30, 20, k=2, burn_in=2, samples=3, thin=1, seed=9)
    np.testing.assert_array_equal(a["user"], b["user"])
    back = bpmf.load(bpmf.save(a))
    assert back["mean"] == pytest.approx(a["mean"])
    for key in ("user", "item", "user_bias", "item_bias"):
        np.testing.assert_array_equal(back[key], a[key])


@pytest.mark.parametrize("n_items", [50, 7])  # 7: fewer items than columns, the item Gram matrix is singular
def test_compress_gives_the_best_low_rank_product(n_items):
    rng = np.random.default_rng(4)
    user, item = rng.normal(size=(40, 12)).astype(np.float32), rng.normal(size=(n_items, 12)).astype(np.float32)
    full = user.astype(np.float64) @ item.T.astype(np.float64)
    u, s, vt = np.linalg.svd(full)
    for rank in (3, 12):
        cu, ci = bpmf.compress(user, item, rank, chunk=16)
        r = min(rank, n_items)
        assert cu.shape == (40, r) and ci.shape == (n_items, r)
        np.testing.assert_allclose(cu @ ci.T, (u[:, :r] * s[:r]) @ vt[:r], atol=1e-3)


def test_cholesky_retries_a_borderline_matrix_and_names_a_diverged_one():
    v = np.array([[1.0, 1.0], [1.0, 1.0 - 1e-15]])[None]  # singular to rounding: plain Cholesky refuses it
    with pytest.raises(np.linalg.LinAlgError):
        np.linalg.cholesky(v)
    assert np.isfinite(bpmf._cholesky(v)).all()
    with pytest.raises(FloatingPointError, match="diverged"):
        bpmf._cholesky(np.array([[[1.0, 2.0], [2.0, 1.0]]]))


def test_a_diverged_sampler_stops_with_a_clear_error():
    (u, i, r), _ = _ratings(n_users=30, n_items=20, per_user=10)
    r = r.copy()
    r[0] = np.inf  # e.g. a corrupt rating
    with pytest.raises(FloatingPointError, match="not finite after sweep 1"):
        bpmf.sample(u, i, r, 30, 20, k=2, burn_in=2, samples=2, thin=1, seed=0)
