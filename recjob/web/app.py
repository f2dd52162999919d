"""The pages of ``recjob web``: a run page per ds, a user page, an item page. Read-only, server-side templates
(Jinja2 escapes every value: titles from item metadata may hold HTML), ids checked before any lookup and only
ever compared as values."""
from __future__ import annotations

import datetime as dt
import re
import threading
from pathlib import Path

from flask import Flask, abort, redirect, render_template, request, send_file, url_for

from recjob.names import ITEM, RANK, RATING, SCORE, TIME, TITLE, USER
from recjob.web import files

MAX_ID = 200  # an id longer than this, or with control characters, is refused (400) before any lookup
FIGURES = ("curves.png", "items_pca.png")  # the report's figures (recjob.report)
DS = re.compile(r"\d{4}-\d\d-\d\d")


class Published:
    """The index and the sorted tables of one data_dir, opened once per published version and reused."""

    def __init__(self, data_dir: str):
        self.data_dir = data_dir
        self._lock = threading.Lock()
        self._index, self._mtime, self._tables = {"ds": {}}, None, {}

    def index(self) -> dict:
        path = files.index_path(self.data_dir)
        mtime = path.stat().st_mtime_ns if path.exists() else None
        with self._lock:
            if mtime != self._mtime:
                self._index, self._mtime = files.read_index(self.data_dir), mtime
            return self._index

    def entry(self, ds: str) -> dict | None:
        return self.index()["ds"].get(ds)

    def table(self, folder: str | None, key: str) -> files.SortedTable | None:
        if not folder:
            return None
        with self._lock:
            if folder not in self._tables:
                if len(self._tables) > 64:  # old versions: the index moved on
                    self._tables.clear()
                self._tables[folder] = files.SortedTable(folder, key)
            return self._tables[folder]


def checked_id(value: str) -> str:
    """An id as given, or 400: empty, too long, or holding control characters (NUL among them)."""
    if not value or len(value) > MAX_ID or not value.isprintable():
        abort(400, description="not a valid id: 1 to 200 printable characters")
    return value


def _when(seconds) -> str:
    try:
        return dt.datetime.fromtimestamp(int(seconds), dt.timezone.utc).strftime("%Y-%m-%d")
    except (TypeError, ValueError, OverflowError, OSError):
        return ""


def create_app(data_dir: str) -> Flask:
    app = Flask(__name__, template_folder=str(Path(__file__).with_name("templates")))
    pub = Published(data_dir)

    def entry_or_404(ds: str) -> dict:
        entry = pub.entry(ds) if DS.fullmatch(ds) else None
        if entry is None:
            abort(404, description=f"nothing was published for ds {ds!r}")
        return entry

    @app.errorhandler(400)
    @app.errorhandler(404)
    @app.errorhandler(405)
    def error(exc):
        return render_template("error.html", code=exc.code, message=exc.description), exc.code

    @app.errorhandler(Exception)
    def failure(exc):  # never a stack trace to the browser; the server's log has it
        app.logger.exception("recjob web: %s", request.path)
        return render_template("error.html", code=500, message="the page could not be made"), 500

    @app.get("/")
    def home():
        runs = sorted(pub.index()["ds"], reverse=True)
        if not runs:
            return render_template("error.html", code=404, message="nothing published in this warehouse yet"), 404
        return redirect(url_for("run_page", ds=runs[0]))

    @app.get("/run/<ds>")
    def run_page(ds):
        entry = entry_or_404(ds)
        k = entry.get("k", 10)
        table: dict = {}
        for row in entry.get("evaluation", []):
            table.setdefault(row["split"], {}).setdefault(row["model"], {})[row["metric"]] = row["value"]
        columns = ["rmse", f"ndcg@{k}", f"hr@{k}", f"precision@{k}", f"recall@{k}", "coverage", "users"]
        return render_template("run.html", ds=ds, entry=entry, table=table, columns=columns, figures=FIGURES,
                               runs=sorted(pub.index()["ds"], reverse=True))

    @app.get("/run/<ds>/figure/<name>")
    def figure(ds, name):
        entry = entry_or_404(ds)
        if name not in FIGURES:
            abort(404, description="no such figure")
        path = Path(files.local(entry["report"])) / name
        if not path.is_file():
            abort(404, description="the report has no such figure")
        return send_file(path, mimetype="image/png", max_age=3600)

    @app.get("/user")
    def user_search():
        ds = request.args.get("ds", "")
        return redirect(url_for("user_page", ds=ds, user=checked_id(request.args.get("id", "").strip())))

    @app.get("/run/<ds>/user/<path:user>")
    def user_page(ds, user):
        entry = entry_or_404(ds)
        user = checked_id(user)
        recs = pub.table(entry["recommendations"], USER).rows(user, [RANK, ITEM, TITLE, SCORE]).to_pylist()
        reviewed = pub.table(f"{entry['pages']}/{files.REVIEWED}", USER).rows(
            user, [ITEM, TITLE, RATING, TIME]).to_pylist()
        if not recs and not reviewed:
            abort(404, description=f"no user {user!r} in the lists published for {ds}")
        recs.sort(key=lambda r: r[RANK])
        reviewed.sort(key=lambda r: (-(r[TIME] or 0), r[ITEM]))
        for r in reviewed:
            r["date"] = _when(r[TIME])
        return render_template("user.html", ds=ds, user=user, recs=recs, reviewed=reviewed, entry=entry)

    @app.get("/run/<ds>/item/<path:item>")
    def item_page(ds, item):
        entry = entry_or_404(ds)
        item = checked_id(item)
        found = pub.table(f"{entry['pages']}/{files.ITEMS}", ITEM).rows(item).to_pylist()
        if not found:
            abort(404, description=f"no item {item!r} in the run published for {ds}")
        similar = pub.table(entry.get("item_neighbours"), ITEM)
        near = sorted(similar.rows(item, [RANK, "neighbour", TITLE, SCORE]).to_pylist(), key=lambda r: r[RANK]) \
            if similar else []
        return render_template("item.html", ds=ds, item=found[0], near=near, entry=entry)

    return app
