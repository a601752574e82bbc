"""The password login of ``lumina serve``: Panel's login page, checked with argon2 hashes and TOTP.

Panel's basic-auth login compares the typed password with the one in its users file as plain
text.  :func:`install_password_check` swaps in a login handler that checks a login with
:func:`lumina_lab.security.passwords.check_login`: argon2id hashes (written by ``lumina users
add``), plain passwords compared in constant time (older files still work), and a one-time code for
users with a TOTP second factor (the login page gets a "code" field).  Every attempt is a
``security.login`` audit event on the bus :data:`audit_bus` returns, when serve sets it.  Panel
builds its auth provider inside ``panel.serve``; the swap is of the provider class Panel looks up
there, once per process.  :func:`install_oauth_audit` does the same for the OAuth/OIDC providers:
their logins are audited too.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

__all__ = ["audit_bus", "install_oauth_audit", "install_password_check"]

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


def install_oauth_audit(provider: str) -> bool:
    """Make every OAuth login through Panel's ``provider`` handler a ``security.login`` audit event
    (idempotent); whether it is audited.

    The event comes when the provider sends the browser back (with a code, or an error): ``ok`` with
    the user Panel took from the provider's answer, or not, with the provider's error or Panel's
    reason for refusing (a state mismatch, a token the provider would not give).  The redirect to
    the provider is not an attempt.  Handlers that do not run the authorization-code flow of
    Panel's ``OAuthLoginHandler`` (``password``, ``pam``, ``auth_code``) are left as they are, and the
    log says that their logins are not audited.
    """
    import panel.auth as pauth

    base = pauth.AUTH_PROVIDERS[provider]
    if getattr(base, "_lumina_audited", False):
        return True
    if getattr(base, "get", None) is not pauth.OAuthLoginHandler.get or "post" in vars(base):
        log.warning("logins through the %r provider are not audited (not Panel's OAuth code flow)", provider)
        return False
    method = f"oauth:{provider}"

    class AuditedLoginHandler(base):  # type: ignore[misc,valid-type]
        _lumina_audited = True

        async def get(self) -> None:
            args = self.request.arguments
            nxt = self.get_argument("next", "")
            if not ("code" in args or "error" in args or "code=" in nxt or "error=" in nxt):
                await super().get()  # the way out to the provider: not an attempt yet
                return
            self._lumina_user: str | None = None
            remote = self.request.remote_ip
            try:
                await super().get()
            except Exception as exc:
                reason = getattr(exc, "reason", None) or getattr(exc, "log_message", None) or type(exc).__name__
                _audit_login("", False, str(reason), remote, method)
                raise
            user = self._lumina_user
            _audit_login(user or "", user is not None, "" if user is not None else "no user", remote, method)

        async def get_authenticated_user(self, *args: Any, **kwargs: Any) -> Any:
            user = await super().get_authenticated_user(*args, **kwargs)
            self._lumina_user = user if isinstance(user, str) else None
            return user

    AuditedLoginHandler.__name__ = AuditedLoginHandler.__qualname__ = base.__name__
    pauth.AUTH_PROVIDERS[provider] = AuditedLoginHandler
    return True


def _audit_login(user: str, ok: bool, reason: str, remote: str | None, method: str = "password") -> None:
    from ..security.events import LoginAttempted, audit

    if not ok:
        log.warning("failed login for %r from %s (%s)", user, remote, reason)
    # the login must not fail because the audit trail is not reachable: audit() logs that, never raises
    audit(audit_bus, LoginAttempted, user=user, ok=ok, reason=reason, remote=remote, method=method)
