"""The baselines: the ALS implicit regParam grid (on every user for small data, on a user sample above
evaluate.als_grid_users, the chosen value then fitted on every user), the ALS baselines on a user sample above
evaluate.als_users (every candidate then measured on that sample's users) or skipped (evaluate.baselines)."""
import numpy as np
import pandas as pd
import pytest

from recjob import schema as S
from recjob.config import EvaluateConfig
from recjob.stages import evaluate


def _frames(spark, n_users=300, n_items=40, rows=4000, seed=5):
    rng = np.random.default_rng(seed)
    pairs = pd.DataFrame({S.USER_IDX: rng.integers(0, n_users, rows).astype(np.int32),
                          S.ITEM_IDX: (rng.zipf(1.5, rows) % n_items).astype(np.int32)}).drop_duplicates()
    pairs[S.LABEL] = np.float32(4.0)
    held = rng.random(len(pairs)) < 0.2
    return spark.createDataFrame(pairs[~held]), spark.createDataFrame(pairs[held]), n_items


def test_the_grid_runs_on_a_user_sample_above_the_cap(spark):
    train, validation, n_items = _frames(spark)
    n_train_users = train.select(S.USER_IDX).distinct().count()
    common = dict(als_rank=4, als_iterations=3, als_implicit_regs=(0.1, 10.0), k=5)
    model, reg, grid, rows = evaluate.best_als_implicit(spark, train, validation, n_items,
                                                         EvaluateConfig(als_grid_users=0, **common), 64)
    assert set(grid) == {0.1, 10.0} and reg in grid and grid[reg] == max(grid.values())
    assert rows and {r[1] for r in rows} == {"als_implicit"}  # measured on every user: reused
    assert model.userFactors.count() == n_train_users

    model, reg, grid, rows = evaluate.best_als_implicit(spark, train, validation, n_items,
                                                         EvaluateConfig(als_grid_users=100, **common), 64)
    assert set(grid) == {0.1, 10.0} and grid[reg] == max(grid.values())
    assert rows == []  # chosen on the sample: the full fit is measured with the other candidates
    assert model.userFactors.count() == n_train_users  # the chosen regParam fitted on every user


def test_each_candidates_lists_are_scored_once(spark, monkeypatch):
    """The metrics and the coverage are two Spark jobs over the same lists: the scorer runs once for both."""
    train, validation, n_items = _frames(spark)
    users = train.select(S.USER_IDX).distinct()
    emitted = spark.sparkContext.accumulator(0)
    real_top = evaluate._top

    def counting_top(*args, **kwargs):
        recs = real_top(*args, **kwargs)

        def count(batches):
            for b in batches:
                emitted.add(b.num_rows)
                yield b
        return recs.mapInArrow(count, recs.schema)

    monkeypatch.setattr(evaluate, "_top", counting_top)
    cfg = EvaluateConfig(k=5, max_users=0)
    rows, _ = evaluate.evaluate_split(spark, S.VALIDATION, validation, train.select(S.USER_IDX, S.ITEM_IDX),
                                      {"popularity": evaluate.popularity_factors(train, users)}, n_items, cfg, 64)
    n_eval = users.join(validation.select(S.USER_IDX).distinct(), S.USER_IDX).count()
    assert next(v for _, _, metric, v in rows if metric == "users") == n_eval
    assert emitted.value == 5 * n_eval  # each evaluated user's 5 items, once

    # beside a champion, the model's lists just measured are reused: the champion's are the only new ones
    popularity = evaluate.popularity_factors(train, users)
    rows, kept = evaluate.evaluate_split(spark, S.VALIDATION, validation, train.select(S.USER_IDX, S.ITEM_IDX),
                                         {"model": popularity}, n_items, cfg, 64, keep="model")
    compared = {metric: v for _, name, metric, v in evaluate.champion_rows(
        spark, validation, train.select(S.USER_IDX, S.ITEM_IDX), kept, popularity, cfg, 64)}
    kept.unpersist()
    assert emitted.value == 3 * 5 * n_eval  # the model's lists once more (kept), the champion's once
    ndcg = next(v for _, _, metric, v in rows if metric == "ndcg@5")
    assert compared["users"] == n_eval and compared["ndcg@5_paired_diff"] == 0.0  # the same lists on both sides
    assert compared["model_ndcg@5"] == pytest.approx(ndcg) == compared["ndcg@5"]


def test_als_fits_with_the_configured_blocks(spark, caplog, monkeypatch):
    """evaluate.als_blocks: Spark's 10 by default (the same ALS on every machine); 0: the session's default
    parallelism. The blocks reach ALS and the log."""
    fitted = []

    class RecordingALS(evaluate.ALS):
        def fit(self, dataset, params=None):
            fitted.append((self.getNumUserBlocks(), self.getNumItemBlocks()))
            return super().fit(dataset, params)

    monkeypatch.setattr(evaluate, "ALS", RecordingALS)
    train, _, _ = _frames(spark)
    common = dict(als_rank=4, als_iterations=2)
    with caplog.at_level("INFO", logger="recjob.stages.evaluate"):
        evaluate.als_model(train, EvaluateConfig(**common), True, 1.0)
        evaluate.als_model(train, EvaluateConfig(als_blocks=0, **common), False, 1.0)
    parallelism = spark.sparkContext.defaultParallelism
    assert fitted == [(10, 10), (parallelism, parallelism)]
    assert "ALS implicit (rank 4, regParam 1, 2 iterations, 10 user and item blocks) fitted in" in caplog.text
    assert f"ALS explicit (rank 4, regParam 1, 2 iterations, {parallelism} user and item blocks)" in caplog.text


def _users(rows, split: str) -> dict:
    return {name: v for s, name, metric, v in rows if s == split and metric == evaluate.USERS}


def test_als_on_a_user_sample_and_every_candidate_measured_on_its_users(spark, caplog):
    """evaluate.als_users: the ALS baselines are fitted on a seeded sample of train users, and the model and every
    baseline are measured on the same held-out users, all of them in that sample; the note says so."""
    train, validation, n_items = _frames(spark)
    users = train.select(S.USER_IDX).distinct()
    model = evaluate.popularity_factors(train, users)  # any candidate with factors for every user
    frames = {S.TRAIN: train, S.VALIDATION: validation, S.TEST: validation}
    common = dict(als_rank=4, als_iterations=2, als_implicit_regs=(1.0,), k=5, max_users=0)
    rows, chosen = evaluate.evaluate_all(spark, frames, model, {}, EvaluateConfig(**common), 64)
    everyone = _users(rows, S.VALIDATION)
    assert set(everyone) == {"model", "popularity", "als_implicit"} and len(set(everyone.values())) == 1
    assert chosen["als_fitted_users"] is None and "on every train user" in chosen["baselines_note"]

    with caplog.at_level("INFO", logger="recjob.stages.evaluate"):
        rows, chosen = evaluate.evaluate_all(spark, frames, model, {}, EvaluateConfig(als_users=100, **common), 64)
    assert chosen["als_fitted_users"] == 100
    assert "a seeded sample of 100 train users (evaluate.als_users=100)" in chosen["baselines_note"]
    assert ("ALS explicit on a seeded sample" in chosen["baselines_note"]
            and "ALS implicit and ALS explicit" in chosen["baselines_note"])
    for split in (S.VALIDATION, S.TEST):
        sampled = _users(rows, split)
        assert set(sampled) == {"model", "popularity", "als_implicit"}
        assert len(set(sampled.values())) == 1 and 0 < sampled["model"] < everyone["model"]
    sample = evaluate.user_sample(users, 100, EvaluateConfig().seed)[0]
    in_sample = validation.join(sample, S.USER_IDX, "left_semi").select(S.USER_IDX).distinct().count()
    assert _users(rows, S.VALIDATION)["model"] == in_sample  # exactly the sample's held-out users
    assert {name for _, name, metric, _ in rows if metric == "rmse"} == {"global_mean", "bias", "als"}


def test_baselines_can_be_skipped_and_popularity_stays(spark):
    train, validation, n_items = _frames(spark)
    model = evaluate.popularity_factors(train, train.select(S.USER_IDX).distinct())
    frames = {S.TRAIN: train, S.VALIDATION: validation}
    rows, chosen = evaluate.evaluate_all(spark, frames, model, {}, EvaluateConfig(k=5, baselines=()), 64,
                                         rating_model=False)
    assert {name for _, name, _, _ in rows} == {"model", "popularity", "global_mean", "bias"}
    assert "ALS implicit and ALS explicit not fitted (evaluate.baselines)" in chosen["baselines_note"]


def test_evaluate_baselines_names_are_checked():
    from recjob import config
    from recjob.config import ConfigError

    assert config.load(None, ["evaluate.baselines=[]"]).evaluate.baselines == ()
    assert config.load(None, ["evaluate.baselines=[als_implicit]"]).evaluate.baselines == ("als_implicit",)
    with pytest.raises(ConfigError, match="evaluate.baselines: unknown alx"):
        config.load(None, ["evaluate.baselines=[alx]"])
    with pytest.raises(ConfigError, match="evaluate.als_users"):
        config.load(None, ["evaluate.als_users=-1"])
