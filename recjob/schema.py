"""The tables' explicit Spark schemas (their column names: ``recjob.names``, re-exported here)."""
from __future__ import annotations

from pyspark.sql import types as T

from recjob.names import (DS, HISTORY, ITEM, ITEM_IDX, LABEL, RANK, RATING, RAW, REASON, SCORE,  # noqa: F401
                          SOURCE, SPLIT, SPLITS, TEST, TIME, TITLE, TRAIN, USER, USER_IDX, VALIDATION)

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
