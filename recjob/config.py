"""One typed configuration object, loaded once from YAML and passed down.

Every value can be overridden from the command line with ``--set section.key=value``.
Library code never reads files or environment variables itself; it receives a ``Config``.
"""
from __future__ import annotations

import collections.abc
import dataclasses
import functools
import datetime as dt
import logging
import math
import os
import re
import stat
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from recjob import models, readers

log = logging.getLogger(__name__)


class ConfigError(ValueError):
    """Bad configuration: unknown key, wrong type or an impossible value."""


@dataclass(frozen=True)
class InputConfig:
    """Where the raw data is and which reader understands it."""

    format: str = "amazon"  # amazon | movielens | csv | amazon-ratings | sequences (recjob.readers.FORMATS)
    reviews: str = "raw/reviews.json.gz"  # file, folder or glob; relative -> under data_dir
    metadata: str = "raw/meta.json.gz"  # optional: empty string for none
    test: str = ""  # optional given test split in the same format (e.g. ml-100k u1.test): shards.split=given
    # format=csv: the role of each column in file order: user, item, rating, time, _ (ignored), e.g.
    # "item,user,rating,time"; no rating: every row 1.0; no time: file order is time order (recjob.readers)
    columns: str = ""
    # format=csv: one character, or tab, comma, semicolon, pipe, colon, space; empty: tab for .tsv files, else comma
    delimiter: str = ""
    header: bool = False  # format=csv: the first line of each file names the columns (skipped)


@dataclass(frozen=True)
class IngestConfig:
    """How much bad input a run accepts, and what to do with a file that cannot be read at all."""

    # Above this fraction of invalid lines (quarantined for any reason but "duplicate") the stage fails before
    # replacing anything: a wrong or broken input file must not be published as a tiny model.
    max_bad_fraction: float = 0.01
    # false: a file that cannot be read (truncated or corrupt gzip, not gzip despite its name) stops the run,
    # named in a one-line error; true: it is skipped, recorded in quarantine with the reason, the others go on.
    skip_unreadable_files: bool = False


@dataclass(frozen=True)
class SparkConfig:
    master: str = "local[*]"  # ignored when spark-submit already set a master
    app_name: str = "recjob"
    # derby: embedded metastore under data_dir (one process at a time); postgres: Spark's built-in Hive metastore
    # client on a PostgreSQL database, RECJOB_METASTORE_URL / _USER / _PASSWORD from the environment (see
    # METASTORE_CONF); external: whatever hive-site.xml or spark.conf says (e.g. a thrift metastore service)
    metastore: str = "derby"
    jdbc_jar: str = "/usr/share/java/postgresql.jar"  # postgres: the JDBC driver (Debian libpostgresql-jdbc-java)
    conf: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SampleConfig:
    start: str = "2018-01-01"  # inclusive, UTC
    end: str = "2019-01-01"  # exclusive, UTC
    min_user_reviews: int = 5  # k-core: every kept user has at least this many reviews ...
    min_item_reviews: int = 5  # ... and every kept item at least this many
    max_kcore_iterations: int = 50
    user_fraction: float = 1.0  # deterministic user sample by hash of reviewerID
    seed: int = 42


@dataclass(frozen=True)
class ShardsConfig:
    split: str = "random"  # random | stratified (per user) | temporal (leave-last-out per user) | given
    validation_fraction: float = 0.1
    test_fraction: float = 0.1
    seed: int = 42
    rows_per_file: int = 1_000_000
    row_group_mb: int = 8
    # each user's latest train items written beside the shards (item histories), for the models that learn from
    # them (seq): written whatever train.model is, so that changing the model needs no new shards; 0: none
    history_length: int = 50


@dataclass(frozen=True)
class TrainConfig:
    model: str = "softmax"  # a kind of the model registry (recjob.models): softmax | bpr | seq | dot | mlp | bpmf
    factors: int | None = None  # embedding size; None: the model kind's default (its ``defaults``)
    mlp_layers: tuple = (64, 32)
    dropout: float | None = None  # None: the model kind's default (0.2 unless it says otherwise)
    l2: float | None = None  # per-example L2 on the looked-up factors; None: the model kind's default
    bias_l2: float | None = None  # per-example L2 on the looked-up biases; None: the model kind's default
    learning_rate: float | None = None  # the optimizer's; None: the model kind's default (0.01 unless it says otherwise)
    # lazy_adam: Adam updating only the embedding rows in the batch (a step's cost does not grow with the number
    # of users); adam: Keras's Adam, every row of every table at every step; auto: adam up to 100,000 users +
    # items, lazy_adam above (recjob.models.keras_fit.optimizer_name); adamax: Keras's Adamax (dense, every row
    # at every step), the seed notebook's optimizer, for reproducing it (bench/quality.py's dot100 protocol)
    optimizer: str = "auto"
    batch_size: int = 1024
    min_steps_per_epoch: int = 20  # small data: the batch shrinks so that an epoch has at least this many steps
    max_epochs: int = 40
    patience: int | None = None  # epochs without improvement before stopping; None: the kind's default (3; sasrec 10)
    seed: int = 42
    reader_workers: int = 1  # 1 keeps the row order, hence training, reproducible
    # training steps per call of Keras's compiled train function (a loop in the graph): fewer Python round trips
    # per step. bench/train_feed.py: 16 doubled dot's examples/s. Capped so an epoch stays within 3 % of one pass
    steps_per_execution: int = 16
    negatives: int = 2048  # softmax: items per batch in the softmax (the whole catalogue if it is smaller)
    markov_order: int = 3  # seq: the latest items that also enter with their own learnt weight
    ranking_probe_users: int = 2000  # ranking models: validation NDCG@k per epoch on up to this many sampled users
    # bpmf (Gibbs sampling): sweeps before the first kept sample, samples averaged, sweeps between kept samples
    mcmc_burn_in: int = 50
    mcmc_samples: int = 50
    mcmc_thin: int = 5
    bpmf_implicit: bool = True  # bpmf: the rated items / raters as side information in the priors (SVD++-like)
    mcmc_cg_iterations: int = 50  # bpmf: cap on each conjugate-gradient solve for the implicit links
    bpmf_export_rank: int = 32  # bpmf: the sample average is exported as this many factors (0: samples x factors)
    bpmf_noise_prior: float = 0.1  # bpmf: weight (x n ratings) of the noise prior at the bias model's error


@dataclass(frozen=True)
class ScoreConfig:
    top_n: int = 10
    block_users: int = 64  # users per matrix product in an executor (64 vs 128: README "Scoring speed")


@dataclass(frozen=True)
class EvaluateConfig:
    k: int = 10
    # ranking metrics over at most this many users per split, a seeded sample when there are more (the same
    # users for the model and every baseline; the sample size and each metric's standard error are recorded);
    # 0: every user. Small data keeps the exact evaluation of every user.
    max_users: int = 100_000
    relevance_threshold: float = 0.0  # held-out items rated >= this are relevant (0: all held-out items)
    als_rank: int = 50  # ALS explicit: best of a small grid on ML-100k u1..u5 (rank 50, regParam 0.1)
    als_reg: float = 0.1
    # ALS implicit is fitted for each regParam here and the one with the best validation NDCG@k is the baseline
    # (no single value was best on every shared dataset: 1 on ML-100k, 10 on Gift_Cards)
    als_implicit_regs: tuple[float, ...] = (0.1, 1.0, 10.0)
    # above this many train users the regParam grid is fitted on a seeded sample of them and only the chosen
    # value on every user (0: the grid on every user): at 400k users each ALS fit took about a minute here
    als_grid_users: int = 50_000
    als_alpha: float = 40.0  # confidence 1 + alpha for an observed interaction (Hu, Koren, Volinsky 2008)
    als_iterations: int = 15
    # ALS's user blocks and item blocks. 10 is Spark's default, the same ALS on every machine (its random start
    # is seeded per block), with which the published baselines were fitted; 0: the session's default
    # parallelism (the cores in local mode), machine-dependent factors; on 2 cores the 5-core run's ALS fit on
    # every user took 155 s instead of 164, its evaluate stage 496 s instead of 528
    als_blocks: int = 10
    seed: int = 42


@dataclass(frozen=True)
class GateConfig:
    """Publish only a model that beats the baselines on the validation split."""

    enabled: bool = True
    min_ndcg_vs_popularity: float = 1.0  # model NDCG@k must be >= this x popularity's
    max_rmse_vs_bias: float = 1.0  # rating models: model RMSE must be <= this x the bias baseline's


@dataclass(frozen=True)
class PublishConfig:
    """Optionally also a serving copy of the published lists: a PostgreSQL table that applications read without
    Spark, replaced per ds in one transaction, indexed on (ds, reviewerID)."""

    jdbc_url: str = ""  # e.g. jdbc:postgresql://127.0.0.1:55432/serving; "" for none
    jdbc_table: str = "recommendations"
    # the user and password: RECJOB_SERVING_USER and RECJOB_SERVING_PASSWORD in the environment (an Airflow
    # connection's fields), read when the config is loaded; never in a file
    jdbc_user: str = field(default="", repr=False, compare=False)
    jdbc_password: str = field(default="", repr=False, compare=False)


@dataclass(frozen=True)
class Config:
    data_dir: str = "recjob-data"
    database: str = "recjob"
    input: InputConfig = field(default_factory=InputConfig)
    ingest: IngestConfig = field(default_factory=IngestConfig)
    spark: SparkConfig = field(default_factory=SparkConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
    shards: ShardsConfig = field(default_factory=ShardsConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    score: ScoreConfig = field(default_factory=ScoreConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    gate: GateConfig = field(default_factory=GateConfig)
    publish: PublishConfig = field(default_factory=PublishConfig)

    def path(self, relative: str) -> str:
        """Resolve a configured path: URLs and absolute paths as given, others under data_dir."""
        if "://" in relative or os.path.isabs(relative):
            return relative
        base = self.data_dir
        if "://" in base:
            return base.rstrip("/") + "/" + relative
        return str(Path(base).absolute() / relative)

    def ds_path(self, kind: str, ds: str) -> str:
        """The folder of one run date's artefact of a kind (shards, models, ...)."""
        return self.path(f"{kind}/ds={ds}")

    def table(self, name: str) -> str:
        return f"{self.database}.{name}"


IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # database names: plain ASCII, safe in SQL unquoted
MAX_TOP_N = 1000
MAX_CONFIG_BYTES = 1 << 20  # a config file larger than this is refused unread
OPTIMIZERS = ("auto", "lazy_adam", "adam", "adamax")  # train.optimizer


def local_path(url: str) -> str:
    """``file:///a%20b`` or ``file:/a b`` -> ``/a b``."""
    import urllib.parse

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
    elif kinds[t.model].needs_item_histories:
        if sh.history_length < 1:
            problems.append(f"train.model={t.model} learns from item histories: shards.history_length must be >= 1")
        elif t.markov_order > sh.history_length:
            problems.append(f"train.markov_order={t.markov_order} must be <= shards.history_length={sh.history_length}")
        if sh.split != "temporal":
            log.warning("train.model=%s learns which item comes next; with shards.split=%s the held-out items are not "
                        "the users' next items, so validation and the gate judge it on a task it was not built for "
                        "(use shards.split=temporal, or train.model=softmax)", t.model, sh.split)
    for key in ("batch_size", "max_epochs", "patience", "reader_workers", "negatives", "steps_per_execution",
                "min_steps_per_epoch", "mcmc_samples", "mcmc_thin", "mcmc_cg_iterations", "markov_order"):
        if getattr(t, key) is not None and getattr(t, key) < 1:
            problems.append(f"train.{key} must be >= 1")
    if t.factors is not None and t.factors < 1:
        problems.append(f"train.factors={t.factors} must be >= 1 (leave it unset for the model's default)")
    if (t.l2 is not None and t.l2 < 0) or (t.bias_l2 is not None and t.bias_l2 < 0):
        problems.append("train.l2 and train.bias_l2 must be >= 0 (leave them unset for the model's default)")
    if min(t.mcmc_burn_in, t.bpmf_noise_prior, t.bpmf_export_rank) < 0:
        problems.append("train.mcmc_burn_in, bpmf_noise_prior and bpmf_export_rank must be >= 0")
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
    g = cfg.gate
    if g.min_ndcg_vs_popularity < 0 or g.max_rmse_vs_bias <= 0:
        problems.append("gate.min_ndcg_vs_popularity must be >= 0 and gate.max_rmse_vs_bias > 0")
    if not 0.0 <= cfg.ingest.max_bad_fraction <= 1.0:
        problems.append(f"ingest.max_bad_fraction={cfg.ingest.max_bad_fraction} must be in [0, 1]")
    if not cfg.input.reviews.strip():
        problems.append("input.reviews is empty: name a file, folder or glob of review files")
    if cfg.evaluate.k < 1 or cfg.evaluate.als_rank < 1 or cfg.evaluate.als_iterations < 1:
        problems.append("evaluate.k, evaluate.als_rank and evaluate.als_iterations must be >= 1")
    if cfg.evaluate.max_users < 0 or cfg.evaluate.als_grid_users < 0 or cfg.evaluate.als_blocks < 0:
        problems.append("evaluate.max_users, evaluate.als_grid_users and evaluate.als_blocks must be >= 0 "
                        "(0: every user; 0 blocks: the session's default parallelism)")
    if cfg.evaluate.als_reg < 0 or min(cfg.evaluate.als_implicit_regs) < 0:
        problems.append("evaluate.als_reg and evaluate.als_implicit_regs must be >= 0")
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
    if not IDENTIFIER.fullmatch(cfg.publish.jdbc_table):
        problems.append(f"publish.jdbc_table={cfg.publish.jdbc_table!r} must be a plain ASCII identifier")
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


class YamlError(ValueError):
    """Text that is not valid YAML (PyYAML's error, wrapped: this module imports PyYAML only when parsing, so
    that the executors, which unpickle functions of modules that import this one, need no PyYAML)."""

    def __init__(self, exc: Exception):
        super().__init__(str(exc))
        self.problem = getattr(exc, "problem", None)


@functools.lru_cache(maxsize=1)
def _loader() -> type:
    """YAML as people write settings: ``1e-9`` is a number (YAML 1.1 wants ``1.0e-9``), and dates stay text
    (checked by the settings that hold them, with the key in the message, instead of failing in the parser)."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
    def compose_node(self, parent, index):  # noqa: ANN001 (PyYAML's signature)
        # Anchors and aliases are refused before anything is built: a few hundred bytes of nested aliases
        # expand to billions of nodes wherever the value is later walked or printed (a "YAML bomb").
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise yaml.composer.ComposerError(None, None, "anchors and aliases (&name, *name) are not accepted "
                                              "in recjob settings: write the value out", event.start_mark)
        return super(Loader, self).compose_node(parent, index)

    def construct_mapping(self, node, deep=False):  # noqa: ANN001
        if isinstance(node, yaml.MappingNode):
            seen: dict = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                if not isinstance(key, collections.abc.Hashable):
                    continue  # PyYAML's own error follows
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"the key {key!r} appears twice (also at line {seen[key] + 1}): the last one "
                        f"would silently win", key_node.start_mark)
                seen[key] = key_node.start_mark.line
        return super(Loader, self).construct_mapping(node, deep=deep)

    Loader.compose_node = compose_node
    Loader.construct_mapping = construct_mapping
    Loader.add_implicit_resolver(
        "tag:yaml.org,2002:float",
        re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?(?:[eE][-+]?[0-9]+)
                    |[-+]?\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                    |[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$""", re.X),
        list("-+0123456789."))
    return Loader


def _yaml(text: str) -> Any:
    import yaml

    try:
        return yaml.load(text, Loader=_loader())  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as exc:
        raise YamlError(exc) from None


def _coerce(value: Any, typ: Any, where: str) -> Any:
    origin = typing.get_origin(typ)
    args = typing.get_args(typ)
    if origin in (typing.Union, types.UnionType) and type(None) in args:  # optional: null means unset
        if value is None:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _coerce(value, inner, where)
    if typ is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if typ is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if origin is tuple and typing.get_args(typ)[:1] == (float,):
        if (isinstance(value, (list, tuple)) and value
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)):
            return tuple(float(v) for v in value)
        raise ConfigError(f"{where}: expected a non-empty list of numbers, got {value!r}")
    if typ is tuple or origin is tuple:
        if isinstance(value, (list, tuple)) and all(isinstance(v, int) for v in value):
            return tuple(value)
        raise ConfigError(f"{where}: expected a list of integers, got {value!r}")
    if origin is collections.abc.Mapping or typ is Mapping:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return {str(k): str(v).lower() if isinstance(v, bool) else str(v) for k, v in value.items()}
    if typ in (int, float, str, bool):
        if typ is int and isinstance(value, bool) or not isinstance(value, typ):
            raise ConfigError(f"{where}: expected {typ.__name__}, got {value!r}")
        return value
    raise ConfigError(f"{where}: unsupported type {typ}")


def _build(cls: type, values: Mapping[str, Any], where: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(f"unknown key(s) {', '.join(where + k for k in unknown)}; known: {', '.join(sorted(names))}")
    kwargs = {}
    for name, value in values.items():
        typ = hints[name]
        if dataclasses.is_dataclass(typ):
            if not isinstance(value, Mapping):
                raise ConfigError(f"{where}{name}: expected a section (mapping), got {value!r}")
            kwargs[name] = _build(typ, value, f"{where}{name}.")
        else:
            kwargs[name] = _coerce(value, typ, where + name)
    return cls(**kwargs)


def _merge(base: dict, extra: Mapping) -> dict:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping) and key != "conf":
            out[key] = _merge(out[key], value)
        elif key == "conf" and isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = {**out[key], **value}
        else:
            out[key] = value
    return out


def parse_overrides(items: list[str] | None) -> dict:
    """Turn ``["train.factors=64", "sample.start=2017-01-01"]`` into a nested dict (values parsed as YAML)."""
    out: dict = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key=value, e.g. train.factors=64")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        if parts[0] == "spark" and len(parts) > 2 and parts[1] == "conf":
            parts = ["spark", "conf", ".".join(parts[2:])]  # spark.conf.spark.sql.x=1
        try:
            value = _yaml(raw) if raw.strip() else ""
        except YamlError as exc:
            raise ConfigError(f"--set {item!r}: the value is not valid YAML ({exc.problem or exc})") from None
        if parts[-1] in ("start", "end") and isinstance(value, dt.date):
            value = value.isoformat()
        node = out
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return out


def _dates_to_str(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _dates_to_str(v) for k, v in node.items()}
    if isinstance(node, (dt.date, dt.datetime)):
        return node.isoformat()
    return node


# Spark settings that hold secrets (the same words Spark redacts in its UI and logs): their values come from the
# environment, written ${VAR}, never from a committed file or a command line that a scheduler logs.
SECRET_KEY = re.compile(r"(?i)secret|password|token|credential|access[._-]?key")
ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


METASTORES = ("derby", "postgres", "external")

JDBC_DRIVER = "org.postgresql.Driver"  # PostgreSQL's JDBC driver: the metastore, its lock, the serving copy

# spark.metastore=postgres: Spark's built-in Hive metastore client on PostgreSQL. The connection comes from the
# environment (an Airflow connection's fields, or `deploy/services.sh env` for the local one), never from a file;
# the schema is created on first use. Keys set in spark.conf win.
METASTORE_CONF = {
    "postgres": {
        "spark.hadoop.javax.jdo.option.ConnectionURL": "${RECJOB_METASTORE_URL}",
        "spark.hadoop.javax.jdo.option.ConnectionUserName": "${RECJOB_METASTORE_USER}",
        "spark.hadoop.javax.jdo.option.ConnectionPassword": "${RECJOB_METASTORE_PASSWORD}",
        "spark.hadoop.javax.jdo.option.ConnectionDriverName": JDBC_DRIVER,
        # The schema is created on first use, table by table. Not its foreign keys: adding one while another
        # connection of the same client holds a transaction on the referenced table deadlocks on PostgreSQL
        # (ALTER TABLE "TBL_PRIVS" ADD CONSTRAINT ... waits on an INSERT INTO "PARTITION_KEYS" forever).
        "spark.hadoop.datanucleus.schema.autoCreateTables": "true",
        "spark.hadoop.datanucleus.schema.autoCreateColumns": "true",
        "spark.hadoop.datanucleus.schema.autoCreateConstraints": "false",
        "spark.hadoop.hive.metastore.schema.verification": "false",
    },
}


def _resolve_secrets(conf: Mapping[str, str], environ: Mapping[str, str]) -> dict[str, str]:
    out = {}
    for key, value in conf.items():
        ref = ENV_REF.fullmatch(value)
        if SECRET_KEY.search(key) and not ref:
            raise ConfigError(f"spark.conf.{key} holds a secret: give it as ${{VAR}} and set VAR in the environment "
                              f"(or the Airflow connection's environment), not its value")
        if ref:
            if ref.group(1) not in environ:
                raise ConfigError(f"spark.conf.{key} refers to ${{{ref.group(1)}}}, which is not set in the environment")
            value = environ[ref.group(1)]
        out[key] = value
    return out


def load(path: str | None = None, overrides: list[str] | None = None,
         environ: Mapping[str, str] | None = None, resolve_env: bool = True) -> Config:
    """Load a YAML file (optional), apply ``key=value`` overrides, check and return the config.
    ``spark.conf`` values written ``${VAR}`` are read from ``environ`` (default: the process environment);
    ``resolve_env=False`` leaves them, and the serving credentials, unresolved (for reading the settings only)."""
    values: dict = {}
    if path:
        try:
            kind = os.stat(path)  # before opening: opening a FIFO waits for a writer
            if not stat.S_ISREG(kind.st_mode):  # a folder, /dev/zero or a FIFO would fail late or never
                raise ConfigError(f"config file {path} is not a regular file")
            with open(path, "rb") as fh:
                if kind.st_size > MAX_CONFIG_BYTES:
                    raise ConfigError(f"config file {path} holds {kind.st_size:,} bytes; a recjob config is a few "
                                      f"kilobytes (at most {MAX_CONFIG_BYTES:,})")
                text = fh.read(MAX_CONFIG_BYTES + 1).decode("utf-8")
            values = _yaml(text) or {}
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {path}") from None
        except IsADirectoryError:
            raise ConfigError(f"config file {path} is not a regular file") from None
        except PermissionError:
            raise ConfigError(f"config file {path} cannot be read (permission denied)") from None
        except UnicodeDecodeError as exc:
            raise ConfigError(f"config file {path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
        except YamlError as exc:
            raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
        if not isinstance(values, dict):
            raise ConfigError(f"config file {path} must hold a mapping at the top level")
    values = _merge(_dates_to_str(values), parse_overrides(overrides))
    cfg = _check(_build(Config, values, ""))
    if cfg.data_dir.startswith("file:"):  # a local folder: Derby and the Java options need a plain path
        cfg = dataclasses.replace(cfg, data_dir=local_path(cfg.data_dir))
    if not resolve_env:
        return _with_model_defaults(cfg)
    environ = os.environ if environ is None else environ
    conf = {**METASTORE_CONF.get(cfg.spark.metastore, {}), **cfg.spark.conf}
    unset = [ref for key, value in conf.items() if key not in cfg.spark.conf
             for ref in ENV_REF.findall(value) if ref not in environ]
    if unset:
        raise ConfigError(f"spark.metastore={cfg.spark.metastore} needs {', '.join(unset)} in the environment (the "
                          f"Airflow connection's fields, or `source <(deploy/services.sh env)` for the local one)")
    conf = _resolve_secrets(conf, environ)
    if cfg.publish.jdbc_url:
        missing = [v for v in ("RECJOB_SERVING_USER", "RECJOB_SERVING_PASSWORD") if v not in environ]
        if missing:
            raise ConfigError(f"publish.jdbc_url is set: {' and '.join(missing)} must be set in the environment")
        cfg = dataclasses.replace(cfg, publish=dataclasses.replace(
            cfg.publish, jdbc_user=environ["RECJOB_SERVING_USER"], jdbc_password=environ["RECJOB_SERVING_PASSWORD"]))
    cfg = dataclasses.replace(cfg, spark=dataclasses.replace(cfg.spark, conf=conf))
    return _with_model_defaults(cfg)


def _with_model_defaults(cfg: Config) -> Config:
    """The settings left unset (None) take the model kind's defaults."""
    t = cfg.train
    resolved = {k: v for k, v in models.get(t.model).settings().items() if getattr(t, k) is None}
    return dataclasses.replace(cfg, train=dataclasses.replace(t, **resolved))
