"""The leaderboard site in a real headless Chromium (Debian's chromium and chromium-driver,
driven by Selenium): it loads without console errors, a click on a column header re-sorts
the table, the plots are shown, and an episode's link opens its transcript page."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from leaderboard_helpers import SCORER, make_run, results_of, two_toy_tasks, write_report
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from typer.testing import CliRunner

from rdbench.cli import app
from rdbench.submission import Finding

pytestmark = [pytest.mark.browser, pytest.mark.docker]


@pytest.fixture(scope="module")
def site(
    browser_binaries: tuple[str, str], tmp_path_factory: pytest.TempPathFactory, sandbox_image: str
) -> Path:
    """The site of a real run (null and oracle on two toy tasks), verified with a warning,
    and of two unverified runs (null; an agent that uses the score tool)."""
    root = tmp_path_factory.mktemp("browser-board")
    tasks = two_toy_tasks(root / "tasks")
    team = make_run(root / "team", tasks, ["null", "oracle"], runs=1)
    other = make_run(root / "other", tasks, ["null"], runs=2)
    scorer = make_run(root / "scorer", tasks[:1], [SCORER], runs=1)
    episode = results_of(team)[0]["episode_id"]
    write_report(team, [Finding(code="suspicious-pattern", severity="warning",
                                message="looked at /proc", episode_id=episode)])
    out = root / "site"
    result = CliRunner().invoke(app, ["leaderboard", str(team), str(other), str(scorer), "-o",
                                      str(out)])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def driver(browser_binaries: tuple[str, str]) -> Iterator[WebDriver]:
    """A headless Chromium that keeps its console log."""
    browser, chromedriver = browser_binaries
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    chrome = webdriver.Chrome(service=Service(chromedriver), options=options)
    yield chrome
    chrome.quit()


def _problems(driver: WebDriver) -> list[dict]:
    """The console's warnings and errors since the last call."""
    return [entry for entry in driver.get_log("browser")
            if entry["level"] in ("SEVERE", "WARNING")]


def _column(driver: WebDriver, table: str, header: str) -> list[str]:
    """The data-sort values of one column of a table, top to bottom."""
    headers = [th.text.strip() for th in driver.find_elements(
        By.CSS_SELECTOR, f"#{table} thead th")]
    index = headers.index(header) + 1
    return [td.get_attribute("data-sort") for td in driver.find_elements(
        By.CSS_SELECTOR, f"#{table} tbody tr td:nth-child({index})")]


def test_the_page_loads_without_console_errors(driver: WebDriver, site: Path) -> None:
    driver.get((site / "index.html").as_uri())
    assert driver.title == "rdbench leaderboard"
    rows = driver.find_elements(By.CSS_SELECTOR, "#board tbody tr")
    assert len(rows) == 3  # the reference, team's null and oracle
    assert _problems(driver) == []


def test_clicking_a_header_sorts_the_rows_by_that_column(driver: WebDriver, site: Path) -> None:
    driver.get((site / "index.html").as_uri())
    header = next(th for th in driver.find_elements(
        By.CSS_SELECTOR, "#board thead th") if th.text.strip() == "mean working s")
    header.click()
    ascending = _column(driver, "board", "mean working s")
    numbers = [float(value) for value in ascending if value]
    assert numbers == sorted(numbers) and len(numbers) == 2
    assert ascending[-1] == ""  # the reference row has no working time: last either way
    assert header.get_attribute("aria-sort") == "ascending"
    header.click()
    descending = [float(v) for v in _column(driver, "board", "mean working s") if v]
    assert descending == sorted(numbers, reverse=True)
    names = next(th for th in driver.find_elements(
        By.CSS_SELECTOR, "#board thead th") if th.text.strip() == "agent")
    names.click()
    assert _column(driver, "board", "agent") == ["null", "oracle", "reference"]
    names.click()
    assert _column(driver, "board", "agent") == ["reference", "oracle", "null"]
    assert _problems(driver) == []


def test_the_plots_are_shown(driver: WebDriver, site: Path) -> None:
    driver.get((site / "index.html").as_uri())
    plots = driver.find_elements(By.CSS_SELECTOR, "img.plot")
    assert len(plots) == 2
    for plot in plots:
        width = driver.execute_script(
            "return arguments[0].complete && arguments[0].naturalWidth;", plot)
        assert width > 300
        assert plot.is_displayed() and plot.size["height"] > 100


def test_an_episodes_link_opens_its_transcript_page(driver: WebDriver, site: Path) -> None:
    driver.get((site / "index.html").as_uri())
    link = driver.find_element(
        By.CSS_SELECTOR, "#board tr[id$='--oracle'] td.task-toy-a .eps a")
    episode = link.get_attribute("title")
    link.click()
    assert episode in driver.title
    body = driver.find_element(By.TAG_NAME, "body").text
    assert "Transcript" in body and "Final grade" in body
    assert driver.find_element(By.ID, "instructions").is_displayed()
    timeline = driver.find_element(By.ID, "timeline")
    assert timeline.size["width"] > 100
    final = driver.find_elements(By.CSS_SELECTOR, "#timeline path.final")
    assert len(final) == 1
    folded = driver.find_elements(
        By.CSS_SELECTOR, "li.observation details")
    assert folded and all(d.get_attribute("open") is None for d in folded)
    assert _problems(driver) == []
    driver.find_element(By.LINK_TEXT, "\u2190 leaderboard").click()
    assert driver.title == "rdbench leaderboard"


def test_an_episodes_page_shows_its_validation_scores_on_the_time_line(
    driver: WebDriver, site: Path
) -> None:
    driver.get((site / "index.html").as_uri())
    driver.find_element(By.CSS_SELECTOR, "#apart-table tr[id^='row-scorer'] .eps a").click()
    dots = driver.find_elements(By.CSS_SELECTOR, "#timeline circle.validation")
    assert len(dots) == 2
    assert all(dot.is_displayed() for dot in dots)
    xs = [float(dot.get_attribute("cx") or 0) for dot in dots]
    assert xs[0] < xs[1]  # the second came later in working time
    assert _problems(driver) == []
