"""How good are the lists of users the model has no factors for? After a ``bench/pipeline.py`` run: the users
with no train review (every review in validation or test) get, from the score stage, the items in item-bias order
(the model's lists for a user without train history). This scores those lists on the test split against the
popularity baseline (train counts), both excluding the user's validation items, as evaluate excludes earlier
items. Reads the run's parquet files directly (pandas, no Spark).

    python bench/cold_users.py bench/.data/movies-8765568-3826085-182032-seed7-run-unsampled [--ds 2026-01-04]
"""
from __future__ import annotations

import argparse

import numpy as np
import pyarrow.parquet as pq
from results_entry import recorded  # bench/ is on the path: scripts run from it


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data_dir", help="the run's data_dir (bench/pipeline.py prints it)")
    p.add_argument("--ds", default="2026-01-04")
    p.add_argument("--k", type=int, default=10)
    a = p.parse_args()
    k, part = a.k, f"ds={a.ds}"
    split = {s: pq.read_table(f"{a.data_dir}/shards/{part}/{s}", columns=["user_idx", "item_idx"]).to_pandas()
             for s in ("train", "validation", "test")}
    items = pq.read_table(f"{a.data_dir}/warehouse/recjob.db/item_factors/{part}",
                          columns=["item_idx", "asin", "bias"]).to_pandas()
    trained = set(split["train"].user_idx.unique())
    cold = (set(split["validation"].user_idx) | set(split["test"].user_idx)) - trained
    test = split["test"][split["test"].user_idx.isin(cold)]
    users = test.user_idx.unique()
    print(f"users without a train review: {len(cold):,}; of them with test items: {len(users):,}")
    val = split["validation"]
    earlier = val[val.user_idx.isin(users)].groupby("user_idx").item_idx.apply(set).to_dict()
    relevant = test.groupby("user_idx").item_idx.apply(set).to_dict()
    ideal = np.cumsum(1 / np.log2(np.arange(2, k + 2)))

    def ndcg(order: np.ndarray) -> tuple[float, float]:
        out = np.empty(len(users))
        for n, u in enumerate(users):
            skip = earlier.get(u, set())
            top = [i for i in order[:k + len(skip)] if i not in skip][:k]
            rel = relevant[u]
            out[n] = sum(1 / np.log2(r + 2) for r, i in enumerate(top) if i in rel) / ideal[min(len(rel), k) - 1]
        return out.mean(), out.std(ddof=1) / np.sqrt(len(out))

    by_bias = items.sort_values(["bias", "asin"], ascending=[False, True]).item_idx.to_numpy()
    by_count = split["train"].item_idx.value_counts().index.to_numpy()  # most reviewed first
    for name, order in (("item-bias order (what the score stage publishes)", by_bias),
                        ("popularity (train counts, the baseline)", by_count)):
        mean, se = ndcg(order)
        print(f"  {name}: test NDCG@{k} {mean:.4f} +-{se:.4f}")


if __name__ == "__main__":
    with recorded("cold_users"):
        main()
