"""The pages in a real browser (Debian's chromium and chromedriver, driven by Selenium; nothing downloaded): a small
run is published with planted HTML in two titles, ``recjob web`` serves it, and the browser opens the run page
(its figures load), searches a user, sees their list with titles, follows an item to its neighbours, goes back;
a planted ``<script>`` title does not run and shows as text; the browser's console stays free of errors.

With RECJOB_UPDATE_SCREENSHOTS=1 the three pages' screenshots are written to docs/ (the README shows them)."""
import gzip
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, run_capped, small_run_conf

pytestmark = pytest.mark.slow

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
BIN = Path(sys.executable).parent
DS = "2026-01-04"
SCRIPT_TITLE = "<script>alert('planted')</script>"
ATTR_TITLE = '"><img src=x onerror=alert(2)>'


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).exists()]
    if missing:
        if os.environ.get("RECJOB_REQUIRE_SERVICES") == "1":
            pytest.fail(f"RECJOB_REQUIRE_SERVICES=1 but {missing} are missing (Debian chromium, chromium-driver)")
        pytest.skip(f"browser test skipped: {missing} missing (apt-get install chromium chromium-driver)")
    pytest.importorskip("selenium", reason="selenium is not installed (the test extra)")
    home = tmp_path_factory.mktemp("web")
    conf = small_run_conf(home / "recjob.yaml", home / "data")
    env = {**os.environ, "PATH": f"{BIN}:{os.environ.get('PATH', '')}"}
    run_capped([str(BIN / "recjob"), "generate", "--conf", conf, "--reviews", "20000"], env=env, check=True,
               cap_s=900)
    meta = home / "data" / "raw" / "meta.json.gz"
    lines = [json.loads(line) for line in gzip.decompress(meta.read_bytes()).splitlines()]
    planted = {lines[0]["asin"]: SCRIPT_TITLE, lines[1]["asin"]: ATTR_TITLE}
    for line in lines:
        line["title"] = planted.get(line["asin"], line.get("title"))
    meta.write_bytes(gzip.compress(b"\n".join(json.dumps(line).encode() for line in lines) + b"\n"))
    out = run_capped([str(BIN / "recjob"), "run", "--conf", conf, "--ds", DS], env=env, cap_s=3600)
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    port = _free_port()
    server = subprocess.Popen([str(BIN / "recjob"), "web", "--conf", conf, "--port", str(port)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert "recjob web:" in server.stdout.readline()  # no timeout: a slow machine only waits longer
        for _ in range(600):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}", home / "data", planted
    finally:
        server.terminate()
        server.wait()


@pytest.fixture(scope="module")
def browser(site, tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must not look for a driver online
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--window-size=1280,1000", f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(600)
    yield driver
    driver.quit()


def _shot(driver, name: str) -> None:
    if os.environ.get("RECJOB_UPDATE_SCREENSHOTS") == "1":
        driver.save_screenshot(str(ROOT / "docs" / name))


def _follow(driver, action, element_id: str):
    """Runs ``action`` (a click, a back) and waits for the next page's address and then its ``element_id``: a
    click returns before its navigation ends. No short timeout: a slow machine only waits longer."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    url = driver.current_url
    action()
    wait = WebDriverWait(driver, 600)
    wait.until(ec.url_changes(url))  # the navigation is committed: what follows reads the next page
    return wait.until(ec.presence_of_element_located((By.ID, element_id)))


def _console_errors(driver) -> list:
    return [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def test_a_user_is_followed_to_an_item_and_its_neighbours(site, browser):
    from selenium.webdriver.common.by import By

    from recjob.web import files

    url, data, _ = site
    browser.get(f"{url}/run/{DS}")
    assert browser.find_element(By.ID, "gate").text == "passed"
    figures = browser.find_elements(By.CSS_SELECTOR, "img.figure")
    assert len(figures) == 2 and all(browser.execute_script("return arguments[0].complete && "
                                                            "arguments[0].naturalWidth", f) > 0 for f in figures)
    _shot(browser, "web-run.png")
    entry = files.read_index(str(data))["ds"][DS]
    user = files.SortedTable(entry["recommendations"], "reviewerID")._groups[0][0]
    box = browser.find_element(By.ID, "user-id")
    box.send_keys(user)
    assert _follow(browser, browser.find_element(By.ID, "search").click, "user").text == user
    rows = browser.find_elements(By.CSS_SELECTOR, "#recommendations td.title")
    assert len(rows) == 10 and all(r.text for r in rows)
    _shot(browser, "web-user.png")
    first = browser.find_element(By.CSS_SELECTOR, "#recommendations a.item")
    item = first.text
    assert _follow(browser, first.click, "item").text == item
    assert len(browser.find_elements(By.CSS_SELECTOR, "#neighbours tr")) > 1  # a header and neighbours
    _shot(browser, "web-item.png")
    assert _follow(browser, browser.back, "user").text == user
    assert _console_errors(browser) == []


def test_planted_html_in_titles_shows_as_text_and_never_runs(site, browser):
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By

    url, _, planted = site
    for asin, title in planted.items():
        browser.get(f"{url}/run/{DS}/item/{asin}")
        with pytest.raises(NoAlertPresentException):
            browser.switch_to.alert.text
        assert browser.find_element(By.ID, "item-title").text == title  # shown as the text it is
        assert browser.find_elements(By.CSS_SELECTOR, "#item-title img, #item-title script") == []
    assert _console_errors(browser) == []


def test_bad_ids_get_an_error_page(site, browser):
    from selenium.webdriver.common.by import By

    url = site[0]
    browser.get(f"{url}/run/{DS}/user/nobody-at-all")
    assert browser.find_element(By.ID, "error").text == "404"
    browser.get(f"{url}/run/{DS}/user/" + "x" * 3000)
    assert browser.find_element(By.ID, "error").text == "400"
    assert all("favicon" not in e["message"] for e in browser.get_log("browser"))

