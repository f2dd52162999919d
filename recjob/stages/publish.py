"""publish: scores -> the ``recommendations`` table that analysts query (original ids, titles, ranks).

One ds partition per run, replaced on rerun in one metastore step (``warehouse.publish_partition``: analysts who
query it meanwhile get the old or the new lists, never a missing or half-written partition), other dates untouched.
Before writing, the quality gate (gate.*) compares the model with the baselines on the validation split
(evaluate stage), and the scores are checked: ranks 1..n per user with no gaps or duplicates and no duplicate
items per user. A failed gate or check stops the publish and keeps the previous partitions.

Every table of a ds describes its published model. The train, score and evaluate stages replace the ds's model
outputs before the gate can judge them, so publish keeps a copy of what it published (``published/ds=...``)
and, when it refuses a model, moves the refused outputs apart (``rejected/ds=.../publish``, for inspection) and
puts the published ones back (or, if nothing was ever published for the ds, leaves those partitions empty).
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import uuid

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from recjob import artifacts, models, neighbours, retention, serving, warehouse
from recjob import schema as S
from recjob.config import Config, GateConfig
from recjob import reviews as known_reviews
from recjob.progress import stage_timer
from recjob.names import CHAMPION, PAIRED_DIFF, SE, USERS, Table
from recjob.web import files

log = logging.getLogger(__name__)

COLUMNS = [S.USER, S.RANK, S.ITEM, S.TITLE, S.SCORE]


# What describes a ds's model: the tables (ds partitions) and folders (under data_dir) that train, score and
# evaluate write for it.
MODEL_TABLES = (Table.TRAINING_RUNS, Table.USER_FACTORS, Table.ITEM_FACTORS, Table.SCORES, Table.NEIGHBOURS,
                Table.EVALUATION)
MODEL_FOLDERS = ("models", "reports")


class GateFailed(RuntimeError):
    """The new model does not beat the baselines: the publish is refused."""


class ChecksFailed(RuntimeError):
    """The scores are not valid lists (rank gaps, duplicate items, NaN scores): the publish is refused."""


PENDING = ".pending"  # the copy of a model whose lists are being published (see published_copy)
VERSION_FILE = "VERSION"  # in a copy: the folder of the published lists it describes


def save_model_outputs(cfg: Config, spark: SparkSession, ds: str, dest: str, version: str = "") -> list[str]:
    """Copy the ds's model tables (as parquet) and folders to ``dest`` (staged, then moved in place); ``version``:
    the folder of the lists that the copy describes, recorded beside it."""
    staged, saved = dest.rstrip("/") + ".staging", []
    warehouse.delete_path(spark, staged)
    if version:
        warehouse.write_text(spark, f"{staged}/{VERSION_FILE}", version)
    for name in MODEL_TABLES:
        if warehouse.partition_exists(spark, cfg.table(name), ds):
            warehouse.read_partition(spark, cfg.table(name), ds).write.parquet(artifacts.saved_table(staged, name))
            saved.append(cfg.table(name))
    for folder in MODEL_FOLDERS:
        if warehouse.path_exists(spark, cfg.ds_path(folder, ds)):
            warehouse.copy_folder(spark, cfg.ds_path(folder, ds), artifacts.saved_folder(staged, folder))
            saved.append(folder)
    if saved:
        warehouse.replace_folder(spark, staged, dest)
    return saved


def restore_model_outputs(cfg: Config, spark: SparkSession, ds: str, src: str | None) -> None:
    """Put the ds's model tables and folders back from ``src`` (a ``save_model_outputs`` copy); None: empty them."""
    for name in MODEL_TABLES:
        saved = artifacts.saved_table(src, name) if src else None
        if saved and warehouse.path_exists(spark, saved):
            warehouse.write_partition(spark.read.parquet(saved), cfg.table(name), ds)
        elif warehouse.table_exists(spark, cfg.table(name)):
            spark.sql(f"ALTER TABLE {cfg.table(name)} DROP IF EXISTS PARTITION ({S.DS}='{ds}')")
    for folder in MODEL_FOLDERS:
        saved = artifacts.saved_folder(src, folder) if src else None
        if saved and warehouse.path_exists(spark, saved):
            warehouse.copy_folder(spark, saved, cfg.ds_path(folder, ds))
        else:
            warehouse.delete_path(spark, cfg.ds_path(folder, ds))


def published_copy(cfg: Config, spark: SparkSession, ds: str) -> str | None:
    """The copy of the model whose lists analysts read for ``ds`` (None: nothing was published). A publish stopped
    between its partition switch and the copy's move is finished here: the pending copy whose recorded version is
    the partition's current folder becomes the published copy; one whose switch never happened is dropped."""
    published = artifacts.published_dir(cfg, ds)
    pending = published + PENDING
    if warehouse.path_exists(spark, pending):
        current = warehouse.partition_location(spark, cfg.table(Table.RECOMMENDATIONS), ds)
        version_file = f"{pending}/{VERSION_FILE}"
        version = warehouse.read_text(spark, version_file) if warehouse.path_exists(spark, version_file) else ""
        if warehouse.same_location(current, version.strip()):
            log.info("publish ds=%s: finishing a publish stopped after its switch (the copy of %s)", ds, version)
            warehouse.replace_folder(spark, pending, published)
        else:
            warehouse.delete_path(spark, pending)
    return published if warehouse.path_exists(spark, published) else None


def set_aside(cfg: Config, spark: SparkSession, ds: str) -> str:
    """A refused run: move its model outputs to rejected/ds=.../publish and restore the published ones."""
    rejected = cfg.ds_path("rejected", ds) + "/publish"
    published = published_copy(cfg, spark, ds)
    save_model_outputs(cfg, spark, ds, rejected)
    restore_model_outputs(cfg, spark, ds, published)
    return rejected


def transform(scores: DataFrame, item_index: DataFrame, items: DataFrame) -> DataFrame:
    """Attach original asin and title to each (user, rank, item_idx, score) row."""
    return (scores.join(item_index.select(S.ITEM_IDX, S.ITEM), S.ITEM_IDX)
            .join(items.select(S.ITEM, S.TITLE), S.ITEM, "left")
            .select(*COLUMNS))


def neighbours_method(evaluation: dict, k: int) -> str:
    """The neighbours method to publish: the one with the higher validation NDCG@k of the item-to-item figure
    (the factors' on a tie, or when there are no figures)."""
    ndcg = {m: evaluation.get(neighbours.evaluated_name(m), {}).get(f"ndcg@{k}") for m in neighbours.METHODS}
    best = max((v, m == neighbours.FACTORS, m) for m, v in ndcg.items() if v is not None) if any(
        v is not None for v in ndcg.values()) else None
    return best[2] if best else neighbours.FACTORS


def similar_items(table: DataFrame, method: str, item_index: DataFrame, items: DataFrame) -> DataFrame:
    """The published similar items of ``method``: (asin, rank, neighbour asin, its title, score, method)."""
    asin = item_index.select(S.ITEM_IDX, S.ITEM)
    other = item_index.select(F.col(S.ITEM_IDX).alias(neighbours.NEIGHBOUR_IDX), F.col(S.ITEM).alias("neighbour"))
    titles = items.select(F.col(S.ITEM).alias("neighbour"), S.TITLE)
    return (table.where(F.col("method") == method).join(asin, S.ITEM_IDX).join(other, neighbours.NEIGHBOUR_IDX)
            .join(titles, "neighbour", "left").select(S.ITEM, S.RANK, "neighbour", S.TITLE, S.SCORE, "method"))


def write_page_files(cfg: Config, spark: SparkSession, ds: str, recs: DataFrame, items: DataFrame,
                     method: str) -> str:
    """What ``recjob web`` reads for ``ds`` without Spark (``recjob.web.files``): each user's reviewed items and
    each item's title and number of users it is recommended to, sorted for lookups in a new versioned folder,
    then the index entry that points at them and at the current published partitions."""
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:8]
    root = cfg.path(f"{files.WEB}/ds={ds}")
    folder = f"{root}/{stamp}"
    titles = items.select(S.ITEM, S.TITLE)
    reviewed = (known_reviews.known(cfg, spark, ds)
                .select(S.USER, S.ITEM, S.RATING, S.TIME).join(titles, S.ITEM, "left"))
    warehouse.write_sorted(reviewed, f"{folder}/{files.REVIEWED}", [S.USER, S.TIME])
    counts = recs.groupBy(S.ITEM).agg(F.countDistinct(S.USER).alias("recommended_to"))
    per_item = titles.join(counts, S.ITEM, "left").fillna(0, ["recommended_to"])
    warehouse.write_sorted(per_item, f"{folder}/{files.ITEMS}", [S.ITEM])
    evaluation = [r.asDict() for r in warehouse.read_partition(spark, cfg.table(Table.EVALUATION), ds)
                  .drop("settings").collect()] if warehouse.partition_exists(spark, cfg.table(Table.EVALUATION), ds) else []
    run = warehouse.read_partition(spark, cfg.table(Table.TRAINING_RUNS), ds).first()
    published = artifacts.published_dir(cfg, ds)
    entry = {"recommendations": warehouse.partition_location(spark, cfg.table(Table.RECOMMENDATIONS), ds),
             "item_neighbours": warehouse.partition_location(spark, cfg.table(Table.ITEM_NEIGHBOURS), ds),
             "neighbours_method": method, "pages": folder, "evaluation": evaluation, "model": run["model"],
             "gate": "passed" if cfg.gate.enabled else "not checked (gate.enabled=false)", "k": cfg.evaluate.k,
             "report": f"{published}/reports", "published_at": stamp, "database": cfg.database}
    if "://" in cfg.data_dir:
        log.warning("publish: data_dir %s is not a local folder: recjob web reads local files only", cfg.data_dir)
    else:
        files.write_index(cfg.path(""), ds, entry)
    fs, versions = warehouse.hadoop_fs(spark, root)  # the folder replaced is kept (a page may be reading it)
    kept = sorted(s.getPath().getName() for s in fs.listStatus(versions))[:-2]
    for old in kept:
        warehouse.delete_path(spark, f"{root}/{old}")
    return folder


def check(recs: DataFrame) -> list[str]:
    """Problems that must stop a publish (empty list: fine)."""
    per_user = recs.groupBy(S.USER).agg(F.count(F.lit(1)).alias("n"), F.min(S.RANK).alias("lo"),
                                        F.max(S.RANK).alias("hi"), F.countDistinct(S.RANK).alias("ranks"),
                                        F.countDistinct(S.ITEM).alias("items"))
    bad = per_user.where((F.col("lo") != 1) | (F.col("hi") != F.col("n")) | (F.col("ranks") != F.col("n"))
                         | (F.col("items") != F.col("n"))).count()
    problems = []
    if bad:
        problems.append(f"{bad} users have gaps or duplicates in their ranks or items")
    if recs.where(F.col(S.SCORE).isNull() | F.isnan(S.SCORE)).limit(1).count():
        problems.append("some scores are null or NaN")
    return problems


def gate(evaluation: dict, predicts_ratings: bool, cfg: GateConfig, k: int, champion_ds: str | None = None) -> list[str]:
    """Reasons not to publish, from the validation metrics ({model: {metric: value}}); empty: publish. With a
    champion (evaluate's "champion" rows; ``champion_ds`` names it), the model may not fall below it by more than
    gate.max_drop_vs_published standard errors of the paired difference."""
    reasons = []
    ndcg = f"ndcg@{k}"
    model, pop = evaluation.get("model", {}), evaluation.get("popularity", {})
    if ndcg not in model or ndcg not in pop:
        return [f"no validation {ndcg} for the model and the popularity baseline: run the evaluate stage"]
    if model[ndcg] < cfg.min_ndcg_vs_popularity * pop[ndcg]:
        reasons.append(f"validation {ndcg} {model[ndcg]:.4f} is below {cfg.min_ndcg_vs_popularity:g} x "
                       f"popularity's {pop[ndcg]:.4f}")
    champion = evaluation.get(CHAMPION, {})
    diff, se = champion.get(f"{ndcg}{PAIRED_DIFF}"), champion.get(f"{ndcg}{PAIRED_DIFF}{SE}")
    if diff is not None and diff < 0 and -diff > cfg.max_drop_vs_published * se:
        reasons.append(f"validation {ndcg} {champion[f'model_{ndcg}']:.4f} is below the champion's "
                       f"{champion[ndcg]:.4f} (the model published for ds={champion_ds or '?'}, on the same "
                       f"{int(champion[USERS]):,} users) by {-diff:.4f}, more than gate.max_drop_vs_published="
                       f"{cfg.max_drop_vs_published:g} standard errors of the paired difference ({se:.4f})")
    if predicts_ratings:
        rmse, bias = model.get("rmse"), evaluation.get("bias", {}).get("rmse")
        if rmse is None or bias is None:
            reasons.append("no validation RMSE for the model and the bias baseline")
        elif rmse > cfg.max_rmse_vs_bias * bias:
            reasons.append(f"validation RMSE {rmse:.4f} is above {cfg.max_rmse_vs_bias:g} x the bias baseline's {bias:.4f}")
    return reasons


def run(cfg: Config, spark: SparkSession, ds: str) -> dict:
    with stage_timer("publish", ds) as record:
        published_copy(cfg, spark, ds)  # finishes a publish stopped between its switch and its copy's move
        evaluation: dict = {}
        champion_ds = None
        if warehouse.partition_exists(spark, cfg.table(Table.EVALUATION), ds):
            for r in (warehouse.read_partition(spark, cfg.table(Table.EVALUATION), ds)
                      .where(F.col(S.SPLIT) == S.VALIDATION).collect()):
                evaluation.setdefault(r["model"], {})[r["metric"]] = r["value"]
                champion_ds = (json.loads(r["settings"]).get("champion") or {}).get("ds")
        if cfg.gate.enabled:
            kind = warehouse.read_partition(spark, cfg.table(Table.TRAINING_RUNS), ds).first()["model"]
            reasons = gate(evaluation, models.get(kind).predicts_ratings, cfg.gate, cfg.evaluate.k, champion_ds)
            if reasons:
                kept_at = set_aside(cfg, spark, ds)
                raise GateFailed(f"publish: quality gate failed for ds={ds}, nothing published (the previous "
                                 f"partitions of {cfg.table('recommendations')} are unchanged): " + "; ".join(reasons)
                                 + f" (thresholds: gate.*; gate.enabled=false to skip). The refused model's outputs "
                                 f"are in {kept_at}; the ds's tables describe its published model again")
            record["gate"] = "passed"
        scores = warehouse.read_partition(spark, cfg.table(Table.SCORES), ds)
        item_index = warehouse.read_partition(spark, cfg.table(Table.ITEM_INDEX), ds)
        items = warehouse.read_partition(spark, cfg.table(Table.ITEMS), ds)
        recs = transform(scores, item_index, items).cache()
        problems = check(recs)
        if problems:
            kept_at = set_aside(cfg, spark, ds)
            raise ChecksFailed(f"publish: not publishing ds={ds}: " + "; ".join(problems) +
                               f"; the refused model's outputs are in {kept_at}")
        method = neighbours_method(evaluation, cfg.evaluate.k)
        similar = None
        if warehouse.partition_exists(spark, cfg.table(Table.NEIGHBOURS), ds):
            similar = similar_items(warehouse.read_partition(spark, cfg.table(Table.NEIGHBOURS), ds), method,
                                    item_index, items)
            record["item_neighbours"] = {"method": method, "rows": warehouse.publish_partition(
                similar, cfg.table(Table.ITEM_NEIGHBOURS), ds, sort_by=[S.ITEM, S.RANK])}
        published = artifacts.published_dir(cfg, ds)

        def keep_copy(version: str) -> None:  # before the switch: no list is published without its model's copy
            record["saved"] = save_model_outputs(cfg, spark, ds, published + PENDING, version)

        n = warehouse.publish_partition(recs, cfg.table(Table.RECOMMENDATIONS), ds, before_switch=keep_copy,
                                        sort_by=[S.USER, S.RANK])
        warehouse.replace_folder(spark, published + PENDING, published)
        record["web"] = write_page_files(cfg, spark, ds, recs, items, method)
        if cfg.publish.jdbc_url:
            served = serving.export(serving.copies(cfg.publish, recs, similar), cfg.publish, ds)
            if served[cfg.publish.jdbc_table] != n:
                raise RuntimeError(f"publish: the serving copy {cfg.publish.jdbc_table} got "
                                   f"{served[cfg.publish.jdbc_table]} rows of {n}")
        users = recs.select(S.USER).distinct().count()
        untitled = recs.where(F.col(S.TITLE).isNull()).count()
        if untitled:
            log.warning("publish: %d of %d recommendations have no title (item missing from metadata)", untitled, n)
        recs.unpersist()
        record["read"] = {cfg.table(Table.SCORES): scores.count()}
        record["wrote"] = {cfg.table(Table.RECOMMENDATIONS): n, "users": users}
        if cfg.publish.jdbc_url:
            record["wrote"].update({f"serving {table}": rows for table, rows in served.items()})
        record["expired"] = retention.expire(cfg, spark, ds)  # retention.*: what no run date needs any more
    return record
