"""MovieLens input adapter: ml-100k ``u.data`` (+ ``u.item``) and ``ratings.csv`` (+ ``movies.csv``).

Maps MovieLens ids onto the review columns (userId -> reviewerID, movieId -> asin, rating -> overall,
timestamp -> unixReviewTime) so every later stage is the same as for Amazon reviews.
"""
from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from recjob import schema as S
from recjob.readers.base import Reader


def read(spark: SparkSession, ratings_path: str, movies_path: str | None) -> tuple[DataFrame, DataFrame | None, DataFrame]:
    """Return (reviews, items or None, quarantine) for a MovieLens ratings file."""
    is_csv = ratings_path.rstrip("/").endswith(".csv") or ratings_path.endswith(".csv.gz")
    is_dat = ratings_path.endswith((".dat", ".dat.gz"))  # ml-1m / ml-10m ratings.dat: UserID::MovieID::Rating::Timestamp
    cols = ["u", "i", "r", "t"]
    schema = T.StructType([T.StructField(c, T.StringType()) for c in cols])
    if is_csv:
        raw = spark.read.schema(schema).option("header", True).csv(ratings_path)
    elif is_dat:
        raw = spark.read.schema(schema).option("sep", "::").csv(ratings_path)
    else:  # u.data / u1.base: tab separated, no header
        raw = spark.read.schema(schema).option("sep", "\t").csv(ratings_path)
    raw = raw.withColumn("file", F.input_file_name())
    typed = raw.select(
        F.col("u").alias(S.USER), F.col("i").alias(S.ITEM), F.col("r").cast("double").alias(S.RATING),
        F.col("t").cast("long").alias(S.TIME), "file", "u", "i", "r", "t")
    reason = (F.when(F.col(S.USER).isNull() | F.col(S.ITEM).isNull(), F.lit("missing user or item id"))
              .when(F.col(S.RATING).isNull() | ~F.col(S.RATING).between(0.5, 5.0), F.lit("rating not in 0.5..5"))
              .when(F.col(S.TIME).isNull() | (F.col(S.TIME) < 0), F.lit("missing or negative timestamp")))
    typed = typed.withColumn(S.REASON, reason)
    quarantine = typed.where(F.col(S.REASON).isNotNull()).select(
        F.lit("reviews").alias(S.SOURCE), S.REASON, "file", F.concat_ws("\t", "u", "i", "r", "t").alias(S.RAW))
    reviews = (typed.where(F.col(S.REASON).isNull())
               .select(S.USER, S.ITEM, S.RATING, S.TIME, F.lit(None).cast("boolean").alias("verified"),
                       F.lit(None).cast("string").alias("vote"), F.lit(None).cast("string").alias("summary"),
                       F.lit(None).cast("string").alias("reviewText")))
    items = None
    if movies_path:
        if movies_path.endswith((".dat", ".dat.gz")):  # movies.dat: MovieID::Title::Genres, latin-1
            m = spark.read.option("sep", "::").option("encoding", "ISO-8859-1").csv(movies_path)
            m = m.select(F.col("_c0").alias(S.ITEM), F.col("_c1").alias(S.TITLE), F.split("_c2", r"\|").alias("category"))
        elif movies_path.endswith(".csv"):
            m = spark.read.option("header", True).option("quote", '"').option("escape", '"').csv(movies_path)
            m = m.select(F.col("movieId").alias(S.ITEM), F.col("title").alias(S.TITLE),
                         F.split("genres", r"\|").alias("category"))
        else:  # u.item: pipe separated, latin-1
            m = spark.read.option("sep", "|").option("encoding", "ISO-8859-1").csv(movies_path)
            m = m.select(F.col("_c0").alias(S.ITEM), F.col("_c1").alias(S.TITLE), F.array().cast("array<string>").alias("category"))
        items = m.select(S.ITEM, S.TITLE, F.lit(None).cast("string").alias("brand"),
                         F.lit("Movies").alias("main_cat"), "category", F.lit(None).cast("string").alias("price"))
    return reviews, items, quarantine


class MovieLens(Reader):
    name = "movielens"
    summary = "MovieLens u.data / ratings.dat / ratings.csv, with u.item / movies.dat / movies.csv"
    whole_files = True

    def read(self, spark, reviews_path, metadata_path):
        return read(spark, reviews_path, metadata_path)


READERS = (MovieLens(),)
