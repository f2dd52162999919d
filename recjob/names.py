"""Names every part of recjob shares, in one Spark-free module: the stage order, table and column names, split
names, the model inputs and the exit codes.

The DAG imports this module when recjob is importable in Airflow's environment (it needs nothing but the
standard library), so a stage added here or an exit code changed here is seen by the command, the pipeline,
the DAG and the tests alike.
"""
from __future__ import annotations

# The pipeline's stages, in the order they run; recjob/stages/<name>.py is each one.
STAGES = ("ingest", "sample", "ids", "shards", "train", "score", "evaluate", "publish")

# ---- columns
# Original identifiers (as in Amazon Review Data 2018); every user-facing table keeps them.
USER = "reviewerID"
ITEM = "asin"
RATING = "overall"
TIME = "unixReviewTime"
TITLE = "title"

# The shards' columns besides the indices: the rating as float32 ("overall" of a review), the label models learn.
LABEL = "rating"

# Internal contiguous indices (also the model inputs' names: USER_IN, ITEM_IN below).
USER_IDX = "user_idx"
ITEM_IDX = "item_idx"

HISTORY = "history"  # a user's latest items, most recent first (item histories of the shards stage)

DS = "ds"
SPLIT = "split"
RANK = "rank"
SCORE = "score"
REASON = "reason"
SOURCE = "source"
RAW = "raw"

TRAIN, VALIDATION, TEST = "train", "validation", "test"

# The ALS baselines (their names in the evaluation table, and the values of evaluate.baselines): ALS implicit
# ranks, ALS explicit ("als") predicts ratings. "popularity" is always measured (the gate's reference).
ALS_IMPLICIT, ALS_EXPLICIT, POPULARITY = "als_implicit", "als", "popularity"
ALS_BASELINES = (ALS_IMPLICIT, ALS_EXPLICIT)
# The evaluation table's other row names: the champion comparison (the model against the model published for an
# earlier ds, on the same validation users), a metric's standard error suffix, the users a split's metrics cover
CHAMPION = "champion"
PAIRED_DIFF = "_paired_diff"  # suffix of the mean per-user difference model - champion (ndcg@10_paired_diff)
SE = "_se"  # suffix of a metric's standard error over the evaluated users (ndcg@10_se, ndcg@10_paired_diff_se)
USERS = "users"
SPLITS = (TRAIN, VALIDATION, TEST)

# The model inputs, named as the training shards' columns: the user's and item's index, the user's earlier
# train items (item history), a sampled negative item.
USER_IN, ITEM_IN, HIST_IN, NEG_IN = USER_IDX, ITEM_IDX, HISTORY, "neg_idx"


class Table:
    """The warehouse's tables (in the configured database: ``cfg.table(Table.REVIEWS)``), each written by one
    stage and partitioned by ``ds``."""

    REVIEWS = "reviews"  # ingest
    ITEMS = "items"  # ingest
    QUARANTINE = "quarantine"  # ingest
    HELDOUT = "heldout"  # ingest, for a given test file
    INTERACTIONS = "interactions"  # sample
    USER_INDEX = "user_index"  # ids
    ITEM_INDEX = "item_index"  # ids
    SHARDS = "shards"  # shards (statistics of the shard files)
    USER_FACTORS = "user_factors"  # train
    ITEM_FACTORS = "item_factors"  # train
    TRAINING_RUNS = "training_runs"  # train
    SCORES = "scores"  # score
    NEIGHBOURS = "neighbours"  # score: each item's similar items by every method (recjob.neighbours)
    EVALUATION = "evaluation"  # evaluate
    RECOMMENDATIONS = "recommendations"  # publish (atomically; what analysts read)
    ITEM_NEIGHBOURS = "item_neighbours"  # publish: the similar items of the method chosen on validation



def asset_uri(database: str, table: str) -> str:
    """The Airflow Asset a published table is known by (the DAG's publish task updates it; a downstream DAG can be
    scheduled on it)."""
    return f"recjob://{database}/{table}"


PUBLISHED_TABLES = (Table.RECOMMENDATIONS, Table.ITEM_NEIGHBOURS)  # what publish replaces atomically, per ds


# Exit codes, so that a scheduler can tell a failure worth retrying from one that a retry cannot change.
EXIT_FAILED = 1  # anything else: worth a retry (a lost executor, a full disk, a missing input not there yet)
EXIT_CONFIG = 2  # bad configuration or arguments, refused before Spark starts
EXIT_INPUT_REFUSED = 3  # unreadable input file, too many invalid lines, no valid review
EXIT_GATE_REFUSED = 4  # the quality gate (or the list checks) refused the model: nothing published
EXIT_BUSY = 5  # another live run holds this ds (or the embedded metastore): retry later
EXIT_DENIED = 6  # the machine refuses: permission denied, a read-only filesystem; fix it, then rerun

# What each code means, for logs and the DAG's failure messages.
EXIT_MEANING = {
    EXIT_FAILED: "a failure that a retry may get past",
    EXIT_CONFIG: "bad configuration",
    EXIT_INPUT_REFUSED: "input refused: unreadable file or too many invalid lines",
    EXIT_GATE_REFUSED: "quality gate refused the model: nothing published",
    EXIT_BUSY: "another run holds this ds or the embedded metastore",
    EXIT_DENIED: "permission denied or read-only filesystem: fix access, then rerun",
}
EXIT_NO_RETRY = (EXIT_CONFIG, EXIT_INPUT_REFUSED, EXIT_GATE_REFUSED, EXIT_DENIED)
