"""The ALS implicit baseline's regParam grid: on every user for small data, on a user sample above
evaluate.als_grid_users, the chosen value then fitted on every user."""
import numpy as np
import pandas as pd

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
    rows = evaluate.evaluate_split(spark, S.VALIDATION, validation, train.select(S.USER_IDX, S.ITEM_IDX),
                                   {"popularity": evaluate.popularity_factors(train, users)}, n_items, cfg, 64)
    n_eval = users.join(validation.select(S.USER_IDX).distinct(), S.USER_IDX).count()
    assert next(v for _, _, metric, v in rows if metric == "users") == n_eval
    assert emitted.value == 5 * n_eval  # each evaluated user's 5 items, once


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
