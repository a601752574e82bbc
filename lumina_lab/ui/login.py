"""The password login of ``lumina serve``: Panel's login page, checked with argon2 hashes.

Panel's basic-auth login compares the typed password with the one in its users file as plain
text.  :func:`install_password_check` swaps in a login handler that verifies argon2id hashes
(:mod:`lumina_lab.security.passwords`, written by ``lumina users add``) and compares plain
passwords in constant time, so a users file need not hold passwords, and older files still work.
Panel builds its auth provider inside ``panel.serve``; the swap is of the provider class Panel looks
up there, once per process.
"""

from __future__ import annotations

import json
import os
from typing import Any

__all__ = ["install_password_check"]

_installed = False


def _auth_info(handler: Any) -> Any:
    """What Panel's own handler would check against: the served app's ``basic_auth`` or the global one."""
    from panel.config import config
    from panel.io.state import state

    server = state._server_config.get(handler.application, {})
    info = server.get("basic_auth", config.basic_auth)
    if isinstance(info, str) and os.path.isfile(info):
        with open(info, encoding="utf-8") as f:
            info = json.loads(f.read())
    return info


def install_password_check() -> None:
    """Make ``panel.serve(basic_auth=...)`` verify argon2 hashes (idempotent)."""
    global _installed
    if _installed:
        return
    import panel.auth as pauth

    from ..security.passwords import verify_password

    class LuminaLoginHandler(pauth.BasicLoginHandler):  # type: ignore[misc,name-defined]
        def _validate(self, username: str, password: str) -> bool:
            info = _auth_info(self)
            if isinstance(info, dict):
                stored = info.get(username)
                return isinstance(stored, str) and verify_password(stored, password)
            return isinstance(info, str) and verify_password(info, password)

    class LuminaBasicAuthProvider(pauth.BasicAuthProvider):  # type: ignore[misc,name-defined]
        @property
        def login_handler(self) -> type:
            LuminaLoginHandler._login_endpoint = self._login_endpoint
            LuminaLoginHandler._login_template = self._login_template
            return LuminaLoginHandler

    pauth.BasicAuthProvider = LuminaBasicAuthProvider
    _installed = True
