"""Top-k selection speed for one scoring block: recjob.topk.top_k (the group-maxima selection the score stage
uses, ``tf.math.top_k``, numpy argpartition) against a full stable sort (the baseline), all returning the same
exact, tie-broken result. Also times the matrix product, for scale.

    python bench/topk.py [--users 1024] [--items 60175] [--k 10] [--factors 32]

With ``--model <a run's models/ds=... folder>``: the score stage's product and selection (``top_k_product``,
one process, blocks of score.block_users) on that model's item factors and the first ``--users`` users'
factors, with the chunks that cannot reach a user's top k skipped (the default) and with every chunk computed;
same lists checked. Random factors have no such chunks; a trained model's popular items do.

60,175 items is the Movies_and_TV 5-core catalogue; 182,032 the full category.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from recjob import topk
from recjob.config import ScoreConfig
from results_entry import recorded
from tf_top_k import tf_top_k  # bench/ is on the path: scripts run from it


def best_of(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def full_sort(scores: np.ndarray, k: int):
    idx = np.argsort(-scores, axis=1, kind="stable")[:, :k]  # stable: ties keep the lower column first
    return idx, np.take_along_axis(scores, idx, axis=1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--users", type=int, default=1024)
    p.add_argument("--items", type=int, default=60175)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--factors", type=int, default=32)
    p.add_argument("--block", type=int, default=ScoreConfig().block_users,
                   help="users per product with --model (default: score.block_users's)")
    p.add_argument("--model", help="a run's models/ds=<ds> folder (item_factors, user_factors parquet)")
    a = p.parse_args()
    if a.model:
        return product_on_model(a)
    rng = np.random.default_rng(0)
    u = rng.normal(size=(a.users, a.factors)).astype(np.float32)
    v = rng.normal(size=(a.items, a.factors)).astype(np.float32)
    scores = u @ v.T
    ref = full_sort(scores, a.k)
    for backend in ("chunked", tf_top_k, "numpy"):
        assert np.array_equal(topk.top_k(scores, a.k, backend)[0], ref[0]), f"{backend} top_k disagrees"
    t_mm = best_of(lambda: u @ v.T)
    t_ch = best_of(lambda: topk.top_k(scores, a.k, "chunked"))
    t_tf = best_of(lambda: topk.top_k(scores, a.k, tf_top_k))
    t_np = best_of(lambda: topk.top_k(scores, a.k, "numpy"))
    t_sort = best_of(lambda: full_sort(scores, a.k))
    print(f"block {a.users} users x {a.items} items, k={a.k}, {a.factors} factors (float32, best of 3)")
    print(f"  matrix product                    {t_mm * 1000:9.1f} ms")
    print(f"  top_k group maxima (used)         {t_ch * 1000:9.1f} ms  ({a.users / t_ch:,.0f} users/s)")
    print(f"  top_k tensorflow                  {t_tf * 1000:9.1f} ms  ({a.users / t_tf:,.0f} users/s)")
    print(f"  top_k numpy argpartition          {t_np * 1000:9.1f} ms  ({a.users / t_np:,.0f} users/s)")
    print(f"  baseline: full stable argsort     {t_sort * 1000:9.1f} ms  ({a.users / t_sort:,.0f} users/s)")
    print(f"  group maxima vs baseline {t_sort / t_ch:.1f}x, tensorflow vs baseline {t_sort / t_tf:.1f}x, "
          f"numpy vs baseline {t_sort / t_np:.1f}x")


def product_on_model(a) -> None:
    import pandas as pd

    items = pd.read_parquet(f"{a.model}/item_factors")
    users = pd.read_parquet(f"{a.model}/user_factors", columns=["factors"]).head(a.users)
    v = np.stack(items["factors"].to_numpy()).astype(np.float32)
    u = topk.with_ones(np.stack(users["factors"].to_numpy()).astype(np.float32))
    chunks = topk.item_chunks(topk.with_bias(v, items["bias"].to_numpy(np.float32)))
    block = a.block
    buf = chunks.buffer(block)
    none = np.empty(0, np.int64)

    def run(skip: bool, counts: dict | None = None):
        return np.concatenate([topk.top_k_product(u[s:s + block], chunks, a.k, none, none, buf, counts=counts,
                                                  skip=skip)[0] for s in range(0, len(u), block)])

    counts: dict = {}
    same = np.array_equal(run(True, counts), run(False))
    t_skip, t_all = best_of(lambda: run(True)), best_of(lambda: run(False))
    share = counts["skipped"] / (counts["skipped"] + counts["computed"])
    print(f"{len(u):,} users x {len(v):,} items of {a.model}, k={a.k}, blocks of {block}, chunks of "
          f"{chunks.columns:,} columns (one process, best of 3)")
    print(f"  every chunk computed       {1e6 * t_all / len(u):7.1f} us/user")
    print(f"  chunks skipped (default)   {1e6 * t_skip / len(u):7.1f} us/user  {t_all / t_skip:.2f}x; "
          f"{share:.1%} of the (user, chunk) products skipped; same lists: {same}")


if __name__ == "__main__":
    with recorded("topk"):
        main()
