"""What a model kind declares to the stages, and what they hand it.

A kind is one module of ``recjob.models`` with a ``KIND`` object. The stages never branch on a kind's name; they
ask it: which settings it defaults, whether it predicts ratings (then its score is the predicted rating, it is
validated on RMSE and gated against the bias baseline) or ranks items (validated on NDCG@k), whether it needs
the users' item histories from the shards, how it trains, and what scoring needs beyond the factor tables.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from recjob.names import HIST_IN, ITEM_IN, NEG_IN, USER_IN  # noqa: F401 (the kinds' inputs, named once)

# The train section of the configuration (recjob.config.TrainConfig): the settings every kind shares, and
# ``params``, the chosen kind's own settings (its ``Settings``). Not imported: the configuration imports the
# registry to check a kind's settings, never the other way round.
TrainConfig = Any


@dataclass(frozen=True)
class NoSettings:
    """This kind has no settings of its own."""

# Train settings whose default is the same for most kinds; a kind's ``defaults`` may override them.
COMMON_DEFAULTS = {"dropout": 0.2, "learning_rate": 0.01, "patience": 3}

Load = Callable[[str], bytes]  # a model file's bytes by name (the artefact store's load_model_file)


@dataclass(frozen=True)
class TrainingData:
    """The train stage's input to a kind: shard folders as reader URLs, their statistics, and (for kinds that
    ask for them) every user's latest train items (users x history length, most recent first, padded with
    n_items)."""

    train_url: str
    validation_url: str
    train_rows: int
    n_users: int
    n_items: int
    rating_mean: float
    k: int  # the cutoff of the ranking metrics (evaluate.k), for validation during training
    item_histories: np.ndarray | None = None
    # returns the model to start from (train.warm_start: the model published for an earlier ds, of this kind and
    # factor count); None: a fresh start
    warm_start: Callable[[], Any] | None = None


@dataclass
class Fitted:
    """A trained model as the train stage writes it."""

    factors: dict  # user, item (matrices), user_bias, item_bias (vectors): what the factor tables hold
    epoch_log: list[dict]  # one entry per epoch (or Gibbs sweep): the epoch number and the logged values
    best_epoch: int
    predict: Callable | None = None  # rating kinds: {user_idx, item_idx} batch -> predicted ratings
    result: dict = field(default_factory=dict)  # extra result fields (e.g. bpmf's exported validation RMSE)


class ModelKind:
    """The base of every kind; a kind overrides what differs."""

    name: str = ""
    summary: str = ""  # one line for `recjob models` (the README's table) and the DAG's parameter help
    predicts_ratings: bool = False  # True: score = predicted rating; False: a ranking score
    needs_item_histories: bool = False  # True: the shards stage's item histories feed training and scoring
    can_warm_start: bool = False  # True: fit starts from TrainingData.warm_start's weights when it is given
    warm_start_file: str = ""  # the model file (in a published model's folder) that a warm start reads
    defaults: dict = {}  # the settings this kind sets when the config leaves them unset (None): factors, l2,
    # bias_l2, and any of COMMON_DEFAULTS it sets otherwise
    # The kind's own settings, reached as train.<kind>.<key>: a frozen dataclass whose fields carry their defaults
    # and, as comments, their meaning (recjob settings prints them); ``check`` says what is wrong with them.
    Settings: type = NoSettings

    def check(self, own: Any, cfg: Any) -> list[str]:
        """Problems with this kind's own settings ``own`` in the whole configuration ``cfg`` (empty: none)."""
        return []

    def settings(self) -> dict:
        """Every train setting this kind fills in when the config leaves it unset."""
        return {**COMMON_DEFAULTS, **self.defaults}

    def fit(self, data: TrainingData, cfg: TrainConfig, workdir: str) -> Fitted:
        """Train; save what scoring and inspection need as files in ``workdir``; return the factors."""
        raise NotImplementedError

    def scoring_layers(self, load: Load) -> list | None:
        """Dense layers applied to [user factor, item factor] instead of the dot product (None: dot product)."""
        return None

    def similarity_factors(self, item_factors: np.ndarray, item_bias: np.ndarray) -> np.ndarray:
        """Vectors whose dot product is this kind's item-to-item similarity (item_neighbours' ``factors`` method):
        the item factors scaled to unit length, so the similarity is their cosine."""
        norm = np.linalg.norm(item_factors, axis=1, keepdims=True)
        return np.divide(item_factors, norm, out=np.zeros_like(item_factors, dtype=np.float32), where=norm > 0)

    def history_encoder(self, load: Load) -> Callable[[np.ndarray], np.ndarray] | None:
        """A function from item histories (users x L) to user factors, for kinds whose user factor is computed
        from the latest items at scoring time (None: the user factor table is used as is)."""
        return None
