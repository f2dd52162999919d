import numpy as np
import pandas as pd

from recjob import report


def test_report_files_and_neighbours(tmp_path):
    rng = np.random.default_rng(0)
    base = rng.normal(size=(3, 4))
    factors = [base[i % 3] + rng.normal(scale=0.01, size=4) for i in range(30)]
    items = pd.DataFrame({"asin": [f"A{i:02d}" for i in range(30)], "title": [f"T{i}" for i in range(30)],
                          "factors": factors, "n": np.arange(30, 0, -1)})
    summary = {"test": {"model": {"ndcg@10": 0.3}, "popularity": {"ndcg@10": 0.1}, "bias": {"rmse": 0.9}}}
    history = [{"epoch": 1, "loss": 0.6, "val_ndcg@10": 0.1}, {"epoch": 2, "loss": 0.5, "val_ndcg@10": 0.2}]
    path = report.write(str(tmp_path), "2020-01-01", "bpr", summary, history, items)
    text = open(path).read()
    assert "| model |" in text and "0.3000" in text and "popularity" in text
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "items_pca.png").stat().st_size > 1000
    # item 0's nearest neighbours are the items built from the same base vector (0, 3, 6, ...)
    (_, near), = report.neighbours(items, [0], n=5)
    assert all(int(label.split("(A")[1][:2]) % 3 == 0 for label in near)
