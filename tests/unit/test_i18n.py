import html
import re
import string

import pytest

from bot.features import FEATURES
from bot.matrix.render import to_html
from commands import core
from commands.feature import routers
from commands.framework import Level, Registry, parse_args
from commands.i18n import LANGUAGES, Catalog, Text, escape_markdown
from tests.unit.fakes import CATALOG

ROUTERS = list(dict.fromkeys([core.router, *routers(FEATURES)]))
COMMANDS = [c for r in ROUTERS for top in r.commands for c in (top, *top.subcommands)]
HOSTILE = ["**x**", "<b>fett</b>", "[a](javascript:x)", "@room", "_y_", "`z`", "# Titel",
           "&amp;", "<script>alert(1)</script>", "![i](https://e.org/i.png)", "\\*",
           "Zeile\n# Titel\n- Punkt\n1. Eins\n> Zitat\n***"]


def placeholders(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}


def code_content(rendered: str) -> str:
    found = re.fullmatch(r"<p><code>(.*)</code></p>", rendered, re.DOTALL)
    assert found, rendered
    return html.unescape(found.group(1))


# -- catalogs -----------------------------------------------------------------------------------


def test_both_languages_are_loaded():
    assert set(CATALOG.languages()) == set(LANGUAGES) == {"de", "en"}


def test_catalogs_have_the_same_keys():
    assert CATALOG.keys("de") == CATALOG.keys("en")


@pytest.mark.parametrize("key", sorted(CATALOG.keys("de")))
def test_each_key_has_the_same_placeholders_in_both_languages(key):
    assert placeholders(CATALOG.template("de", key)) == placeholders(CATALOG.template("en", key))


@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c.key)
def test_every_command_is_described(command, lang):
    assert CATALOG.has(lang, f"commands.{command.key}.summary")
    assert CATALOG.has(lang, f"commands.{command.key}.examples")
    assert CATALOG.has(lang, f"groups.{command.group}")
    for arg in command.args:
        if not arg.choices:
            assert CATALOG.has(lang, f"args.{arg.name}"), arg.name


@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c.key)
def test_every_example_is_a_valid_call_of_its_command(command, lang):
    registry = Registry(ROUTERS)
    lines = CATALOG.template(lang, f"commands.{command.key}.examples").splitlines()
    assert lines
    for line in lines:
        assert line.startswith("!"), line
        name, _, rest = line[1:].partition(" ")
        found = registry.find(name)
        if command.parent is not None:  # `!werkstatt neu …`, or `!werkstatt 12 ändern …`
            assert found is command.parent, line
            words = rest.split()
            word = next((w for w in words[:2] if found.subcommand(w) is not None), None)
            assert word is not None and found.subcommand(word) is command, line
            if words and words[0] == word:
                parse_args(command, rest[len(word):].strip())
            continue
        assert found is command, line
        parse_args(command, rest)  # raises ArgumentError if the example is wrong


@pytest.mark.parametrize("lang", LANGUAGES)
def test_levels_have_names(lang):
    for level in Level:
        assert CATALOG.has(lang, level.key)


def test_unknown_language_falls_back_to_german_and_unknown_key_raises():
    assert CATALOG.template("fr", "ping.pong") == CATALOG.template("de", "ping.pong")
    with pytest.raises(KeyError):
        CATALOG.template("de", "no.such.key")
    with pytest.raises(KeyError, match=r"no\.such\.key"):
        CATALOG.text("de", "no.such.key")
    with pytest.raises(KeyError, match=r"no\.such\.key"):
        CATALOG.text("de", "no.such.key", count=1)


def test_load_merges_every_feature_file_of_a_language(tmp_path):
    for lang, hello in (("de", "Hallo"), ("en", "Hello")):
        (tmp_path / lang).mkdir()
        (tmp_path / lang / "a.toml").write_text(f'[a]\nb = "{hello} {{name}}"\n', encoding="utf-8")
        (tmp_path / lang / "c.toml").write_text('[a]\nc = "x"\n', encoding="utf-8")
    catalog = Catalog.load(tmp_path)
    assert catalog.keys("en") == {"a.b", "a.c"}
    assert catalog.text("en", "a.b", name="Ann").plain == "Hello Ann"


def test_load_refuses_a_message_defined_in_two_files(tmp_path):
    for lang in ("de", "en"):
        (tmp_path / lang).mkdir()
        for name in ("one", "two"):
            (tmp_path / lang / f"{name}.toml").write_text('[a]\nb = "x"\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"a\.b"):
        Catalog.load(tmp_path)


def test_a_plural_message_takes_the_form_for_its_count(tmp_path):
    for lang, one, other in (("de", "eine Woche", "{count} Wochen"),
                             ("en", "one week", "{count} weeks")):
        (tmp_path / lang).mkdir()
        (tmp_path / lang / "a.toml").write_text(
            f'[a]\npause.one = "{one}"\npause.other = "{other}"\n', encoding="utf-8")
    catalog = Catalog.load(tmp_path)
    forms = {(lang, n): catalog.text(lang, "a.pause", count=n).plain
             for lang in ("de", "en") for n in (0, 1, 2, 21)}
    assert forms == {("de", 0): "0 Wochen", ("de", 1): "eine Woche", ("de", 2): "2 Wochen",
                     ("de", 21): "21 Wochen", ("en", 0): "0 weeks", ("en", 1): "one week",
                     ("en", 2): "2 weeks", ("en", 21): "21 weeks"}
    assert catalog.text("fr", "a.pause", count=1).plain == "eine Woche"  # German for others


def test_every_plural_message_has_a_form_for_any_count():
    plural = {key.rsplit(".", 1)[0] for key in CATALOG.keys("de")
              if key.endswith((".one", ".other"))}
    assert plural  # the catalogs do use plural forms
    for key in plural:
        assert CATALOG.has("de", f"{key}.other") and CATALOG.has("en", f"{key}.other"), key


# -- escaping -----------------------------------------------------------------------------------


@pytest.mark.parametrize("value", HOSTILE)
def test_values_render_literally(value):
    text = CATALOG.text("de", "help.unknown", command=value, suggestions="–")
    assert value in text.plain
    rendered = to_html(text.markdown)
    assert value in html.unescape(re.sub(r"<[^>]+>", "", rendered))
    for tag in ("<b>", "<strong>", "<em>", "<a ", "<script", "<img", "<h1>", "<code>", "<ul>",
                "<ol>", "<blockquote>", "<hr"):
        assert tag not in rendered


def test_templates_markup_stays_markup_but_values_do_not():
    text = CATALOG.text("de", "language.changed", language="**Klingonisch**")
    assert to_html(text.markdown) == (
        "<p>Alles klar: In diesem Raum antworte ich ab jetzt auf "
        "<strong>**Klingonisch**</strong>.</p>"
    )
    assert text.plain == ("Alles klar: In diesem Raum antworte ich ab jetzt auf "
                          "**Klingonisch**.")


def test_numbers_are_formatted_not_escaped():
    text = CATALOG.text("en", "reply.page", page=2, pages=10)
    assert text == Text("(part 2 of 10)", "(part 2 of 10)")


def test_escape_markdown_escapes_every_ascii_punctuation():
    assert escape_markdown("a.b") == "a\\.b"
    assert escape_markdown("Grüße 1") == "Grüße 1"
    punctuation = string.punctuation
    assert escape_markdown(punctuation) == "".join("\\" + c for c in punctuation)


def test_raw_text_is_escaped_for_markdown_and_literal_in_plain():
    text = Text.raw("<i>x</i> @room")
    assert text.plain == "<i>x</i> @room"
    assert "<i>" not in to_html(text.markdown)
    assert "x</i> @room" in html.unescape(to_html(text.markdown))


@pytest.mark.parametrize("value", ["!ping", "a`b", "a``b`c", "`x", "x`", "`", "``y``",
                                   "<b>**x**</b>", "[a](javascript:x)"])
def test_code_shows_backticks_and_markup_literally(value):
    text = Text.code(value)
    assert text.plain == value
    assert code_content(to_html(text.markdown)) == value


@pytest.mark.parametrize("value", ["!x\n\n[click](https://evil.example)", "!x\n# Titel"])
def test_code_with_line_breaks_stays_one_code_span(value):
    rendered = to_html(Text.code(value).markdown)
    assert "<a " not in rendered
    assert "<h1>" not in rendered
    assert rendered.startswith("<p><code>") and rendered.endswith("</code></p>")


def test_join_and_add():
    joined = Text.join([Text.raw("a*"), Text.code("b")], ", ")
    assert joined == Text("a\\*, `b`", "a*, b")
    assert Text.raw("x") + Text.raw("!") == Text("x\\!", "x!")


@pytest.mark.parametrize("make", [Text.raw, Text.code, lambda v: CATALOG.text(
    "de", "help.unknown", command=v, suggestions="–")])
def test_bidi_controls_from_members_never_reach_a_reply(make):
    spoof = "abc\u202egnp.exe\u2066x\u2069\u202a\u202b\u202c\u202d\u2067\u2068"
    text = make(spoof)
    for control in "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069":
        assert control not in text.plain and control not in text.markdown
    assert "abcgnp.exex" in text.plain
    arabic = Text.raw("مرحبا Stadt")  # right-to-left text itself is kept
    assert arabic.plain == "مرحبا Stadt"
