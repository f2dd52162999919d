"""The settings: one frozen dataclass per section of the YAML file, and ``Config``, which holds them.

Each field's comment (on its line or the lines above it) is its description in ``recjob settings`` and
docs/configuration.md; each section's docstring describes the section.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping


DS_PLACEHOLDER = "{ds}"  # in input.reviews / input.metadata / input.test: the run's ds


class ConfigError(ValueError):
    """Bad configuration: unknown key, wrong type or an impossible value."""


@dataclass(frozen=True)
class InputConfig:
    """Where the raw data is and which reader understands it."""

    format: str = "amazon"  # a format of the readers' registry (recjob/readers/): amazon, movielens, csv, amazon-ratings, sequences
    # file, folder or glob; relative -> under data_dir; {ds} is replaced by the run's ds (e.g. incoming/{ds}/*.json.gz)
    reviews: str = "raw/reviews.json.gz"
    metadata: str = "raw/meta.json.gz"  # optional: empty string for none; {ds} as in input.reviews
    # false: input.reviews is the whole history, read again for every ds. true: it names one period's new reviews
    # (it must hold {ds}): each ds ingests only its period, kept as that ds's reviews partition (never expired);
    # a run reads every period up to its ds, a later review of one (user, item) replacing an earlier one, and a
    # ds rerun replaces only its period. Items carry over from the previous ds when a period has no metadata.
    incremental: bool = False
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
    """The Spark session: master, metastore, extra Spark settings."""

    master: str = "local[*]"  # ignored when spark-submit already set a master
    app_name: str = "recjob"  # the Spark application's name (the UI, the cluster manager)
    # derby: embedded metastore under data_dir (one process at a time); postgres: Spark's built-in Hive metastore
    # client on a PostgreSQL database, RECJOB_METASTORE_URL / _USER / _PASSWORD from the environment (see
    # METASTORE_CONF); external: whatever hive-site.xml or spark.conf says (e.g. a thrift metastore service)
    metastore: str = "derby"
    jdbc_jar: str = "/usr/share/java/postgresql.jar"  # postgres: the JDBC driver (Debian libpostgresql-jdbc-java)
    # any Spark setting, applied last (spark.driver.memory, spark.sql.shuffle.partitions, ...); a value holding
    # a secret is written ${VAR} and read from the environment
    conf: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SampleConfig:
    """Which reviews enter the run: a time window, a k-core, a deterministic user sample."""

    start: str = "2018-01-01"  # inclusive, UTC
    end: str = "2019-01-01"  # exclusive, UTC
    min_user_reviews: int = 5  # k-core: every kept user has at least this many reviews ...
    min_item_reviews: int = 5  # ... and every kept item at least this many
    max_kcore_iterations: int = 50  # the k-core filter stops after this many passes even if not yet stable
    user_fraction: float = 1.0  # deterministic user sample by hash of reviewerID
    seed: int = 42  # the user sample's hash seed


@dataclass(frozen=True)
class ShardsConfig:
    """How interactions are split and written as training shards."""

    split: str = "random"  # random | stratified (per user) | temporal (leave-last-out per user) | given
    validation_fraction: float = 0.1  # random and stratified splits: the share of interactions held out for validation
    test_fraction: float = 0.1  # ... and for test
    seed: int = 42  # the split's seed (and the temporal split's tie-break hash)
    rows_per_file: int = 1_000_000  # at most this many rows per parquet shard file
    row_group_mb: int = 8  # parquet row group size: the unit Petastorm reads
    # each user's latest train items written beside the shards (item histories), for the models that learn from
    # them (seq, sasrec): written whatever train.model is, so that changing the model needs no new shards; 0: none
    history_length: int = 50


@dataclass(frozen=True)
class TrainConfig:
    """The model kind and how it is trained."""

    model: str = "softmax"  # a kind of the model registry (`recjob models`): softmax, bpr, seq, sasrec, dot, mlp, bpmf
    factors: int | None = None  # embedding size; None: the model kind's default (its ``defaults``)
    dropout: float | None = None  # None: the model kind's default (0.2 unless it says otherwise)
    l2: float | None = None  # per-example L2 on the looked-up factors; None: the model kind's default
    bias_l2: float | None = None  # per-example L2 on the looked-up biases; None: the model kind's default
    learning_rate: float | None = None  # the optimizer's; None: the model kind's default (0.01 unless it says otherwise)
    # lazy_adam: Adam updating only the embedding rows in the batch (a step's cost does not grow with the number
    # of users); adam: Keras's Adam, every row of every table at every step; auto: adam up to 100,000 users +
    # items, lazy_adam above (recjob.models.keras_fit.optimizer_name); adamax: Keras's Adamax (dense, every row
    # at every step), the seed notebook's optimizer, for reproducing it (bench/quality.py's dot100 protocol)
    optimizer: str = "auto"
    batch_size: int = 1024  # training examples per step
    min_steps_per_epoch: int = 20  # small data: the batch shrinks so that an epoch has at least this many steps
    max_epochs: int = 40  # at most this many passes over the train split (early stopping ends most runs sooner)
    patience: int | None = None  # epochs without improvement before stopping; None: the kind's default (3; sasrec 10)
    seed: int = 42  # initialisation, sampling and the ranking probe's users
    reader_workers: int = 1  # 1 keeps the row order, hence training, reproducible
    # training steps per call of Keras's compiled train function (a loop in the graph): fewer Python round trips
    # per step (bench/results/train_feed.md). Capped so an epoch stays within 3 % of one pass
    steps_per_execution: int = 16
    ranking_probe_users: int = 2000  # ranking models: validation NDCG@k per epoch on up to this many sampled users
    # start from the weights of the model published for the latest earlier ds, when it is of the same kind and
    # factor count and the kind can (the models registry): the ids are stable, so each old user's and item's row
    # carries over; new users and items start fresh. Off by default: on bench/daily.py each warm-started day
    # fell a little below the model it started from and the gate refused day 4 (bench/results/daily.md)
    warm_start: bool = False
    # Each kind's own settings, name -> its Settings (recjob.models), given as train.<kind>.<key>; filled in by
    # the loader for every kind of the registry. ``params`` is the chosen kind's.
    kinds: Mapping[str, Any] = field(default_factory=dict, repr=False, metadata={"hidden": True})

    @property
    def params(self) -> Any:
        """The chosen kind's own settings (its ``Settings`` dataclass; its defaults when not given)."""
        if self.model in self.kinds:
            return self.kinds[self.model]
        from recjob import models  # only for a TrainConfig built by hand, without the loader

        return models.get(self.model).Settings()

    def record(self) -> dict:
        """The settings as ``training_runs.params`` and the epoch log keep them: the shared ones and the kind's."""
        shared = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "kinds"}
        return {**shared, self.model: dataclasses.asdict(self.params)}


@dataclass(frozen=True)
class ScoreConfig:
    """The published lists: their length and how users are blocked for scoring."""

    top_n: int = 10  # items per user in the published lists
    block_users: int = 64  # users per matrix product in an executor (bench/results/score.md)


@dataclass(frozen=True)
class NeighboursConfig:
    """Items like an item: each item's most similar items, by the model's factors and by co-occurrence."""

    top_n: int = 10  # similar items per item in item_neighbours
    cooccurrence: bool = True  # also the co-occurrence (Jaccard) baseline, published instead when better on validation
    max_user_items: int = 50  # co-occurrence counts each user's latest this many train items (<= shards.history_length)


@dataclass(frozen=True)
class EvaluateConfig:
    """The ranking and rating metrics, and the baselines the model is compared with."""

    k: int = 10  # the ranking metrics' cutoff (HR@k, NDCG@k, ...), also of the gate and the ranking probe
    # ranking metrics over at most this many users per split, a seeded sample when there are more (the same
    # users for the model and every baseline; the sample size and each metric's standard error are recorded);
    # 0: every user. Small data keeps the exact evaluation of every user.
    max_users: int = 100_000
    relevance_threshold: float = 0.0  # held-out items rated >= this are relevant (0: all held-out items)
    als_rank: int = 50  # ALS explicit: best of a small grid on ML-100k u1..u5 (rank 50, regParam 0.1)
    als_reg: float = 0.1  # ALS explicit's regParam
    # ALS implicit is fitted for each regParam here and the one with the best validation NDCG@k is the baseline
    # (no single value is best on every dataset: bench/results/quality.md)
    als_implicit_regs: tuple[float, ...] = (0.1, 1.0, 10.0)
    # above this many train users the regParam grid is fitted on a seeded sample of them and only the chosen
    # value on every user (0: the grid on every user); an ALS fit's cost grows with the users
    als_grid_users: int = 50_000
    # the ALS baselines fitted: als_implicit (ranking) and als (explicit, rating models only); [] fits neither.
    # Popularity, the gate's reference, is always measured
    baselines: tuple[str, ...] = ("als_implicit", "als")
    # above this many train users the ALS baselines are fitted on a seeded sample of that many (the first in the
    # seeded hash order of every user sample), and every candidate's ranking metrics are measured on held-out
    # users of that sample, so the model and the baselines face the same users; 0: every user
    als_users: int = 0
    als_alpha: float = 40.0  # confidence 1 + alpha for an observed interaction (Hu, Koren, Volinsky 2008)
    als_iterations: int = 15  # both ALS baselines' iterations
    # ALS's user blocks and item blocks. 10 is Spark's default, the same ALS on every machine (its random start
    # is seeded per block), with which the published baselines were fitted; 0: the session's default
    # parallelism (the cores in local mode): a little faster, machine-dependent factors
    als_blocks: int = 10
    seed: int = 42  # the evaluated users' sample and the baselines' seeds


@dataclass(frozen=True)
class GateConfig:
    """Publish only a model that beats the baselines on the validation split."""

    enabled: bool = True  # false: publish whatever the figures say
    min_ndcg_vs_popularity: float = 1.0  # model NDCG@k must be >= this x popularity's
    max_rmse_vs_bias: float = 1.0  # rating models: model RMSE must be <= this x the bias baseline's
    # the champion (the model published for the latest earlier ds, scored by evaluate on the same validation users
    # with the same exclusions): the model's validation NDCG@k may fall below the champion's by at most this many
    # standard errors of their paired difference; without a champion only the thresholds above apply
    max_drop_vs_published: float = 2.0


@dataclass(frozen=True)
class PublishConfig:
    """Optionally also a serving copy of the published lists and similar items: PostgreSQL tables that
    applications read without Spark, both replaced per ds in one transaction."""

    jdbc_url: str = ""  # e.g. jdbc:postgresql://127.0.0.1:55432/serving; "" for none
    jdbc_table: str = "recommendations"  # the serving copy's table of the lists in that database
    jdbc_neighbours_table: str = "item_neighbours"  # the serving copy's table of the similar items
    # the user and password: RECJOB_SERVING_USER and RECJOB_SERVING_PASSWORD in the environment (an Airflow
    # connection's fields), read when the config is loaded; never in a file
    jdbc_user: str = field(default="", repr=False, compare=False)
    jdbc_password: str = field(default="", repr=False, compare=False)


@dataclass(frozen=True)
class RetentionConfig:
    """How many run dates each table and folder keeps; expiry runs at the end of every publish."""

    # the working tables and folders (reviews, interactions, ids, shards, factors, scores, models, reports, ...)
    # keep the newest this many ds (and always the ds just run); 0: every ds
    working: int = 2
    # the published tables (recommendations, item_neighbours), evaluation, the published model copies and the
    # pages keep the newest this many ds (and always the ds just published); 0: every ds
    published: int = 30


@dataclass(frozen=True)
class Config:
    """Every setting of a run: where its data lives, and one section per part of the pipeline."""

    data_dir: str = "recjob-data"  # every relative path under it: tables, shards, models, reports, locks
    database: str = "recjob"  # the tables' database: recjob.reviews, ..., recjob.recommendations
    input: InputConfig = field(default_factory=InputConfig)
    ingest: IngestConfig = field(default_factory=IngestConfig)
    spark: SparkConfig = field(default_factory=SparkConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
    shards: ShardsConfig = field(default_factory=ShardsConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    score: ScoreConfig = field(default_factory=ScoreConfig)
    neighbours: NeighboursConfig = field(default_factory=NeighboursConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    gate: GateConfig = field(default_factory=GateConfig)
    publish: PublishConfig = field(default_factory=PublishConfig)
    retention: RetentionConfig = field(default_factory=RetentionConfig)

    def path(self, relative: str) -> str:
        """Resolve a configured path: URLs and absolute paths as given, others under data_dir."""
        if "://" in relative or os.path.isabs(relative):
            return relative
        base = self.data_dir
        if "://" in base:
            return base.rstrip("/") + "/" + relative
        return str(Path(base).absolute() / relative)

    def input_path(self, value: str, ds: str) -> str:
        """An ``input.*`` path for a run date: ``{ds}`` replaced by it, then resolved as ``path`` does."""
        return self.path(value.replace(DS_PLACEHOLDER, ds))

    def ds_path(self, kind: str, ds: str) -> str:
        """The folder of one run date's artefact of a kind (shards, models, ...)."""
        return self.path(f"{kind}/ds={ds}")

    def table(self, name: str) -> str:
        return f"{self.database}.{name}"

