"""The desk's audits pages (issue 24)."""

from __future__ import annotations

from typing import Any


def register(app: Any, route: Any, page: Any, desk: Any) -> None:
    """Add this module's routes to app with the app's route guard and page renderer."""

    @route("/audits", "audit")
    def audits() -> Any:
        return page("home.html", pending=0)
