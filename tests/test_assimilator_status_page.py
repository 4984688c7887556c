"""The HTML status page: its structure parsed with lxml, and what a real headless Chromium shows."""

import os
from datetime import datetime, timedelta, timezone

import lxml.html
import pytest

from assimilator.progress import ProgressRow
from assimilator.status_page import render_status_page, write_status_page

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
HOSTILE = "<script>alert(1)</script>"
MOMENT = datetime(2024, 3, 1, 12, 30, 5, tzinfo=timezone.utc)


def sample_rows():
    return [
        ProgressRow("DS2", "ParityModified", count=0, converged=0, capped=0, target=100),
        ProgressRow("DS2", "SimpleXOR", count=375, converged=300, capped=75, target=1000),
        ProgressRow("DS1", "SingleInvertMachine", count=1200, converged=1100, capped=100, target=1000),
    ]


def parse(rows, generated_at=MOMENT):
    return lxml.html.document_fromstring(render_status_page(rows, generated_at))


def cells(tree, task):
    (row,) = tree.xpath("//tr[@data-task=$task]", task=task)
    return [cell.text_content() for cell in row.xpath("./td")]


def test_page_is_a_complete_self_contained_html5_document():
    page = render_status_page(sample_rows(), MOMENT)
    tree = lxml.html.document_fromstring(page)
    assert page.startswith("<!DOCTYPE html>")
    assert tree.xpath("//meta/@charset") == ["utf-8"]
    assert tree.findtext(".//title") == "mlds status"
    assert not tree.xpath("//script | //link | //img | //*[@src] | //*[@href]")


def test_one_section_per_dataset_in_row_order_with_totals():
    tree = parse(sample_rows())
    sections = tree.xpath("//section")
    assert [s.get("data-dataset") for s in sections] == ["DS2", "DS1"]
    assert [s.findtext("h2") for s in sections] == [
        "DS2: 375 networks stored, 300 converged",
        "DS1: 1200 networks stored, 1100 converged",
    ]
    assert sections[0].xpath(".//tr/@data-task") == ["ParityModified", "SimpleXOR"]
    assert sections[1].xpath(".//tr/@data-task") == ["SingleInvertMachine"]


def test_rows_of_a_dataset_stay_together_when_interleaved():
    first, second, third = sample_rows()
    tree = parse([first, third, second])
    assert [s.get("data-dataset") for s in tree.xpath("//section")] == ["DS2", "DS1"]
    assert tree.xpath("//section[1]//tr/@data-task") == ["ParityModified", "SimpleXOR"]


def test_row_cells_hold_count_target_percent_converged_capped():
    tree = parse(sample_rows())
    assert cells(tree, "SimpleXOR")[:6] == ["SimpleXOR", "375", "1000", "37.5%", "300", "75"]
    assert cells(tree, "ParityModified")[:6] == ["ParityModified", "0", "100", "0.0%", "0", "0"]


def test_fill_width_equals_the_percent_and_is_capped_at_100():
    tree = parse(sample_rows())
    fills = {
        row.get("data-task"): row.xpath(".//div[@class='bar']/div[@class='fill']")[0] for row in tree.xpath("//tr[@data-task]")
    }
    assert {task: fill.get("data-percent") for task, fill in fills.items()} == {
        "ParityModified": "0.0",
        "SimpleXOR": "37.5",
        "SingleInvertMachine": "100.0",
    }
    for fill in fills.values():
        assert fill.get("style") == f"width: {fill.get('data-percent')}%"
    assert cells(tree, "SingleInvertMachine")[3] == "100.0%"


def test_hostile_task_name_is_shown_as_text_never_run():
    row = ProgressRow("DS1", HOSTILE, count=3, converged=1, capped=2, target=10)
    page = render_status_page([row], MOMENT)
    tree = lxml.html.document_fromstring(page)
    assert not tree.xpath("//script")
    assert HOSTILE not in page
    assert cells(tree, HOSTILE)[0] == HOSTILE


def test_generation_time_is_shown_in_utc_iso_format():
    two_hours_east = timezone(timedelta(hours=2))
    tree = parse(sample_rows(), datetime(2024, 3, 1, 14, 30, 5, tzinfo=two_hours_east))
    assert tree.xpath("//p[@class='generated']")[0].text_content() == "generated 2024-03-01T12:30:05+00:00"


def test_generation_time_defaults_to_now():
    before = datetime.now(timezone.utc).replace(microsecond=0)
    shown = lxml.html.document_fromstring(render_status_page([])).xpath("//p[@class='generated']")[0].text_content()
    after = datetime.now(timezone.utc)
    assert before <= datetime.fromisoformat(shown.removeprefix("generated ")) <= after


def test_no_rows_says_no_networks_yet():
    tree = parse([])
    assert "no networks yet" in tree.text_content()
    assert not tree.xpath("//section | //table")


def test_write_creates_the_directory_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "www" / "status.html"
    write_status_page(str(path), sample_rows(), MOMENT)
    assert os.listdir(path.parent) == ["status.html"]
    assert path.read_text(encoding="utf-8") == render_status_page(sample_rows(), MOMENT)


def test_write_replaces_an_existing_page(tmp_path):
    path = tmp_path / "status.html"
    write_status_page(str(path), sample_rows(), MOMENT)
    write_status_page(str(path), [], MOMENT)
    assert os.listdir(tmp_path) == ["status.html"]
    assert "no networks yet" in path.read_text(encoding="utf-8")


@pytest.fixture
def chromium():
    """A headless Debian Chromium driven through Selenium; skips naming whatever is missing."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install selenium)")
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not os.access(path, os.X_OK):
            pytest.skip(f"{path} is missing (apt-get install {package})")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu"):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


@pytest.mark.browser
def test_chromium_shows_each_row_and_bars_filled_to_the_percent(tmp_path, chromium):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    path = tmp_path / "status.html"
    write_status_page(str(path), sample_rows(), MOMENT)
    chromium.get(path.as_uri())
    shown = WebDriverWait(chromium, 30).until(expected_conditions.visibility_of_all_elements_located((By.CSS_SELECTOR, "tr[data-task]")))
    assert chromium.title == "mlds status"
    assert len(shown) == len(sample_rows())
    for element, row in zip(shown, sample_rows()):
        assert row.task in element.text and str(row.count) in element.text
        bar = element.find_element(By.CSS_SELECTOR, ".bar")
        fill = bar.find_element(By.CSS_SELECTOR, ".fill")
        assert bar.size["width"] > 0
        assert 100.0 * fill.size["width"] / bar.size["width"] == pytest.approx(row.percent, abs=1.0)
