import pandas as pd

from recjob import schema as S
from recjob.readers import movielens

from conftest import shared_file


def test_ratings_dat_and_movies_dat(spark, tmp_path):
    (tmp_path / "ratings.dat").write_text("1::1193::5::978300760\n1::661::3::978302109\n2::1193::9::978300000\nx::::\n")
    (tmp_path / "movies.dat").write_text("1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n661::James and the Giant Peach (1996)::Animation|Children's\n",
                                         encoding="latin-1")
    reviews, items, quarantine = movielens.read(spark, str(tmp_path / "ratings.dat"), str(tmp_path / "movies.dat"))
    r = reviews.toPandas().sort_values([S.USER, S.ITEM])
    assert r[[S.USER, S.ITEM, S.RATING]].values.tolist() == [["1", "1193", 5.0], ["1", "661", 3.0]]
    assert sorted(quarantine.toPandas()[S.REASON]) == ["missing user or item id", "rating not in 0.5..5"]
    titles = dict(items.select(S.ITEM, S.TITLE).toPandas().values)
    assert titles["661"].startswith("James and the Giant Peach")
    assert items.where("asin = '661'").first()["category"] == ["Animation", "Children's"]


def test_ratings_csv(spark, tmp_path):
    (tmp_path / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,31,2.5,1260759144\n1,1029,3.0,1260759179\n")
    (tmp_path / "movies.csv").write_text('movieId,title,genres\n31,"Dangerous Minds (1995)",Drama\n1029,"Dumbo (1941)",Animation|Children\n')
    reviews, items, q = movielens.read(spark, str(tmp_path / "ratings.csv"), str(tmp_path / "movies.csv"))
    assert reviews.count() == 2 and q.count() == 0
    assert dict(items.select(S.ITEM, S.TITLE).toPandas().values)["1029"] == "Dumbo (1941)"


def test_real_ml100k_u_data(spark):
    path = shared_file("movielens/ml-100k/u.data.gz")
    reviews, items, q = movielens.read(spark, str(path), str(shared_file("movielens/ml-100k/u.item")))
    assert reviews.count() == 100_000 and q.count() == 0
    assert reviews.select(S.USER).distinct().count() == 943
    assert items.count() == 1682
    assert pd.notna(items.where("asin = '1'").first()[S.TITLE])
