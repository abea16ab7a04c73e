"""`sdzero explain --data` pages in a real headless browser (Debian's chromium driven by Playwright).

The demo's base model explains its own answers (Generator and Reviser are the same weights, phase 2's
first step); the index page must load without a console error, sort by its columns, link to each
response's page, whose tokens carry both roles' alternatives and whose strips are coloured.
Chromium comes from apt (`make setup` installs it as root); Playwright from PyPI (test extra) and is
pointed at that binary: `playwright install` would download a browser, which this machine cannot.
"""

from __future__ import annotations

import json
import shutil

import pytest
from matplotlib import image as mpimg
from typer.testing import CliRunner

from sdzero_mlx.cli import app
from sdzero_mlx.demo.app import TASKS, base_model_dir
from sdzero_mlx.sources.demo import examples as demo_examples

# in tests/ci_guard.py's REQUIRED_ON_LINUX_AS_ROOT: CI installs chromium, so there this skip is a failure
NO_CHROMIUM = "chromium is not installed (make setup installs it through apt when run as root)"
CHROMIUM = shutil.which("chromium")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (test extra) not installed")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason=NO_CHROMIUM)

FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def explain_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("browser")
    model = str(base_model_dir("inverse"))
    problems = tmp / "problems.jsonl"  # six inverse problems the base model never saw
    problems.write_text("".join(json.dumps({"problem": e.problem, "answer": e.answer}) + "\n"
                                for e in demo_examples("inverse", seed=1, n=6)))
    out = tmp / "explain"
    result = CliRunner().invoke(app, ["explain", model, "--teacher", model, "--data", str(problems), "--limit", "6",
                                      "--recipe", str(TASKS["inverse"].recipe), "--max-tokens", "144", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    with sync_api.sync_playwright() as p:
        # a fresh profile per run: nothing cached from an earlier one
        context = p.chromium.launch_persistent_context(str(tmp_path_factory.mktemp("profile")), executable_path=CHROMIUM,
                                                       headless=True, args=FLAGS, viewport={"width": 1200, "height": 900})
        yield context
        context.close()


def open_page(browser, url: str):
    """The page and the console errors and uncaught exceptions it raises."""
    page = browser.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.goto(url)
    page.wait_for_load_state("load")
    return page, problems


def column(page, index: int) -> list[str]:
    return page.eval_on_selector_all("#reports tbody tr", f"rows => rows.map(r => r.cells[{index}].dataset.value)")


def coloured_pixels(png, low_green: float, high_green: float) -> int:
    """Pixels with red near 1, blue low and green in [low, high]: the strips' red and orange."""
    rgb = mpimg.imread(png)[..., :3]
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    return int(((r > 0.9) & (b < 0.35) & (g >= low_green) & (g <= high_green)).sum())


def test_index_sorts_and_links_to_pages_with_coloured_strips(explain_dir, browser, tmp_path):
    page, problems = open_page(browser, (explain_dir / "index.html").as_uri())
    assert page.locator("#reports tbody tr").count() == 6
    total_kl = [float(v) for v in column(page, 4)]

    page.click("th:has-text('total KL')")
    assert [float(v) for v in column(page, 4)] == sorted(total_kl, reverse=True)
    page.click("th:has-text('total KL')")  # again: the other way
    assert [float(v) for v in column(page, 4)] == sorted(total_kl)
    page.click("th:has-text('top 5% share')")
    shares = [float(v) for v in column(page, 5)]
    assert shares == sorted(shares, reverse=True) and len(set(shares)) > 1
    page.click("th:has-text('reward')")
    rewards = [float(v) for v in column(page, 2)]
    assert rewards == sorted(rewards, reverse=True)
    index_png = tmp_path / "index.png"
    page.screenshot(path=str(index_png), full_page=True)
    assert coloured_pixels(index_png, 0.45, 0.75) > 50  # the orange KL cells of the index's strips

    # the highest-KL response's page: the link of the first row once sorted by total KL
    page.click("th:has-text('total KL')")
    page.click("#reports tbody tr:first-child a:has-text('page')")
    page.wait_for_load_state("load")
    assert page.url.endswith(".html") and "Self-localisation (reward r =" in page.content()
    tips = page.eval_on_selector_all(".strip span", "spans => spans.map(s => s.title)")
    assert len(tips) > 100 and all("Generator (student): " in t and "Reviser (teacher): " in t for t in tips)
    page_png = tmp_path / "page.png"
    page.screenshot(path=str(page_png), full_page=True)
    assert coloured_pixels(page_png, 0.0, 0.4) > 20  # red: tokens the Reviser doubts
    assert coloured_pixels(page_png, 0.45, 0.75) > 20  # orange: the KL strip
    assert problems == [], problems
    page.close()


def test_every_response_page_loads_without_console_errors(explain_dir, browser):
    pages = sorted(explain_dir.glob("response-*.html"))
    assert len(pages) == 6
    for path in pages:
        page, problems = open_page(browser, path.as_uri())
        assert page.locator(".strip").count() == 2 and problems == [], (path.name, problems)
        page.close()
