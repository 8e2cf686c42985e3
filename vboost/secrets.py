"""Keep storage passwords out of every line the sweep prints and every file it, the export and the report write."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote

# scheme://user:PASSWORD@host... (the password may be percent-encoded, so it holds no '@' or '/').
_URL_WITH_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^:/?#@\s\"']*:)(?P<password>[^@/\s\"']+)(?P<at>@)")
MASK = "***"


def mask_url(url: str) -> str:
    """``url`` with the password of every ``scheme://user:password@host`` in it replaced by ``***``."""
    return _URL_WITH_PASSWORD.sub(rf"\g<head>{MASK}\g<at>", url)


class SecretScrubber:
    """Masks URL passwords, and every literal password seen in ``sources``, in any text.

    Optuna's plots and our tables copy user attributes verbatim, and a JSON encoder may escape a URL's
    slashes; replacing the known password strings themselves catches those forms too.
    """

    def __init__(self, sources: Iterable[Any] = ()) -> None:
        self.passwords: set[str] = set()
        for source in sources:
            self.add(source)

    def add_secret(self, secret: str) -> None:
        """Mask ``secret`` itself wherever it appears (e.g. the value of a password environment variable)."""
        if secret:
            self.passwords.add(secret)

    def add(self, value: Any) -> None:
        """Remember the passwords of every URL found in ``value`` (strings, nested dicts and lists)."""
        if isinstance(value, str):
            for match in _URL_WITH_PASSWORD.finditer(value):
                password = match.group("password")
                self.passwords.update({password, unquote(password)})
        elif isinstance(value, dict):
            for item in value.values():
                self.add(item)
        elif isinstance(value, (list, tuple, set)):
            for item in value:
                self.add(item)

    def __call__(self, text: str) -> str:
        text = mask_url(text)
        # Longest first, so a password containing a shorter one is replaced whole.
        for password in sorted(self.passwords, key=len, reverse=True):
            if password and password != MASK:
                text = text.replace(password, MASK)
        return text

    def clean(self, value: Any) -> Any:
        """``value`` with every string in it scrubbed (dicts and lists are copied)."""
        if isinstance(value, str):
            return self(value)
        if isinstance(value, dict):
            return {key: self.clean(item) for key, item in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.clean(item) for item in value]
        return value
