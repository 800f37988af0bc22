"""Who may reach the web app: login pairs for Gradio's ``auth`` and the warning for exposed hosts.

Kept apart from ``ui.py`` so the CLI can check its options without importing Gradio.

>>> exposure_warning("127.0.0.1", has_auth=False, read_only=False) is None
True
>>> "no login" in exposure_warning("0.0.0.0", has_auth=False, read_only=False)
True
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

from .errors import RagError

#: Environment variable holding ``USER:PASSWORD`` logins for the app, comma-separated.
AUTH_ENV = "RAG_AUTH"

Login = tuple[str, str]


def parse_logins(text: str, origin: str) -> list[Login]:
    """``USER:PASSWORD`` pairs, one per line or comma-separated; raises ``RagError`` when malformed.

    >>> parse_logins("ana:secret\\n# comment\\nbo:pw", "example")
    [('ana', 'secret'), ('bo', 'pw')]
    """
    logins = []
    for item in text.replace(",", "\n").splitlines():
        item = item.strip()
        if not item or item.startswith("#"):
            continue
        user, colon, password = item.partition(":")
        if not colon or not user.strip() or not password:
            raise RagError(f"{origin}: each login must be USER:PASSWORD with both parts filled in")
        logins.append((user.strip(), password))
    if not logins:
        raise RagError(f"{origin}: holds no USER:PASSWORD login")
    return logins


def auth_from(path: Path | None) -> list[Login] | None:
    """Logins from ``path`` (``--auth-file``), else from ``$RAG_AUTH``; ``None`` when neither is set."""
    if path is not None:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise RagError(f"cannot read the auth file {path}: {getattr(error, 'strerror', None) or error}") from None
        return parse_logins(text, str(path))
    value = os.environ.get(AUTH_ENV)
    return parse_logins(value, f"${AUTH_ENV}") if value else None


def is_loopback(host: str) -> bool:
    """True when ``host`` is reachable from this machine only (127.0.0.0/8, ::1, localhost)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def exposure_warning(host: str, has_auth: bool, read_only: bool) -> str | None:
    """The warning to print when the app is reachable from other machines without a login."""
    if is_loopback(host) or has_auth:
        return None
    powers = "search" if read_only else "search, upload files into the corpus folder and rebuild the index"
    return (
        f"serving on {host} with no login: anyone who can reach this port can {powers}. "
        f"Add --auth-file FILE (or set {AUTH_ENV}=USER:PASSWORD)"
        + ("" if read_only else " and consider --read-only") + "."
    )
