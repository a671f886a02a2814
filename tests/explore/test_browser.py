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

import numpy as np

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
        # evil.example resolves to this machine, as after DNS rebinding
        browser = p.chromium.launch(executable_path=CHROMIUM,
                                    args=["--use-angle=swiftshader", "--enable-unsafe-swiftshader",
                                          "--host-resolver-rules=MAP evil.example 127.0.0.1"])
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
    # The steps already asked for still land (slowly on a loaded machine); then it stops.
    expect(page.locator("#view")).to_have_attribute("data-in-flight", "0", timeout=30_000)
    expect(page.locator("#view")).to_have_attribute("data-queued", "0")
    settled = frames(page)
    page.wait_for_timeout(1000)
    assert frames(page) == settled  # let go: nothing more is asked for


def test_a_new_image_world_and_a_loaded_scene_world_each_show_their_own_start(page, tmp_path: Path):
    """After "Start from image" the header names the image and nothing of the old world's read
    or stats stays; loading a world walked in scene room 0 brings back room 0's ground truth."""
    from PIL import Image

    page.get_by_label("show ground truth").check()
    page.locator("#view").click()
    press(page, "w")
    press(page, "w")
    truth = page.locator("#truth").evaluate("c => c.toDataURL()")
    page.get_by_role("button", name="Undo").click()
    expect(page.locator("#s-frames")).to_have_text(re.compile(r"^5 "))
    with page.expect_download() as download:
        page.get_by_role("button", name="Save world").click()
    world = tmp_path / "room.mirage-world"
    download.value.save_as(world)

    photo = tmp_path / "photo.png"
    Image.fromarray((np.arange(48 * 80 * 3) % 251).astype(np.uint8).reshape(48, 80, 3)).save(photo)
    page.get_by_label("Start from image").set_input_files(photo)
    page.get_by_role("button", name="Start", exact=True).click()
    expect(page.locator("#status")).to_contain_text("image photo.png")
    expect(page.locator("#read")).to_have_attribute("data-cleared", "1")
    expect(page.locator("#s-chunk")).to_have_text("–")
    expect(page.locator("#s-frames")).to_have_text(re.compile(r"^1 "))
    expect(page.locator("#truth-toggle")).to_be_hidden()

    page.get_by_label("Load world").set_input_files(world)
    expect(page.locator("#status")).to_contain_text("scene room 0")
    expect(page.locator("#truth-toggle")).to_be_visible()
    expect(page.locator("#s-frames")).to_have_text(re.compile(r"^5 "))
    page.get_by_label("show ground truth").check()
    page.locator("#view").click()
    press(page, "w")
    assert page.locator("#truth").evaluate("c => c.toDataURL()") == truth  # room 0, same pose


def test_a_foreign_page_cannot_reach_the_server_and_a_rebound_name_is_refused(browser, server, page):
    """Another site's page (evil.example) opens a socket and posts to the server: refused. The
    same site after DNS rebinding (evil.example → 127.0.0.1) gets 403. The real page works on."""
    port = server.url.rsplit(":", 1)[1]
    manager_url = server.url
    context = browser.new_context()
    try:
        evil = context.new_page()
        evil.route("http://evil.example/", lambda route: route.fulfill(
            status=200, content_type="text/html", body="<html><body>cat pictures</body></html>"))
        evil.goto("http://evil.example/")
        outcome = evil.evaluate("""url => new Promise((done) => {
            const ws = new WebSocket(url.replace("http", "ws") + "/ws");
            ws.onopen = () => done("opened");
            ws.onclose = (e) => done("closed " + e.code);
            setTimeout(() => done("timeout"), 10000);
        })""", manager_url)
        assert outcome.startswith("closed"), outcome
        posted = evil.evaluate("""url => fetch(url + "/api/sessions/x/world", {method: "POST", body: new FormData(),
            mode: "no-cors"}).then(() => "sent", () => "failed")""", manager_url)
        assert posted in ("sent", "failed")  # opaque either way; the server's answer is below

        rebound = evil.goto(f"http://evil.example:{port}/")
        assert rebound.status == 403 and "does not name this server" in rebound.text()
        # the rebound page's own requests (same origin to the browser) carry its name: refused
        status = evil.evaluate("""() => fetch("/api/health").then((r) => r.status)""")
        assert status == 403
    finally:
        context.close()
    # the real page still walks
    page.locator("#view").click()
    before = view(page)
    assert press(page, "w") != before
