"""Synthetic reviews and item metadata in the exact Amazon Review Data (2018) JSON-lines format.

Shaped like Movies_and_TV: long-tailed user activity (about half of reviewers review one item), long-tailed
item popularity, ratings skewed to 5 stars, timestamps over many years with more in recent ones (2018
included), and titles. A latent preference structure is planted: each user and item has a factor vector; users
pick items from genres they like and rate them by ``bias_u + bias_i + u.v + noise``, so a factor model can
beat the global-mean and bias baselines. Deterministic for a seed, written in chunks (bounded memory).
"""
from __future__ import annotations

import datetime as dt
import gzip
import json
import logging
import os
import time
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

GENRES = [
    "Drama", "Comedy", "Action & Adventure", "Science Fiction", "Horror", "Documentary", "Kids & Family",
    "Romance", "Mystery & Thrillers", "Westerns", "Musicals & Performing Arts", "Anime", "Fantasy",
    "Military & War", "Fitness", "Faith & Spirituality", "Classics", "TV", "Independently Distributed",
    "Art House & International",
]
_ADJ = ["Silent", "Last", "Broken", "Golden", "Hidden", "Lost", "Dark", "Wild", "Final", "Crimson", "Frozen",
        "Secret", "Eternal", "Burning", "Little", "Distant", "Midnight", "Iron", "Savage", "Quiet", "Electric",
        "Forgotten", "Bright", "Hollow", "Restless"]
_NOUN = ["River", "Kingdom", "Heart", "Road", "Empire", "Garden", "Storm", "Horizon", "Shadow", "Island",
         "Frontier", "Harbor", "Mountain", "Promise", "Journey", "Legacy", "Signal", "Station", "Winter", "Summer",
         "Valley", "Machine", "Crown", "Circus", "Detective"]
_SUFFIX = ["", "", "", "", " (Special Edition)", " [Blu-ray]", " [DVD]", ": Season 1", ": The Complete Series",
           " (Director's Cut)", " [VHS]", " 2"]
_FORMATS = [" DVD", " Blu-ray", " Amazon Video", " VHS Tape", " Prime Video", " DVD"]
_FIRST = ["Mary", "John", "Linda", "James", "Susan", "Robert", "Karen", "Michael", "Lisa", "David", "Nancy",
          "Chris", "Amazon Customer", "Kindle Customer", "Jen", "Mike", "Pat", "Sam", "Alex", "Terri"]
_LAST = ["Smith", "J.", "Johnson", "B.", "Brown", "Lee", "Garcia", "M.", "Davis", "Miller", "W.", ""]
_SUMMARY = {
    1: ["Terrible", "Waste of money", "One Star", "Did not like it", "Awful"],
    2: ["Disappointing", "Two Stars", "Not great", "Meh"],
    3: ["It was ok", "Three Stars", "Average", "Watchable"],
    4: ["Good movie", "Four Stars", "Enjoyed it", "Pretty good"],
    5: ["Five Stars", "Loved it!", "Great movie", "Excellent", "A classic", "Must see"],
}
_TEXT = {
    1: "I could not finish it. The story made no sense and the acting was poor.",
    2: "Some good moments but mostly dull. I expected more.",
    3: "Decent enough for a quiet evening, nothing special.",
    4: "Well made and entertaining. The cast did a fine job.",
    5: "Wonderful from start to finish. I will watch it again and again.",
}
# Target share of 1..5 stars (Movies_and_TV 2018 is about 6/5/9/20/60 %).
STAR_SHARE = np.array([0.06, 0.05, 0.09, 0.20, 0.60])
_MASK64 = (1 << 64) - 1


@dataclass(frozen=True)
class Sizes:
    reviews: int
    users: int
    items: int


def sizes_for(reviews: int, users: int = 0, items: int = 0) -> Sizes:
    """Movies_and_TV ratios: ~2.3 reviews per user, ~48 per item (at least 50 items)."""
    if reviews < 1:
        raise ValueError("reviews must be >= 1")
    return Sizes(reviews, users or max(10, int(reviews / 2.3)), items or max(50, reviews // 48))


def _splitmix64(x: np.ndarray) -> np.ndarray:
    x = (x.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15))
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


_B36 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _b36(n: int, width: int) -> str:
    out = []
    for _ in range(width):
        n, r = divmod(n, 36)
        out.append(_B36[r])
    return "".join(reversed(out))


def reviewer_id(index: int, seed: int) -> str:
    """A 14-character reviewerID like 'A3CIUOJXQ5VDQ2', unique per index (splitmix64 is a bijection)."""
    h = int(_splitmix64(np.array([index ^ (seed << 40)], dtype=np.uint64))[0])
    return "A" + _b36(h % (36 ** 13), 13)


def item_asin(index: int) -> str:
    """A 10-character ASIN: 'B0' + 8 base-36 characters (some catalogues also use ISBN-like digits)."""
    return ("B0" + _b36(index * 7919 % (36 ** 8), 8)) if index % 5 else f"{6300000000 + index * 37:010d}"


class World:
    """The planted latent structure: item factors, biases, genres, popularity; users made on demand."""

    def __init__(self, sizes: Sizes, factors: int, first_year: int, last_year: int, seed: int):
        self.sizes, self.k, self.seed = sizes, factors, seed
        rng = np.random.default_rng([seed, 0])
        n_i, n_g = sizes.items, len(GENRES)
        self.genre_centers = rng.normal(0.0, 1.0, (n_g, factors)) / np.sqrt(factors)
        self.item_genre = rng.integers(0, n_g, n_i)
        self.item_f = self.genre_centers[self.item_genre] * 1.5 + rng.normal(0, 0.7, (n_i, factors)) / np.sqrt(factors)
        self.item_b = rng.normal(0.0, 0.35, n_i)
        # Rating-only item factors: how an item is judged, apart from which users pick it.
        self.item_w = rng.normal(0.0, 1.0, (n_i, factors)) / np.sqrt(factors)
        # Long-tailed popularity (lognormal), better items a little more popular.
        self.item_pop = np.exp(rng.normal(0.0, 1.6, n_i) + 0.6 * self.item_b)
        self.genre_items = [np.flatnonzero(self.item_genre == g) for g in range(n_g)]
        self.genre_cdf = []
        for idx in self.genre_items:
            p = self.item_pop[idx]
            self.genre_cdf.append(np.cumsum(p) / p.sum() if len(p) else np.array([]))
        self.item_year = rng.integers(max(1930, first_year - 60), last_year + 1, n_i)
        # Review volume grows over the years (as Amazon's did).
        self.t_lo = dt.datetime(first_year, 1, 1, tzinfo=dt.timezone.utc).timestamp()
        self.t_hi = dt.datetime(last_year, 12, 31, tzinfo=dt.timezone.utc).timestamp()
        years = np.arange(first_year, last_year + 1)
        w = np.exp(0.2 * (years - first_year))
        self.year_p = w / w.sum()
        self.years = years
        self.thresholds = self._calibrate()

    def users(self, chunk: int, n: int) -> dict:
        rng = np.random.default_rng([self.seed, 1, chunk])
        k = self.k
        uf = rng.normal(0.0, 1.0, (n, k)) / np.sqrt(k) * 2.0
        ub = rng.normal(0.0, 0.35, n)
        # Activity: half review once; the rest heavy-tailed (discrete Pareto).
        heavy = rng.random(n) < 0.5
        counts = np.where(heavy, 1 + np.floor(rng.random(n) ** (-1 / 1.35)), 1).astype(np.int64)
        counts = np.minimum(counts, max(1, min(3000, self.sizes.items // 2)))
        # Genre taste follows the user's factors, so what users pick and how they rate agree.
        logits = (uf @ self.genre_centers.T) * 5.0
        gp = np.exp(logits - logits.max(axis=1, keepdims=True))
        gp /= gp.sum(axis=1, keepdims=True)
        year = rng.choice(self.years, size=n, p=self.year_p)
        start = np.array([dt.datetime(int(y), 1, 1, tzinfo=dt.timezone.utc).timestamp() for y in year])
        start = start + rng.random(n) * 365 * 86400
        zf = rng.normal(0.0, 1.0, (n, k)) / np.sqrt(k) * 1.5  # rating-only user factors
        return {"f": uf, "z": zf, "b": ub, "counts": counts, "genre_p": gp, "start": start, "rng": rng}

    def latent(self, u: dict, owner: np.ndarray, item: np.ndarray) -> np.ndarray:
        """Noise-free rating propensity: biases + taste match + rating-only factor match."""
        return (u["b"][owner] + self.item_b[item]
                + 0.5 * np.einsum("ij,ij->i", u["f"][owner], self.item_f[item])
                + np.einsum("ij,ij->i", u["z"][owner], self.item_w[item]))

    def reviews_for(self, u: dict) -> dict:
        rng = u["rng"]
        counts = u["counts"]
        owner = np.repeat(np.arange(len(counts)), counts)
        cum = np.cumsum(u["genre_p"][owner], axis=1)
        genre = (rng.random(len(owner))[:, None] > cum).sum(axis=1)
        genre = np.minimum(genre, len(GENRES) - 1)
        item = np.empty(len(owner), dtype=np.int64)
        for g in np.unique(genre):
            rows = np.flatnonzero(genre == g)
            cdf = self.genre_cdf[g]
            if len(cdf) == 0:  # tiny catalogues: a genre may have no item
                item[rows] = rng.integers(0, self.sizes.items, len(rows))
                continue
            pick = np.minimum(np.searchsorted(cdf, rng.random(len(rows))), len(cdf) - 1)
            item[rows] = self.genre_items[g][pick]
        # One review per (user, item), as in the released files (ingest still handles duplicates).
        _, first = np.unique(owner * np.int64(self.sizes.items) + item, return_index=True)
        keep = np.sort(first)
        owner, item = owner[keep], item[keep]
        latent = self.latent(u, owner, item) + rng.normal(0.0, 0.3, len(owner))
        stars = 1 + np.searchsorted(self.thresholds, latent)
        # Each user's reviews fall in an active period that grows with their number of reviews.
        span = np.minimum(np.bincount(owner, minlength=len(counts)) * 40.0, 3 * 365.0) * 86400
        t = u["start"][owner] + rng.random(len(owner)) * span[owner]
        t = np.where(t > self.t_hi, 2 * self.t_hi - t, t)  # reflect, no pile-up on the last day
        day = (t // 86400 * 86400).astype(np.int64)
        return {"owner": owner, "item": item, "stars": stars, "time": day}

    def _calibrate(self) -> np.ndarray:
        self.thresholds = np.zeros(4)
        u = self.users(1 << 30, 20000)  # a chunk id no real run reaches
        r = self.reviews_for(u)
        latent = self.latent(u, r["owner"], r["item"])
        latent = latent + np.random.default_rng([self.seed, 2]).normal(0.0, 0.3, len(latent))
        return np.quantile(latent, np.cumsum(STAR_SHARE)[:-1])


def _review_time(ts: int) -> str:
    d = dt.datetime.fromtimestamp(ts, tz=dt.timezone.utc)
    return f"{d.month:02d} {d.day}, {d.year}"


def _title(i: int, world: World) -> str:
    h = int(_splitmix64(np.array([i + 17 * world.seed], dtype=np.uint64))[0])
    return (f"The {_ADJ[h % len(_ADJ)]} {_NOUN[(h >> 8) % len(_NOUN)]}"
            f"{_SUFFIX[(h >> 16) % len(_SUFFIX)]}")


def write_metadata(world: World, path: str) -> int:
    """One meta record per item, Amazon 2018 metadata format."""
    n = world.sizes.items
    with gzip.open(path, "wt", encoding="utf-8", compresslevel=3) as fh:
        for i in range(n):
            g = GENRES[world.item_genre[i]]
            rec = {
                "category": ["Movies & TV", g], "tech1": "", "description": [f"A {g.lower()} title from {world.item_year[i]}."],
                "fit": "", "title": _title(i, world), "also_buy": [], "image": [], "tech2": "", "brand": _FIRST[i % len(_FIRST)] + " " + _LAST[i % len(_LAST)],
                "feature": [], "rank": f"{1 + i * 13 % 900000:,} in Movies & TV (", "also_view": [],
                "details": {}, "main_cat": "Movies & TV", "similar_item": "", "date": "",
                "price": "" if i % 4 == 0 else f"${3 + (i * 7 % 40)}.99", "asin": item_asin(i),
            }
            fh.write(json.dumps(rec) + "\n")
    return n


def write_reviews(world: World, path: str, chunk_users: int = 50_000) -> tuple[int, int]:
    """Stream reviews, user chunk by chunk, until the target count; return (reviews, users) written."""
    target = world.sizes.reviews
    written = users_written = chunk = 0
    t0 = time.monotonic()
    next_report = min(target, 1_000_000)
    with gzip.open(path, "wt", encoding="utf-8", compresslevel=3) as fh:
        while written < target:
            u = world.users(chunk, chunk_users)
            r = world.reviews_for(u)
            owner, item, stars, ts = r["owner"], r["item"], r["stars"], r["time"]
            order = np.lexsort((ts, owner))
            rng = np.random.default_rng([world.seed, 3, chunk])
            verified = rng.random(len(owner)) < 0.8
            votes = rng.integers(2, 60, len(owner))
            has_vote = rng.random(len(owner)) < 0.15
            fmt = rng.integers(0, len(_FORMATS), len(owner))
            last_owner = -1
            lines = []
            for j in order:
                if written >= target:
                    break
                o = int(owner[j])
                if o != last_owner:
                    users_written += 1
                    last_owner = o
                    uid = reviewer_id(chunk * chunk_users + o, world.seed)
                    name = f"{_FIRST[o % len(_FIRST)]} {_LAST[(o // 7) % len(_LAST)]}".strip()
                s = int(stars[j])
                rec = {"overall": float(s)}
                if has_vote[j]:
                    rec["vote"] = str(votes[j])
                rec.update({
                    "verified": bool(verified[j]), "reviewTime": _review_time(int(ts[j])), "reviewerID": uid,
                    "asin": item_asin(int(item[j])), "style": {"Format:": _FORMATS[fmt[j]]}, "reviewerName": name,
                    "reviewText": _TEXT[s], "summary": _SUMMARY[s][j % len(_SUMMARY[s])],
                    "unixReviewTime": int(ts[j]),
                })
                lines.append(json.dumps(rec))
                written += 1
            fh.write("\n".join(lines) + "\n")
            chunk += 1
            if written >= next_report or written >= target:
                rate = written / max(time.monotonic() - t0, 1e-9)
                log.info("generate: %d / %d reviews (%.0f%%), %.0f reviews/s", written, target, 100 * written / target, rate)
                next_report = written + 1_000_000
    return written, users_written


def generate(out_dir: str, reviews: int, users: int = 0, items: int = 0, factors: int = 4,
             first_year: int = 1999, last_year: int = 2018, seed: int = 7,
             reviews_name: str = "reviews.json.gz", meta_name: str = "meta.json.gz") -> dict:
    """Write ``reviews_name`` and ``meta_name`` under ``out_dir``; return what was written."""
    os.makedirs(out_dir, exist_ok=True)
    t0 = time.monotonic()
    world = World(sizes_for(reviews, users, items), factors, first_year, last_year, seed)
    reviews_path = os.path.join(out_dir, reviews_name)
    meta_path = os.path.join(out_dir, meta_name)
    # Write to temporary names and rename, so a half-written file is never taken for a finished one.
    n_items = write_metadata(world, meta_path + ".tmp")
    os.replace(meta_path + ".tmp", meta_path)
    n_reviews, n_users = write_reviews(world, reviews_path + ".tmp")
    os.replace(reviews_path + ".tmp", reviews_path)
    out = {"reviews": n_reviews, "users": n_users, "items": n_items, "reviews_path": reviews_path,
           "metadata_path": meta_path, "seconds": round(time.monotonic() - t0, 1)}
    log.info("generate: wrote %(reviews)d reviews by %(users)d users of %(items)d items to %(reviews_path)s "
             "and %(metadata_path)s in %(seconds)ss", out)
    return out
