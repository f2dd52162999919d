"""The model registry: every module of this package with a ``KIND`` (a ``base.ModelKind``) is a model kind.

Stages, the configuration check, the DAG's choices and the README's table ask the registry; adding a model is
one new module here (found by ``discover``) plus its tests. Importing the registry needs neither TensorFlow nor
Spark.
"""
from __future__ import annotations

import importlib
import pkgutil

from recjob.models import bpmf, bpr, dot, mlp, sasrec, seq, softmax
from recjob.models.base import Fitted, ModelKind, TrainingData

# The kinds, in the order the README's table shows them; ``discover`` appends any other module's kind.
KINDS: dict[str, ModelKind] = {m.KIND.name: m.KIND for m in (softmax, bpr, seq, sasrec, dot, mlp, bpmf)}


def discover() -> dict[str, ModelKind]:
    """Register the ``KIND`` of every module of this package (and of any folder added to its ``__path__``)."""
    for info in pkgutil.iter_modules(__path__):
        if info.name in ("base", "keras_fit") or info.name.startswith("_"):
            continue
        kind = getattr(importlib.import_module(f"{__name__}.{info.name}"), "KIND", None)
        if isinstance(kind, ModelKind) and kind.name not in KINDS:
            KINDS[kind.name] = kind
    return KINDS


discover()

__all__ = ["KINDS", "Fitted", "ModelKind", "TrainingData", "get", "load_keras_model", "markdown_table", "names"]


def names() -> tuple[str, ...]:
    return tuple(KINDS)


def get(name: str) -> ModelKind:
    try:
        return KINDS[name]
    except KeyError:
        raise ValueError(f"unknown model kind {name!r}; known: {', '.join(KINDS)}") from None


def markdown_table() -> str:
    """The kinds as the README's table (``recjob models`` prints it; a test checks the README holds it)."""
    from recjob.models.base import COMMON_DEFAULTS

    lines = ["| kind | score | defaults (factors, l2, bias_l2) | item histories | what it is |", "|---|---|---|---|---|"]
    for name, kind in KINDS.items():
        d = kind.defaults
        other = "".join(f"; {k} {v:g}" for k, v in d.items() if k in COMMON_DEFAULTS)  # where it differs
        lines.append(f"| `{name}` | {'rating' if kind.predicts_ratings else 'ranking'} | "
                     f"{d['factors']}, {d['l2']:g}, {d['bias_l2']:g}{other} | "
                     f"{'yes' if kind.needs_item_histories else 'no'} | {kind.summary} |")
    return "\n".join(lines)


def load_keras_model(path: str):
    """A ``model.keras`` that the train stage saved, loaded in any Python process: recjob's Keras classes (the
    kinds' models, the row-reading embedding, lazy Adam) are registered with Keras when first built, so they
    are built here before Keras reads the file."""
    import keras

    from recjob.models import keras_fit

    keras_fit.lazy_adam_class()
    keras_fit.row_embedding_class()
    for module in (softmax, seq, sasrec):
        module.model_class()
    return keras.saving.load_model(path)
