"""Web addresses that members type (a workshop's or a meeting's link), as stored and as shown."""

from __future__ import annotations

import re

from commands.i18n import Text

_SAFE_URL = re.compile(r"^https?://[^\s<>\"`\\]+$", re.IGNORECASE)


def is_web_link(url: str) -> bool:
    """Whether `url` is a plain http(s) address (nothing that could break out of a link)."""
    return _SAFE_URL.match(url) is not None


def normalize_link(value: str) -> str | None:
    """A workshop's link as given (`link=`, an import's `url`) as stored: `<…>` dropped,
    `www.…` read as `https://www.…`; None if it is not an http(s) address."""
    url = value.strip("<>")
    if url.lower().startswith("www."):
        url = "https://" + url
    return url if is_web_link(url) else None


def link(url: str) -> Text:
    """A web address as a link (CommonMark autolink) when it is a plain http(s) address."""
    if is_web_link(url):
        return Text(f"<{url}>", url)
    return Text.raw(url)
