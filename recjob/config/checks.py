"""The checks a loaded configuration must pass before anything runs: every problem with its key and reason."""
from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import math
import re
import urllib.parse
from typing import Any

from recjob import models, readers
from recjob.names import ALS_BASELINES as BASELINES
from recjob.config.settings import DS_PLACEHOLDER, Config, ConfigError
from recjob.config.secrets import METASTORES

log = logging.getLogger("recjob.config")


IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # database names: plain ASCII, safe in SQL unquoted
MAX_TOP_N = 1000
OPTIMIZERS = ("auto", "lazy_adam", "adam", "adamax")  # train.optimizer


def local_path(url: str) -> str:
    """``file:///a%20b`` or ``file:/a b`` -> ``/a b``."""
    parsed = urllib.parse.urlparse(url)
    if parsed.netloc not in ("", "localhost"):
        raise ConfigError(f"data_dir={url!r}: a file: URL names a local folder (file:///path), not a host")
    return urllib.parse.unquote(parsed.path)


def _non_finite(node: Any, where: str = "") -> list[str]:
    """Every float setting that is NaN or infinite (NaN compares false with everything: it would pass any check)."""
    out = []
    for f in dataclasses.fields(node):
        value, key = getattr(node, f.name), where + f.name
        if dataclasses.is_dataclass(value):
            out += _non_finite(value, key + ".")
        elif isinstance(value, float) and not math.isfinite(value):
            out.append(key)
        elif isinstance(value, tuple) and any(isinstance(v, float) and not math.isfinite(v) for v in value):
            out.append(key)
    return out


def _incremental_problems(cfg: Config) -> list[str]:
    """What makes ``input.incremental`` impossible: each period must name its own files, carry times (the
    order of rows in a file cannot order rows across periods) and be read line by line."""
    inp = cfg.input
    if not inp.incremental:
        return []
    problems = []
    if DS_PLACEHOLDER not in inp.reviews:
        problems.append(f"input.incremental=true needs {DS_PLACEHOLDER} in input.reviews (each ds reads its own "
                        f"period's files, e.g. incoming/{DS_PLACEHOLDER}/*.json.gz); got {inp.reviews!r}")
    if inp.test:
        problems.append("input.incremental=true and input.test: a given test split is a whole-dump protocol")
    if inp.format in readers.READERS and (readers.get(inp.format).whole_files or not readers.has_times(inp)):
        problems.append(f"input.incremental=true needs a line format with times; input.format={inp.format} "
                        f"{'reads whole files' if readers.get(inp.format).whole_files else 'has no times'}")
    return problems


def _check(cfg: Config) -> Config:
    s, sh, t = cfg.sample, cfg.shards, cfg.train
    problems = [f"{key} must be a finite number" for key in _non_finite(cfg)]
    if problems:  # every other check below assumes finite numbers
        raise ConfigError("invalid configuration: " + "; ".join(problems))
    for key in ("start", "end"):
        try:
            dt.date.fromisoformat(getattr(s, key))
        except ValueError:
            problems.append(f"sample.{key}={getattr(s, key)!r} is not a date YYYY-MM-DD")
    if not problems and s.start >= s.end:
        problems.append(f"sample.start {s.start} must be before sample.end {s.end}")
    if not 0.0 < s.user_fraction <= 1.0:
        problems.append(f"sample.user_fraction={s.user_fraction} must be in (0, 1]")
    if s.min_user_reviews < 1 or s.min_item_reviews < 1:
        problems.append("sample.min_user_reviews and sample.min_item_reviews must be >= 1")
    if sh.split not in ("random", "stratified", "temporal", "given"):
        problems.append(f"shards.split={sh.split!r} must be random, stratified, temporal or given")
    if sh.split == "given" and not cfg.input.test:
        problems.append("shards.split=given needs input.test (the held-out file)")
    if sh.validation_fraction <= 0 or sh.test_fraction < 0 or sh.validation_fraction + sh.test_fraction >= 1:
        problems.append("shards.validation_fraction must be > 0, test_fraction >= 0, and their sum < 1")
    kinds = models.KINDS
    if t.model not in kinds:
        problems.append(f"train.model={t.model!r} must be one of " + ", ".join(repr(m) for m in kinds))
    else:
        kind = kinds[t.model]
        problems += [f"train.{t.model}.{key} must be a finite number" for key in _non_finite(t.params)]
        problems += kind.check(t.params, cfg)
        if kind.needs_item_histories:
            if sh.history_length < 1:
                problems.append(f"train.model={t.model} learns from item histories: shards.history_length must be >= 1")
            if sh.split != "temporal":
                log.warning("train.model=%s learns which item comes next; with shards.split=%s the held-out items "
                            "are not the users' next items, so validation and the gate judge it on a task it was not "
                            "built for (use shards.split=temporal, or train.model=softmax)", t.model, sh.split)
    for key in ("batch_size", "max_epochs", "patience", "reader_workers", "steps_per_execution",
                "min_steps_per_epoch"):
        if getattr(t, key) is not None and getattr(t, key) < 1:
            problems.append(f"train.{key} must be >= 1")
    if t.factors is not None and t.factors < 1:
        problems.append(f"train.factors={t.factors} must be >= 1 (leave it unset for the model's default)")
    if (t.l2 is not None and t.l2 < 0) or (t.bias_l2 is not None and t.bias_l2 < 0):
        problems.append("train.l2 and train.bias_l2 must be >= 0 (leave them unset for the model's default)")
    if sh.history_length < 0:
        problems.append("shards.history_length must be >= 0")
    if t.optimizer not in OPTIMIZERS:
        problems.append(f"train.optimizer={t.optimizer!r} is not one of {', '.join(OPTIMIZERS)}")
    if t.learning_rate is not None and t.learning_rate <= 0:
        problems.append("train.learning_rate must be > 0")
    if t.dropout is not None and not 0.0 <= t.dropout < 1.0:
        problems.append(f"train.dropout={t.dropout} must be in [0, 1)")
    if sh.rows_per_file < 1 or sh.row_group_mb < 1:
        problems.append("shards.rows_per_file and shards.row_group_mb must be >= 1")
    if not 1 <= cfg.score.top_n <= MAX_TOP_N or cfg.score.block_users < 1:
        problems.append(f"score.top_n must be in 1..{MAX_TOP_N} and score.block_users >= 1")
    nb = cfg.neighbours
    if not 1 <= nb.top_n <= MAX_TOP_N or nb.max_user_items < 1:
        problems.append(f"neighbours.top_n must be in 1..{MAX_TOP_N} and neighbours.max_user_items >= 1")
    g = cfg.gate
    if g.min_ndcg_vs_popularity < 0 or g.max_rmse_vs_bias <= 0:
        problems.append("gate.min_ndcg_vs_popularity must be >= 0 and gate.max_rmse_vs_bias > 0")
    if g.max_drop_vs_published < 0:
        problems.append("gate.max_drop_vs_published must be >= 0 (standard errors of the paired difference)")
    if not 0.0 <= cfg.ingest.max_bad_fraction <= 1.0:
        problems.append(f"ingest.max_bad_fraction={cfg.ingest.max_bad_fraction} must be in [0, 1]")
    if not cfg.input.reviews.strip():
        problems.append("input.reviews is empty: name a file, folder or glob of review files")
    problems += _incremental_problems(cfg)
    if cfg.evaluate.k < 1 or cfg.evaluate.als_rank < 1 or cfg.evaluate.als_iterations < 1:
        problems.append("evaluate.k, evaluate.als_rank and evaluate.als_iterations must be >= 1")
    if min(cfg.evaluate.max_users, cfg.evaluate.als_grid_users, cfg.evaluate.als_users, cfg.evaluate.als_blocks) < 0:
        problems.append("evaluate.max_users, evaluate.als_grid_users, evaluate.als_users and evaluate.als_blocks "
                        "must be >= 0 "
                        "(0: every user; 0 blocks: the session's default parallelism)")
    unknown = sorted(set(cfg.evaluate.baselines) - set(BASELINES))
    if unknown:
        problems.append(f"evaluate.baselines: unknown {', '.join(unknown)}; the ALS baselines are "
                        f"{', '.join(BASELINES)} (popularity is always measured)")
    if cfg.evaluate.als_reg < 0 or min(cfg.evaluate.als_implicit_regs) < 0:
        problems.append("evaluate.als_reg and evaluate.als_implicit_regs must be >= 0")
    if cfg.retention.working < 0 or cfg.retention.published < 0:
        problems.append("retention.working and retention.published must be >= 0 (0: keep every ds)")
    input_problems = readers.problems(cfg.input)
    problems += input_problems
    if not input_problems and t.model in kinds and kinds[t.model].predicts_ratings and not readers.has_ratings(cfg.input):
        problems.append(f"train.model={t.model} predicts ratings, and input.format={cfg.input.format} "
                        f"{'has no rating column' if cfg.input.format == 'csv' else 'has no ratings'}: choose a "
                        f"ranking model ({', '.join(n for n, k in kinds.items() if not k.predicts_ratings)})")
    if cfg.spark.metastore not in METASTORES:
        problems.append(f"spark.metastore={cfg.spark.metastore!r} must be one of {', '.join(METASTORES)}")
    if cfg.publish.jdbc_url and not cfg.publish.jdbc_url.startswith("jdbc:postgresql://"):
        problems.append(f"publish.jdbc_url={cfg.publish.jdbc_url!r} must be a jdbc:postgresql:// URL (or empty)")
    for key in ("jdbc_table", "jdbc_neighbours_table"):
        if not IDENTIFIER.fullmatch(getattr(cfg.publish, key)):
            problems.append(f"publish.{key}={getattr(cfg.publish, key)!r} must be a plain ASCII identifier")
    if cfg.publish.jdbc_table == cfg.publish.jdbc_neighbours_table:
        problems.append("publish.jdbc_table and publish.jdbc_neighbours_table must name two tables")
    if cfg.publish.jdbc_user or cfg.publish.jdbc_password:
        problems.append("publish.jdbc_user and publish.jdbc_password come from RECJOB_SERVING_USER and "
                        "RECJOB_SERVING_PASSWORD in the environment, not from the config")
    if re.search(r"[\[\]{}*?\\]", cfg.data_dir):
        problems.append(f"data_dir={cfg.data_dir!r} holds a glob character ([ ] {{ }} * ? \\): Spark reads a table's "
                        f"folder as a glob, so its tables could not be read back; choose a folder without them")
    if not IDENTIFIER.fullmatch(cfg.database):
        problems.append(f"database={cfg.database!r} must be a plain ASCII identifier (letters, digits, _)")
    if problems:
        raise ConfigError("invalid configuration: " + "; ".join(problems))
    return cfg

