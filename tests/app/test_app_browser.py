"""End to end in a real browser: Debian's Chromium driven by Playwright against `medattn serve`.

Signs in, uploads a Kvasir image, runs segmentation, looks at the overlay,
changes its opacity and downloads the PDF report, saving a screenshot of each
step (into $MEDATTN_SCREENSHOTS when set, else the test's temporary folder).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from medattn.app.settings import AppSettings

from .conftest import install_tiny_model, served

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SAMPLE = sorted((Path(__file__).resolve().parents[2] / "samples" / "kvasir" / "images").glob("*.jpg"))[0]

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                reason="Debian's chromium is not installed (apt-get install chromium)")


@pytest.fixture
def server(tmp_path):
    data = tmp_path / "data"
    settings = AppSettings(data_dir=data)
    settings.ensure_dirs()
    install_tiny_model(settings)
    env = {**os.environ, "MEDATTN_DATA_DIR": str(data), "MEDATTN_PASSWORD": "browser-test-pw"}
    subprocess.run([sys.executable, "-m", "medattn", "users", "create", "clinician"], env=env, check=True,
                   capture_output=True)
    with served(env) as base:
        yield base


def test_sign_in_upload_segment_report(server, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    shots = Path(os.environ.get("MEDATTN_SCREENSHOTS", tmp_path / "shots"))
    shots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"],
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900}, accept_downloads=True)
            external: list[str] = []
            page.on("request", lambda r: None if r.url.startswith(server) else external.append(r.url))

            page.goto(server + "/")
            expect(page).to_have_url(f"{server}/login?next=/")
            page.screenshot(path=shots / "1-sign-in.png")
            page.fill("input[name=username]", "clinician")
            page.fill("input[name=password]", "browser-test-pw")
            page.click("#login-submit")
            expect(page.locator("h1")).to_have_text("Cases")

            page.click("#nav-new")
            page.set_input_files("#files", str(SAMPLE))
            page.select_option("#pipeline", "segment")
            page.screenshot(path=shots / "2-upload.png")
            page.click("#submit-case")

            expect(page.locator("#case-status")).to_have_text("done", timeout=90_000)
            expect(page.locator("#viewer")).to_have_attribute("data-drawn-slice", "1")  # the canvas viewer drew
            before = page.evaluate("document.getElementById('view-canvas').toDataURL()")
            page.fill("#opacity", "80")
            page.fill("#attention-opacity", "50")
            assert page.evaluate("document.getElementById('view-canvas').toDataURL()") != before
            expect(page.locator("text=does not replace a clinician").first).to_be_visible()
            page.screenshot(path=shots / "3-result.png", full_page=True)

            with page.expect_download() as dl:
                page.click("#download-report")
            report = tmp_path / "report.pdf"
            dl.value.save_as(report)
            assert report.read_bytes().startswith(b"%PDF")
            page.screenshot(path=shots / "4-report-downloaded.png")
            assert external == [], f"pages fetched outside resources: {external}"
        finally:
            browser.close()
    assert all((shots / f).is_file() for f in ("1-sign-in.png", "2-upload.png", "3-result.png"))
