import gzip
import hashlib
import json

import pandas as pd

from recjob import datagen

from conftest import shared_file


def _read(path):
    with gzip.open(path, "rt") as fh:
        return [json.loads(line) for line in fh]


def test_deterministic_for_a_seed(tmp_path):
    a = datagen.generate(str(tmp_path / "a"), 3000, seed=3)
    b = datagen.generate(str(tmp_path / "b"), 3000, seed=3)
    c = datagen.generate(str(tmp_path / "c"), 3000, seed=4)

    def digest(p):
        with gzip.open(p, "rb") as fh:
            return hashlib.sha256(fh.read()).hexdigest()

    assert digest(a["reviews_path"]) == digest(b["reviews_path"])
    assert digest(a["reviews_path"]) != digest(c["reviews_path"])
    assert a["reviews"] == 3000


def test_shape_like_movies_and_tv(tmp_path):
    out = datagen.generate(str(tmp_path), 60000, seed=5)
    df = pd.DataFrame(_read(out["reviews_path"]))
    assert len(df) == 60000
    per_user = df.groupby("reviewerID").size()
    assert 0.4 < (per_user == 1).mean() < 0.6  # about half review one item
    assert per_user.max() > 50  # long tail
    stars = df["overall"].value_counts(normalize=True)
    assert stars[5.0] > 0.5 and stars[5.0] > stars[4.0] > stars[3.0]
    years = pd.to_datetime(df["unixReviewTime"], unit="s").dt.year
    assert years.min() <= 2005 and (years == 2018).mean() > 0.1
    assert not df.duplicated(["reviewerID", "asin"]).any()
    meta = pd.DataFrame(_read(out["metadata_path"]))
    assert set(df["asin"]) <= set(meta["asin"])
    assert meta["title"].str.len().min() > 3


def test_same_fields_as_the_real_files(tmp_path):
    real_reviews = _read(shared_file("amazon2018/Movies_and_TV_5.head5000.json.gz"))[:200]
    real_meta = _read(shared_file("amazon2018/meta_Gift_Cards.json.gz"))[:50]
    out = datagen.generate(str(tmp_path), 500, seed=1)
    ours = _read(out["reviews_path"])
    meta = _read(out["metadata_path"])
    real_keys = set().union(*(r.keys() for r in real_reviews))
    our_keys = set().union(*(r.keys() for r in ours))
    assert our_keys <= real_keys and {"reviewerID", "asin", "overall", "unixReviewTime", "reviewTime"} <= our_keys
    for key in ("overall", "unixReviewTime", "reviewTime", "reviewerID", "asin", "verified"):
        assert type(ours[0][key]) is type(real_reviews[0][key]), key
    assert set(meta[0]) == set(real_meta[0])
    assert len(ours[0]["reviewerID"]) == len(real_reviews[0]["reviewerID"]) and len(ours[0]["asin"]) == 10
