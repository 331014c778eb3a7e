"""The admins' desk pages (issue 24, item 2): users with their roles, branches and state; add a user,
disable one (which ends their open sessions), give one a new password.

A generated password is shown once, on the page that answers the POST (``Cache-Control: no-store``, as
every desk page), and never again: only its argon2 hash is kept, nothing logs it. The user's name goes
in the form's body, not the URL, so the access log does not list who was changed. Pages only parse and
render; ``usecases.desk_ops`` checks the role and records each change with the admin's name.
"""

from __future__ import annotations

from typing import Any

from flask import g, redirect, request, url_for

from core.errors import LoginRefused, UserError
from usecases import desk_ops

ROLE_TEXT = {
    "clerk": "柜面 clerk",
    "supervisor": "主管 supervisor",
    "auditor": "稽核 auditor",
    "operator": "运行 operator",
    "admin": "管理员 admin",
}


def register(app: Any, route: Any, page: Any, desk: Any) -> None:
    """Add this module's routes to app with the app's route guard and page renderer."""

    def users_page(status: int = 200, *, form: dict[str, Any] | None = None) -> Any:
        users = desk_ops.list_users(desk, g.session.user)
        return page(
            "admin_users.html", users=users, roles=desk_ops.USER_ROLES, user_roles=ROLE_TEXT, form=form or {}
        ), status

    @route("/admin/users", "manage_users")
    def admin_users() -> Any:
        return users_page()

    @route("/admin/users/add", "manage_users", methods=["POST"])
    def admin_add_user() -> Any:
        form = request.form
        entered = {
            "name": form.get("name", "").strip()[:64],
            "display_name": form.get("display_name", "").strip()[:100],
            "roles": form.getlist("roles"),
            "branches": form.get("branches", "")[:200],
        }
        try:
            made = desk_ops.add_user(
                desk,
                g.session.user,
                name=entered["name"],
                roles=entered["roles"],
                branches=[b for b in entered["branches"].replace("，", ",").split(",") if b.strip()],
                display_name=entered["display_name"] or None,
            )
        except UserError as e:
            g.messages = [("error", e.message)]
            return users_page(400, form=entered)
        return page("admin_password.html", made=made, added=True, user_roles=ROLE_TEXT)

    @route("/admin/users/disable", "manage_users", methods=["POST"])
    def admin_disable_user() -> Any:
        name = request.form.get("name", "")
        if request.form.get("confirm") != "yes":
            # there is no enabling again: a second step, not a script's confirm() (the CSP allows none)
            user = next((u for u in desk_ops.list_users(desk, g.session.user) if u.name == name), None)
            if user is None:
                raise UserError(f"no user named {name[:80]!r}")
            return page("admin_disable.html", user=user, user_roles=ROLE_TEXT)
        user, ended = desk_ops.disable_user(desk, g.session.user, name)
        sessions = f"; {ended} open session(s) ended" if ended else ""
        g.messages = [("ok", f"已停用 {user.name} disabled{sessions}")]
        return users_page()

    @route("/admin/users/password", "manage_users", methods=["POST"])
    def admin_new_password() -> Any:
        made = desk_ops.new_password(desk, g.session.user, request.form.get("name", ""))
        return page("admin_password.html", made=made, added=False, user_roles=ROLE_TEXT)

    # --- everyone: their own password (an admin's one-time password is replaced here) ------------------

    @route("/account/password", "signed-in", methods=["GET", "POST"])
    def account_password() -> Any:
        if request.method == "GET":
            return page("account_password.html")
        form = request.form
        try:
            desk_ops.change_own_password(
                desk,
                g.session.user,
                current=form.get("current", ""),
                new=form.get("new", ""),
                repeated=form.get("repeated", ""),
            )
        except (UserError, LoginRefused) as e:
            wrong = isinstance(e, LoginRefused)
            g.messages = [
                ("error", "当前密码不正确 The current password is not accepted" if wrong else e.message)
            ]
            return page("account_password.html"), 401 if wrong else 400
        return redirect(url_for("login"), 303)
