import numpy as np
import pandas as pd
import pytest

from recjob import report


@pytest.mark.parametrize("k", [10, 20])
def test_report_files_and_neighbours(k):
    rng = np.random.default_rng(0)
    base = rng.normal(size=(3, 4))
    factors = [base[i % 3] + rng.normal(scale=0.01, size=4) for i in range(30)]
    items = pd.DataFrame({"asin": [f"A{i:02d}" for i in range(30)], "title": [f"T{i}" for i in range(30)],
                          "factors": factors, "n": np.arange(30, 0, -1)})
    summary = {"test": {"model": {f"ndcg@{k}": 0.3}, "popularity": {f"ndcg@{k}": 0.1}, "bias": {"rmse": 0.9}}}
    epoch_log = [{"epoch": 1, "loss": 0.6, f"val_ndcg@{k}": 0.1}, {"epoch": 2, "loss": 0.5, f"val_ndcg@{k}": 0.2}]
    files = report.render("2020-01-01", "bpr", summary, epoch_log, items, k)
    text = files["report.md"].decode()
    # the ranking metrics at evaluate.k are in the table, whatever k is
    header = next(line for line in text.splitlines() if line.startswith("| |"))
    assert f"ndcg@{k}" in header and "rmse" in header
    assert "| model |" in text and "0.3000" in text and "0.1000" in text and "popularity" in text
    assert files["curves.png"][:4] == b"\x89PNG"
    assert len(files["items_pca.png"]) > 1000
    # item 0's nearest neighbours are the items built from the same base vector (0, 3, 6, ...)
    (_, near), = report.neighbours(items, [0], n=5)
    assert all(int(label.split("(A")[1][:2]) % 3 == 0 for label in near)
