"""Column names and explicit schemas, in one place."""
from __future__ import annotations

from pyspark.sql import types as T

# Original identifiers (as in Amazon Review Data 2018); every user-facing table keeps them.
USER = "reviewerID"
ITEM = "asin"
RATING = "overall"
TIME = "unixReviewTime"
TITLE = "title"

# Internal contiguous indices.
USER_IDX = "user_idx"
ITEM_IDX = "item_idx"

DS = "ds"
SPLIT = "split"
RANK = "rank"
SCORE = "score"
REASON = "reason"
SOURCE = "source"
RAW = "raw"
CORRUPT = "_corrupt_record"

TRAIN, VALIDATION, TEST = "train", "validation", "test"
SPLITS = (TRAIN, VALIDATION, TEST)

# Raw review record, Amazon Review Data (2018) JSON lines.
AMAZON_REVIEW = T.StructType(
    [
        T.StructField("overall", T.DoubleType()),
        T.StructField("verified", T.BooleanType()),
        T.StructField("reviewTime", T.StringType()),
        T.StructField("reviewerID", T.StringType()),
        T.StructField("asin", T.StringType()),
        T.StructField("style", T.MapType(T.StringType(), T.StringType())),
        T.StructField("reviewerName", T.StringType()),
        T.StructField("reviewText", T.StringType()),
        T.StructField("summary", T.StringType()),
        T.StructField("unixReviewTime", T.LongType()),
        T.StructField("vote", T.StringType()),
        T.StructField("image", T.ArrayType(T.StringType())),
    ]
)

# Raw item metadata record (meta_*.json.gz); fields we keep.
AMAZON_META = T.StructType(
    [
        T.StructField("asin", T.StringType()),
        T.StructField("title", T.StringType()),
        T.StructField("brand", T.StringType()),
        T.StructField("main_cat", T.StringType()),
        T.StructField("category", T.ArrayType(T.StringType())),
        T.StructField("price", T.StringType()),
        T.StructField("date", T.StringType()),
    ]
)

# The typed reviews table that every later stage reads.
REVIEWS_COLUMNS = [USER, ITEM, RATING, TIME, "verified", "vote", "summary", "reviewText"]
ITEMS_COLUMNS = [ITEM, TITLE, "brand", "main_cat", "category", "price"]
QUARANTINE_COLUMNS = [SOURCE, REASON, "file", RAW]
