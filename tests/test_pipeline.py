"""End to end on ~20k generated reviews, every stage real, in the test session's Spark."""
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import functions as F

from recjob import datagen, metrics, pipeline, topk
from recjob.stages import publish
from recjob import schema as S
from recjob import warehouse

from conftest import shared_file

pytestmark = pytest.mark.slow  # whole pipelines: about five minutes on 2 cores

DS = "2021-03-01"
N = 10


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    out = tmp_path_factory.mktemp("gen")
    return datagen.generate(str(out), 20000, seed=11)


def _e2e_settings(data_dir, generated) -> list[str]:
    return [f"data_dir={data_dir}", "database=e2e", f"input.reviews={generated['reviews_path']}",
            f"input.metadata={generated['metadata_path']}", "sample.start=2008-01-01", "sample.end=2019-01-01",
            "sample.min_user_reviews=3", "sample.min_item_reviews=3", f"score.top_n={N}",
            "evaluate.als_rank=16", "evaluate.als_iterations=8"]


@pytest.fixture(scope="module")
def e2e(spark, generated, tmp_path_factory):
    from recjob import config

    data_dir = tmp_path_factory.mktemp("e2e")
    cfg = config.load(None, _e2e_settings(data_dir, generated))
    reports = pipeline.run(cfg, spark, DS)
    first = spark.table(cfg.table("recommendations")).where(F.col("ds") == DS).toPandas()
    return cfg, reports, first


def test_every_user_gets_n_unseen_ranked_items(spark, e2e):
    cfg, reports, recs = e2e
    assert len(recs) > 0
    user_f = warehouse.read_partition(spark, cfg.table("user_factors"), DS).toPandas()
    item_f = warehouse.read_partition(spark, cfg.table("item_factors"), DS).toPandas()
    reviews = warehouse.read_partition(spark, cfg.table("reviews"), DS).select(S.USER, S.ITEM).toPandas()
    catalog = set(item_f[S.ITEM])
    seen = reviews[reviews[S.ITEM].isin(catalog)].groupby(S.USER)[S.ITEM].apply(set)
    sampled = set(warehouse.read_partition(spark, cfg.table("interactions"), DS).select(S.USER).toPandas()[S.USER])
    assert set(recs[S.USER]) == sampled  # every user of the sample is published, trained on or not
    cold = sampled - set(user_f[S.USER])  # every review in validation or test: the model's lists for no history
    assert cold and next(r for r in reports if r["stage"] == "score")["users_without_factors"] == len(cold)
    by_bias = item_f.sort_values(["bias", S.ITEM], ascending=[False, True])[S.ITEM].tolist()
    for user in sorted(cold)[:20]:
        expected = [a for a in by_bias if a not in seen.get(user, set())][:N]
        assert recs[recs[S.USER] == user].sort_values(S.RANK)[S.ITEM].tolist() == expected, user
    for user, grp in recs.groupby(S.USER):
        grp = grp.sort_values(S.RANK)
        expected = min(N, len(catalog) - len(seen.get(user, set())))
        assert len(grp) == expected, user
        assert grp[S.RANK].tolist() == list(range(1, expected + 1))
        assert (grp[S.SCORE].diff().dropna() <= 1e-6).all()
        assert not set(grp[S.ITEM]) & seen.get(user, set())
        assert grp[S.ITEM].is_unique
    # original ids map back: every asin is a real item with its title, every user a real reviewer
    items = warehouse.read_partition(spark, cfg.table("items"), DS).toPandas().set_index(S.ITEM)
    assert set(recs[S.ITEM]) <= set(items.index)
    assert (recs[S.TITLE] == items.loc[recs[S.ITEM], S.TITLE].to_numpy()).all()
    assert set(recs[S.USER]) <= set(reviews[S.USER])


def _evaluation(spark, cfg, split):
    rows = warehouse.read_partition(spark, cfg.table("evaluation"), DS).where(F.col("split") == split).collect()
    out = {}
    for r in rows:
        out.setdefault(r["model"], {})[r["metric"]] = r["value"]
    return out


def test_ranking_model_beats_popularity_and_als(spark, e2e):
    cfg = e2e[0]
    ev = _evaluation(spark, cfg, "test")
    brief = {m: (round(ev[m]["ndcg@10"], 4), round(ev[m]["hr@10"], 4)) for m in ("model", "popularity", "als_implicit")}
    assert ev["model"]["ndcg@10"] > 1.2 * ev["popularity"]["ndcg@10"], brief
    # level with ALS implicit tuned on validation (measured: 0.421 vs 0.413; a margin for float differences)
    assert ev["model"]["ndcg@10"] > 0.95 * ev["als_implicit"]["ndcg@10"], brief
    assert set(ev) >= {"model", "popularity", "als_implicit", "global_mean", "bias"}
    assert "als" not in ev  # ALS explicit, a rating baseline, is not fitted for a ranking model
    # ALS checkpoints (lineage truncation) went to a folder under data_dir that the stage removed
    settings = json.loads(warehouse.read_partition(spark, cfg.table("evaluation"), DS).first()["settings"])
    assert settings["als"]["als_implicit_reg"] in (0.1, 1.0, 10.0)  # chosen on validation, recorded
    assert settings["als"]["reg"] is None  # no ALS explicit fitted, no regParam of it recorded
    assert set(settings["als"]["als_implicit_validation_ndcg"]) == {"0.1", "1", "10"}
    val = _evaluation(spark, cfg, "validation")["als_implicit"]  # the chosen fit's rows, measured once
    metrics = {"hr@10", "precision@10", "recall@10", "ndcg@10", "map@10"}
    assert set(val) == metrics | {f"{m}_se" for m in metrics} | {"coverage", "users"}  # each with its standard error
    assert 0 < val["ndcg@10_se"] < val["ndcg@10"] and val["users"] == _evaluation(spark, cfg, "validation")["model"]["users"]
    assert val["ndcg@10"] == settings["als"]["als_implicit_validation_ndcg"][f"{settings['als']['als_implicit_reg']:g}"]
    assert val["ndcg@10"] == max(settings["als"]["als_implicit_validation_ndcg"].values())
    assert (Path(cfg.data_dir) / "checkpoints").is_dir()
    assert not (Path(cfg.data_dir) / "checkpoints" / f"ds={DS}").exists()


def test_rating_model_learns_the_planted_structure_and_the_gate_stops_it(spark, generated, tmp_path):
    """The dot model predicts ratings well but ranks poorly: evaluate records both, publish refuses it."""
    from recjob import config
    from recjob.stages.publish import GateFailed

    cfg = config.load(None, [f"data_dir={tmp_path}", "database=e2e_dot", "train.model=dot",
                             f"input.reviews={generated['reviews_path']}", f"input.metadata={generated['metadata_path']}",
                             "sample.start=2008-01-01", "sample.end=2019-01-01",
                             "sample.min_user_reviews=3", "sample.min_item_reviews=3",
                             "evaluate.als_rank=8", "evaluate.als_iterations=5",
                             "evaluate.als_implicit_regs=[1.0]", "evaluate.als_users=150"])
    pipeline.run(cfg, spark, DS, last="evaluate")
    result = json.loads(warehouse.read_partition(spark, cfg.table("training_runs"), DS).first()["result"])
    base = result["validation_baselines"]
    assert result["val_rmse"] < 0.95 * base["global_mean_rmse"], result
    assert result["val_rmse"] < base["bias_rmse"], result
    ev = _evaluation(spark, cfg, "validation")
    assert ev["model"]["rmse"] == pytest.approx(result["val_rmse"])
    assert set(ev["als"]) == {"rmse", "mae"}  # a rating model: ALS explicit is its rating baseline
    assert ev["model"]["ndcg@10"] < ev["popularity"]["ndcg@10"]  # a rating model ranks poorly
    # evaluate.als_users: both ALS fitted on 150 train users, every candidate ranked on the same users of them
    settings = json.loads(warehouse.read_partition(spark, cfg.table("evaluation"), DS).first()["settings"])
    assert settings["als"]["als_fitted_users"] == 150
    assert len({ev[m]["users"] for m in ("model", "popularity", "als_implicit")}) == 1 and ev["model"]["users"] <= 150
    report = (Path(cfg.ds_path("reports", DS)) / "report.md").read_text()
    assert "ALS implicit and ALS explicit on a seeded sample of 150 train users" in report
    with pytest.raises(GateFailed, match="quality gate failed"):
        pipeline.run_stage("publish", cfg, spark, DS)
    assert not warehouse.table_exists(spark, cfg.table("recommendations"))
    # nothing was ever published for DS: the refused model's outputs are moved apart, its partitions emptied
    rejected = Path(cfg.ds_path("rejected", DS)) / "publish"
    assert spark.read.parquet(str(rejected / "tables" / "training_runs")).first()["model"] == "dot"
    assert (rejected / "models").is_dir() and not Path(cfg.ds_path("models", DS)).exists()
    for table in publish.MODEL_TABLES:
        assert spark.table(cfg.table(table)).where(F.col("ds") == DS).count() == 0, table


def test_bpmf_through_the_pipeline(spark, generated, tmp_path):
    """The Gibbs-sampled model reads the shards, beats the rating baselines on validation and test, and is
    exported as one factor model: its recorded RMSE is that of the exported factors, as scored. (Up to the
    score stage: the train stage records the same baselines the evaluate stage compares, and evaluating a
    rating model is covered by the dot test above.)"""
    from recjob import bpmf, config

    cfg = config.load(None, [f"data_dir={tmp_path}", "database=e2e_bpmf", "train.model=bpmf",  # default sweeps
                             f"input.reviews={generated['reviews_path']}", f"input.metadata={generated['metadata_path']}",
                             "sample.start=2008-01-01", "sample.end=2019-01-01",
                             "sample.min_user_reviews=3", "sample.min_item_reviews=3"])
    pipeline.run(cfg, spark, DS, last="score")
    run = warehouse.read_partition(spark, cfg.table("training_runs"), DS).first()
    result = json.loads(run["result"])
    assert run["model"] == "bpmf" and sorted(p.name for p in Path(run["model_path"]).iterdir()) == [
        "bpmf.npz", "epoch_log.json", "item_factors", "user_factors"]
    assert result["epochs"] == 50 + 50 * 5 == result["best_epoch"]
    for split, key in (("validation", "val"), ("test", "test")):
        base = result[f"{split}_baselines"]
        assert result[f"{key}_rmse"] < base["bias_rmse"] < base["global_mean_rmse"], (split, result)
    # the average of 50 samples x 10 factors is exported as 32 factors and reproduces the recorded validation RMSE
    f = bpmf.load((Path(run["model_path"]) / "bpmf.npz").read_bytes())
    assert f["user"].shape[1] == f["item"].shape[1] == 32
    stats = {r[S.SPLIT]: r["path"] for r in warehouse.read_partition(spark, cfg.table("shards"), DS).collect()}
    val = spark.read.parquet(stats[S.VALIDATION]).toPandas()
    pred = bpmf.predict(f, val[S.USER_IDX].to_numpy(), val[S.ITEM_IDX].to_numpy())
    assert np.sqrt(np.mean((pred - val["rating"].to_numpy()) ** 2)) == pytest.approx(result["val_rmse"], rel=1e-5)
    factors = warehouse.read_partition(spark, cfg.table("item_factors"), DS).first()["factors"]
    assert len(factors) == 32
    scores = spark.table(cfg.table("scores")).where(F.col("ds") == DS)
    assert scores.count() > 0


def test_seq_through_the_pipeline(spark, generated, tmp_path):
    """The sequence-aware model trains from the history column of the train shards, its exported user
    factors are those of each user's latest train items, and it ranks above popularity."""
    import keras

    from recjob import config, feed
    from recjob.artifacts import reader_url
    from recjob.models import keras_fit

    cfg = config.load(None, [f"data_dir={tmp_path}", "database=e2e_seq", "train.model=seq",
                             f"input.reviews={generated['reviews_path']}", f"input.metadata={generated['metadata_path']}",
                             "sample.start=2008-01-01", "sample.end=2019-01-01", "shards.split=temporal",
                             "sample.min_user_reviews=3", "sample.min_item_reviews=3", "evaluate.als_rank=8",
                             "evaluate.als_iterations=5", "evaluate.als_implicit_regs=[1.0]"])
    pipeline.run(cfg, spark, DS, last="evaluate")
    stats = {r[S.SPLIT]: r for r in warehouse.read_partition(spark, cfg.table("shards"), DS).collect()}
    shard = spark.read.parquet(stats[S.TRAIN]["path"])
    assert dict(shard.dtypes)["history"] == "array<int>"
    length = cfg.shards.history_length
    assert shard.where(F.size("history") != length).count() == 0
    run = warehouse.read_partition(spark, cfg.table("training_runs"), DS).first()
    model = keras.saving.load_model(f"{run['model_path']}/model.keras")
    n_users, n_items = stats[S.TRAIN]["user_index_size"], stats[S.TRAIN]["item_index_size"]
    shards_dir = cfg.ds_path("shards", DS)
    latest = feed.read_item_histories(reader_url(f"{shards_dir}/item_histories"), n_users, n_items, length)
    users = warehouse.read_partition(spark, cfg.table("user_factors"), DS).toPandas().sort_values(S.USER_IDX)
    ref = keras_fit.factors(model, latest)["user"][users[S.USER_IDX].to_numpy()]
    np.testing.assert_allclose(np.stack(users["factors"].to_numpy()), ref, rtol=1e-5, atol=1e-6)
    for split in ("validation", "test"):
        ev = _evaluation(spark, cfg, split)
        assert ev["model"]["ndcg@10"] > ev["popularity"]["ndcg@10"], (split, ev)
    # tested from each user's train and validation items (the validation item first): evaluate's test NDCG is
    # that of the lists computed here from those histories, over the trained items, train and validation excluded
    before = feed.read_item_histories(reader_url(f"{shards_dir}/items_before_test"), n_users, n_items, length)
    val = spark.read.parquet(stats[S.VALIDATION]["path"]).toPandas()
    assert (before[val[S.USER_IDX].to_numpy(), 0] == val[S.ITEM_IDX].to_numpy()).all()
    test = spark.read.parquet(stats[S.TEST]["path"]).toPandas()
    items = warehouse.read_partition(spark, cfg.table("item_factors"), DS).toPandas().sort_values(S.ITEM_IDX)
    q, b = np.stack(items["factors"].to_numpy()), items["bias"].to_numpy()
    col = {i: c for c, i in enumerate(items[S.ITEM_IDX])}
    test_users = test[S.USER_IDX].to_numpy()
    scores = keras_fit.factors(model, before)["user"][test_users] @ q.T + b
    seen = pd.concat([spark.read.parquet(stats[s]["path"]).toPandas() for s in (S.TRAIN, S.VALIDATION)])
    row = {u: r for r, u in enumerate(test_users)}
    for u, i in zip(seen[S.USER_IDX], seen[S.ITEM_IDX]):
        if u in row and i in col:
            scores[row[u], col[i]] = -np.inf
    top, _ = topk.top_k(scores, 10, backend="numpy")
    lists = items[S.ITEM_IDX].to_numpy()[top]
    ndcg = metrics.ndcg_of_lists(lists, [{i} for i in test[S.ITEM_IDX]], 10).mean()
    assert _evaluation(spark, cfg, "test")["model"]["ndcg@10"] == pytest.approx(ndcg, abs=1e-6)
    # the published scores come from each user's latest items of every split (the test item first)
    every = feed.read_item_histories(reader_url(f"{shards_dir}/latest_items"), n_users, n_items, length)
    assert (every[test[S.USER_IDX].to_numpy(), 0] == test[S.ITEM_IDX].to_numpy()).all()
    items = warehouse.read_partition(spark, cfg.table("item_factors"), DS).toPandas().set_index(S.ITEM_IDX)
    user_f = keras_fit.factors(model, every)["user"]
    top = spark.table(cfg.table("scores")).where((F.col("ds") == DS) & (F.col(S.RANK) == 1)).toPandas()
    assert len(top) == len(users)
    expected = [user_f[u] @ np.asarray(items.loc[i, "factors"]) + items.loc[i, "bias"]
                for u, i in zip(top[S.USER_IDX], top[S.ITEM_IDX])]
    np.testing.assert_allclose(top[S.SCORE].to_numpy(), expected, rtol=1e-4, atol=1e-4)


def test_rerun_of_same_ds_gives_identical_tables(spark, e2e):
    cfg, _, first = e2e
    pipeline.run(cfg, spark, DS)
    second = spark.table(cfg.table("recommendations")).where(F.col("ds") == DS).toPandas()
    key = [S.USER, S.RANK]
    a = first.sort_values(key).reset_index(drop=True)
    b = second.sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)
    for table in ("reviews", "interactions", "user_index", "item_index", "scores", "evaluation"):
        counts = spark.table(cfg.table(table)).groupBy("ds").count().collect()
        assert len(counts) == 1, table  # one partition, no duplicates appended


def _model_outputs(spark, cfg, dest: Path) -> dict:
    """The ds's model tables (saved as parquet under dest) and the bytes of its model and report files."""
    for table in publish.MODEL_TABLES:
        spark.table(cfg.table(table)).where(F.col("ds") == DS).write.parquet(str(dest / table))
    files = {}
    for folder in publish.MODEL_FOLDERS:
        root = Path(cfg.ds_path(folder, DS))
        files.update({str(p.relative_to(root.parent)): p.read_bytes() for p in root.rglob("*") if p.is_file()})
    return files


def test_a_refused_rerun_leaves_the_published_model_in_place(spark, e2e, generated, tmp_path):
    """A rerun whose model the gate refuses changes nothing a reader of the ds sees: every model table and file
    is the published model's again, and the refused outputs are kept apart for inspection."""
    from recjob import config
    from recjob.stages.publish import GateFailed

    cfg, _, first = e2e
    files_before = _model_outputs(spark, cfg, tmp_path / "before")
    dot = config.load(None, _e2e_settings(cfg.data_dir, generated) + [
        "train.model=dot", "evaluate.als_implicit_regs=[1.0]", "evaluate.als_iterations=4"])
    with pytest.raises(GateFailed, match="describe its published model again"):
        pipeline.run(dot, spark, DS, first="train")
    files_after = _model_outputs(spark, cfg, tmp_path / "after")
    for table in publish.MODEL_TABLES:
        before, after = (spark.read.parquet(str(tmp_path / when / table)) for when in ("before", "after"))
        assert before.count() == after.count() > 0, table
        assert before.exceptAll(after).count() == 0 and after.exceptAll(before).count() == 0, table
    assert files_after == files_before
    recs = spark.table(cfg.table("recommendations")).where(F.col("ds") == DS).toPandas()
    pd.testing.assert_frame_equal(recs.sort_values([S.USER, S.RANK]).reset_index(drop=True),
                                  first.sort_values([S.USER, S.RANK]).reset_index(drop=True))
    refused = spark.read.parquet(cfg.ds_path("rejected", DS) + "/publish/tables/training_runs").first()
    assert refused["model"] == "dot"


def test_the_champion_gate_refuses_a_much_worse_model_and_publishes_a_level_one(spark, e2e, generated):
    """A later ds is compared with the model published for DS (the champion) on the same validation users: an
    undertrained model (from a fresh start) is refused with the paired figures in the message; the champion's
    own settings, warm started from its weights, publish."""
    from recjob import config
    from recjob.stages.publish import GateFailed

    cfg, _, _ = e2e
    later = "2021-03-08"
    weak = config.load(None, _e2e_settings(cfg.data_dir, generated) + [
        "train.max_epochs=1", "train.learning_rate=0.00001", "gate.min_ndcg_vs_popularity=0", "train.warm_start=false"])
    with pytest.raises(GateFailed, match=rf"below the champion's [0-9.]+ \(the model published for ds={DS}, on the "
                                         rf"same [0-9,]+ users\) by [0-9.]+, more than gate.max_drop_vs_published=2"):
        pipeline.run(weak, spark, later)
    refused = spark.read.parquet(cfg.ds_path("rejected", later) + "/publish/tables/evaluation")
    champion = {r["metric"]: r["value"] for r in refused.where("model = 'champion'").collect()}
    assert champion["users"] > 100 and champion["ndcg@10_paired_diff"] < -2 * champion["ndcg@10_paired_diff_se"]
    assert champion["model_ndcg@10"] - champion["ndcg@10"] == pytest.approx(champion["ndcg@10_paired_diff"])
    assert json.loads(refused.first()["settings"])["champion"] == {"ds": DS, "model": cfg.train.model}
    refused_run = json.loads(spark.read.parquet(cfg.ds_path("rejected", later) + "/publish/tables/training_runs")
                             .first()["result"])
    assert refused_run["warm_start"] == {"cold": "train.warm_start=false"}

    warm = config.load(None, _e2e_settings(cfg.data_dir, generated) + ["train.warm_start=true"])
    pipeline.run(warm, spark, later, first="train")  # the champion's settings, from its weights: published
    run = json.loads(warehouse.read_partition(spark, cfg.table("training_runs"), later).first()["result"])
    assert run["warm_start"]["from_ds"] == DS and "rows" in run["warm_start"], run["warm_start"]
    rows = warehouse.read_partition(spark, cfg.table("evaluation"), later).where("model = 'champion'").collect()
    level = {r["metric"]: r["value"] for r in rows}
    assert level["ndcg@10_paired_diff"] >= -2 * level["ndcg@10_paired_diff_se"], level
    assert spark.table(cfg.table("recommendations")).where(F.col("ds") == later).count() > 0
    report = (Path(cfg.ds_path("reports", later)) / "report.md").read_text()
    assert f"Champion: the {cfg.train.model} model published for ds={DS}: validation NDCG@10" in report


def test_all_beauty_real_data(spark, tmp_path):
    from recjob import config

    path = shared_file("amazon2018/All_Beauty_5.json.gz")
    cfg = config.load(None, [f"data_dir={tmp_path}", "database=beauty", f"input.reviews={path}", "input.metadata=",
                             "sample.start=2000-01-01", "sample.end=2019-01-01",
                             "evaluate.als_rank=8", "evaluate.als_iterations=5",
                             "evaluate.als_implicit_regs=[1.0]"])
    pipeline.run(cfg, spark, DS)
    recs = spark.table(cfg.table("recommendations")).where(F.col("ds") == DS)
    assert recs.count() > 0
    assert recs.select(S.USER).distinct().count() > 100
