"""viewer.html and index.html: the data they carry, and the page itself driven in headless Chromium.

The browser test loads a generated viewer from disk, plays, seeks, steps with the arrow keys and
space, and checks through the page's own state (``window.viewer.state()``) that every video shows the
same frame (within one) and that the frame counters agree with ``cameras.json``. It skips where
Chromium or chromedriver is absent (CI installs them: ``.ci/run``). Set ``VIEWER_SCREENSHOT=path.png``
to keep the screenshot it takes.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from pipeline.video_io import write_video
from pipeline.viewer import INDEX_FILE, VIEWER_FILE, index_rows, viewer_data, write_index, write_viewer
from trajectories import orbit_c2w
from trajectories.camera_path import CameraPath

N, FPS, W, H = 36, 12.0, 96, 64
INSTALL = "apt-get install -y chromium chromium-driver"


def _camera_path() -> CameraPath:
    pitch, yaw = np.linspace(0, 10, N), np.linspace(0, -30, N)
    c2w = orbit_c2w(pitch, yaw, np.full(N, 1.5))
    K = np.tile(np.array([[80.0, 0, (W - 1) / 2], [0, 80.0, (H - 1) / 2], [0, 0, 1]]), (N, 1, 1))
    source_index = np.concatenate([np.arange(0, 18), np.arange(17, -1, -1)])  # ping-pong over 18 source frames
    return CameraPath(c2w, K, W, H, FPS, source_index)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """A publish-like folder: cameras.json and three videos whose colour changes every frame."""
    out = tmp_path_factory.mktemp("viewer")
    path = _camera_path()
    path.save(out / "cameras.json")
    ramp = np.linspace(0, 255, N).astype(np.uint8)
    for k, name in enumerate(("source.mp4", "render.mp4", "mask.mp4")):
        frames = np.zeros((N, H, W, 3), np.uint8)
        frames[..., k] = ramp[:, None, None]
        write_video(out / name, frames, FPS)
    write_viewer(out, path, "clip / orbit")
    return out


def test_viewer_data_matches_the_camera_path(folder):
    path = CameraPath.load(folder / "cameras.json")
    page = (folder / VIEWER_FILE).read_text()
    data = json.loads(re.search(r'<script id="data" type="application/json">(.*?)</script>', page, re.S).group(1))
    assert data == viewer_data(path, [("source", "source.mp4"), ("render", "render.mp4"), ("mask", "mask.mp4")])
    assert data["source_index"] == path.source_index.tolist()
    np.testing.assert_allclose(data["pitch"], np.linspace(0, 10, N), atol=1e-3)
    np.testing.assert_allclose(data["yaw"], np.linspace(0, -30, N), atol=1e-3)
    # Frame 0 sits on the source camera (pitch = yaw = 0), where an orbit's radius cannot be seen: 0.
    np.testing.assert_allclose(data["displacement"], [0.0] + [1.5] * (N - 1), atol=1e-5)
    assert "http" not in page.replace("http://www.w3.org/2000/svg", "")  # nothing fetched from a network


def test_viewer_needs_a_video(tmp_path):
    with pytest.raises(FileNotFoundError, match="no video to show"):
        write_viewer(tmp_path, _camera_path(), "empty")


def test_index_links_viewers_and_reports_status(tmp_path, folder):
    shutil.copytree(folder, tmp_path / "clip")
    summaries = [
        {"video": "clip.mp4", "error": None, "missing": [["dit"]], "output": str(tmp_path / "clip/preview.mp4")},
        {"video": "bad.mp4", "error": "input: bad.mp4: has 1 frame(s)", "missing": [], "output": None},
    ]
    rows = index_rows(summaries, tmp_path)
    assert [(r.status, r.folder) for r in rows] == [
        ("rendered (generation weights missing)", tmp_path / "clip"), ("failed", None)]
    page = write_index(tmp_path, rows, "run <1>").read_text()
    assert '<a href="clip/viewer.html">viewer</a>' in page and "has 1 frame(s)" in page
    assert "run &lt;1&gt;" in page and (tmp_path / INDEX_FILE).is_file()


def _chromium():
    webdriver = pytest.importorskip("selenium.webdriver", reason=f"selenium missing; pip install -e '.[test]'")
    binary = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver_bin = shutil.which("chromedriver")
    if binary is None or driver_bin is None:
        reason = f"headless Chromium not found; install it with: {INSTALL}"
        if os.environ.get("INSPATIO_REQUIRE_BROWSER"):
            pytest.fail(reason + " (INSPATIO_REQUIRE_BROWSER is set, as in .ci/run)")
        pytest.skip(reason)
    return webdriver, binary, driver_bin


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    webdriver, binary, driver_bin = _chromium()
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = binary
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--autoplay-policy=no-user-gesture-required", "--window-size=1400,900",
                f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(options=opts, service=Service(driver_bin))
    yield driver
    driver.quit()


def _wait(driver, predicate, what: str, timeout: float = 30.0) -> dict:
    """Poll the page state until ``predicate(state)``; fail naming ``what`` with the last state."""
    deadline = time.monotonic() + timeout
    while True:
        state = driver.execute_script("return window.viewer.state()")
        if predicate(state):
            return state
        if time.monotonic() > deadline:
            pytest.fail(f"viewer never reached: {what}; last state {state}")
        time.sleep(0.05)


def _settled(state: dict) -> bool:
    return state["ready"] and not state["seeking"]


def _check_frame(driver, path: CameraPath, frame: int | None = None) -> dict:
    state = _wait(driver, lambda s: _settled(s) and (frame is None or s["frame"] == frame), f"frame {frame}")
    assert state["error"] == ""
    f = state["frame"]
    assert max(abs(v - f) for v in state["videoFrames"]) <= 1, state
    numbers = re.search(r"frame\s+(\d+) / (\d+)\s+source frame\s+(\d+)", state["readout"])
    assert numbers is not None, state["readout"]
    assert [int(x) for x in numbers.groups()] == [f, len(path) - 1, int(path.source_index[f])]
    return state


def test_viewer_plays_seeks_and_steps_frame_locked(browser, folder):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    path = CameraPath.load(folder / "cameras.json")
    browser.get((folder / VIEWER_FILE).as_uri())
    _wait(browser, _settled, "all videos loaded")
    _check_frame(browser, path, 0)

    browser.execute_script("document.getElementById('rate').value = '2'; "
                           "document.getElementById('rate').dispatchEvent(new Event('change'))")
    browser.execute_script("window.viewer.play()")
    _wait(browser, lambda s: s["playing"] and s["frame"] >= 6, "playing past frame 6")
    browser.execute_script("window.viewer.pause()")
    state = _check_frame(browser, path)
    assert state["rate"] == 2 and not state["playing"] and state["frame"] >= 6

    browser.execute_script("window.viewer.seek(20)")
    _check_frame(browser, path, 20)  # 20 is past the turn of the ping-pong: source frame 15
    body = browser.find_element(By.TAG_NAME, "body")
    body.send_keys(Keys.ARROW_RIGHT)
    body.send_keys(Keys.ARROW_RIGHT)
    _check_frame(browser, path, 22)
    body.send_keys(Keys.ARROW_LEFT)
    _check_frame(browser, path, 21)
    body.send_keys(Keys.SHIFT, Keys.ARROW_RIGHT)
    _check_frame(browser, path, 31)
    body.send_keys(" ")
    _wait(browser, lambda s: s["playing"], "space starts playback")
    body.send_keys(" ")
    _check_frame(browser, path)
    shot = Path(os.environ.get("VIEWER_SCREENSHOT", folder / "viewer.png"))
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 0
