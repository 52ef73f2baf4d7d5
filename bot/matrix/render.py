"""Turning a reply `Text` into Matrix message contents: Markdown to sanitized HTML, pages, mentions.

Every message the bot sends is an `m.notice` (bots don't answer notices, so two bots never loop)
with an empty `m.mentions`, so nothing it posts can ping a person or `@room`.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any

import nh3
from markdown_it import MarkdownIt

from commands.i18n import Catalog, Text, escape_markdown

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


@functools.lru_cache(maxsize=256)
def to_html(markdown: str) -> str:
    """Markdown to sanitized HTML. Many replies are the same text again (`!help`, a repeated
    search): rendering the Markdown is most of a reply's cost, so recent results are kept."""
    html = _markdown.render(markdown)
    return sanitize(html).strip()


def sanitize(html: str) -> str:
    return nh3.clean(html, tags=ALLOWED_TAGS, attributes=ALLOWED_ATTRIBUTES,
                     url_schemes=URL_SCHEMES, link_rel=None)


def notice(text: Text, reply_to: str | None = None,
           mentions: tuple[str, ...] = (), thread_root: str | None = None) -> dict[str, Any]:
    """`mentions` are the only users notified; `@room` never is. A reply to a command written
    in a thread goes into that thread (`thread_root`)."""
    content: dict[str, Any] = {
        "msgtype": "m.notice",
        "body": text.plain,
        "format": "org.matrix.custom.html",
        "formatted_body": to_html(text.markdown),
        "m.mentions": {"user_ids": list(mentions)} if mentions else {},
    }
    if reply_to:
        content["m.relates_to"] = reply_relation(reply_to, thread_root)
    return content


def reply_relation(reply_to: str, thread_root: str | None = None) -> dict[str, Any]:
    """In reply to `reply_to`; inside a thread, in the thread, with the reply as the fallback
    that clients without threads show (`is_falling_back`: threaded clients show no quote)."""
    in_reply_to = {"m.in_reply_to": {"event_id": reply_to}}
    if thread_root is None:
        return in_reply_to
    return {"rel_type": "m.thread", "event_id": thread_root, "is_falling_back": True,
            **in_reply_to}


def replacement(text: Text, event_id: str) -> dict[str, Any]:
    """An edit (`m.replace`) of the bot's message `event_id`: clients show the new content in
    its place; the starred body is the fallback for clients without edits."""
    new = notice(text)
    content = {**new, "body": f"* {new['body']}",
               "formatted_body": f"* {new['formatted_body']}"}
    content["m.new_content"] = new
    content["m.relates_to"] = {"rel_type": "m.replace", "event_id": event_id}
    return content


def file_message(caption: Text, filename: str, mimetype: str, size: int,
                 reply_to: str | None = None, thread_root: str | None = None) -> dict[str, Any]:
    """An `m.file` whose `url` the sender fills in after uploading; the text is its caption."""
    content = notice(caption, reply_to, thread_root=thread_root)
    content.update({"msgtype": "m.file", "filename": filename,
                    "info": {"mimetype": mimetype, "size": size}})
    return content


def content_size(content: dict[str, Any]) -> int:
    return len(json.dumps(content, ensure_ascii=False).encode())


def page_labels(catalog: Catalog, language: str) -> Callable[[int, int], Text]:
    """The page label for `paginate` in `language`: "(Teil 1 von 3)"."""

    def label(page: int, pages: int) -> Text:
        return catalog.text(language, "reply.page", page=page, pages=pages)

    return label


def paginate(text: Text, page_label: Callable[[int, int], Text], reply_to: str | None = None,
             limit: int = MAX_CONTENT_BYTES, mentions: tuple[str, ...] = (),
             thread_root: str | None = None) -> list[dict[str, Any]]:
    """One content if it fits, else several pages split at line ends, each under `limit` bytes.

    `page_label(page, pages) -> Text` labels the pages ("(Teil 1 von 3)"). Every page replies
    to `reply_to`, in the thread of `thread_root` if there is one.
    """
    whole = notice(text, reply_to, mentions, thread_root)
    if content_size(whole) <= limit:
        return [whole]
    # Markdown and plain text hold the same lines (escaping never adds a line break).
    lines = list(zip(text.markdown.split("\n"), text.plain.split("\n"), strict=False))
    budget = limit // 4  # HTML can double the Markdown; body and formatted_body both count
    while True:
        pages = _pack(lines, budget)
        contents = []
        for number, page in enumerate(pages, start=1):
            body = Text("\n".join(md for md, _ in page), "\n".join(p for _, p in page))
            label = page_label(number, len(pages))
            contents.append(notice(body + Text("\n\n", "\n\n") + label, reply_to, mentions,
                                   thread_root))
        if all(content_size(c) <= limit for c in contents) or budget < 256:
            return contents
        budget //= 2  # unusual text (control characters, entities) grew more than expected


def _json_size(value: str) -> int:
    return len(json.dumps(value, ensure_ascii=False).encode())


def _pack(lines: list[tuple[str, str]], budget: int) -> list[list[tuple[str, str]]]:
    pages: list[list[tuple[str, str]]] = [[]]
    size = 0
    for md, plain in lines:
        for part in _split_long_line(md, plain, budget):
            cost = _json_size(part[0]) + _json_size(part[1])
            if pages[-1] and size + cost > budget:
                pages.append([])
                size = 0
            pages[-1].append(part)
            size += cost
    return pages


def _split_long_line(md: str, plain: str, budget: int) -> list[tuple[str, str]]:
    """A line too long for one page is cut in its plain text and escaped anew per piece.

    The pieces lose the line's own Markdown (such a line is almost all member text anyway),
    but each shows the same text in `body` and `formatted_body`.
    """
    if _json_size(md) + _json_size(plain) <= budget:
        return [(md, plain)]
    step = max(1, budget // 16)  # characters: escaping and JSON may grow each up to ~8 bytes
    return [(escape_markdown(plain[i:i + step]), plain[i:i + step])
            for i in range(0, len(plain), step)]
