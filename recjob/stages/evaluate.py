"""evaluate: the model against baselines on the same split, recorded per ds; the publish gate reads it.

Rating metrics (RMSE, MAE) and top-k ranking metrics (HR, Precision, Recall, NDCG, MAP, coverage) over the
full item catalogue, with the user's earlier items excluded, for the model and for: global mean, user+item
bias, item popularity, Spark MLlib ALS explicit (rating) and ALS implicit (ranking). Everything is computed
in Spark; the top-k lists come from the same blocked scoring the score stage uses.

For the validation split the excluded items are the user's train items; for the test split, train and
validation items. Relevant items are the held-out items of the split.
"""
from __future__ import annotations

import json
import logging
import time

import numpy as np
import pandas as pd
from pyspark.ml.recommendation import ALS
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from recjob import artifacts, metrics, models, neighbours, retention, topk, warehouse
from recjob import report as run_report
from recjob import schema as S
from recjob.artifacts import Artifacts
from recjob.config import Config, EvaluateConfig
from recjob.progress import stage_timer
from recjob.names import ALS_EXPLICIT, ALS_IMPLICIT, CHAMPION, PAIRED_DIFF, POPULARITY, SE, USERS, Table

log = logging.getLogger(__name__)

RANKING = ("hr", "precision", "recall", "ndcg", "map", "coverage")


def _top(spark, users_df: DataFrame, items_pdf: pd.DataFrame, seen: DataFrame, k: int, block: int,
         layers: list | None = None) -> DataFrame:
    matrix = topk.item_matrix(items_pdf, layers)
    seen_cols = topk.seen_columns(seen, topk.item_columns(spark, matrix, S.ITEM_IDX), S.ITEM_IDX)
    return topk.recommend(users_df, seen_cols, matrix, k, block, 0.0)


def _index_items(pdf: pd.DataFrame) -> pd.DataFrame:
    """Item frames keyed by index: the 'asin' used for tie-breaks is the zero-padded index."""
    out = pdf.copy()
    out[S.ITEM] = out[S.ITEM_IDX].map(lambda i: f"{int(i):012d}")
    return out


def popularity_factors(train: DataFrame, users: DataFrame) -> tuple[DataFrame, pd.DataFrame]:
    """Popularity as a 1-factor model: user factor 1, item factor = number of train ratings."""
    counts = train.groupBy(S.ITEM_IDX).agg(F.count(F.lit(1)).cast("float").alias("n")).toPandas()
    items = pd.DataFrame({S.ITEM_IDX: counts[S.ITEM_IDX], "bias": np.float32(0),
                          "factors": [np.array([v], np.float32) for v in counts["n"]]})
    u = users.select(S.USER_IDX, F.lit("").alias(S.USER), F.lit(0.0).cast("float").alias("bias"),
                     F.array(F.lit(1.0).cast("float")).alias("factors"))
    return u, _index_items(items)


def als_model(train: DataFrame, cfg: EvaluateConfig, implicit: bool, reg: float):
    """Spark MLlib ALS on the train split. Needs a checkpoint directory (``checkpoint_dir``): without one the
    lineage of every iteration piles up and deserialising a task can overflow the JVM stack."""
    blocks = als_blocks(train.sparkSession, cfg)
    als = ALS(rank=cfg.als_rank, regParam=reg, numUserBlocks=blocks, numItemBlocks=blocks,
              maxIter=cfg.als_iterations, implicitPrefs=implicit, alpha=cfg.als_alpha, seed=cfg.seed,
              userCol=S.USER_IDX, itemCol=S.ITEM_IDX, ratingCol=S.LABEL, coldStartStrategy="nan",
              nonnegative=False, checkpointInterval=5)
    data = train.withColumn(S.LABEL, F.lit(1.0)) if implicit else train
    start = time.monotonic()
    model = als.fit(data)
    log.info("evaluate: ALS %s (rank %d, regParam %g, %d iterations, %d user and item blocks) fitted in %.1f s",
             "implicit" if implicit else "explicit", cfg.als_rank, reg, cfg.als_iterations, blocks,
             time.monotonic() - start)
    return model


def als_blocks(spark: SparkSession, cfg: EvaluateConfig) -> int:
    """ALS's user and item blocks: evaluate.als_blocks, or with 0 the session's default parallelism."""
    return cfg.als_blocks or spark.sparkContext.defaultParallelism


def best_als_implicit(spark: SparkSession, train: DataFrame, validation: DataFrame | None, n_items: int,
                      cfg: EvaluateConfig, block: int) -> tuple:
    """ALS implicit fitted once per regParam of cfg.als_implicit_regs; returns (model, regParam,
    {regParam: validation NDCG@k}, the chosen model's validation rows named "als_implicit"), the one with the
    best validation NDCG@k chosen. Without a validation split or with one regParam: the first, no rows.

    With more train users than cfg.als_grid_users (> 0), the grid is fitted and compared on a seeded sample of
    that many users (their train and validation rows) and only the chosen regParam is fitted on the whole train
    split (its validation rows are then measured like the other candidates': none returned here)."""
    regs = list(cfg.als_implicit_regs)
    if validation is None or len(regs) == 1:
        return als_model(train, cfg, True, regs[0]), regs[0], {}, []
    grid_train, grid_validation = train, validation
    sample, subsampled = user_sample(train.select(S.USER_IDX).distinct(), cfg.als_grid_users, cfg.seed,
                                     "evaluate.als_grid_users")
    if subsampled:
        sample = sample.cache()  # a seeded sort of every train user: computed once, not in every use below
        grid_train = train.join(sample, S.USER_IDX, "left_semi").cache()
        grid_validation = validation.join(sample, S.USER_IDX, "left_semi")
        log.info("evaluate: the ALS implicit regParam grid on those users, the chosen value then on every user")
    seen = grid_train.select(S.USER_IDX, S.ITEM_IDX)
    best, scores = None, {}
    for reg in regs:
        model = als_model(grid_train, cfg, True, reg)
        rows, _ = evaluate_split(spark, S.VALIDATION, grid_validation, seen,
                                 {f"als_implicit(reg={reg:g})": als_factors(model)}, n_items, cfg, block)
        scores[reg] = next(value for _, _, metric, value in rows if metric == f"ndcg@{cfg.k}")
        if best is None or scores[reg] > scores[best[1]]:
            best = (model, reg, [(split, "als_implicit", metric, value) for split, _, metric, value in rows])
    log.info("evaluate: ALS implicit regParam %g chosen on validation NDCG@%d (%s)", best[1], cfg.k,
             ", ".join(f"{r:g}: {v:.4f}" for r, v in scores.items()))
    if subsampled:
        grid_train.unpersist()
        sample.unpersist()
        return als_model(train, cfg, True, best[1]), best[1], scores, []
    return best[0], best[1], scores, best[2]


def checkpoint_dir(spark: SparkSession, cfg: Config, ds: str) -> str | None:
    """Point Spark's checkpoints at a folder under data_dir (returned, to delete after the stage), unless the
    deployment configured spark.checkpoint.dir."""
    if spark.conf.get("spark.checkpoint.dir", None):
        return None
    path = cfg.ds_path("checkpoints", ds)
    spark.sparkContext.setCheckpointDir(path)
    return path


def als_factors(model) -> tuple[DataFrame, pd.DataFrame]:
    u = model.userFactors.select(F.col("id").cast("int").alias(S.USER_IDX), F.lit("").alias(S.USER),
                                 F.lit(0.0).cast("float").alias("bias"), F.col("features").alias("factors"))
    items = model.itemFactors.select(F.col("id").cast("int").alias(S.ITEM_IDX), F.col("features").alias("factors")).toPandas()
    items["bias"] = np.float32(0)
    items["factors"] = items["factors"].map(lambda v: np.asarray(v, np.float32))
    return u, _index_items(items)


def model_factors(spark: SparkSession, cfg: Config, ds: str) -> tuple[DataFrame, pd.DataFrame]:
    u = warehouse.read_partition(spark, cfg.table(Table.USER_FACTORS), ds).select(
        S.USER_IDX, F.lit("").alias(S.USER), "bias", "factors")
    items = warehouse.read_partition(spark, cfg.table(Table.ITEM_FACTORS), ds).select(S.ITEM_IDX, "bias", "factors").toPandas()
    return u, _index_items(items)


def relevant_pairs(heldout: DataFrame, cfg: EvaluateConfig) -> DataFrame:
    """(user_idx, item_idx) of the held-out items that count as relevant (evaluate.relevance_threshold)."""
    if cfg.relevance_threshold > 0:
        heldout = heldout.where(F.col(S.LABEL) >= cfg.relevance_threshold)
    return heldout.select(S.USER_IDX, S.ITEM_IDX)


def champion_candidate(spark: SparkSession, cfg: Config, ds: str, store: Artifacts) -> tuple[dict, tuple] | None:
    """The champion (retention.champion_ds: the model published for the latest earlier ds) as a candidate, from
    its published copy: ({"ds", "model"}, (users frame, items pdf, scoring layers)); None without one. Its user
    factors are those it was published with, its items those it knew: today's new items are not in its lists,
    today's new users not in the comparison."""
    found = retention.champion_ds(cfg, spark, ds)
    if found is None:
        log.info("evaluate: no champion (no model published for a ds before %s): the gate compares with the "
                 "baselines alone", ds)
        return None
    copy = artifacts.published_dir(cfg, found)
    paths = {t: artifacts.saved_table(copy, t) for t in (Table.TRAINING_RUNS, Table.USER_FACTORS, Table.ITEM_FACTORS)}
    missing = [p for p in paths.values() if not warehouse.path_exists(spark, p)]
    if missing:
        log.warning("evaluate: the champion's copy (ds=%s) lacks %s: not compared", found, ", ".join(missing))
        return None
    name = spark.read.parquet(paths[Table.TRAINING_RUNS]).first()["model"]
    if name not in models.KINDS:
        log.warning("evaluate: the champion (ds=%s) is a %r model, a kind this version does not know: not compared",
                    found, name)
        return None
    users = spark.read.parquet(paths[Table.USER_FACTORS]).select(S.USER_IDX, F.lit("").alias(S.USER), "bias", "factors")
    items = _index_items(spark.read.parquet(paths[Table.ITEM_FACTORS]).select(S.ITEM_IDX, "bias", "factors").toPandas())
    layers = models.get(name).scoring_layers(
        lambda file: store.get_bytes(f"{artifacts.saved_folder(copy, 'models')}/{file}"))
    log.info("evaluate: the champion is the %s model published for ds=%s", name, found)
    return {"ds": found, "model": name}, (users, items, layers)


def champion_rows(spark: SparkSession, heldout: DataFrame, seen: DataFrame, model_recs: DataFrame,
                  champion: tuple, cfg: EvaluateConfig, block: int) -> list[tuple]:
    """The model (its validation lists from evaluate_split, ``model_recs``) and the champion on the same
    validation users (the evaluated users the champion has factors for), with the same exclusions: each one's
    NDCG@k there, their per-user difference (model - champion) and its paired standard error, the figures
    gate.max_drop_vs_published reads."""
    relevant = relevant_pairs(heldout, cfg)
    eval_users = user_sample(relevant.select(S.USER_IDX).distinct(), cfg.max_users, cfg.seed)[0]
    eval_users = eval_users.join(champion[0].select(S.USER_IDX), S.USER_IDX, "left_semi").cache()
    seen = seen.join(eval_users, S.USER_IDX, "left_semi").cache()
    try:
        relevant = relevant.join(eval_users, S.USER_IDX, "left_semi")
        users, items, *layers = champion
        champion_recs = _top(spark, users.join(eval_users, S.USER_IDX, "left_semi"), items, seen, cfg.k, block, *layers)
        p = metrics.paired_difference(model_recs.join(eval_users, S.USER_IDX, "left_semi"), champion_recs, relevant,
                                      cfg.k)
    finally:
        seen.unpersist()
        eval_users.unpersist()
    ndcg = f"ndcg@{cfg.k}"
    log.info("evaluate validation: the model's NDCG@%d %.4f, the champion's %.4f on the same %d users; difference "
             "%+.4f (paired SE %.4f)", cfg.k, p["a"], p["b"], p["users"], p["diff"], p["se"])
    return [(S.VALIDATION, CHAMPION, ndcg, p["b"]), (S.VALIDATION, CHAMPION, f"model_{ndcg}", p["a"]),
            (S.VALIDATION, CHAMPION, f"{ndcg}{PAIRED_DIFF}", p["diff"]),
            (S.VALIDATION, CHAMPION, f"{ndcg}{PAIRED_DIFF}{SE}", p["se"]),
            (S.VALIDATION, CHAMPION, USERS, float(p["users"]))]


def evaluate_split(spark: SparkSession, split: str, heldout: DataFrame, seen: DataFrame, candidates: dict,
                   n_items: int, cfg: EvaluateConfig, block: int,
                   keep: str = "") -> tuple[list[tuple], DataFrame | None]:
    """Ranking metrics of every candidate (name -> (users frame, items pdf[, scoring layers])) on one split; and
    the top-k lists of the candidate named ``keep`` (cached: the caller unpersists them), else None."""
    rows, kept = [], None
    relevant = relevant_pairs(heldout, cfg)
    # cached: every candidate's pass reads the same users, and the exclusions of those users only (else the seeded
    # sample and the grouping of the seen items are computed again for every candidate)
    eval_users = user_sample(relevant.select(S.USER_IDX).distinct(), cfg.max_users, cfg.seed)[0].cache()
    relevant = relevant.join(eval_users, S.USER_IDX, "left_semi")
    seen = seen.join(eval_users, S.USER_IDX, "left_semi").cache()
    try:
        for name, (users_df, items_pdf, *layers) in candidates.items():
            users_df = users_df.join(eval_users, S.USER_IDX, "left_semi")
            recs = _top(spark, users_df, items_pdf, seen, cfg.k, block, *layers).select(S.USER_IDX, S.ITEM_IDX, S.RANK)
            if name == keep:
                recs = kept = recs.cache()
            m = metrics.ranking_metrics(recs, relevant, cfg.k, n_items)
            log.info("evaluate %s %s: NDCG@%d %.4f HR %.4f P %.4f R %.4f MAP %.4f coverage %.3f (%d users)", split,
                     name, cfg.k, m["ndcg"], m["hr"], m["precision"], m["recall"], m["map"], m["coverage"], m["users"])
            rows += [(split, name, f"{metric}@{cfg.k}" if metric != "coverage" else metric, float(m[metric]))
                     for metric in RANKING]
            rows += [(split, name, f"{metric}@{cfg.k}{SE}", float(m[f"{metric}_se"])) for metric in RANKING[:-1]]
            rows.append((split, name, USERS, float(m["users"])))
    finally:
        seen.unpersist()
        eval_users.unpersist()
    return rows, kept


def neighbour_rows(split: str, heldout: DataFrame, last: DataFrame, table: DataFrame, n_items: int,
                   cfg: EvaluateConfig) -> list[tuple]:
    """The item-to-item figure of each method in ``table`` (the ``neighbours`` partition) on one split: for each
    evaluated user, the neighbours of the user's last train item (``last``) as a top-k list, judged against the
    user's held-out items like the model's lists, with standard errors."""
    rows = []
    relevant = heldout.select(S.USER_IDX, S.ITEM_IDX).join(last.select(S.USER_IDX), S.USER_IDX, "left_semi")
    eval_users = user_sample(relevant.select(S.USER_IDX).distinct(), cfg.max_users, cfg.seed)[0].cache()
    relevant = relevant.join(eval_users, S.USER_IDX, "left_semi")
    try:
        for method in [r["method"] for r in table.select("method").distinct().orderBy("method").collect()]:
            recs = neighbours.ranking_inputs(table, last.join(eval_users, S.USER_IDX, "left_semi"), method)
            m = metrics.ranking_metrics(recs, relevant, cfg.k, n_items)
            name = neighbours.evaluated_name(method)
            log.info("evaluate %s %s (the last train item's neighbours): NDCG@%d %.4f (+-%.4f) HR %.4f (+-%.4f), "
                     "%d users", split, name, cfg.k, m["ndcg"], m["ndcg_se"], m["hr"], m["hr_se"], m["users"])
            rows += [(split, name, f"{metric}@{cfg.k}", float(m[metric])) for metric in ("hr", "ndcg")]
            rows += [(split, name, f"{metric}@{cfg.k}{SE}", float(m[f"{metric}_se"])) for metric in ("hr", "ndcg")]
            rows.append((split, name, USERS, float(m["users"])))
    finally:
        eval_users.unpersist()
    return rows


def user_sample(users: DataFrame, max_users: int, seed: int,
                setting: str = "evaluate.max_users") -> tuple[DataFrame, bool]:
    """(``users`` (user_idx), False), or when there are more than ``max_users`` (> 0), (the ``max_users`` of them
    first in a seeded hash order, True): the same users whatever the partitioning, for every candidate and run."""
    if not max_users:
        return users, False
    n = users.count()
    if n <= max_users:
        return users, False
    log.info("evaluate: a seeded sample of %d of %d users (%s)", max_users, n, setting)
    key = F.xxhash64(S.USER_IDX, F.lit(seed))
    return users.orderBy(key, S.USER_IDX).limit(max_users), True


def rating_rows(split: str, train: DataFrame, heldout: DataFrame, als_explicit, model_result: dict,
                als_heldout: DataFrame | None = None) -> list[tuple]:
    """RMSE and MAE of the global mean, the bias baseline, ALS explicit (unless None; on ``als_heldout``, the
    held-out rows of the users it was fitted on, by default all) and the model (if it predicts ratings) on a
    held-out split."""
    base = metrics.baseline_errors(train, heldout)
    mu = base["global_mean"]
    rows = [(split, "global_mean", "rmse", base["global_mean_rmse"]), (split, "global_mean", "mae", base["global_mean_mae"]),
            (split, "bias", "rmse", base["bias_rmse"]), (split, "bias", "mae", base["bias_mae"])]
    if als_explicit is not None:
        pred = als_explicit.transform(heldout if als_heldout is None else als_heldout).withColumn(
            "prediction", F.when(F.isnan("prediction"), F.lit(mu)).otherwise(F.col("prediction")))
        a_rmse, a_mae = metrics.rmse_mae(pred, "prediction")
        rows += [(split, "als", "rmse", a_rmse), (split, "als", "mae", a_mae)]
    key = "val" if split == S.VALIDATION else "test"
    for metric in ("rmse", "mae"):
        if model_result.get(f"{key}_{metric}") is not None:
            rows.append((split, "model", metric, float(model_result[f"{key}_{metric}"])))
    return rows


def run(cfg: Config, spark: SparkSession, ds: str) -> dict:
    """Read everything (shards, factors, the model's files, the report's items and epoch log), compute every
    candidate's metrics, then write the ``evaluation`` partition and the report."""
    with stage_timer("evaluate", ds) as record:
        e, store = cfg.evaluate, Artifacts(cfg, spark, ds)
        # ---- read
        stats = {r[S.SPLIT]: r.asDict() for r in warehouse.read_partition(spark, cfg.table(Table.SHARDS), ds).collect()}
        frames = {s: spark.read.parquet(stats[s]["path"]).cache() for s in S.SPLITS if stats[s]["rows"]}
        run_row = warehouse.read_partition(spark, cfg.table(Table.TRAINING_RUNS), ds).first()
        kind = models.get(run_row["model"])
        model = (*model_factors(spark, cfg, ds), kind.scoring_layers(store.load_model_file))
        test_model = None
        encoder = kind.history_encoder(store.load_model_file)
        if encoder is not None and S.TEST in frames:  # tested from everything before the test item
            if not warehouse.path_exists(spark, store.items_before_test):
                raise warehouse.MissingInputError(f"evaluate: {store.items_before_test} is missing (shards of an "
                                                  f"older version): run the shards stage again for ds={ds}")
            test_users = topk.encoded_users(model[0], spark.read.parquet(store.items_before_test), encoder)
            test_model = (test_users, *model[1:])
        report_inputs = (report_items(spark, cfg, ds, frames[S.TRAIN]), store.read_epoch_log()["epoch_log"])
        similar = (warehouse.read_partition(spark, cfg.table(Table.NEIGHBOURS), ds)
                   if warehouse.partition_exists(spark, cfg.table(Table.NEIGHBOURS), ds) else None)
        n_index = warehouse.read_partition(spark, cfg.table(Table.ITEM_INDEX), ds).count()
        last = (neighbours.last_items(spark.read.parquet(store.item_histories), n_index).cache()
                if similar is not None and warehouse.path_exists(spark, store.item_histories) else None)
        champion = champion_candidate(spark, cfg, ds, store) if S.VALIDATION in frames else None
        # ---- compute
        checkpoints = checkpoint_dir(spark, cfg, ds)
        try:
            rows, chosen = evaluate_all(spark, frames, model, json.loads(run_row["result"]), e, cfg.score.block_users,
                                        test_model, rating_model=kind.predicts_ratings,
                                        champion=champion[1] if champion else None)
        finally:
            if checkpoints:  # after every use of the ALS factors
                warehouse.delete_path(spark, checkpoints)
        if last is not None:  # the item-to-item figure of each neighbours method
            for split in (S.VALIDATION, S.TEST):
                if split in frames:
                    rows += neighbour_rows(split, frames[split], last, similar, n_index, e)
            last.unpersist()
        explicit_reg = e.als_reg if kind.predicts_ratings else None  # ALS explicit: fitted for rating models only
        als = {"rank": e.als_rank, "reg": explicit_reg, "implicit_regs": e.als_implicit_regs, "alpha": e.als_alpha,
               "iterations": e.als_iterations, "blocks": als_blocks(spark, e), "seed": e.seed, **chosen}
        settings = json.dumps({"k": e.k, "max_users": e.max_users, "als": als, "bias_reg": metrics.BIAS_REG, "model": kind.name,
                               "relevance_threshold": e.relevance_threshold,
                               "champion": champion[0] if champion else None})
        # ---- write
        table = spark.createDataFrame([(*r, settings) for r in rows],
                                      "split string, model string, metric string, value double, settings string")
        n = warehouse.write_partition(table, cfg.table(Table.EVALUATION), ds)
        record["wrote"] = {cfg.table(Table.EVALUATION): n}
        record["metrics"] = summary(rows)
        items_pdf, epoch_log = report_inputs
        notes = [chosen["baselines_note"], champion_note(rows, champion[0] if champion else None, e.k)]
        files = run_report.render(ds, kind.name, record["metrics"], epoch_log, items_pdf, e.k, notes=notes)
        record["wrote"]["report"] = store.put_report(files) + "/report.md"
        log.info("evaluate: report at %s", record["wrote"]["report"])
        for f in frames.values():
            f.unpersist()
    return record


def evaluate_all(spark: SparkSession, frames: dict, model: tuple, result: dict, e: EvaluateConfig,
                 block: int, test_model: tuple | None = None, rating_model: bool = True,
                 champion: tuple | None = None) -> tuple[list[tuple], dict]:
    """Evaluation rows (split, model, metric, value) of the model (its users frame, items pdf and scoring
    layers) and the baselines on each held-out split, and the settings chosen on the way (ALS implicit regParam,
    the users the ALS baselines were fitted on, ``baselines_note``: the report's sentence about them).
    ``test_model``: the model as tested, when its user factors depend on the items before the held-out one (a
    sequence model: from the train and validation items; ``model`` has them from the train items).
    ALS explicit, a rating baseline, is fitted for a ``rating_model`` only: a ranking model has no RMSE to
    compare with it, and at the full category it is one of the stage's longest fits. The ALS baselines are
    those of evaluate.baselines, fitted on at most evaluate.als_users train users; when that is a sample,
    every candidate's ranking metrics are measured on held-out users of the sample (the same users for all).
    ``champion``: the model published for an earlier ds (champion_candidate), compared with the model on the
    validation split (champion_rows)."""
    train = frames[S.TRAIN]
    users = train.select(S.USER_IDX).distinct()
    n_items = train.select(S.ITEM_IDX).distinct().count()
    fit_implicit = ALS_IMPLICIT in e.baselines
    fit_explicit = ALS_EXPLICIT in e.baselines and rating_model
    if ALS_EXPLICIT in e.baselines and not rating_model:
        log.info("evaluate: no ALS explicit (a rating baseline): the model ranks, it predicts no ratings")
    sampled = False
    if fit_implicit or fit_explicit:
        fit_users, sampled = user_sample(users, e.als_users, e.seed, "evaluate.als_users")
    n_fit = None
    if sampled:
        fit_users = fit_users.cache()
        n_fit = fit_users.count()
        als_train = train.join(fit_users, S.USER_IDX, "left_semi").cache()
        log.info("evaluate: the ALS baselines fitted on those %d users; every candidate measured on their held-out "
                 "items", n_fit)
    else:
        als_train = train

    def ranked(heldout: DataFrame | None) -> DataFrame | None:  # the held-out rows the ranking metrics use
        return heldout.join(fit_users, S.USER_IDX, "left_semi") if sampled and heldout is not None else heldout

    als_exp = als_model(als_train, e, False, e.als_reg) if fit_explicit else None
    chosen = {"baselines": list(e.baselines), "als_users": e.als_users, "als_fitted_users": n_fit}
    candidates = {"model": model, POPULARITY: popularity_factors(train, users)}
    als_val_rows: list[tuple] = []
    if fit_implicit:
        als_imp, reg, grid, als_val_rows = best_als_implicit(spark, als_train, ranked(frames.get(S.VALIDATION)),
                                                             n_items, e, block)
        chosen.update({"als_implicit_reg": reg, "als_grid_users": e.als_grid_users,
                       "als_implicit_validation_ndcg": {f"{r:g}": v for r, v in grid.items()}})
        candidates[ALS_IMPLICIT] = als_factors(als_imp)
    chosen["baselines_note"] = baselines_note(e, fit_implicit, fit_explicit, n_fit)
    log.info("evaluate: %s", chosen["baselines_note"])
    rows: list[tuple] = []
    seen = train.select(S.USER_IDX, S.ITEM_IDX)
    for split in (S.VALIDATION, S.TEST):
        if split not in frames:
            continue
        heldout = frames[split]
        rows += rating_rows(split, train, heldout, als_exp, result, ranked(heldout))
        done = als_val_rows if split == S.VALIDATION else []  # the ALS choice already measured these
        todo = {name: c for name, c in candidates.items() if not (done and name == ALS_IMPLICIT)}
        if split == S.TEST and test_model is not None:
            todo["model"] = test_model
        compare = split == S.VALIDATION and champion is not None
        split_rows, model_recs = evaluate_split(spark, split, ranked(heldout), seen, todo, n_items, e, block,
                                                keep="model" if compare else "")
        rows += split_rows + done
        if compare:  # the champion beside the model's lists just measured
            rows += champion_rows(spark, ranked(heldout), seen, model_recs, champion, e, block)
            model_recs.unpersist()
        seen = seen.unionByName(heldout.select(S.USER_IDX, S.ITEM_IDX))  # test excludes validation too
    if sampled:
        als_train.unpersist()
        fit_users.unpersist()
    return rows, chosen


def champion_note(rows: list[tuple], champion: dict | None, k: int) -> str:
    """The report's sentence on the champion comparison (champion_rows), or on its absence."""
    if champion is None:
        return "Champion: none (no model was published for an earlier ds); the gate compares with the baselines."
    got = {metric: value for split, name, metric, value in rows if name == CHAMPION}
    ndcg = f"ndcg@{k}"
    return (f"Champion: the {champion['model']} model published for ds={champion['ds']}: validation NDCG@{k} "
            f"{got[ndcg]:.4f} against this model's {got['model_' + ndcg]:.4f} on the same {int(got[USERS]):,} users; "
            f"difference {got[ndcg + PAIRED_DIFF]:+.4f}, paired standard error {got[ndcg + PAIRED_DIFF + SE]:.4f} "
            f"(gate.max_drop_vs_published).")


def baselines_note(e: EvaluateConfig, fit_implicit: bool, fit_explicit: bool, n_fit: int | None) -> str:
    """Which users each baseline was fitted and measured on, in one sentence for the report and the log."""
    fitted = [name for name, on in (("ALS implicit", fit_implicit), ("ALS explicit", fit_explicit)) if on]
    parts = ["popularity fitted on every train user"]
    if fitted and n_fit is not None:
        parts.append(f"{' and '.join(fitted)} on a seeded sample of {n_fit:,} train users (evaluate.als_users="
                     f"{e.als_users:,}); the ranking metrics of every candidate, the model's included, are measured "
                     f"on held-out users of that sample")
    elif fitted:
        parts.append(f"{' and '.join(fitted)} on every train user")
    skipped = [name for name, on in (("ALS implicit", ALS_IMPLICIT in e.baselines),
                                     ("ALS explicit", ALS_EXPLICIT in e.baselines)) if not on]
    if skipped:
        parts.append(f"{' and '.join(skipped)} not fitted (evaluate.baselines)")
    return "Baselines: " + "; ".join(parts) + "."


def report_items(spark: SparkSession, cfg: Config, ds: str, train: DataFrame) -> pd.DataFrame:
    """The 3,000 most trained-on items with titles and factors, for the report's map and neighbours."""
    counts = train.groupBy(S.ITEM_IDX).agg(F.count(F.lit(1)).alias("n"))
    return (warehouse.read_partition(spark, cfg.table(Table.ITEM_FACTORS), ds).join(counts, S.ITEM_IDX)
            .join(warehouse.read_partition(spark, cfg.table(Table.ITEMS), ds).select(S.ITEM, S.TITLE), S.ITEM, "left")
            .orderBy(F.col("n").desc(), S.ITEM).limit(3000).select(S.ITEM, S.TITLE, "factors", "n").toPandas())


def summary(rows: list[tuple]) -> dict:
    """{split: {model: {metric: value}}} from evaluation rows."""
    out: dict = {}
    for split, model, metric, value in rows:
        out.setdefault(split, {}).setdefault(model, {})[metric] = round(value, 4)
    return out
