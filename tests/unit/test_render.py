import html
import json
import re

import pytest

from bot.matrix.render import (
    MAX_CONTENT_BYTES,
    content_size,
    file_message,
    notice,
    paginate,
    sanitize,
    to_html,
)
from commands.i18n import Text
from tests.unit.fakes import CATALOG


def label(page: int, pages: int) -> Text:
    return CATALOG.text("de", "reply.page", page=page, pages=pages)


def label_line(page: int, pages: int) -> str:
    return f"(Teil {page} von {pages})"


def without_label(body: str, page: int, pages: int) -> str:
    suffix = "\n\n" + label_line(page, pages)
    assert body.endswith(suffix)
    return body[: -len(suffix)]


def visible_text(formatted_body: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", formatted_body))


def check_pages(pages: list[dict]) -> list[str]:
    """Every page fits and carries its label; returns the plain bodies without labels."""
    assert len(pages) > 1
    bodies = []
    for number, content in enumerate(pages, start=1):
        assert content_size(content) < MAX_CONTENT_BYTES
        assert len(json.dumps(content, ensure_ascii=False).encode()) < 60_000
        assert content["msgtype"] == "m.notice"
        assert content["m.mentions"] == {}
        assert label_line(number, len(pages)) in visible_text(content["formatted_body"])
        bodies.append(without_label(content["body"], number, len(pages)))
    return bodies


# -- sanitizing ---------------------------------------------------------------------------------


def test_markdown_becomes_html():
    assert to_html("**fett** und `code`\n\n- a\n- b") == (
        "<p><strong>fett</strong> und <code>code</code></p>\n<ul>\n<li>a</li>\n<li>b</li>\n</ul>"
    )


@pytest.mark.parametrize("markdown", [
    "![bild](https://example.org/x.png)",
    "<img src=x onerror=alert(1)>",
    "<script>alert(1)</script>",
    "[klick](javascript:alert(1))",
    "<a href=\"https://e.org\" onclick=\"x()\">a</a>",
])
def test_markdown_output_is_sanitized(markdown):
    rendered = to_html(markdown)
    assert "<img" not in rendered
    assert "<script" not in rendered
    assert 'href="javascript' not in rendered
    assert not re.search(r"<[^>]*\son\w+=", rendered)


def test_sanitize_removes_what_markdown_could_never_produce():
    dirty = ('<p onclick="x()">hi<script>alert(1)</script><img src="x" onerror="y()">'
             '<a href="javascript:alert(1)" onmouseover="z()">j</a>'
             '<a href="https://e.org" target="_blank">ok</a>'
             '<iframe src="https://e.org"></iframe><code class="language-py">c</code></p>')
    clean = sanitize(dirty)
    for bad in ("onclick", "<script", "alert(1)</", "<img", "onerror", "javascript:",
                "onmouseover", "<iframe", "target="):
        assert bad not in clean, bad
    assert '<a href="https://e.org">ok</a>' in clean
    assert '<code class="language-py">c</code>' in clean


def test_notice_content():
    content = notice(Text("**Hallo** @room", "Hallo @room"), reply_to="$cmd")
    assert content == {
        "msgtype": "m.notice",
        "body": "Hallo @room",
        "format": "org.matrix.custom.html",
        "formatted_body": "<p><strong>Hallo</strong> @room</p>",
        "m.mentions": {},
        "m.relates_to": {"m.in_reply_to": {"event_id": "$cmd"}},
    }


IN_THREAD = {"rel_type": "m.thread", "event_id": "$root", "is_falling_back": True,
             "m.in_reply_to": {"event_id": "$cmd"}}


def test_a_reply_in_a_thread_goes_into_the_thread_with_the_reply_as_fallback():
    assert notice(Text.raw("x"), "$cmd", thread_root="$root")["m.relates_to"] == IN_THREAD
    assert file_message(Text.raw("x"), "a.csv", "text/csv", 3, "$cmd",
                        "$root")["m.relates_to"] == IN_THREAD


def test_every_page_of_a_long_reply_in_a_thread_goes_into_the_thread():
    lines = [f"Zeile {i}: {'Wörter ' * 14}" for i in range(1000)]
    pages = paginate(Text.raw("\n".join(lines)), label, "$cmd", thread_root="$root")
    assert len(pages) > 1
    assert all(page["m.relates_to"] == IN_THREAD for page in pages)


def test_notice_without_reply_has_no_relation():
    content = notice(Text.raw("x"))
    assert "m.relates_to" not in content
    assert content["m.mentions"] == {}


# -- pages --------------------------------------------------------------------------------------


def test_a_short_reply_is_one_page_without_label():
    pages = paginate(Text.raw("kurz"), label, "$cmd")
    assert len(pages) == 1
    assert pages[0]["body"] == "kurz"
    assert pages[0]["m.relates_to"] == {"m.in_reply_to": {"event_id": "$cmd"}}


def test_a_long_reply_is_split_into_pages_losing_no_line():
    lines = [f"Zeile {i}: {'Wörter ' * 14}" for i in range(1000)]
    lines[10] = "<b>**fett**</b> [x](https://e.org/) @room"
    text = Text.join(Text.raw(line) for line in lines)
    assert len(text.plain.encode()) > 60_000
    pages = paginate(text, label, "$cmd")
    bodies = check_pages(pages)
    assert "\n".join(bodies).split("\n") == lines
    for content in pages:
        assert content["m.relates_to"] == {"m.in_reply_to": {"event_id": "$cmd"}}
        assert "<b>" not in content["formatted_body"]
        assert "<a " not in content["formatted_body"]


def test_markdown_lines_stay_markup_across_pages():
    lines = [Text(f"- **{i}** " + "x" * 100, f"- {i} " + "x" * 100) for i in range(700)]
    pages = paginate(Text.join(lines), label)
    check_pages(pages)
    assert all("<li><strong>" in p["formatted_body"] for p in pages)


def test_a_single_huge_line_is_split_too():
    line = "".join(chr(ord("a") + i % 26) for i in range(100_000))
    pages = paginate(Text.raw(line), label)
    bodies = check_pages(pages)
    assert "".join(bodies).replace("\n", "") == line
    assert "".join(visible_text(p["formatted_body"]).split("(Teil")[0] for p in pages
                   ).replace("\n", "") == line


def test_a_huge_line_of_multibyte_characters_fits():
    line = "€ä𝄞" * 10_000 + "<"
    pages = paginate(Text.raw(line), label)
    bodies = check_pages(pages)
    assert "".join(bodies).replace("\n", "") == line


def test_english_page_label():
    pages = paginate(Text.raw("y" * 200_000),
                     lambda p, n: CATALOG.text("en", "reply.page", page=p, pages=n))
    assert pages[0]["body"].endswith(f"(part 1 of {len(pages)})")


def test_each_page_shows_the_same_text_in_body_and_formatted_body():
    pages = paginate(Text.raw("<" * 3_000), label, limit=6_000)
    assert len(pages) > 1
    for content in pages:
        shown = re.sub(r"\s+", "", visible_text(content["formatted_body"]))
        assert shown == re.sub(r"\s+", "", content["body"])


def test_a_long_line_of_backslashes_keeps_them_in_the_html():
    # A small limit keeps this fast; the cut logic is the same as for the real 60,000 bytes.
    pages = paginate(Text.raw("\\" * 2_000), label, limit=4_000)
    assert len(pages) > 1
    assert sum(visible_text(p["formatted_body"]).count("\\") for p in pages) == 2_000


def test_pages_of_control_characters_fit():
    pages = paginate(Text.code("!" + "\x01" * 9_999), label)
    assert all(content_size(p) < MAX_CONTENT_BYTES for p in pages)


def test_only_the_named_people_are_mentioned():
    content = notice(Text.raw("Erinnerung @room"), mentions=("@a:example.org",))
    assert content["m.mentions"] == {"user_ids": ["@a:example.org"]}  # never "room": true
