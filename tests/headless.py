"""The one headless-Chromium setup the browser tests share: which binary, which flags."""

from __future__ import annotations

import os
import shutil

from bookinfo import ROOT

CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
"""Debian's Chromium (``apt-get install chromium``); ``$CHROMIUM`` overrides."""

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    # Offline by construction: every host but the local machine fails to resolve, at once.
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
]
"""Headless, no background traffic, no first-run pages (a user-data dir is added per run)."""
WEBGPU_FLAGS = [*[flag for flag in FLAGS if flag != "--disable-gpu"], "--enable-unsafe-webgpu"]
"""The same, with WebGPU: on a machine without a GPU, Chromium offers its software adapter
(SwiftShader), correct but far slower than a real GPU."""

SCREENSHOTS = ROOT / "_build" / "screenshots"
"""Where the browser checks save what they saw."""
VIEWPORT = {"width": 1280, "height": 900}
TIMEOUT_MS = 30_000
"""Longest wait for one page action (the try-it panels set their own, longer ones)."""
