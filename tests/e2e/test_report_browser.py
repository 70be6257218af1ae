"""The HTML report in a real browser: Debian's headless chromium, driven by Selenium over chromedriver.

Against the local server (real HTTP) with the demo experiment (several simulated days): the page loads
with no console error and no request to another host, the charts are drawn, and the numbers printed
on the page equal /results. Screenshots (PNG) are saved under test-artifacts/ (git-ignored) for a
person to look at. `make test` installs chromium and chromium-driver when missing (`make browser`);
without them this test is skipped, saying so.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from localdev.postgres import PROJECT_ROOT
from tests.e2e.conftest import Http

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ARTIFACTS = PROJECT_ROOT / "test-artifacts"


def _missing_browser() -> str | None:
    for path in (CHROMIUM, CHROMEDRIVER):
        if not Path(path).exists() and shutil.which(Path(path).name) is None:
            return f"{path} is missing: run `make browser` (apt-get install chromium chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (make install)"
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    reason = _missing_browser()
    if reason is not None:
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="abtest-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1280,1000",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    # Console messages and every network request the page makes.
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    service = Service(executable_path=shutil.which("chromedriver") or CHROMEDRIVER)
    driver = webdriver.Chrome(options=options, service=service)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def demo(server: Http, database_url: str) -> str:
    """The demo experiment in the test database (created through the handlers, as `make demo` does)."""
    import psycopg

    from tests.conftest import TABLES

    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE")
    from localdev.demo import create_demo

    experiment_id, created = create_demo()
    assert created
    return experiment_id


def _requested_urls(driver: Any) -> list[str]:
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message.get("method") == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def _load(driver: Any, url: str, screenshot: str) -> None:
    """Open the page; assert no console error and no request beyond the local server; save a PNG."""
    driver.get_log("browser")
    driver.get_log("performance")
    driver.get(url)
    assert driver.execute_script("return document.readyState") == "complete"
    errors = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
    assert errors == [], errors
    local = urlsplit(url).netloc
    foreign = [u for u in _requested_urls(driver) if urlsplit(u).netloc not in ("", local)]
    assert foreign == [], f"requests to other hosts: {foreign}"
    ARTIFACTS.mkdir(exist_ok=True)
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1280, min(max(int(height), 800), 12000))
    assert driver.save_screenshot(str(ARTIFACTS / screenshot))
    driver.set_window_size(1280, 1000)


def _percent(text: str) -> float:
    """'+12.34%' / '\u221212.34%' -> 0.1234."""
    return float(text.replace("\u2212", "-").replace("%", "").replace("+", "")) / 100


def _check_close(text: str, value: float, decimals: int) -> None:
    """The printed percentage is the value rounded to `decimals` (of the percent)."""
    assert _percent(text) == pytest.approx(value, abs=0.5 * 10**-decimals / 100 + 1e-12), (text, value)


def test_the_report_draws_its_charts_and_prints_what_results_says(
    browser: Any, server: Http, demo: str
) -> None:
    from selenium.webdriver.common.by import By

    # Given the demo experiment's results and time series over HTTP
    status, _, results = server.request("GET", f"/api/v1/experiments/{demo}/results")
    assert status == 200
    status, _, series = server.request("GET", f"/api/v1/experiments/{demo}/results/timeseries")
    assert status == 200
    assert len(series["points"]) >= 7
    totals = [sum(v["users"] for v in point["variants"]) for point in series["points"]]
    assert all(a < b for a, b in pairwise(totals)), totals  # every day brings users
    assert totals[-1] == sum(v["users"] for v in results["variants"])

    # When the report is opened in a browser
    _load(browser, f"{server.base_url}/api/v1/experiments/{demo}/report", "report.png")

    # Then the charts are drawn: forest plot intervals, the lift band, users per day, the progress bar
    for metric in results["metrics"]:
        section = browser.find_element(By.CSS_SELECTOR, f'section[data-metric="{metric}"]')
        forest = section.find_element(By.CSS_SELECTOR, "svg.forest-plot")
        assert len(forest.find_elements(By.CSS_SELECTOR, "line.interval")) == 2  # conversion and value
        lift = section.find_element(By.CSS_SELECTOR, "svg.lift-over-time")
        assert lift.find_elements(By.CSS_SELECTOR, "polygon.band")
        assert len(lift.find_elements(By.CSS_SELECTOR, "circle.point")) == len(series["points"])
        assert lift.size["width"] > 300
        assert lift.size["height"] > 100
    users_chart = browser.find_element(By.CSS_SELECTOR, "svg.users-over-time")
    assert len(users_chart.find_elements(By.CSS_SELECTOR, "polyline.line")) == len(results["variants"])
    bar = browser.find_element(By.CSS_SELECTOR, "svg.progress-bar rect.filled")
    assert float(bar.get_attribute("width")) > 0

    # And the SRM state is shown (the demo has none)
    assert browser.find_elements(By.CSS_SELECTOR, '[data-warning="srm"]') == []
    assert f"p = {results['srm']['p_value']:.4f}" in browser.find_element(By.ID, "srm").text

    # And every number of the tables equals /results (at the printed precision)
    for variant in results["variants"]:
        row = browser.find_element(By.CSS_SELECTOR, f'#variants tr[data-variant="{variant["name"]}"]')
        assert int(row.find_element(By.CLASS_NAME, "users").text.replace(",", "")) == variant["users"]
    checked = 0
    for metric, analyses in results["metrics"].items():
        for kind, analysis in analyses.items():
            table = f'table.results[data-metric="{metric}"][data-analysis="{kind}"]'
            for comparison in analysis["comparisons"]:
                name = results["variants"][comparison["treatment_index"]]["name"]
                row = browser.find_element(By.CSS_SELECTOR, f'{table} tr[data-variant="{name}"]')
                cell = {
                    c: row.find_element(By.CLASS_NAME, c).text for c in ("lift", "ci", "p-value", "chance")
                }
                relative = comparison["relative"]
                _check_close(cell["lift"], relative["estimate"], 2)
                low, high = re.findall(r"[+\u2212]?[\d.]+%", cell["ci"])
                _check_close(low, relative["ci"][0], 2)
                _check_close(high, relative["ci"][1], 2)
                assert float(cell["p-value"]) == pytest.approx(relative["p_value"], abs=0.00005)
                _check_close(cell["chance"], comparison["bayes_relative"]["chance_to_win"], 1)
                checked += 1
    assert checked == 2 * len(results["metrics"]) * (len(results["variants"]) - 1)

    # And no table spills out of its column: the column stays inside the grid (a 1fr column grew to
    # its table's width) and a table wider than its column scrolls inside it instead of overlapping
    spilled = browser.execute_script(
        "return [...document.querySelectorAll('.grid')].flatMap(grid => {"
        "  const g = grid.getBoundingClientRect();"
        "  return [...grid.children].flatMap(column => {"
        "    const c = column.getBoundingClientRect();"
        "    const scrolls = getComputedStyle(column).overflowX !== 'visible';"
        "    return [...column.querySelectorAll('table')]"
        "      .filter(t => c.right > g.right + 1"
        "        || (t.getBoundingClientRect().right > c.right + 1 && !scrolls))"
        "      .map(t => t.className);"
        "  });"
        "});"
    )
    assert spilled == []


def test_the_index_lists_the_experiment_and_links_to_its_report(
    browser: Any, server: Http, demo: str
) -> None:
    from selenium.webdriver.common.by import By

    _load(browser, f"{server.base_url}/api/v1/report", "index.png")
    row = browser.find_element(By.CSS_SELECTOR, f'tr[data-experiment="{demo}"]')
    assert "completed" in row.text.lower()
    assert "demo_checkout_redesign" in row.text
    row.find_element(By.TAG_NAME, "a").click()
    assert browser.current_url.endswith(f"/api/v1/experiments/{demo}/report")
    assert browser.find_element(By.TAG_NAME, "h1").text.startswith("demo_checkout_redesign")


@pytest.fixture(scope="module")
def bandit(server: Http, demo: str) -> str:
    """A three-arm bandit with two closed periods (after the demo, which empties the database)."""
    import random
    import time

    from tests.integration.test_bandits import bandit_body

    body = bandit_body("browser_bandit", period_hours=24, min_users_per_arm=20)
    body["surface"] = "browser_bandit"
    status, _, experiment = server.request("POST", "/api/v1/experiments", body)
    assert status == 201, experiment
    experiment_id: str = experiment["id"]
    server.request("PUT", f"/api/v1/experiments/{experiment_id}/status", {"status": "running"})
    rng = random.Random(7)
    rates = {"a": 0.05, "b": 0.1, "c": 0.3}
    for period in range(2):
        events = []
        for n in range(period * 150, (period + 1) * 150):
            user = f"b{n}"
            _, _, body = server.request(
                "POST", "/api/v1/assignments", {"experiment_id": experiment_id, "user_id": user}
            )
            if rng.random() < rates[body["variant"]["name"]]:
                events.append(
                    {
                        "type": "conversion",
                        "experiment_id": experiment_id,
                        "user_id": user,
                        "event_id": f"c-{user}",
                        "metric_name": "purchase",
                    }
                )
        status, _, _ = server.request("POST", "/api/v1/events", {"events": events})
        assert status == 200
        status, _, answer = server.request("POST", f"/api/v1/experiments/{experiment_id}/bandit/reweight")
        assert status == 200, answer
        time.sleep(1.1)  # the local server's experiment cache: the next users get the new weights
    return experiment_id


def test_a_bandits_report_draws_its_weights_over_time_and_p_best(
    browser: Any, server: Http, bandit: str
) -> None:
    from selenium.webdriver.common.by import By

    # Given the bandit's state and results over HTTP
    status, _, state = server.request("GET", f"/api/v1/experiments/{bandit}/bandit")
    assert status == 200
    assert [p["number"] for p in state["periods"]] == [1, 2]
    status, _, results = server.request("GET", f"/api/v1/experiments/{bandit}/results")
    assert status == 200

    # When its report is opened in a browser
    _load(browser, f"{server.base_url}/api/v1/experiments/{bandit}/report", "report-bandit.png")

    # Then the stacked chart has one bar per period (two closed, one open), each arm a segment, and
    # each bar's segments are that period's weights, stacked to the full height
    chart = browser.find_element(By.CSS_SELECTOR, "#bandit svg.bandit-weights")
    assert chart.size["width"] > 300
    segments = chart.find_elements(By.CSS_SELECTOR, "rect.weight")
    assert len(segments) == 3 * 3
    bars: dict[str, list[float]] = {}
    for segment in segments:
        bars.setdefault(segment.get_attribute("data-period"), []).append(
            float(segment.get_attribute("data-weight"))
        )
    expected = [p["weights_before"] for p in state["periods"]] + [state["weights"]]
    assert list(bars.values()) == expected
    heights = [
        sum(float(s.get_attribute("height")) for s in segments if s.get_attribute("data-period") == period)
        for period in bars
    ]
    assert max(heights) - min(heights) < 0.5  # every bar fills the plot (rounding to 0.1 px per segment)

    # And P(best), the weights and the period-weighted estimates are printed as /bandit and /results say
    for index, arm in enumerate(results["bandit"]["arms"]):
        row = browser.find_element(By.CSS_SELECTOR, f'#bandit-arms tr[data-arm="{arm["name"]}"]')
        _check_close(row.find_element(By.CLASS_NAME, "p-best").text, state["p_best"][index], 1)
        _check_close(row.find_element(By.CLASS_NAME, "weight").text, state["weights"][index], 1)
        assert float(row.find_element(By.CLASS_NAME, "mean").text) == pytest.approx(arm["mean"], rel=1e-3)
    # And the sample ratio check uses the bandit's expectation: no mismatch
    assert browser.find_elements(By.CSS_SELECTOR, '[data-warning="srm"]') == []
    assert results["srm"]["flag"] is False

    # And the lift over time is the bandit's period-weighted series: its last day is /results' lift
    status, _, series = server.request(
        "GET", f"/api/v1/experiments/{bandit}/results/timeseries?metric=purchase"
    )
    assert status == 200
    section = browser.find_element(By.CSS_SELECTOR, 'section[data-metric="purchase"]')
    assert section.find_elements(By.CSS_SELECTOR, "svg.lift-over-time circle.point")
    cells = {
        tuple(c.get_attribute("textContent") for c in row.find_elements(By.TAG_NAME, "td")[:2]): row
        for row in section.find_elements(By.CSS_SELECTOR, "table.lift-by-day tbody tr")
    }
    last_day = series["points"][-1]["date"]
    for comparison in results["metrics"]["purchase"]["conversion"]["comparisons"]:
        name = results["variants"][comparison["treatment_index"]]["name"]
        lift = cells[(last_day, name)].find_elements(By.TAG_NAME, "td")[2].get_attribute("textContent")
        _check_close(lift, comparison["relative"]["estimate"], 2)
