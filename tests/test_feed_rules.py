"""Filter rules: what they keep and drop, and hostile patterns that must not hold up a poll."""

from __future__ import annotations

import pytest

from bot.feed_rules import FilterInput, RuleProblem, check_format, filter_out, make_rule, render_format, text_of


def item(title: str = "Council votes", summary: str = "<p>The harbour plan.</p>", **extra: object) -> FilterInput:
    return FilterInput(
        title=title,
        summary_html=summary,
        categories=list(extra.get("categories", ["Politics"])),  # type: ignore[call-overload]
        author=extra.get("author", "Jo Writer"),  # type: ignore[arg-type]
    )


def test_exclude_rules_name_the_rule_that_dropped_an_item() -> None:
    """Category and author match whole (case-insensitive); keywords match the title and summary text."""
    rules = [make_rule("exclude", "category", "sport"), make_rule("exclude", "keyword", "HARBOUR")]
    assert filter_out(rules, item(categories=["Sport"])) == "filtered out by rule 1 (exclude category “sport”)"
    assert filter_out(rules, item()) == "filtered out by rule 2 (exclude keyword “HARBOUR”)"
    assert filter_out(rules, item(summary="<p>Schools.</p>")) is None
    assert filter_out([make_rule("exclude", "author", "jo writer")], item()) is not None
    assert filter_out([make_rule("exclude", "author", "jo")], item()) is None


def test_include_rules_keep_only_what_matches_one() -> None:
    rules = [make_rule("include", "category", "Politics"), make_rule("include", "regex", r"^breaking\b")]
    assert filter_out(rules, item()) is None
    assert filter_out(rules, item(title="Breaking: storm", categories=[])) is None
    assert filter_out(rules, item(categories=["Arts"])) == (
        "filtered out by rules 1, 2: it matches none of these include rules"
    )


def test_keyword_does_not_match_markup_or_scripts() -> None:
    """Rules see the text a reader sees, not attribute values or script."""
    summary = '<p class="harbour">Schools.</p><script>harbour()</script>'
    assert text_of(summary) == "Schools."
    assert filter_out([make_rule("exclude", "keyword", "harbour")], item(summary=summary)) is None


def test_bad_rules_are_refused_with_the_field_named() -> None:
    with pytest.raises(RuleProblem, match="not a valid regular expression"):
        make_rule("exclude", "regex", "(unclosed")
    with pytest.raises(RuleProblem, match="`value` is 201 characters"):
        make_rule("exclude", "keyword", "x" * 201)
    with pytest.raises(RuleProblem, match="`field` must be one of"):
        make_rule("exclude", "colour", "red")


def test_catastrophic_pattern_is_stopped_and_counts_as_no_match() -> None:
    """A pattern that backtracks exponentially on a title gives up (regex timeout) instead of hanging."""
    rule = make_rule("exclude", "regex", r"^(a|aa)+$")
    assert filter_out([rule], item(title="a" * 60 + "b", summary="")) is None


def test_format_errors_name_the_field() -> None:
    """Unknown placeholders, format tricks and over-long templates are refused, naming the field."""
    with pytest.raises(RuleProblem, match=r"embed_title template has an unknown placeholder \{titel\}"):
        check_format("embed_title", "{titel}")
    with pytest.raises(RuleProblem, match="forum_title template: write placeholders plainly"):
        check_format("forum_title", "{title!r}")
    with pytest.raises(RuleProblem, match="forum_title template has 60 characters of its own text"):
        check_format("forum_title", "x" * 60 + "{title}")
    with pytest.raises(RuleProblem, match="content template can't be read"):
        check_format("content", "{title")
    assert check_format("content", "**{title}**\\n{link}") == "**{title}**\n{link}"


def test_rendering_shortens_the_summary_so_the_link_stays_whole() -> None:
    values = {"title": "T", "summary": "word " * 1000, "link": "https://p.example/a"}
    out = render_format("{title}: {summary}\n{link}", values, 300)
    assert len(out) <= 300 and out.endswith("\nhttps://p.example/a")
    # A value is never read as a template itself.
    assert render_format("{title}", {"title": "{link}", "link": "x"}, 100) == "{link}"


def test_link_key_ignores_what_does_not_change_the_article() -> None:
    """Scheme, www., a trailing slash, the fragment and tracking parameters don't make another article."""
    from bot.articles import link_key

    same = [
        "https://paper.example/2026/12/vote/",
        "http://www.paper.example/2026/12/vote?utm_source=rss&utm_medium=feed#comments",
        "https://PAPER.example/2026/12/vote",
    ]
    assert {link_key(url) for url in same} == {"paper.example/2026/12/vote"}
    assert link_key("https://paper.example/?p=12") != link_key("https://paper.example/?p=13")
    assert link_key("") == "" and link_key("not a url") == "not a url"
