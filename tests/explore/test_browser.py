"""The explorer in a real browser (headless Chromium through Playwright), used as a person would:
walk, turn away and back, undo, save, reload, load, export, and a bad upload. The tiny backbone
on procedural room 0 generates the frames.

Skipped when Playwright or Chromium is missing; MIRAGE_REQUIRE_BROWSER=1 (.ci/run) makes that a
failure. MIRAGE_CHROMIUM names the browser (default /usr/bin/chromium).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("MIRAGE_CHROMIUM", "/usr/bin/chromium")
REQUIRED = os.environ.get("MIRAGE_REQUIRE_BROWSER") == "1"
TIMEOUT_MS = 30000  # a step takes ~0.1 s alone, seconds when other jobs share the two cores


def _missing(reason: str) -> None:
    if REQUIRED:
        pytest.fail(f"{reason}, and MIRAGE_REQUIRE_BROWSER=1 requires the browser tests")
    pytest.skip(f"browser tests skipped: {reason}")


try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # pragma: no cover
    sync_playwright = None


@pytest.fixture(scope="module")
def server(tiny_world):
    if sync_playwright is None:
        _missing("playwright is not installed (pip install -e '.[dev]')")
    if not os.access(CHROMIUM, os.X_OK):
        _missing(f"no Chromium at {CHROMIUM} (apt-get install -y chromium)")
    pytest.importorskip("fastapi")
    from mirage.explore.app import create_app
    from mirage.explore.server import start_in_thread

    running = start_in_thread(create_app(tiny_world))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def browser(server):
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM,
                                    args=["--use-angle=swiftshader", "--enable-unsafe-swiftshader"])
        yield browser
        browser.close()


@pytest.fixture
def page(browser, server):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(server.url)
    expect(page.locator("#status")).to_contain_text("tiny")
    yield page
    context.close()


# -- what a person sees ------------------------------------------------------------------------
def view(page) -> str:
    """The generated view as a PNG data URL."""
    return page.locator("#view").evaluate("c => c.toDataURL()")


def frames(page) -> int:
    return int(page.locator("#s-frames").inner_text().split()[0])


def points(page) -> int:
    return int(page.locator("#points").inner_text().split()[0])


def shows(page, picture: str) -> None:
    """Wait until the generated view shows ``picture`` (a data URL); fails after the timeout."""
    page.wait_for_function("u => document.getElementById('view').toDataURL() === u", arg=picture)


def press(page, key: str) -> str:
    """Press ``key`` once (one step) and wait until its frames have played; the view after."""
    before = frames(page)
    page.keyboard.press(key)
    expect(page.locator("#s-frames")).to_have_text(re.compile(rf"^{before + 4} "))
    expect(page.locator("#view")).to_have_attribute("data-queued", "0")
    return view(page)


def test_walk_turn_away_and_back_undo_save_reload_load_and_export(page, tmp_path: Path):
    page.locator("#view").click()
    start, start_points = view(page), points(page)
    assert start_points > 0  # the first frame is in memory

    # walk forward, turn away, turn back: every move changes the picture
    seen = [start]
    for key in ["w", "w", "ArrowLeft", "ArrowLeft", "ArrowLeft", "ArrowRight", "ArrowRight", "ArrowRight"]:
        seen.append(press(page, key))
        assert seen[-1] != seen[-2], f"the view did not change after {key}"
    assert frames(page) == 33
    assert points(page) > start_points  # the memory view grew
    assert int(page.locator("#memory3d").get_attribute("data-points")) == points(page)
    expect(page.locator("#s-split")).to_contain_text("ms")

    # undo the last step: back to the view before it
    page.get_by_role("button", name="Undo").click()
    expect(page.locator("#s-frames")).to_have_text(re.compile(r"^29 "))
    shows(page, seen[-2])

    # save the world, then walk on: this is what the saved world must continue with
    with page.expect_download() as download:
        page.get_by_role("button", name="Save world").click()
    world = tmp_path / "world.mirage-world"
    download.value.save_as(world)
    walk = ["w", "d", "ArrowRight"]
    after_save = [press(page, key) for key in walk]

    # reload the page (a new session), load the world, walk the same keys: the same frames
    page.reload()
    expect(page.locator("#status")).to_contain_text("tiny")
    page.get_by_label("Load world").set_input_files(world)
    expect(page.get_by_role("alert")).to_contain_text("Loaded the world")
    expect(page.locator("#s-frames")).to_have_text(re.compile(r"^29 "))
    page.locator("#view").click()
    assert [press(page, key) for key in walk] == after_save

    # export the memory as PLY and the walk as a trajectory with its chunks
    with page.expect_download() as download:
        page.get_by_role("button", name="Export PLY").click()
    ply = download.value.path().read_bytes()
    assert f"element vertex {points(page)}".encode() in ply.split(b"end_header")[0]
    with page.expect_download() as download:
        page.get_by_role("button", name="Export path").click()
    path = json.loads(download.value.path().read_text())
    assert len(path["frames"]) == frames(page) == 41
    assert sum(c["frames"] for c in path["chunks"]) == 40


def test_a_bad_upload_shows_an_error_and_the_walk_goes_on(page, tmp_path: Path):
    page.locator("#view").click()
    press(page, "w")
    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("this is not an image")
    page.get_by_label("Start from image").set_input_files(not_an_image)
    page.get_by_role("button", name="Start", exact=True).click()
    expect(page.get_by_role("alert")).to_contain_text("not a readable image")
    page.locator("#view").click()
    before = view(page)
    assert press(page, "w") != before
    assert frames(page) == 9


def test_holding_a_key_keeps_walking(page):
    page.locator("#view").click()
    page.keyboard.down("w")
    expect(page.locator("#s-frames")).to_have_text(re.compile(r"^(1[3-9]|[2-9]\d|\d{3,}) "))  # ≥ 3 steps
    page.keyboard.up("w")
    expect(page.locator("#view")).to_have_attribute("data-queued", "0")
    # A step already on the server may still land (slowly on a loaded machine); then it stops.
    settled = None
    for _ in range(20):
        before = frames(page)
        page.wait_for_timeout(500)
        if frames(page) == before:
            settled = before
            break
    assert settled is not None, "still walking 10 s after the key was let go"
    page.wait_for_timeout(1000)
    assert frames(page) == settled  # let go: it stops
