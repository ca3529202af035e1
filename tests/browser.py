"""A tiny Chrome DevTools Protocol driver for Debian's headless Chromium: navigate, evaluate, click and type
like a person (trusted input events), phone-sized viewports, cookies, screenshots, and what went wrong
(console errors, CSP violations, dialogs a page opened).

A test tool's own browser download does not work here, so the tests drive /usr/bin/chromium
directly over its debugging websocket (websocket-client is already a test dependency).
"""

from __future__ import annotations

import base64
import itertools
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import requests
import websocket

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
         "--disable-component-update", "--disable-sync", "--disable-quic", "--remote-debugging-port=0",
         "--remote-allow-origins=*"]


def find_chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


class Browser:
    def __init__(self, width: int = 1280, height: int = 800):
        executable = find_chromium()
        if executable is None:
            raise FileNotFoundError("chromium is not installed: `make deps` installs it")
        self.profile = Path(tempfile.mkdtemp(prefix="omnikiosk-chromium-"))
        self.process = subprocess.Popen([executable, *FLAGS, f"--user-data-dir={self.profile}",
                                         f"--window-size={width},{height}", "about:blank"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().strip()):
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError("chromium did not start its debugging endpoint")
            time.sleep(0.05)
        port = int(port_file.read_text().split()[0])
        page = next(t for t in requests.get(f"http://127.0.0.1:{port}/json/list", timeout=5).json()
                    if t["type"] == "page")
        self.ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=30, suppress_origin=True)
        self._ids = itertools.count(1)
        self._answers: dict[int, dict] = {}
        self.console: list[dict] = []
        self.dialogs: list[str] = []   # alert/confirm/prompt texts: a page that opens one ran someone's script
        self.call("Runtime.enable")
        self.call("Log.enable")
        self.call("Page.enable")

    def call(self, method: str, **params):
        message_id = next(self._ids)
        self.ws.send(json.dumps({"id": message_id, "method": method, "params": params}))
        while message_id not in self._answers:
            message = json.loads(self.ws.recv())
            if "id" in message:
                self._answers[message["id"]] = message   # maybe the answer to an outer call
            elif message.get("method") in ("Runtime.consoleAPICalled", "Log.entryAdded", "Runtime.exceptionThrown"):
                self.console.append(message)
            elif message.get("method") == "Page.javascriptDialogOpening":
                # A dialog blocks the page: note it, close it, carry on.
                self.dialogs.append(message["params"].get("message", ""))
                self.ws.send(json.dumps({"id": next(self._ids), "method": "Page.handleJavaScriptDialog",
                                         "params": {"accept": False}}))
        message = self._answers.pop(message_id)
        if "error" in message:
            raise RuntimeError(f"{method}: {message['error']}")
        return message.get("result", {})

    def goto(self, url: str) -> None:
        self.call("Page.navigate", url=url)
        self.wait_for("document.readyState === 'complete' && location.href !== 'about:blank'")

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"JS error: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 20.0):
        """Until `expression` is truthy. A JS error counts as "not yet" (a page between two loads has no
        document.body for a moment) and is reported only if it is still failing at the deadline."""
        deadline = time.monotonic() + timeout
        error: RuntimeError | None = None
        while time.monotonic() < deadline:
            try:
                value = self.evaluate(expression)
            except RuntimeError as exc:
                error, value = exc, None
            else:
                error = None
            if value:
                return value
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {expression}" + (f" ({error})" if error else ""))

    def viewport(self, width: int, height: int, *, mobile: bool = False) -> None:
        """Lay the page out as on a screen of this size (a phone when `mobile`)."""
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=mobile)

    def _center(self, selector: str) -> tuple[float, float]:
        box = self.wait_for(f"""(() => {{ const node = document.querySelector({json.dumps(selector)});
            if (!node) return null; node.scrollIntoView({{block: 'center'}}); const r = node.getBoundingClientRect();
            return r.width && r.height ? [r.left + r.width / 2, r.top + r.height / 2] : null; }})()""")
        return box[0], box[1]

    def click(self, selector: str) -> None:
        """A real (trusted) tap on the first element matching `selector`, once it is on the page."""
        x, y = self._center(selector)
        for kind in ("mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)

    def type(self, selector: str, text: str) -> None:
        """Focus the field and type into it as a keyboard would."""
        self.click(selector)
        self.call("Input.insertText", text=text)

    def press_enter(self) -> None:
        for kind in ("keyDown", "keyUp"):
            self.call("Input.dispatchKeyEvent", type=kind, key="Enter", code="Enter", windowsVirtualKeyCode=13,
                      **({"text": "\r"} if kind == "keyDown" else {}))

    def cookies(self) -> list[dict]:
        return self.call("Storage.getCookies")["cookies"]

    def set_cookie(self, name: str, value: str, url: str) -> None:
        self.call("Network.setCookie", name=name, value=value, url=url, httpOnly=True)

    def screenshot(self, path: Path, *, full_page: bool = False) -> Path:
        """The viewport as PNG; with `full_page`, everything down to the end of the page."""
        params: dict = {"format": "png"}
        if full_page:
            size = self.call("Page.getLayoutMetrics")["cssContentSize"]
            params.update(captureBeyondViewport=True,
                          clip={"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1})
        path.write_bytes(base64.b64decode(self.call("Page.captureScreenshot", **params)["data"]))
        return path

    def errors(self) -> list[str]:
        """Console errors and uncaught exceptions seen so far (CSP violations show up here)."""
        texts = []
        for message in self.console:
            params = message["params"]
            if message["method"] == "Log.entryAdded" and params["entry"]["level"] == "error":
                texts.append(params["entry"]["text"])
            elif message["method"] == "Runtime.consoleAPICalled" and params["type"] == "error":
                texts.append(" ".join(str(a.get("value", a.get("description", ""))) for a in params["args"]))
            elif message["method"] == "Runtime.exceptionThrown":
                texts.append(params["exceptionDetails"].get("text", "exception"))
        return texts

    def csp_violations(self) -> list[str]:
        """Console errors about the Content Security Policy or Trusted Types: a page that tried inline
        script or style, or wrote an HTML string into the DOM."""
        return [e for e in self.errors() if "Content Security Policy" in e or "Trusted Type" in e or "Refused" in e]

    def close(self) -> None:
        try:
            self.ws.close()
        finally:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
            shutil.rmtree(self.profile, ignore_errors=True)
