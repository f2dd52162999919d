"""The artefact store: paths, save and load through Hadoop's FileSystem, URLs for readers outside Spark."""
import pytest

from recjob.artifacts import Artifacts, reader_url

DS = "2024-02-02"


@pytest.mark.parametrize("path, url", [
    ("/data/shards/train", "file:///data/shards/train"),
    ("s3a://bucket/data/shards", "s3://bucket/data/shards"),
    ("s3n://bucket/x", "s3://bucket/x"),
    ("hdfs://nn:8020/data", "hdfs://nn:8020/data"),
    ("file:///data/x", "file:///data/x"),
])
def test_reader_urls(path, url):
    assert reader_url(path) == url


def test_save_and_load_every_kind_of_artefact(spark, make_cfg, tmp_path):
    cfg = make_cfg()
    store = Artifacts(cfg, spark, DS)
    assert store.model_dir == cfg.ds_path("models", DS) and store.split("train") == cfg.ds_path("shards", DS) + "/train"
    with pytest.raises(FileNotFoundError, match="rerun the train stage"):
        store.load_model_file("mlp.npz")
    local = tmp_path / "model"
    (local / "user_factors").mkdir(parents=True)
    (local / "user_factors" / "part-0.parquet").write_bytes(b"P")
    (local / "mlp.npz").write_bytes(b"\x00weights")
    store.put_model_files(str(local))
    assert store.load_model_file("mlp.npz") == b"\x00weights"
    assert store.get_bytes(store.factors("user") + "/part-0.parquet") == b"P"
    assert store.write_epoch_log({"epoch_log": [{"epoch": 1}]}).endswith("/epoch_log.json")
    assert store.read_epoch_log() == {"epoch_log": [{"epoch": 1}]}
    store.clear_models()  # a new training run starts from an empty folder
    assert not store.exists(store.model_dir)
    folder = store.put_report({"report.md": b"# r", "curves.png": b"png"})
    store.put_report({"report.md": b"# second"})  # replaced, not merged
    assert store.get_bytes(folder + "/report.md") == b"# second" and not store.exists(folder + "/curves.png")
