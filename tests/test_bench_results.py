"""Every bench prints its run as a dated results entry, and a recorded entry goes first in its results file."""
import re
import sys

from conftest import ROOT

sys.path.insert(0, str(ROOT / "bench"))
import results_entry  # noqa: E402


def test_entries_are_dated_and_inserted_newest_first(tmp_path, monkeypatch):
    monkeypatch.setattr(results_entry, "RESULTS", tmp_path)
    (tmp_path / "x.md").write_text("# bench/x.py: results\n\nWhat it measures.\n\n## 2020-01-01, commit old\n\nold\n")
    first = results_entry.entry("x", "| a | 1 |", ["bench/x.py", "--fast"])
    assert re.match(r"## \d{4}-\d\d-\d\d \d\d:\d\d UTC, commit \S+\n\nMachine: \d+ cores", first)
    assert "`python bench/x.py --fast`" in first and "| a | 1 |" in first
    results_entry.insert("x", first)
    results_entry.insert("x", first.replace("| a | 1 |", "| a | 2 |"))
    text = (tmp_path / "x.md").read_text()
    assert text.startswith("# bench/x.py: results\n\nWhat it measures.\n\n## ")
    assert text.index("| a | 2 |") < text.index("| a | 1 |") < text.index("## 2020-01-01")


def test_every_bench_records_its_run():
    for path in (ROOT / "bench").glob("*.py"):
        if path.name not in ("results_entry.py", "tf_top_k.py"):  # helpers, not benches
            assert f'with recorded("{path.stem}")' in path.read_text(), path.name
