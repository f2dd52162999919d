"""Training input speed: the production path (Petastorm over parquet shards) against the same model fed from
in-memory numpy arrays.

Synthetic ratings (skewed item popularity) are written as train shards by the shards stage's own writer
(``stages.shards.write_split``: seeded shuffled order, ``shards.rows_per_file``, ``shards.row_group_mb``). For each
model kind, two runs of the same model, batch size, steps and steps per execution (``keras_fit.epoch_steps``, as
in the train stage):
  - petastorm: ``feed.reader`` + ``feed.dataset`` (rebatched to fixed batches), what ``models.keras_fit`` trains
    from, including the kind's own batch transform (bpr's negatives);
  - memory: the same rows as numpy arrays cut into the same batches, ``tf.data.Dataset.from_tensor_slices`` over
    the batches, ``.prefetch()``, the same tf.data options (``feed.pipeline_options``: autotuning off). (``.batch()``
    of single rows was the slower feed: dot 226,773 examples/s against Petastorm's 299,867.)
Validation is off in both (it is the same code either way); the first epoch (tracing, reader start) is not
timed. Each source runs ``--repeats`` times, in turns; prints every run and the medians' ratio petastorm / memory
(target >= 0.9x) with the range of the runs' ratios.

    python bench/train_feed.py [--rows 2000000] [--users 200000] [--items 50000] [--epochs 4] [--kinds softmax dot]
                               [--repeats 3]
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from recjob import config, feed, models  # noqa: E402
from recjob.artifacts import reader_url  # noqa: E402
from recjob.models import keras_fit  # noqa: E402
from results_entry import recorded  # bench/ is on the path: scripts run from it


def write_shards(spark, path: str, rows: int, users: int, items: int, seed: int, cfg) -> tuple:
    """Train shards of ``rows`` synthetic ratings (item popularity skewed: item = items * u^3), written by the
    shards stage's writer; returns the rows as read back (pandas, in file order) and the number of files."""
    import pyarrow.parquet as pq
    from pyspark.sql import functions as F

    from recjob import schema as S
    from recjob.stages import shards

    df = spark.range(rows).select(
        (F.rand(seed) * users).cast("int").alias(S.USER_IDX),
        (F.pow(F.rand(seed + 1), 3) * items).cast("int").alias(S.ITEM_IDX),
        (F.floor(F.rand(seed + 2) * 5) + 1).cast("float").alias(S.LABEL))
    files = shards.write_split(df, path, rows, cfg.shards, cfg.shards.seed)
    return pq.read_table(path).to_pandas(), files


class EpochTimes:
    def __init__(self):
        import keras

        times = self.times = []

        class Cb(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                self.t0 = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                times.append(time.perf_counter() - self.t0)

        self.callback = Cb()


def run(kind_name: str, source: str, url: str, pdf, data, epochs: int) -> float:
    """Examples per second over epochs 2..epochs."""
    import keras
    import tensorflow as tf

    from recjob.models.base import ITEM_IN, USER_IN

    cfg = config.load(None, [f"train.model={kind_name}"]).train
    kind = models.get(kind_name)
    keras.utils.set_random_seed(cfg.seed)
    model = kind.build(data, cfg)
    batch = keras_fit.batch_size(data.train_rows, cfg)
    steps, model.steps_per_execution = keras_fit.epoch_steps(data.train_rows, batch, cfg)  # as the train stage
    timer = EpochTimes()
    if source == "petastorm":
        with feed.reader(url, cfg.seed, cfg.reader_workers, shuffle=True) as r:
            model.fit(kind.prepare(feed.dataset(r, batch), data, cfg), epochs=epochs, steps_per_epoch=steps,
                      callbacks=[timer.callback], verbose=0, shuffle=False)
    else:
        # whole batches as the slices (batching single rows costs tf.data more than Petastorm's columnar rebatch)
        whole = data.train_rows // batch
        n = whole * batch
        x = {c: pdf[c].to_numpy(np.int32)[:n].reshape(whole, batch) for c in (USER_IN, ITEM_IN)}
        y = pdf[feed.LABEL].to_numpy(np.float32)[:n].reshape(whole, batch)
        ds = (tf.data.Dataset.from_tensor_slices((x, y)).repeat().prefetch(2)
              .with_options(feed.pipeline_options()))
        model.fit(kind.prepare(ds, data, cfg), epochs=epochs, steps_per_epoch=steps, callbacks=[timer.callback],
                  verbose=0, shuffle=False)
    timed = timer.times[1:]
    return steps * batch * len(timed) / sum(timed)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=2_000_000)
    p.add_argument("--users", type=int, default=200_000)
    p.add_argument("--items", type=int, default=50_000)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--kinds", nargs="*", default=["softmax", "dot"])
    p.add_argument("--repeats", type=int, default=3, help="runs of each source, in turns (the median is the figure)")
    p.add_argument("--master", default="local[2]")
    args = p.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    from recjob import session

    tmp = tempfile.mkdtemp(prefix="recjob-train-feed-")
    try:
        cfg = config.load(None, [f"data_dir={tmp}", f"spark.master={args.master}", "spark.conf.spark.ui.enabled=false"])
        spark = session.session(cfg)
        path = f"{tmp}/shards/train"
        t0 = time.perf_counter()
        pdf, files = write_shards(spark, path, args.rows, args.users, args.items, 1, cfg)
        spark.stop()
        print(f"shards: {args.rows:,} rows, {args.users:,} users x {args.items:,} items, {files} files "
              f"({cfg.shards.row_group_mb} MB row groups) in {time.perf_counter() - t0:.1f}s")
        data = models.TrainingData(reader_url(path), reader_url(path), args.rows, args.users, args.items,
                                   float(pdf[feed.LABEL].mean()), 10)
        for kind in args.kinds:
            # the two sources in turns, each run a fresh model: one run of each swung 0.77x-1.09x on dot here
            # (the memory run alone 347k-575k examples/s between runs minutes apart), so a pair is not a figure
            speed: dict[str, list[float]] = {"memory": [], "petastorm": []}
            for i in range(args.repeats):
                for source in speed:
                    speed[source].append(run(kind, source, reader_url(path), pdf, data, args.epochs))
                print(f"{kind:8s} run {i + 1}: memory {speed['memory'][-1]:>10,.0f} examples/s   petastorm "
                      f"{speed['petastorm'][-1]:>10,.0f}   ratio {speed['petastorm'][-1] / speed['memory'][-1]:.2f}x",
                      flush=True)
            mem, pet = (float(np.median(speed[s])) for s in ("memory", "petastorm"))
            ratios = [p / m for p, m in zip(speed["petastorm"], speed["memory"])]
            print(f"{kind:8s} median of {args.repeats}: memory {mem:>10,.0f} examples/s   petastorm {pet:>10,.0f} "
                  f"examples/s   ratio {pet / mem:.2f}x (target >= 0.9x; the runs' ratios {min(ratios):.2f}-"
                  f"{max(ratios):.2f}x)", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    with recorded("train_feed"):
        main()
