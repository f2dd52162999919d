"""Column names and explicit schemas, in one place."""
from __future__ import annotations

from pyspark.sql import types as T

# Original identifiers (as in Amazon Review Data 2018); every user-facing table keeps them.
USER = "reviewerID"
ITEM = "asin"
RATING = "overall"
TIME = "unixReviewTime"
TITLE = "title"

# The shards' columns besides the indices: the rating as float32 ("overall" of a review), the label models learn.
LABEL = "rating"

# Internal contiguous indices.
USER_IDX = "user_idx"
ITEM_IDX = "item_idx"

HISTORY = "history"  # a user's latest items, most recent first (item histories of the shards stage)

DS = "ds"
SPLIT = "split"
RANK = "rank"
SCORE = "score"
REASON = "reason"
SOURCE = "source"
RAW = "raw"

TRAIN, VALIDATION, TEST = "train", "validation", "test"
SPLITS = (TRAIN, VALIDATION, TEST)

# The typed reviews table that every later stage reads: the fields ingest keeps of an Amazon review line.
REVIEW = T.StructType([
    T.StructField(USER, T.StringType()), T.StructField(ITEM, T.StringType()),
    T.StructField(RATING, T.DoubleType()), T.StructField(TIME, T.LongType()),
    T.StructField("verified", T.BooleanType()), T.StructField("vote", T.StringType()),
    T.StructField("summary", T.StringType()), T.StructField("reviewText", T.StringType()),
])
# The items table: the fields ingest keeps of an item metadata line (meta_*.json.gz).
ITEM_META = T.StructType([
    T.StructField(ITEM, T.StringType()), T.StructField(TITLE, T.StringType()),
    T.StructField("brand", T.StringType()), T.StructField("main_cat", T.StringType()),
    T.StructField("category", T.ArrayType(T.StringType())), T.StructField("price", T.StringType()),
])
REVIEWS_COLUMNS = REVIEW.fieldNames()
ITEMS_COLUMNS = ITEM_META.fieldNames()
QUARANTINE_COLUMNS = [SOURCE, REASON, "file", RAW]
