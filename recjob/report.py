"""The run report: a Markdown page per ds with the metrics table (model vs baselines), the training
curves, a 2-D PCA map of the item embeddings and nearest-neighbour items for a few popular items (seed 000)."""
from __future__ import annotations

import io

import numpy as np
import pandas as pd

MODELS = ("model", "global_mean", "bias", "als", "popularity", "als_implicit",
          "neighbours:factors", "neighbours:cooccurrence")  # the last two: the item-to-item figure


def metric_names(k: int) -> tuple[str, ...]:
    """The report's columns, in order, for ranking metrics at cutoff ``k`` (evaluate.k)."""
    return ("rmse", "mae", f"ndcg@{k}", f"precision@{k}", f"recall@{k}", f"hr@{k}", f"map@{k}", "coverage")


def metrics_table(summary: dict, k: int) -> str:
    """Markdown tables, one per split, from {split: {model: {metric: value}}}."""
    out = []
    for split, by_model in summary.items():
        metrics = [m for m in metric_names(k) if any(m in v for v in by_model.values())]
        out.append(f"\n### {split}\n\n| | " + " | ".join(metrics) + " |\n|---|" + "---|" * len(metrics))
        for model in MODELS:
            if model in by_model:
                cells = [f"{by_model[model][m]:.4f}" if m in by_model[model] else "" for m in metrics]
                out.append(f"| {model} | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def neighbours(items: pd.DataFrame, popular: list[int], n: int = 5) -> list[tuple[str, list[str]]]:
    """Cosine nearest neighbours of the given item rows (positions in ``items``) by their factors."""
    f = np.stack(items["factors"].to_numpy()).astype(np.float64)
    f /= np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)
    out = []
    for row in popular:
        sim = f @ f[row]
        sim[row] = -np.inf
        order = np.lexsort((items["asin"].to_numpy(), -sim))[:n]
        out.append((_label(items.iloc[row]), [_label(items.iloc[j]) for j in order]))
    return out


def _label(item) -> str:
    return f"{item['title']} ({item['asin']})" if isinstance(item.get("title"), str) else str(item["asin"])


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return buf.getvalue()


def curves_png(epoch_log: list[dict]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in epoch_log]
    keys = [k for k in epoch_log[0] if k != "epoch"] if epoch_log else []
    fig, axes = plt.subplots(1, max(len(keys), 1), figsize=(4.5 * max(len(keys), 1), 3.2))
    for ax, key in zip(np.atleast_1d(axes), keys):
        ax.plot(epochs, [h.get(key) for h in epoch_log], marker="o", ms=3)
        ax.set_title(key)
        ax.set_xlabel("epoch")
    data = _png(fig)
    plt.close(fig)
    return data


def pca_png(items: pd.DataFrame, label_rows: list[int]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    f = np.stack(items["factors"].to_numpy()).astype(np.float64)
    f -= f.mean(axis=0)
    _, _, vt = np.linalg.svd(f, full_matrices=False)
    xy = f @ vt[:2].T
    fig, ax = plt.subplots(figsize=(7, 6))
    ax.scatter(xy[:, 0], xy[:, 1], s=6, alpha=0.5, c=np.log1p(items["n"].to_numpy()), cmap="viridis")
    for row in label_rows:
        ax.annotate(str(items.iloc[row]["title"] or items.iloc[row]["asin"])[:28], xy[row], fontsize=7)
    ax.set_title("item embeddings, first two principal components (colour: log popularity)")
    data = _png(fig)
    plt.close(fig)
    return data


def render(ds: str, model: str, summary: dict, epoch_log: list[dict], items: pd.DataFrame, k: int,
           max_items: int = 3000, notes: tuple[str, ...] | list[str] = ()) -> dict[str, bytes]:
    """The report's files (report.md and its figures) by name; ``items``: asin, title, factors, n (train count);
    ``notes``: paragraphs before the metrics (which users each baseline was fitted on, the champion comparison)."""
    items = items.sort_values(["n", "asin"], ascending=[False, True]).head(max_items).reset_index(drop=True)
    popular = list(range(min(5, len(items))))
    lines = [f"# recjob run {ds}", "", f"Model: `{model}`. Metrics on the held-out splits, the baselines trained "
             "on the same train split (evaluate stage).", *[line for note in notes for line in ("", note)],
             metrics_table(summary, k),
             "## Training", "", "![training curves](curves.png)", "",
             "## Item embeddings", "", f"The {len(items)} most popular items' factors, projected on their first two "
             "principal components.", "", "![item map](items_pca.png)", "", "## Nearest neighbours (cosine)", ""]
    for item, near in neighbours(items, popular):
        lines.append(f"- **{item}**: " + "; ".join(near))
    return {"report.md": ("\n".join(lines) + "\n").encode("utf-8"), "curves.png": curves_png(epoch_log),
            "items_pca.png": pca_png(items, list(range(min(15, len(items)))))}
