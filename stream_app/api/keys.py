"""API keys: ``nba_<id>_<secret>`` tokens, stored as SHA-256 digests with their scopes.

A token carries 256 random bits (``secrets.token_urlsafe(32)``), so a fast digest is enough to
keep it from being read back from the file; slow password hashes (bcrypt, scrypt) exist to
protect low-entropy passwords from guessing, which a random token is not. The id in the token
finds its entry; the digest is compared in constant time. The file is written whole (rename) and
readable by its owner only.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import tempfile
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

from policies.errors import ConfigError

__all__ = ["ApiKey", "KeyStore", "Scope"]

_PREFIX = "nba"


class Scope(StrEnum):
    READ = "read"  # look up decisions, features and the campaign page
    DECIDE = "decide"  # ask for a decision (spends budget)


@dataclass(frozen=True)
class ApiKey:
    key_id: str
    name: str
    sha256: str
    scopes: tuple[str, ...]
    created_at: str

    def allows(self, scope: Scope) -> bool:
        return scope.value in self.scopes


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class KeyStore:
    """The keys of one file; ``authenticate`` re-reads the file when it changed, so a key
    created or revoked with the CLI takes effect in a running API."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._keys: dict[str, ApiKey] = {}
        self._stamp: int | None = None

    def _load(self) -> dict[str, ApiKey]:
        try:
            stamp = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            self._keys, self._stamp = {}, None
            return self._keys
        if stamp != self._stamp:
            try:
                entries = json.loads(self.path.read_text())["keys"]
                keys = [ApiKey(**{**e, "scopes": tuple(e["scopes"])}) for e in entries]
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise ConfigError(f"{self.path}: not an API key file ({exc})") from None
            self._keys, self._stamp = {k.key_id: k for k in keys}, stamp
        return self._keys

    def keys(self) -> list[ApiKey]:
        return list(self._load().values())

    def create(self, name: str, scopes: list[str]) -> str:
        """A new key; returns its token, shown once and never stored."""
        unknown = sorted(set(scopes) - {s.value for s in Scope})
        if unknown or not scopes:
            raise ConfigError(
                f"scopes must be among {', '.join(s.value for s in Scope)} (got {unknown or []})"
            )
        key_id = secrets.token_hex(4)
        token = f"{_PREFIX}_{key_id}_{secrets.token_urlsafe(32)}"
        created = datetime.now(UTC).isoformat(timespec="seconds")
        key = ApiKey(key_id, name, _digest(token), tuple(sorted(set(scopes))), created)
        self._write([*self.keys(), key])
        return token

    def revoke(self, key_id: str) -> None:
        keys = self.keys()
        if key_id not in {k.key_id for k in keys}:
            raise ConfigError(f"no API key {key_id!r} in {self.path} (nba api key list)")
        self._write([k for k in keys if k.key_id != key_id])

    def authenticate(self, token: str | None) -> ApiKey | None:
        """The key of a presented token, or None (unknown, revoked, malformed or missing)."""
        if not token:
            return None
        parts = token.split("_", 2)
        if len(parts) != 3 or parts[0] != _PREFIX:
            return None
        key = self._load().get(parts[1])
        if key is None or not secrets.compare_digest(key.sha256, _digest(token)):
            return None
        return key

    def _write(self, keys: list[ApiKey]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        body = json.dumps({"keys": [asdict(k) for k in keys]}, indent=2)
        handle, temporary = tempfile.mkstemp(dir=self.path.parent, prefix=".api_keys.")
        with os.fdopen(handle, "w") as out:
            out.write(body)
        os.chmod(temporary, 0o600)
        os.replace(temporary, self.path)
        self._stamp = None
