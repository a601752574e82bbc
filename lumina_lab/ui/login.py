"""The password login of ``lumina serve``: Panel's login page, checked with argon2 hashes and TOTP.

Panel's basic-auth login compares the typed password with the one in its users file as plain
text.  :func:`install_password_check` swaps in a login handler that checks a login with
:func:`lumina_lab.security.passwords.check_login`: argon2id hashes (written by ``lumina users
add``), plain passwords compared in constant time (older files still work), and a one-time code for
users with a TOTP second factor (the login page gets a "code" field).  Every attempt is a
``security.login`` audit event on the bus :data:`audit_bus` returns, when serve sets it.  Panel
builds its auth provider inside ``panel.serve``; the swap is of the provider class Panel looks up
there, once per process.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

__all__ = ["audit_bus", "install_password_check"]

log = logging.getLogger(__name__)

_installed = False

#: returns the bus that login audit events go to (set by ``serve``; ``None``: not published)
audit_bus: Callable[[], Any] | None = None

_CODE_FIELD = '<input name="code" type="text" inputmode="numeric" autocomplete="one-time-code" class="form-input" placeholder="code (if you use an authenticator)">'


def _auth_info(handler: Any) -> Any:
    """What Panel's own handler would check against: the served app's ``basic_auth`` or the global one."""
    from panel.config import config
    from panel.io.state import state

    from ..security.passwords import read_users

    server = state._server_config.get(handler.application, {})
    info = server.get("basic_auth", config.basic_auth)
    if isinstance(info, str) and os.path.isfile(info):
        return read_users(info)
    return info


def install_password_check() -> None:
    """Make ``panel.serve(basic_auth=...)`` verify argon2 hashes (idempotent)."""
    global _installed
    if _installed:
        return
    import panel.auth as pauth
    import tornado.escape

    from ..security.passwords import check_login, verify_password

    class LuminaLoginHandler(pauth.BasicLoginHandler):  # type: ignore[misc,name-defined]
        def _check(self, username: str, password: str, code: str) -> tuple[bool, str]:
            info = _auth_info(self)
            if isinstance(info, dict):
                if username not in info:
                    return False, "unknown user"
                return check_login(info[username], password, code, user=username)
            return (True, "") if isinstance(info, str) and verify_password(info, password) else (False, "password")

        def _validate(self, username: str, password: str) -> bool:
            return self._check(username, password, "")[0]

        def post(self) -> None:
            username = self.get_argument("username", "")
            ok, reason = self._check(username, self.get_argument("password", ""), self.get_argument("code", ""))
            _audit_login(username, ok, reason, self.request.remote_ip)
            if ok:
                self.set_current_user(username)
                self.redirect(pauth._validate_next_url(self.get_cookie("next_url", pauth.state.base_url)))
            else:
                message = "Invalid username, password or code!"
                self.redirect(self.request.uri + "?error=" + tornado.escape.url_escape(message))

    with_code = _with_code_field(pauth.BASIC_LOGIN_TEMPLATE)

    class LuminaBasicAuthProvider(pauth.BasicAuthProvider):  # type: ignore[misc,name-defined]
        @property
        def login_handler(self) -> type:
            LuminaLoginHandler._login_endpoint = self._login_endpoint
            template = self._login_template
            LuminaLoginHandler._login_template = with_code if template is pauth.BASIC_LOGIN_TEMPLATE else template
            return LuminaLoginHandler

    pauth.BasicAuthProvider = LuminaBasicAuthProvider
    _installed = True


def _with_code_field(template: Any) -> Any:
    """Panel's login page with a one-time-code field after the password (the page as it is if Panel's
    markup changed: users with a second factor then cannot log in, which the log says)."""
    from pathlib import Path

    import panel.auth as pauth

    source = Path(template.filename).read_text() if getattr(template, "filename", None) else ""
    marker = '<input name="password"'
    at = source.find(marker)
    if at < 0:
        log.warning("Panel's login page has no password field where expected: no TOTP code field on it")
        return template
    end = source.index(">", at) + 1
    return pauth._env.from_string(source[:end] + "\n        " + _CODE_FIELD + source[end:])


def _audit_login(user: str, ok: bool, reason: str, remote: str | None) -> None:
    from ..security.events import LoginAttempted, audit

    bus = None
    if audit_bus is not None:
        try:
            bus = audit_bus()
        except Exception as exc:  # the login must not fail because the audit trail is not reachable
            log.warning("no bus for the login audit event: %s", exc)
    if not ok:
        log.warning("failed login for %r from %s (%s)", user, remote, reason)
    audit(bus, LoginAttempted, user=user, ok=ok, reason=reason, remote=remote)
