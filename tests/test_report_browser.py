"""The report as a person sees it: a small real study rendered in headless Chromium.

Chromium (Debian ``chromium``) is driven through ``chromedriver`` (Debian ``chromium-driver``)
with plain W3C WebDriver JSON over ``urllib`` (no selenium). Checks: no console errors, every
image loaded (``naturalWidth > 0``), every expected table present, no request left the machine
(every resource a ``data:`` URL; host resolution is also mapped to nothing), and a non-trivial
screenshot. When Chromium or chromedriver is missing or cannot start, the test is skipped with the
reason, except in CI (``CI=true``), where it fails with the reason (see ``require_available`` in
conftest.py).
"""

from __future__ import annotations

import base64
import json
import shutil
import socket
import struct
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from optbench.study.compare import CompareConfig, run_compare
from optbench.study.outputs import context_lines, summarize, write_outputs

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--host-resolver-rules=MAP * ~NOTFOUND", "--window-size=1200,2400"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _call(base: str, method: str, path: str, body: dict | None = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


@pytest.fixture()
def browser(tmp_path, require_available):
    """``call(method, path, body=None)``: WebDriver commands on a session of a fresh headless
    Chromium profile."""
    missing = [path for path in (CHROMIUM, DRIVER) if not Path(path).is_file()]
    if missing:
        require_available(f"not installed: {', '.join(missing)} (apt-get install -y chromium chromium-driver)")
    port = _free_port()
    try:
        driver = subprocess.Popen([DRIVER, f"--port={port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except OSError as exc:
        require_available(f"chromedriver could not start: {exc}")
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                if _call(base, "GET", "/status")["value"].get("ready"):
                    break
            except OSError:
                time.sleep(0.1)
        else:
            require_available(f"chromedriver did not answer on port {port} within 10 s")
        caps = {"capabilities": {"alwaysMatch": {
            "browserName": "chrome", "goog:loggingPrefs": {"browser": "ALL"},
            "goog:chromeOptions": {"binary": CHROMIUM,
                                   "args": [*FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]}}}}
        try:
            session = _call(base, "POST", "/session", caps)["value"]["sessionId"]
        except OSError as exc:
            require_available(f"Chromium could not start: {exc}")
        try:
            yield (lambda method, path, body=None: _call(base, method, f"/session/{session}{path}", body))
        finally:
            _call(base, "DELETE", f"/session/{session}")
    finally:
        driver.terminate()
        driver.wait(timeout=10)


def test_report_renders_in_chromium(tmp_path, browser):
    config = CompareConfig(task="digits_mlp", optimizers=("adam", "sgd"), seeds=2, epochs=2, lr=0.01,
                           train_size=None)
    outcome = run_compare(config, tmp_path / "out" / "optbench.db", create_store_dir=True)
    files = write_outputs(outcome, summarize(outcome), tmp_path / "out",
                          context_lines(outcome, "optbench.db", "optbench compare"))
    page = files["report"]
    browser("POST", "/url", {"url": page.resolve().as_uri()})
    state = browser("POST", "/execute/sync", {"script": """
        const imgs = Array.from(document.images);
        return {ready: document.readyState,
                images: imgs.map(i => [i.complete, i.naturalWidth, i.getAttribute('data-figure')]),
                tables: Array.from(document.querySelectorAll('table')).map(t => t.id),
                rows: document.querySelectorAll('#table-ranking_digits_mlp tbody tr').length,
                resources: performance.getEntriesByType('resource').map(e => e.name),
                text: document.body.innerText.length};""", "args": []})["value"]
    assert state["ready"] == "complete"
    assert len(state["images"]) == 5  # curves vs epoch, vs seconds, schedule, accuracy vs step time and vs state memory
    assert all(complete and width > 0 for complete, width, _ in state["images"]), state["images"]
    for table in ("summary", "environment", "failures", "ranking_digits_mlp"):
        assert f"table-{table}" in state["tables"]
    assert state["rows"] == 2
    assert all(name.startswith("data:") for name in state["resources"]), state["resources"]
    logs = browser("POST", "/se/log", {"type": "browser"})["value"]
    errors = [entry for entry in logs if entry.get("level") == "SEVERE"]
    assert not errors, errors
    png = base64.b64decode(browser("GET", "/screenshot")["value"])
    shot = tmp_path / "report.png"
    shot.write_bytes(png)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])
    assert width >= 800 and height >= 800
    assert len(png) > 50_000  # tables and curves, not a blank page
