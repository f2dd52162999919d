"""The artefact store: the path, the save and the load of every file one stage leaves for another.

Under ``data_dir``, one folder per artefact kind and run date:

    shards/ds=<ds>/train, validation, test   parquet training shards          shards -> train, evaluate
    shards/ds=<ds>/item_histories            each user's latest train items   shards -> train
    shards/ds=<ds>/items_before_test         each user's latest train + validation items   shards -> evaluate
    shards/ds=<ds>/latest_items              each user's latest items, every split   shards -> score
    models/ds=<ds>/<model files>             what the model kind saves (model.keras, mlp.npz, seq.npz, bpmf.npz)
    models/ds=<ds>/epoch_log.json            the training settings, result and one entry per epoch (or sweep)
    models/ds=<ds>/user_factors, item_factors   the exported factors as parquet (train -> the factor tables)
    reports/ds=<ds>/                         the run report (evaluate)
    published/ds=<ds>/tables/<table>, models/, reports/   the copy of the published model (publish -> publish,
                                             and evaluate: the champion a later ds is compared with)

Every file goes through Hadoop's FileSystem for its URL, in the JVM Spark runs, so every scheme Spark handles
(``file:``, ``hdfs://``, ``s3a://``, ``abfss://``, ``gs://``) is handled the same way; files made in Python are
written to a local temporary folder first and copied. Readers outside Spark (Petastorm, pyarrow) are given
``reader_url``: the same place as a URL those libraries understand.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from pyspark.sql import SparkSession

from recjob import warehouse
from recjob.config import Config

EPOCH_LOG = "epoch_log.json"
PUBLISHED = "published"  # one copy per published ds of the model tables and folders its lists came from


def published_dir(cfg: Config, ds: str) -> str:
    """The folder of the copy of the model published for ``ds`` (publish writes it, staged, then moved in place)."""
    return cfg.ds_path(PUBLISHED, ds)


def saved_table(copy: str, table: str) -> str:
    """A model table's partition in a copy (parquet)."""
    return f"{copy}/tables/{table}"


def saved_folder(copy: str, folder: str) -> str:
    """A model folder (models, reports) in a copy."""
    return f"{copy}/{folder}"


def reader_url(path: str) -> str:
    """``path`` as a URL for Petastorm and pyarrow: local paths become ``file://`` URLs and Hadoop's ``s3a://`` /
    ``s3n://`` become ``s3://`` (pyarrow's and fsspec's name for the same store); other schemes are kept."""
    if "://" not in path:
        return "file://" + os.path.abspath(path)
    scheme, rest = path.split("://", 1)
    return ("s3://" + rest) if scheme in ("s3a", "s3n") else path


class Artifacts:
    """The artefacts of one run date."""

    def __init__(self, cfg: Config, spark: SparkSession, ds: str):
        self.cfg, self.spark, self.ds = cfg, spark, ds
        self.shards_dir = cfg.ds_path("shards", ds)
        self.model_dir = cfg.ds_path("models", ds)
        self.report_dir = cfg.ds_path("reports", ds)

    # --- paths (for Spark readers and writers) ---
    def split(self, name: str) -> str:
        return f"{self.shards_dir}/{name}"

    @property
    def item_histories(self) -> str:
        """Each user's latest train items (user_idx, history): what sequence models learn and are validated from."""
        return f"{self.shards_dir}/item_histories"

    @property
    def items_before_test(self) -> str:
        """Each user's latest train and validation items (user_idx, history): what sequence models are tested
        from (the next-item protocol's input for the test item is everything before it)."""
        return f"{self.shards_dir}/items_before_test"

    @property
    def latest_items(self) -> str:
        """Each user's latest items of every split (user_idx, history): what sequence models score from."""
        return f"{self.shards_dir}/latest_items"

    def model_file(self, name: str) -> str:
        return f"{self.model_dir}/{name}"

    def factors(self, side: str) -> str:
        return f"{self.model_dir}/{side}_factors"

    # --- save and load ---
    def put_file(self, local: str, dest: str) -> None:
        """Copy a local file or folder to ``dest`` (replacing it), on dest's filesystem."""
        warehouse.copy_folder(self.spark, "file://" + os.path.abspath(local), dest)

    def put_bytes(self, dest: str, data: bytes) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp) / os.path.basename(dest)
            local.write_bytes(data)
            self.put_file(str(local), dest)

    def get_bytes(self, src: str) -> bytes:
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp) / "file"
            self.get_file(src, str(local))
            return local.read_bytes()

    def get_file(self, src: str, local: str) -> str:
        """Copy ``src`` (a file or folder on any filesystem) to the local path ``local``; return ``local``."""
        warehouse.copy_folder(self.spark, src, "file://" + os.path.abspath(local))
        return local

    def exists(self, path: str) -> bool:
        return warehouse.path_exists(self.spark, path)

    def load_model_file(self, name: str) -> bytes:
        path = self.model_file(name)
        if not self.exists(path):
            raise FileNotFoundError(f"{path} does not exist: rerun the train stage for ds={self.ds}")
        return self.get_bytes(path)

    def put_model_files(self, local_dir: str) -> list[str]:
        """Copy every file a model kind saved in ``local_dir`` into the ds's model folder; return their paths."""
        out = []
        for f in sorted(Path(local_dir).iterdir()):
            self.put_file(str(f), self.model_file(f.name))
            out.append(self.model_file(f.name))
        return out

    def clear_models(self) -> None:
        warehouse.delete_path(self.spark, self.model_dir)

    def write_epoch_log(self, record: dict) -> str:
        path = self.model_file(EPOCH_LOG)
        self.put_bytes(path, json.dumps(record, indent=2, default=str).encode("utf-8"))
        return path

    def read_epoch_log(self) -> dict:
        return json.loads(self.load_model_file(EPOCH_LOG))

    def put_report(self, files: dict[str, bytes]) -> str:
        """Replace the ds's report folder with ``files`` (name -> bytes); return the folder."""
        with tempfile.TemporaryDirectory() as tmp:
            for name, data in files.items():
                (Path(tmp) / name).write_bytes(data)
            self.put_file(tmp, self.report_dir)
        return self.report_dir
