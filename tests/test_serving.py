"""Who may reach the app: login parsing, the loopback check and the exposure warning."""

from __future__ import annotations

from pathlib import Path

import pytest

from rag.errors import RagError
from rag.serving import AUTH_ENV, auth_from, exposure_warning, is_loopback, parse_logins


def test_logins_from_a_file_or_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(AUTH_ENV, raising=False)
    assert auth_from(None) is None
    monkeypatch.setenv(AUTH_ENV, "ana:s3cret:with:colons, bo:pw")
    assert auth_from(None) == [("ana", "s3cret:with:colons"), ("bo", "pw")]
    logins = tmp_path / "logins"
    logins.write_text("# analysts\ncy:one\n\n", encoding="utf-8")
    assert auth_from(logins) == [("cy", "one")]  # the file wins over the environment


@pytest.mark.parametrize("text", ["", "# only a comment", "nopassword", ":pw", "user:"])
def test_malformed_logins_are_refused(text: str) -> None:
    with pytest.raises(RagError, match="USER:PASSWORD"):
        parse_logins(text, "logins")


def test_unreadable_auth_file_is_a_message(tmp_path: Path) -> None:
    with pytest.raises(RagError, match="cannot read the auth file"):
        auth_from(tmp_path / "missing")


@pytest.mark.parametrize("host,loopback", [("127.0.0.1", True), ("127.8.0.1", True), ("::1", True),
                                           ("localhost", True), ("0.0.0.0", False), ("192.168.1.4", False),
                                           ("example.org", False)])
def test_loopback_hosts(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_exposure_warning_only_without_a_login_off_loopback() -> None:
    assert exposure_warning("0.0.0.0", has_auth=True, read_only=False) is None
    writable = exposure_warning("0.0.0.0", has_auth=False, read_only=False)
    assert writable and "upload files" in writable and "--read-only" in writable
    assert "upload" not in (exposure_warning("0.0.0.0", has_auth=False, read_only=True) or "")
