"""The Nerfstudio viewer in a real browser: ``ns-viewer`` on a small trained CrossFire run, opened in
headless Chromium, shows the ``descriptor_pca`` output in its "Output type" list and draws it.

Needs Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them) and the ``selenium``
package; the driver is the system binary, so Selenium Manager is never consulted (no download).
"""

from __future__ import annotations

import io
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, seconds: float) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"ns-viewer exited with status {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), 1).close()
            return
        except OSError:
            time.sleep(1)
    raise AssertionError(f"ns-viewer did not open port {port} in {seconds:.0f} s")


def viewport(driver) -> np.ndarray:
    """The 3D viewport of a screenshot (left of the control panel, below the title bar) as RGB."""
    shot = np.asarray(Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("RGB"), dtype=np.float32)
    height, width = shot.shape[:2]
    return shot[int(0.15 * height) : int(0.95 * height), int(0.05 * width) : int(0.65 * width)]


def wait_for(condition, seconds: float, what: str):
    deadline = time.time() + seconds
    while time.time() < deadline:
        value = condition()
        if isinstance(value, np.ndarray) or value:
            return value
        time.sleep(1)
    raise AssertionError(f"timed out after {seconds:.0f} s waiting for {what}")


@pytest.fixture(scope="module")
def crossfire_run(tmp_path_factory) -> Path:
    """config.yml of a 60-iteration crossfire-cpu run on a 48x36 rendered scene."""
    from nerfloc_plugins.data.synthetic_scene import write_sevenscenes_scene

    root = tmp_path_factory.mktemp("viewer_run")
    scene = root / "scene"
    write_sevenscenes_scene(scene, width=48, height=36, frames_per_train_seq=6, frames_test=2, supersample=1)
    cmd = [
        sys.executable, "-m", "nerfstudio.scripts.train", "crossfire-cpu", "--max-num-iterations", "60",
        "--steps-per-save", "59", "--output-dir", str(root / "out"), "--experiment-name", "cf", "--timestamp", "t",
        "--viewer.quit-on-train-completion", "True",
        "sevenscenes-data", "--data", str(scene),
    ]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    return root / "out" / "cf" / "crossfire-cpu" / "t" / "config.yml"


@pytest.mark.slow
@pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver; .ci/run does)",
)
def test_descriptor_pca_is_listed_and_drawn_in_a_browser(crossfire_run, tmp_path, monkeypatch):
    monkeypatch.setenv("SE_OFFLINE", "true")  # belt and braces: Selenium Manager may not fetch anything
    webdriver = pytest.importorskip("selenium.webdriver", reason="needs the selenium package (requirements/dev.txt)")
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    port = free_port()
    viewer_cmd = [
        sys.executable, "-m", "nerfstudio.scripts.viewer.run_viewer", "--load-config", str(crossfire_run),
        "--viewer.websocket-port", str(port),
    ]  # fmt: skip
    log = open(tmp_path / "viewer.log", "w")
    viewer = subprocess.Popen(viewer_cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1"})
    driver = None
    try:
        wait_for_port(port, viewer, 300)
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1200,800",
                    "--enable-unsafe-swiftshader", "--use-angle=swiftshader"):  # fmt: skip
            options.add_argument(arg)
        # an explicit driver binary: Selenium Manager (which downloads drivers) is not run
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        driver.get(f"http://127.0.0.1:{port}")

        def output_select(value: str):
            """The visible "Output type" list showing ``value`` (``None`` while the page re-renders)."""
            try:
                for el in driver.find_elements(By.CSS_SELECTOR, "input.mantine-Select-input"):
                    if el.is_displayed() and el.get_attribute("value") == value:
                        return el
            except StaleElementReferenceException:
                pass
            return None

        wait_for(lambda: output_select("rgb"), 120, "the viewer's Output type list (value rgb)")
        hide = wait_for(
            lambda: [b for b in driver.find_elements(By.TAG_NAME, "button") if "Hide Train Cams" in b.text],
            30,
            "the Hide Train Cams button",
        )
        hide[0].click()  # the camera frustums would cover the rendered frame
        rgb_frame = wait_for(lambda: (lambda v: v if v.std() > 5 else None)(viewport(driver)), 120, "an RGB frame")

        wait_for(lambda: output_select("rgb"), 30, "the Output type list").click()

        def listed():
            try:
                shown = [el for el in driver.find_elements(By.CSS_SELECTOR, "[role=option]") if el.is_displayed()]
                return [(el.text.strip(), el) for el in shown]
            except StaleElementReferenceException:
                return []

        names = [name for name, _ in wait_for(listed, 30, "the output list to open")]
        assert "descriptor_pca" in names and "rgb" in names, names
        dict(listed())["descriptor_pca"].click()
        wait_for(lambda: output_select("descriptor_pca"), 30, "descriptor_pca to be selected")

        def descriptor_frame():
            frame = viewport(driver)
            changed = np.abs(frame - rgb_frame).mean()
            return frame if frame.std() > 5 and changed > 5 else None

        frame = wait_for(descriptor_frame, 180, "a descriptor_pca frame that differs from the RGB one")
        Image.fromarray(frame.astype(np.uint8)).save(tmp_path / "descriptor_pca.png")
        # not blank: several distinct colours over the viewport, not one flat fill
        assert frame.std() > 5
        assert len(np.unique((frame // 32).reshape(-1, 3), axis=0)) >= 4
    finally:
        if driver is not None:
            driver.quit()
        viewer.terminate()
        try:
            viewer.wait(30)
        except subprocess.TimeoutExpired:
            viewer.kill()
        log.close()
