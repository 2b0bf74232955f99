"""The web token: who may edit the extra config files (``Authorization: Bearer TOKEN``).

The web page has no CURVE key, so the token stands for an operator: whoever
holds it may do what an operator may do through the page (edit the extra
config files). Without a token file no edit is accepted at all.
"""

from __future__ import annotations

import hmac
from pathlib import Path

from collector.config import read_token

__all__ = ["Authorizer"]


class Authorizer:
    """Checks ``Authorization`` headers against the token read at start-up (None: edits refused)."""

    def __init__(self, token_file: Path | None) -> None:
        self.token = read_token(token_file) if token_file is not None else None

    @property
    def enabled(self) -> bool:
        """True when a token file was configured: edits are possible."""
        return self.token is not None

    def allows(self, header: str | None) -> bool:
        """True for ``Bearer TOKEN`` with the configured token (compared in constant time)."""
        if self.token is None or not header:
            return False
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(given.strip().encode(), self.token.encode())
