"""The Petastorm reader of the training shards (recjob.feed.reader)."""
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recjob import feed
from recjob.artifacts import reader_url


@pytest.fixture
def shard(tmp_path):
    table = pa.table({"user_idx": pa.array(range(50), pa.int32()), "item_idx": pa.array(range(50), pa.int32()),
                      "rating": pa.array([1.0] * 50, pa.float32())})
    pq.write_table(table, tmp_path / "part-0.parquet", row_group_size=10)
    return reader_url(str(tmp_path))


def test_the_reader_is_stopped_and_joined_on_leaving_and_prints_nothing(shard, capfd):
    with feed.reader(shard, 1, seed=1, workers=1, shuffle=False) as r:
        rows = sum(len(b.user_idx) for b in r)
    assert rows == 50
    assert r.stopped
    assert not any(w.is_alive() for w in r._workers_pool._workers)  # joined
    assert "Cache cleanup complete." not in capfd.readouterr().out  # petastorm's own __exit__ prints it


def test_the_reader_is_stopped_when_the_block_raises(shard):
    with pytest.raises(RuntimeError, match="boom"):
        with feed.reader(shard, None, seed=1, workers=1, shuffle=True) as r:
            next(iter(r))
            raise RuntimeError("boom")
    assert r.stopped and not any(w.is_alive() for w in r._workers_pool._workers)
