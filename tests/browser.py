"""Drive the web page of a running `logoid serve` in Debian's headless Chromium (Selenium + chromedriver from
`make install`; nothing is downloaded): the browser tests use it, and so does `make screenshots`:

    LOGOID_HOME=demo-home python -m tests.browser screenshots docs/img
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
# What a closed network needs: no background calls home, no first-run UI, no sandbox as root.
FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--force-device-scale-factor=1"]
DESKTOP, PHONE = (1280, 900), (390, 844)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def logoid_serve(home: Path, token: str | None = None, timeout: float = 240) -> Iterator[str]:
    """`logoid serve` on ``home`` in its own process, until ready; yields its URL."""
    port = free_port()
    env = {**os.environ, "LOGOID_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    env.pop("LOGOID_TOKEN", None)
    args = [sys.executable, "-m", "logoid", "serve", "--port", str(port)] + (["--token", token] if token else [])
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.time() + timeout
            while True:
                with contextlib.suppress(OSError), urllib.request.urlopen(url + "/v1/health", timeout=2) as r:
                    if r.status == 200:
                        break
                if proc.poll() is not None or time.time() > deadline:
                    log.seek(0)
                    raise RuntimeError(f"logoid serve did not get ready:\n{log.read()}")
                time.sleep(0.3)
            yield url
        finally:
            proc.terminate()
            proc.wait(30)


@contextlib.contextmanager
def chromium(size: tuple[int, int] = DESKTOP) -> Iterator:
    """A headless Chromium driven by Selenium, ``size`` = window (width, height) in CSS px."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
        raise RuntimeError("Debian's chromium and chromium-driver are missing: run `make install` (or `make browser`)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="logoid-chromium-")
    for flag in [*FLAGS, f"--window-size={size[0]},{size[1]}", f"--user-data-dir={profile}"]:
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    try:
        driver.set_window_size(*size)
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def identify_in_page(driver, url: str, photos: list[Path], timeout: float = 120) -> list:
    """Open the page, choose ``photos`` in the file picker, wait for every result card; returns the cards."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url + "/")
    picker = driver.find_element(By.CSS_SELECTOR, "#photo-input")
    picker.send_keys("\n".join(str(Path(p).resolve()) for p in photos))
    WebDriverWait(driver, timeout).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".result[data-state=done]"))
                                         == len(photos))
    return driver.find_elements(By.CSS_SELECTOR, ".result")


def external_requests(driver, url: str) -> list[str]:
    """Every resource the page loaded from anywhere but the server."""
    names = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    return [n for n in names if not n.startswith(url) and not n.startswith(("blob:", "data:"))]


def screenshots(out: Path) -> list[Path]:
    """The page answering the demo photo, on a desktop and a phone: ``out/serve-desktop.png``, ``serve-phone.png``."""
    from selenium.webdriver.common.by import By

    home = Path(os.environ.get("LOGOID_HOME", "demo-home")).resolve()
    photo = home / "demo" / "photo_starbucks.jpg"
    if not photo.exists():
        raise SystemExit(f"error: {photo} is missing (run `make demo` first)")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    with logoid_serve(home) as url:
        for name, size in (("serve-desktop.png", DESKTOP), ("serve-phone.png", PHONE)):
            with chromium(size) as d:
                card = identify_in_page(d, url, [photo])[0]
                d.execute_script("window.scrollTo(0, 0)")
                height = d.execute_script("return document.documentElement.scrollHeight")
                d.set_window_size(size[0], min(max(size[1], height), 2400))
                time.sleep(0.3)  # let the layout settle after the resize
                path = out / name
                d.save_screenshot(str(path))
                written.append(path)
                print(json.dumps({"file": str(path), "status": card.get_attribute("data-status"),
                                  "answer": card.find_element(By.CSS_SELECTOR, ".answer-name").text}))
    return written


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "screenshots":
        raise SystemExit("usage: python -m tests.browser screenshots OUT_DIR")
    screenshots(Path(sys.argv[2]))
