"""The desk's admin pages (issue 24)."""

from __future__ import annotations

from typing import Any


def register(app: Any, route: Any, page: Any, desk: Any) -> None:
    """Add this module's routes to app with the app's route guard and page renderer."""

    @route("/admin/users", "manage_users")
    def admin_users() -> Any:
        return page("home.html", pending=0)
