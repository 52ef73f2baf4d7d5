"""Turning a reply `Text` into Matrix message contents: Markdown to sanitized HTML, pages, mentions.

Every message the bot sends is an `m.notice` (bots don't answer notices, so two bots never loop)
with an empty `m.mentions`, so nothing it posts can ping a person or `@room`.
"""

from __future__ import annotations

import json
from typing import Any

import nh3
from markdown_it import MarkdownIt

from commands.i18n import Text

# Events over 65,536 bytes are refused; leave room for the envelope the server adds.
MAX_CONTENT_BYTES = 60_000

# The HTML subset the Matrix spec recommends for `formatted_body`.
ALLOWED_TAGS = {
    "font", "del", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "p", "a", "ul", "ol",
    "sup", "sub", "li", "b", "i", "u", "strong", "em", "strike", "s", "code", "hr", "br", "div",
    "table", "thead", "tbody", "tr", "th", "td", "caption", "pre", "span", "details", "summary",
}
ALLOWED_ATTRIBUTES = {
    "a": {"href"},
    "ol": {"start"},
    "code": {"class"},
    "span": {"data-mx-bg-color", "data-mx-color"},
    "font": {"data-mx-bg-color", "data-mx-color", "color"},
}
URL_SCHEMES = {"https", "http", "mailto", "matrix"}

# html=False: raw HTML in the Markdown is shown as text, never passed through.
_markdown = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
_markdown.enable("strikethrough").enable("table")


def to_html(markdown: str) -> str:
    html = _markdown.render(markdown)
    return sanitize(html).strip()


def sanitize(html: str) -> str:
    return nh3.clean(html, tags=ALLOWED_TAGS, attributes=ALLOWED_ATTRIBUTES,
                     url_schemes=URL_SCHEMES, link_rel=None)


def notice(text: Text, reply_to: str | None = None) -> dict[str, Any]:
    content: dict[str, Any] = {
        "msgtype": "m.notice",
        "body": text.plain,
        "format": "org.matrix.custom.html",
        "formatted_body": to_html(text.markdown),
        "m.mentions": {},
    }
    if reply_to:
        content["m.relates_to"] = {"m.in_reply_to": {"event_id": reply_to}}
    return content


def content_size(content: dict[str, Any]) -> int:
    return len(json.dumps(content, ensure_ascii=False).encode())


def paginate(text: Text, page_label: Any, reply_to: str | None = None,
             limit: int = MAX_CONTENT_BYTES) -> list[dict[str, Any]]:
    """One content if it fits, else several pages split at line ends, each under `limit` bytes.

    `page_label(page, pages) -> Text` labels the pages ("(Teil 1 von 3)").
    """
    whole = notice(text, reply_to)
    if content_size(whole) <= limit:
        return [whole]
    # Markdown and plain text hold the same lines (escaping never adds a line break).
    lines = list(zip(text.markdown.split("\n"), text.plain.split("\n"), strict=False))
    # Budget per page: HTML roughly doubles the Markdown, and body and formatted_body both count.
    budget = limit // 4
    pages: list[list[tuple[str, str]]] = [[]]
    size = 0
    for md, plain in lines:
        for md_part, plain_part in _split_long_line(md, plain, budget):
            cost = len(md_part.encode()) + len(plain_part.encode()) + 2
            if pages[-1] and size + cost > budget:
                pages.append([])
                size = 0
            pages[-1].append((md_part, plain_part))
            size += cost
    contents = []
    for number, page in enumerate(pages, start=1):
        label = page_label(number, len(pages))
        body = Text("\n".join(md for md, _ in page), "\n".join(p for _, p in page))
        contents.append(notice(body + Text("\n\n", "\n\n") + label, reply_to))
    return contents


def _split_long_line(md: str, plain: str, budget: int) -> list[tuple[str, str]]:
    if len(md.encode()) + len(plain.encode()) <= budget:
        return [(md, plain)]
    step = max(1, budget // 8)  # characters; up to 4 bytes each in UTF-8, twice over
    md_parts, plain_parts = [], []
    start = 0
    while start < len(md):
        end = min(len(md), start + step)
        # Never cut between a backslash and the character it escapes.
        while end < len(md) and end > start + 1 and md[end - 1] == "\\":
            end -= 1
        md_parts.append(md[start:end])
        start = end
    plain_parts = [plain[i:i + step] for i in range(0, len(plain), step)] or [""]
    count = max(len(md_parts), len(plain_parts))
    md_parts += [""] * (count - len(md_parts))
    plain_parts += [""] * (count - len(plain_parts))
    return list(zip(md_parts, plain_parts, strict=True))
