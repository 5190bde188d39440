"""The web page in a real browser: Debian's headless Chromium driven by Selenium against `logoid serve` on the
demo catalog (real default model). `make install` installs Chromium; nothing is downloaded."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from browser import DESKTOP, PHONE, chromium, external_requests, identify_in_page, logoid_serve
from PIL import Image

pytestmark = [pytest.mark.browser, pytest.mark.real]


@pytest.fixture(scope="module")
def demo_home(tmp_path_factory) -> Path:
    """`logoid demo` in a fresh home: the real model, the demo catalog calibrated, two demo photos."""
    import os

    home = tmp_path_factory.mktemp("browser") / "demo-home"
    env = {**os.environ, "LOGOID_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    subprocess.run([sys.executable, "-m", "logoid", "demo"], env=env, check=True, capture_output=True, timeout=900)
    return home


@pytest.fixture(scope="module")
def server(demo_home):
    with logoid_serve(demo_home, token="browser-token") as url:
        yield url


def test_the_page_names_the_band_and_outlines_its_logo(server, demo_home):
    photo = demo_home / "demo" / "photo_starbucks.jpg"
    with chromium(DESKTOP) as d:
        card = identify_in_page(d, server, [photo])[0]
        assert card.get_attribute("data-status") == "ok"
        assert card.find_element("css selector", ".answer-name").text == "Starbucks"
        assert card.find_element("css selector", ".verdict").text.lower().startswith(("sure", "likely"))
        outlines = card.find_elements("css selector", "svg.overlay polygon.outline")
        labels = card.find_elements("css selector", "svg.overlay text.label")
        assert len(outlines) == 1 and [t.text for t in labels] == ["Starbucks"]
        # the outline lies on the logo: inside the photo, and the viewBox is the photo's own pixel size
        w, h = Image.open(photo).size
        assert card.find_element("css selector", "svg.overlay").get_dom_attribute("viewBox") == f"0 0 {w} {h}"
        pts = [tuple(map(float, p.split(","))) for p in outlines[0].get_dom_attribute("points").split()]
        assert len(pts) == 4 and all(0 <= x <= w and 0 <= y <= h for x, y in pts)
        assert external_requests(d, server) == []


def test_an_unknown_logo_is_unknown_with_a_best_guess(server, demo_home):
    with chromium(DESKTOP) as d:
        card = identify_in_page(d, server, [demo_home / "demo" / "photo_unknown_archlinux.jpg"])[0]
        assert card.get_attribute("data-status") == "unknown"
        assert card.find_element("css selector", ".verdict").text.startswith("unknown — best guess ")
        assert card.find_elements("css selector", "svg.overlay polygon.outline") == []


def test_several_photos_at_once_on_a_phone_screen(server, demo_home):
    photos = [demo_home / "demo" / "photo_starbucks.jpg", demo_home / "demo" / "photo_unknown_archlinux.jpg"]
    with chromium(PHONE) as d:
        cards = identify_in_page(d, server, photos)
        assert sorted(c.get_attribute("data-status") for c in cards) == ["ok", "unknown"]
        # readable at 390 px: nothing wider than the screen
        assert d.execute_script("return document.documentElement.scrollWidth") <= PHONE[0]


def test_with_the_token_a_band_is_added_and_removed_from_the_page(server, demo_home, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from logoid.demo import make_demo_photo, render_icon

    logo = tmp_path / "archlinux.png"
    render_icon("archlinux", size=256).save(logo)
    photo = tmp_path / "arch-shirt.jpg"
    make_demo_photo(render_icon("archlinux", size=256), photo, seed=3)
    with chromium(DESKTOP) as d:
        d.get(server + "/#/add")
        form = d.find_element(By.CSS_SELECTOR, "#add-band-form")
        d.find_element(By.CSS_SELECTOR, "#token-input").send_keys("browser-token")
        d.find_element(By.CSS_SELECTOR, "#token-form button[type=submit]").click()
        WebDriverWait(d, 10).until(lambda _: form.is_displayed())
        d.find_element(By.CSS_SELECTOR, "#band-name").send_keys("Arch Linux")
        d.find_element(By.CSS_SELECTOR, "#band-genre").send_keys("distro")
        d.find_element(By.CSS_SELECTOR, "#band-images").send_keys(str(logo))
        form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        result = form.find_element(By.CSS_SELECTOR, ".form-result")
        WebDriverWait(d, 120).until(lambda _: "Arch Linux" in result.text)
        assert "Created" in result.text

        card = identify_in_page(d, server, [photo])[0]
        assert card.find_element(By.CSS_SELECTOR, ".answer-name").text == "Arch Linux"

        d.get(server + "/#/catalog")
        d.find_element(By.CSS_SELECTOR, "#catalog-search").send_keys("arch")
        link = WebDriverWait(d, 10).until(lambda _: d.find_element(By.PARTIAL_LINK_TEXT, "Arch Linux"))
        link.click()
        remove = WebDriverWait(d, 10).until(lambda _: d.find_element(By.CSS_SELECTOR, ".danger-zone button"))
        remove.click()
        d.switch_to.alert.accept()
        WebDriverWait(d, 60).until(lambda _: d.current_url.endswith("#/catalog"))
        assert d.execute_script("return fetch('/v1/bands?q=arch').then(r => r.json()).then(j => j.total)") == 0
