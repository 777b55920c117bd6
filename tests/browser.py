"""Headless Chromium for the tests that look at a page as a user would (status page, report)."""

from __future__ import annotations

__all__ = ["CHROMEDRIVER", "chromium"]

import shutil
import tempfile
from pathlib import Path
from typing import Any

from conftest import require

CHROMEDRIVER = "/usr/bin/chromedriver"


def chromium(tmp_path: Path, width: int = 1280, height: int = 1000) -> Any:
    """Headless Chromium through selenium, its profile under tmp_path (the caller quits it)."""
    require(shutil.which("chromium") is not None, "chromium (Debian package 'chromium')")
    require(Path(CHROMEDRIVER).exists(), "chromedriver (Debian package 'chromium-driver')")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    for arg in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--window-size={width},{height}",
        f"--user-data-dir={tempfile.mkdtemp(dir=tmp_path)}",
    ):
        opts.add_argument(arg)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
