"""The headless browser of the browser tests: Chromium from the ``PySide6-WebEngine`` wheel, with
Qt's offscreen platform, run inside a driver subprocess (``test_monitor_report.py``,
``test_ui_browser.py``). Every request the page makes is recorded (and blocked unless ``allow``
says yes) and every console message is kept, so a test can assert there were none."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Browser:
    app: Any
    view: Any
    page: Any
    keep: tuple[Any, ...]  # the profile and the interceptor: Qt needs them alive as long as the page
    requests: list[str] = field(default_factory=list)
    console: list[dict[str, Any]] = field(default_factory=list)

    def close(self) -> None:
        self.view.close()


def headless(allow: Callable[[str], bool], size: tuple[int, int], local_may_request_remote: bool = False) -> Browser:
    """A shown, offscreen browser view of ``size``. ``local_may_request_remote``: a ``file:`` page
    may *try* remote URLs, so that any reference to one reaches the recorder."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    os.environ.setdefault("QTWEBENGINE_DISABLE_SANDBOX", "1")  # Chromium's sandbox refuses to run as root
    os.environ.setdefault("QTWEBENGINE_CHROMIUM_FLAGS", "--disable-gpu --no-sandbox")
    from PySide6.QtCore import QSize
    from PySide6.QtWebEngineCore import (
        QWebEnginePage,
        QWebEngineProfile,
        QWebEngineSettings,
        QWebEngineUrlRequestInterceptor,
    )
    from PySide6.QtWebEngineWidgets import QWebEngineView
    from PySide6.QtWidgets import QApplication

    app = QApplication([])
    requests: list[str] = []
    console: list[dict[str, Any]] = []

    class Recorder(QWebEngineUrlRequestInterceptor):
        def interceptRequest(self, info: Any) -> None:  # noqa: N802  # Qt's name
            url = info.requestUrl().toString()
            requests.append(url)
            if not allow(url):
                info.block(True)

    class Page(QWebEnginePage):
        def javaScriptConsoleMessage(self, level: Any, message: str, line: int, source: str) -> None:  # noqa: N802
            console.append({"level": getattr(level, "name", str(level)), "message": message, "line": line,
                            "source": source})

    recorder = Recorder()
    profile = QWebEngineProfile()
    profile.setUrlRequestInterceptor(recorder)
    page = Page(profile)
    if local_may_request_remote:
        page.settings().setAttribute(QWebEngineSettings.WebAttribute.LocalContentCanAccessRemoteUrls, True)
    view = QWebEngineView()
    view.setPage(page)
    view.resize(QSize(*size))
    view.show()
    return Browser(app, view, page, (profile, recorder), requests, console)
