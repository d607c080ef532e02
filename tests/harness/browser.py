"""
A small Chrome DevTools Protocol driver for the machine's headless Chromium.

Chromium is started with C{--remote-debugging-pipe}: it reads protocol commands from
its file descriptor 3 and writes answers and events to its descriptor 4, each one JSON
object ended by a NUL byte. So there is no debugging port to find or to leak, no
websocket library, and no browser download: Debian's C{/usr/bin/chromium} as it is.

Everything runs on the Twisted reactor; each method returns a L{Deferred}, so it can be
awaited from an C{async def} trial test or yielded from C{inlineCallbacks}::

    browser = await Browser.start(reactor, require_binary("chromium", "chromium"))
    self.addCleanup(browser.close)
    await browser.open(url)
    await browser.wait_for("document.querySelectorAll('[data-node-id]').length === 3")
    await browser.screenshot(path)

L{Browser.close} ends the browser (politely, then with SIGKILL), sweeps its process
group and removes its temporary profile.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import tempfile
from collections.abc import Callable, Coroutine, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from attrs import define, field
from twisted.internet.defer import Deferred, TimeoutError
from twisted.internet.error import ProcessExitedAlready
from twisted.internet.interfaces import IReactorProcess, IReactorTime
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import deferLater
from twisted.python.failure import Failure

if TYPE_CHECKING:
    from twisted.trial.unittest import SynchronousTestCase

T = TypeVar("T")
JSONObject = dict[str, Any]

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-quic",
    "--disable-extensions",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--mute-audio",
    "--password-store=basic",
    "--use-mock-keychain",
    "--remote-debugging-pipe",
)
"""How Chromium is started, besides its profile directory."""

COMMAND_TIMEOUT = 30.0
"""Seconds any one protocol command may take."""

STDERR_TAIL = 16_384
"""How much of Chromium's own output is kept, to explain a failure."""


def assert_png(test: SynchronousTestCase, path: str) -> None:
    """C{path} is a PNG of some substance (a screenshot that shows something)."""
    with open(path, "rb") as f:
        data = f.read()
    test.assertTrue(data.startswith(b"\x89PNG\r\n\x1a\n"), path)
    test.assertGreater(len(data), 10_000, path)


class BrowserError(Exception):
    """The browser refused a command, failed to load a page, or went away."""


class JavaScriptError(BrowserError):
    """An expression evaluated in the page threw."""


def _later(d: Coroutine[Any, Any, T]) -> Deferred[T]:
    return Deferred.fromCoroutine(d)


@define(eq=False)
class _Pipe(ProcessProtocol):
    """The Chromium process: commands out on fd 3, answers and events in on fd 4."""

    on_message: Callable[[JSONObject], None]
    on_ended: Callable[[Failure], None]
    buffer: bytes = b""
    output: bytearray = field(factory=bytearray)

    def send(self, message: JSONObject) -> None:
        """Write one protocol message to the browser."""
        assert self.transport is not None
        self.transport.writeToChild(3, json.dumps(message).encode("utf-8") + b"\0")

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        if childFD != 4:
            self.output += data
            del self.output[:-STDERR_TAIL]
            return
        self.buffer += data
        while b"\0" in self.buffer:
            raw, _, self.buffer = self.buffer.partition(b"\0")
            self.on_message(json.loads(raw))

    def processEnded(self, reason: Failure) -> None:
        self.on_ended(reason)


@define(eq=False)
class Browser:
    """One headless Chromium with one page (tab) attached, driven over the pipe."""

    _clock: IReactorTime
    _profile: str
    _pipe: _Pipe | None = None
    _pid: int | None = None
    _group: bool = False
    _session: str = ""
    _next_id: int = 0
    _pending: dict[int, Deferred[JSONObject]] = field(factory=dict)
    _waiters: dict[str, list[Deferred[JSONObject]]] = field(factory=dict)
    _ended: Deferred[None] = field(factory=Deferred)
    _exit: Failure | None = None
    _closing: Deferred[None] | None = None
    console: list[str] = field(factory=list)
    """Errors and warnings the page logged or threw, as text, oldest first."""

    @classmethod
    def start(
        cls,
        reactor: IReactorProcess,
        executable: str,
        width: int = 1280,
        height: int = 900,
        scale: float = 1.0,
    ) -> Deferred[Browser]:
        """Start Chromium with a fresh profile and a blank page of the given size."""
        clock = IReactorTime(reactor)
        profile = tempfile.mkdtemp(prefix="twistednode-chromium-")
        browser = cls(clock, profile)
        return _later(browser._start(reactor, executable, width, height, scale))

    async def _start(
        self,
        reactor: IReactorProcess,
        executable: str,
        width: int,
        height: int,
        scale: float,
    ) -> Browser:
        pipe = _Pipe(self._received, self._process_ended)
        args = [executable, *CHROMIUM_FLAGS, f"--user-data-dir={self._profile}"]
        setsid = shutil.which("setsid")
        if setsid is not None:
            # Its own process group, so that close() can sweep renderers and helpers.
            args.insert(0, setsid)
            self._group = True
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
        env.setdefault("HOME", self._profile)
        try:
            transport = reactor.spawnProcess(
                pipe,
                args[0],
                args,
                env=env,
                childFDs={0: "w", 1: "r", 2: "r", 3: "w", 4: "r"},
            )
        except BaseException:
            shutil.rmtree(self._profile, ignore_errors=True)
            raise
        self._pipe = pipe
        self._pid = transport.pid
        transport.closeChildFD(0)
        try:
            target = await self._send(
                "Target.createTarget",
                {"url": "about:blank"},
                session=False,
            )
            attached = await self._send(
                "Target.attachToTarget",
                {"targetId": target["targetId"], "flatten": True},
                session=False,
            )
            self._session = attached["sessionId"]
            for domain in ("Page", "Runtime", "Log"):
                await self._send(f"{domain}.enable")
            await self._send(
                "Emulation.setDeviceMetricsOverride",
                {
                    "width": width,
                    "height": height,
                    "deviceScaleFactor": scale,
                    "mobile": False,
                },
            )
        except BaseException:
            await self.close()
            raise
        return self

    # Protocol plumbing

    def _send(
        self,
        method: str,
        params: Mapping[str, object] | None = None,
        session: bool = True,
        timeout: float = COMMAND_TIMEOUT,
    ) -> Deferred[JSONObject]:
        if self._pipe is None or self._exit is not None:
            raise BrowserError(f"cannot send {method}: {self._why_gone()}")
        self._next_id += 1
        ident = self._next_id
        message: JSONObject = {"id": ident, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = self._session

        def cancel(_: Deferred[JSONObject]) -> None:
            self._pending.pop(ident, None)

        d: Deferred[JSONObject] = Deferred(cancel)
        self._pending[ident] = d
        self._pipe.send(message)
        return d.addTimeout(timeout, self._clock)

    def _event(self, method: str, timeout: float) -> Deferred[JSONObject]:
        """A Deferred for the next event C{method} of our page (register it first)."""
        waiters = self._waiters.setdefault(method, [])

        def cancel(d: Deferred[JSONObject]) -> None:
            if d in waiters:
                waiters.remove(d)

        d: Deferred[JSONObject] = Deferred(cancel)
        waiters.append(d)
        return d.addTimeout(timeout, self._clock)

    def _received(self, message: JSONObject) -> None:
        if "id" in message:
            d = self._pending.pop(message["id"], None)
            if d is None:
                return
            if "error" in message:
                error = message["error"]
                d.errback(BrowserError(f"{error.get('message')} ({error.get('code')})"))
            else:
                d.callback(message.get("result", {}))
            return
        if message.get("sessionId") != self._session:
            return
        method = message.get("method", "")
        params = message.get("params", {})
        self._note_console(method, params)
        for d in self._waiters.pop(method, []):
            d.callback(params)

    def _note_console(self, method: str, params: JSONObject) -> None:
        if method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            exception = details.get("exception", {})
            self.console.append(
                "exception: " + exception.get("description", details.get("text", ""))
            )
        elif method == "Runtime.consoleAPICalled":
            if params.get("type") in ("error", "warning", "assert"):
                words = [
                    str(a.get("value", a.get("description", "")))
                    for a in params.get("args", [])
                ]
                self.console.append(f"console.{params.get('type')}: " + " ".join(words))
        elif method == "Log.entryAdded":
            entry = params.get("entry", {})
            if entry.get("level") in ("error", "warning"):
                self.console.append(
                    f"log.{entry.get('level')}: {entry.get('text', '')} "
                    f"{entry.get('url', '')}".rstrip()
                )

    def _process_ended(self, reason: Failure) -> None:
        self._exit = reason
        gone = BrowserError(self._why_gone())
        pending, self._pending = self._pending, {}
        for d in pending.values():
            d.errback(gone)
        waiters, self._waiters = self._waiters, {}
        for ds in waiters.values():
            for d in ds:
                d.errback(gone)
        self._ended.callback(None)

    def _why_gone(self) -> str:
        if self._exit is None:
            return "the browser is not running"
        tail = bytes(self._pipe.output if self._pipe else b"")[-2000:]
        return f"the browser exited ({self._exit.value}); its last output: {tail!r}"

    # The public API

    def open(self, url: str, timeout: float = 20.0) -> Deferred[None]:
        """Load C{url} in the page and wait for its load event."""
        return _later(self._open(url, timeout))

    async def _open(self, url: str, timeout: float) -> None:
        loaded = self._event("Page.loadEventFired", timeout)
        try:
            result = await self._send("Page.navigate", {"url": url})
        except BaseException:
            loaded.cancel()
            raise
        if result.get("errorText"):
            loaded.cancel()
            loaded.addErrback(lambda _: None)
            raise BrowserError(f"could not open {url}: {result['errorText']}")
        await loaded

    def evaluate(self, expression: str) -> Deferred[Any]:
        """Evaluate a JavaScript expression in the page (awaiting a promise) as JSON."""
        return _later(self._evaluate(expression))

    async def _evaluate(self, expression: str) -> Any:
        result = await self._send(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
        )
        details = result.get("exceptionDetails")
        if details is not None:
            exception = details.get("exception", {})
            text = exception.get("description") or details.get("text", "")
            raise JavaScriptError(f"{expression!r} threw: {text}")
        return result.get("result", {}).get("value")

    def wait_for(
        self, predicate: str, timeout: float = 10.0, interval: float = 0.05
    ) -> Deferred[Any]:
        """Evaluate C{predicate} until it is truthy and return that value.

        Fails with L{TimeoutError}, saying the last value, after C{timeout} seconds.
        """
        return _later(self._wait_for(predicate, timeout, interval))

    async def _wait_for(self, predicate: str, timeout: float, interval: float) -> Any:
        deadline = self._clock.seconds() + timeout
        while True:
            value = await self._evaluate(predicate)
            if value:
                return value
            if self._clock.seconds() >= deadline:
                raise TimeoutError(
                    f"{predicate!r} still {value!r} after {timeout} s; "
                    f"page console: {self.console!r}"
                )
            await deferLater(self._clock, interval)

    def screenshot(self, path: str, full_page: bool = False) -> Deferred[str]:
        """Save a PNG of the page (the viewport, or the whole page) to C{path}."""
        return _later(self._screenshot(path, full_page))

    async def _screenshot(self, path: str, full_page: bool) -> str:
        params: JSONObject = {"format": "png"}
        if full_page:
            metrics = await self._send("Page.getLayoutMetrics")
            size = metrics["cssContentSize"]
            params["captureBeyondViewport"] = True
            params["clip"] = {
                "x": 0,
                "y": 0,
                "width": size["width"],
                "height": size["height"],
                "scale": 1,
            }
        shot = await self._send("Page.captureScreenshot", params)
        with open(path, "wb") as f:
            f.write(base64.b64decode(shot["data"]))
        return path

    def close(self) -> Deferred[None]:
        """End the browser and remove its profile; safe to call more than once."""
        if self._closing is None:
            self._closing = _later(self._close())
        done: Deferred[None] = Deferred()

        def relay(outcome: object) -> None:
            if isinstance(outcome, Failure):
                done.errback(outcome)
            else:
                done.callback(None)

        self._closing.addBoth(relay)
        return done

    async def _close(self) -> None:
        try:
            if self._pipe is not None and self._exit is None:
                try:
                    await self._send("Browser.close", session=False, timeout=5)
                except (BrowserError, TimeoutError):
                    pass  # it ended while we asked, or hangs: the kill below is next
                await self._wait_ended(5)
                if self._exit is None and self._pipe.transport is not None:
                    try:
                        self._pipe.transport.signalProcess("KILL")
                    except ProcessExitedAlready:
                        pass
                    await self._wait_ended(10)
            if self._group and self._pid is not None:
                # Renderers and helpers left in the browser's own process group.
                try:
                    os.killpg(self._pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
        finally:
            shutil.rmtree(self._profile, ignore_errors=True)

    async def _wait_ended(self, timeout: float) -> None:
        if self._exit is not None:
            return
        waiter: Deferred[None] = Deferred()

        def ended(result: object) -> object:
            if not waiter.called:
                waiter.callback(None)
            return result

        self._ended.addBoth(ended)
        try:
            await waiter.addTimeout(timeout, self._clock)
        except TimeoutError:
            pass
