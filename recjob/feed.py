"""Reading the training shards outside Spark: Petastorm batch readers, a tf.data pipeline over them, and
one-pass reads of whole splits (ratings, item histories, a user sample).

Petastorm's batch reader yields row groups; ``dataset`` maps them to model inputs and ``rebatch``es them to a
fixed batch size. Every function takes a reader URL (``artifacts.reader_url``).
"""
from __future__ import annotations

import contextlib
import math
import warnings

import numpy as np

from recjob.names import HIST_IN, ITEM_IN, LABEL, USER_IN



def columns(with_history: bool = False) -> list[str]:
    return [USER_IN, ITEM_IN, LABEL] + ([HIST_IN] if with_history else [])


@contextlib.contextmanager
def reader(url: str, seed: int, workers: int, shuffle: bool, fields: list[str] | None = None):
    """A Petastorm batch reader for training: it reads the shards over and over (epochs are counted by steps),
    and is stopped and joined on leaving the ``with`` block. It cannot make a one-pass read: petastorm 0.13.1's
    one-pass reads can end before the last row group (``read_ratings``); whole-split reads use pyarrow.

    One worker reads in the consumer's thread (Petastorm's "dummy" pool: a row group is read when the next is
    asked for), more in a pool of that many threads: a row group takes milliseconds to read, and on few cores a
    reading thread beside Keras's only takes turns with it (bench/results/train_feed.md)."""
    from petastorm import make_batch_reader

    # petastorm 0.13.1 on pyarrow 14 warns about pyarrow's legacy dataset API on every reader.
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"petastorm(\.|$)")
    r = make_batch_reader(url, num_epochs=None, shuffle_row_groups=shuffle, seed=seed, workers_count=workers,
                          reader_pool_type="dummy" if workers <= 1 else "thread", schema_fields=fields or columns())
    try:
        yield r
    finally:
        # what the reader's own __exit__ does but its cleanup_cache(), which prints "Cache cleanup complete."
        # to stdout, into the train stage's log after every validation pass (no cache is used here)
        r.stop()
        r.join()


def dataset(batch_reader, batch_size: int):
    """A tf.data pipeline of ({user_idx, item_idx[, history]}, rating) batches of ``batch_size`` rows."""
    import tensorflow as tf
    from petastorm.tf_utils import make_petastorm_dataset

    def features(b):
        x = {USER_IN: tf.cast(b.user_idx, tf.int32), ITEM_IN: tf.cast(b.item_idx, tf.int32)}
        if hasattr(b, HIST_IN):
            x[HIST_IN] = tf.cast(getattr(b, HIST_IN), tf.int32)
        return x, tf.cast(b.rating, tf.float32)

    return (make_petastorm_dataset(batch_reader).map(features).rebatch(batch_size).prefetch(2)
            .with_options(pipeline_options()))


def pipeline_options():
    """The tf.data options of the training pipeline: autotuning off. Nothing there is tuned (one generator,
    sequential maps, a fixed prefetch), and destroying an autotuned iterator waits for its autotuning thread's
    next wake-up, up to a minute apart, so every fit could end with a pause of up to a minute."""
    import tensorflow as tf

    options = tf.data.Options()
    options.autotune.enabled = False
    return options


def rating_errors(predict, url: str, batch_size: int = 16384) -> tuple[float, float, int]:
    """Exact RMSE and MAE over every row of a shard folder of ``predict({user_idx, item_idx}) -> ratings``
    (numpy int32 inputs), read in batches with pyarrow (``read_ratings`` says why not through Petastorm)."""
    sse = sae = 0.0
    n = 0
    for b in _dataset(url).to_batches(columns=[USER_IN, ITEM_IN, LABEL], batch_size=batch_size):
        if not b.num_rows:
            continue
        x = {c: b.column(c).to_numpy().astype(np.int32, copy=False) for c in (USER_IN, ITEM_IN)}
        err = np.asarray(predict(x), dtype=np.float64).reshape(-1) - b.column(LABEL).to_numpy().astype(np.float64)
        sse += float(np.dot(err, err))
        sae += float(np.abs(err).sum())
        n += len(err)
    if n == 0:
        raise ValueError(f"no rows in {url}")
    return math.sqrt(sse / n), sae / n, n


def read_ratings(url: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(user_idx, item_idx, rating) of every row of a shard folder, in file order.

    Read with pyarrow, not a Petastorm reader: petastorm 0.13.1's end-of-data check races with its ventilator
    thread (it reads "all ventilated items done" before, and "ventilation finished" after, the last row group is
    ventilated), so a one-pass read (``num_epochs=1``) lost the last row group in about half the reads of a small
    file (tests/test_feed.py). Training reads forever (``num_epochs=None``) and never ends that way."""
    table = _dataset(url).to_table(columns=[USER_IN, ITEM_IN, LABEL])
    if not table.num_rows:
        raise ValueError(f"no rows in {url}")
    return tuple(table.column(c).to_numpy() for c in (USER_IN, ITEM_IN, LABEL))


def _dataset(url: str):
    import pyarrow.dataset as pads
    from pyarrow import fs as pafs

    fs, path = pafs.FileSystem.from_uri(url)
    if fs.get_file_info(path).type == pafs.FileType.NotFound:
        raise FileNotFoundError(url)
    return pads.dataset(path, filesystem=fs, format="parquet")


def read_pairs(url: str, users: np.ndarray | None = None):
    """(user_idx, item_idx) rows of a shard folder as pandas, only of ``users`` when given (a filtered read)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    flt = None if users is None else pc.field(USER_IN).isin(pa.array(np.asarray(users, np.int32)))
    return _dataset(url).to_table(columns=[USER_IN, ITEM_IN], filter=flt).to_pandas()


def read_item_histories(url: str, n_users: int, n_items: int, length: int) -> np.ndarray:
    """Every user's latest items (users x ``length``, most recent first, padded with ``n_items``) from an item
    histories folder of the shards stage."""
    try:
        table = _dataset(url).to_table(columns=[USER_IN, HIST_IN])
    except FileNotFoundError:
        raise FileNotFoundError(f"{url} does not exist: the shards stage writes it when shards.history_length "
                                "> 0; rerun shards") from None
    out = np.full((n_users, length), n_items, np.int32)
    rows = table.column(HIST_IN).combine_chunks()
    values = rows.flatten().to_numpy(zero_copy_only=False).reshape(len(rows), -1)
    if len(rows) and values.shape[1] != length:
        raise ValueError(f"{url} holds histories of {values.shape[1]} items but shards.history_length={length}: "
                         "rerun the shards stage")
    out[table.column(USER_IN).to_numpy()] = values
    return out
