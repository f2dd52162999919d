"""recjob web on published files made here (no Spark): lookups by key in sorted files, the pages, untrusted text
rendered as text, bad ids refused with a page, never a stack trace."""
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recjob.web import files
from recjob.web.app import create_app

DS = "2026-01-04"
XSS_TITLE = '<script>alert("x")</script>"><img src=x onerror=alert(2)>'


def _sorted_parquet(folder, table: pa.Table, key: str, row_group_rows: int = 3):
    folder.mkdir(parents=True)
    table = table.sort_by([(key, "ascending")])
    half = table.num_rows // 2
    for i, part in enumerate((table.slice(0, half), table.slice(half))):  # two files, as Spark writes several
        pq.write_table(part, folder / f"part-{i:05d}.parquet", row_group_size=row_group_rows)


@pytest.fixture
def published(tmp_path):
    users = [f"U{i:03d}" for i in range(40)]
    items = [f"I{i:03d}" for i in range(12)]
    rec_rows = [(u, r + 1, items[(n + r) % 12], f"title {items[(n + r) % 12]}", float(10 - r))
                for n, u in enumerate(users) for r in range(5)]
    recs = pa.table({k: [r[j] for r in rec_rows] for j, k in enumerate(["reviewerID", "rank", "asin", "title", "score"])})
    recs = recs.set_column(3, "title", pa.array([XSS_TITLE if a == "I003" else t
                                                 for a, t in zip(recs["asin"].to_pylist(), recs["title"].to_pylist())]))
    _sorted_parquet(tmp_path / "recs", recs, "reviewerID")
    near = pa.table({"asin": [a for a in items for _ in range(3)], "rank": [r + 1 for _ in items for r in range(3)],
                     "neighbour": [items[(i + r + 1) % 12] for i in range(12) for r in range(3)],
                     "title": ["t"] * 36, "score": np.linspace(1, 0, 36).tolist()})
    _sorted_parquet(tmp_path / "near", near, "asin")
    pages = tmp_path / "pages"
    reviewed = pa.table({"reviewerID": [u for u in users for _ in range(2)], "asin": [items[i % 12] for i in range(80)],
                         "overall": [4.0] * 80, "unixReviewTime": [1514764800 + i for i in range(80)],
                         "title": ["seen"] * 80})
    _sorted_parquet(pages / files.REVIEWED, reviewed, "reviewerID")
    per_item = pa.table({"asin": items, "title": [XSS_TITLE if a == "I003" else f"title {a}" for a in items],
                         "recommended_to": list(range(12))})
    _sorted_parquet(pages / files.ITEMS, per_item, "asin")
    report = tmp_path / "report"
    report.mkdir()
    (report / "curves.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"0" * 16)
    files.write_index(str(tmp_path), DS, {
        "recommendations": f"file:{tmp_path / 'recs'}", "item_neighbours": str(tmp_path / "near"),
        "neighbours_method": "factors", "pages": str(pages), "model": "softmax", "gate": "passed", "k": 10,
        "report": str(report), "published_at": "x", "database": "recjob",
        "evaluation": [{"split": "validation", "model": "model", "metric": "ndcg@10", "value": 0.3},
                       {"split": "validation", "model": "model", "metric": "ndcg@10_se", "value": 0.01}]})
    return tmp_path, recs


def test_sorted_lookup_finds_every_key_and_only_its_rows(published):
    root, recs = published
    table = files.SortedTable(f"file:{root / 'recs'}", "reviewerID")
    for user in {r for r in recs["reviewerID"].to_pylist()}:
        got = table.rows(user, ["rank", "asin"])
        want = [(r["rank"], r["asin"]) for r in recs.to_pylist() if r["reviewerID"] == user]
        assert sorted(zip(got["rank"].to_pylist(), got["asin"].to_pylist())) == sorted(want)
    assert table.rows("U999", ["rank"]).num_rows == 0 and table.rows("", ["rank"]).num_rows == 0
    assert len(table._groups) > 10  # many small row groups: a lookup reads one or two of them


def test_pages_show_runs_users_and_items(published):
    client = create_app(str(published[0])).test_client()
    assert client.get("/").headers["Location"].endswith(f"/run/{DS}")
    run = client.get(f"/run/{DS}").get_data(as_text=True)
    assert "passed" in run and "0.3000" in run and "(0.0100)" in run and "curves.png" in run
    user = client.get(f"/run/{DS}/user/U005").get_data(as_text=True)
    assert user.count('class="item"') == 5 and "Reviewed (2)" in user
    item = client.get(f"/run/{DS}/item/I001").get_data(as_text=True)
    assert item.count("/item/") == 3 and 'id="recommended-to">1<' in item
    assert client.get(f"/run/{DS}/figure/curves.png").data.startswith(b"\x89PNG")
    assert client.get("/user", query_string={"ds": DS, "id": "U005"}).headers["Location"].endswith("/user/U005")


def test_untrusted_titles_render_as_text(published):
    client = create_app(str(published[0])).test_client()
    for page in (f"/run/{DS}/item/I003", f"/run/{DS}/user/U000"):
        html = client.get(page).get_data(as_text=True)
        assert "<script>" not in html and "<img src=x" not in html
        assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html


@pytest.mark.parametrize("path, code", [
    (f"/run/{DS}/user/nobody", 404), (f"/run/{DS}/item/nothing", 404), ("/run/2099-01-01", 404),
    ("/run/../../etc/passwd", 404), (f"/run/{DS}/user/a%00b", 400), (f"/run/{DS}/user/" + "x" * 10_000, 400),
    (f"/run/{DS}/user/' OR '1'='1", 404), (f"/run/{DS}/item/..%2F..%2Fetc%2Fpasswd", 404),
    (f"/run/{DS}/figure/..%2Findex.json", 404), (f"/run/{DS}/figure/report.md", 404), ("/user?id=", 400)])
def test_bad_and_unknown_ids_get_a_page_not_a_trace(published, path, code):
    client = create_app(str(published[0])).test_client()
    response = client.get(path)
    html = response.get_data(as_text=True)
    assert response.status_code == code and f'<h1 id="error">{code}</h1>' in html
    assert "Traceback" not in html and "File \"" not in html


def test_the_index_is_replaced_whole_and_reread(published):
    root = published[0]
    client = create_app(str(root)).test_client()
    assert client.get("/run/2026-01-11").status_code == 404
    entry = json.loads(files.index_path(str(root)).read_text())["ds"][DS]
    files.write_index(str(root), "2026-01-11", entry)
    assert client.get("/run/2026-01-11").status_code == 200  # a new publish is seen without a restart
    assert not list(files.index_path(str(root)).parent.glob("*.tmp"))
