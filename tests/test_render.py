"""Rendering feed HTML for Discord and members' Discord markdown for the site."""

from __future__ import annotations

import re
import time

import nh3
import pytest

from bot.render import (
    RENDER_INPUT_LIMIT,
    ZWSP,
    article_post_body,
    article_title,
    discord_to_html,
    drop_feed_boilerplate,
    escape_discord_text,
    excerpt,
    html_to_discord,
    inert_text,
    masked_link,
    neutralise_mentions,
    plain_text,
    reveal_links,
    safe_url,
    truncate_words,
)

# --- feed HTML -> Discord ------------------------------------------------------------------


def unzwsp(text: str) -> str:
    return text.replace(ZWSP, "")


def test_paragraphs_breaks_and_emphasis() -> None:
    """Paragraphs become blank-line separated, <br> a newline, b/i/u/s their markdown."""
    out = html_to_discord(
        "<p>First <b>bold</b> and <em>italic</em>,<br>next line.</p><p><u>under</u> <del>gone</del></p>",
        max_len=2000,
    )
    assert out == "First **bold** and *italic*,\nnext line.\n\n__under__ ~~gone~~"


def test_whitespace_inside_emphasis_moves_outside_markers() -> None:
    """Discord ignores "** x **", so spaces are kept outside the markers; empty tags vanish."""
    assert html_to_discord("<p>a<strong> b </strong>c<em></em></p>", max_len=100) == "a **b** c"


def test_links_show_their_real_url_without_embeds() -> None:
    """A feed's link is its text followed by where it really goes (no masked link hides it), without an embed."""
    out = html_to_discord('<p>Read <a href="https://news.example.org/x">the report</a>.</p>', max_len=2000)
    assert out == "Read the report (<https://news.example.org/x>)."
    out = html_to_discord('<a href="https://evil.example/login?a=1&amp;b=(2)">click to verify</a>', max_len=200)
    assert out == "click to verify (<https://evil.example/login?a=1&b=%282%29>)"


def test_non_http_links_keep_only_their_text() -> None:
    out = html_to_discord('<a href="javascript:alert(1)">click</a> <a href="mailto:a@b.c">mail</a>', max_len=200)
    assert out == "click mail"
    assert "javascript" not in out


def test_url_as_link_text_shows_the_real_target() -> None:
    out = html_to_discord('<a href="https://evil.example/">https://bank.example/</a>', max_len=200)
    assert out == "<https://evil.example/>"


def test_lists_headings_quotes_and_preformatted() -> None:
    html = (
        "<h2>Key points</h2><ul><li>One</li><li>Two<ol><li>a</li><li>b</li></ol></li></ul>"
        "<blockquote><p>Said once.</p><p>Said twice.</p></blockquote>"
        "<pre>x  = 1\n  y = *2*</pre>"
    )
    assert html_to_discord(html, max_len=2000) == (
        "**Key points**\n\n- One\n- Two\n  1. a\n  2. b\n\n"
        "> Said once.\n>\n> Said twice.\n\n"
        "```\nx  = 1\n  y = *2*\n```"
    )


def test_script_style_iframe_content_is_removed_entirely() -> None:
    html = (
        "<p>Before</p><script>alert('x')</script><style>p{color:red}</style>"
        "<iframe src='https://ads.example'><p>iframe text</p></iframe><noscript>enable js</noscript><p>After</p>"
    )
    out = html_to_discord(html, max_len=2000)
    assert out == "Before\n\nAfter"


def test_images_are_dropped() -> None:
    assert html_to_discord('<p>Look <img src="x.png" alt="chart"> here</p>', max_len=100) == "Look here"


def test_entities_are_unescaped() -> None:
    assert html_to_discord("<p>Fish &amp; chips &#8211; &quot;fresh&quot; &lt;daily&gt;</p>", max_len=100) == (
        'Fish & chips – "fresh" <daily>'
    )


def test_markdown_characters_in_feed_text_are_escaped() -> None:
    """Feed text renders literally: no accidental bold, spoilers, code, fake masked links or quotes."""
    out = html_to_discord("<p>2*3*4 snake_case ||x|| `y` ~~z~~ [click](https://evil.example)</p>", max_len=300)
    assert out == r"2\*3\*4 snake\_case \|\|x\|\| \`y\` \~\~z\~\~ \[click\](https://evil.example)"
    assert html_to_discord("<p>&gt; not a quote</p><p># not a heading</p><p>- not a list</p>", max_len=200) == (
        "\\> not a quote\n\n\\# not a heading\n\n\\- not a list"
    )


def test_urls_in_text_are_not_broken_by_escaping() -> None:
    out = html_to_discord("<p>See https://example.org/a_b_c now_ok</p>", max_len=200)
    assert out == "See https://example.org/a_b_c now\\_ok"


@pytest.mark.parametrize("mention", ["@everyone", "@here", "<@123456789012345678>", "<@&42>", "<#99>", "<@!1>"])
def test_mentions_in_feed_html_cannot_ping(mention: str) -> None:
    """Mentions in feed text are broken with a zero-width space so they neither ping nor resolve."""
    out = html_to_discord(f"<p>Hey {mention} look</p>", max_len=200)
    assert mention not in out
    assert mention in unzwsp(out).replace("\\", "")


def test_custom_emoji_and_commands_in_feed_text_do_not_resolve() -> None:
    out = html_to_discord("<p>&lt;:pepe:123&gt; &lt;/ban:1&gt;</p>", max_len=200)
    assert "<:pepe:123>" not in out and "</ban:1>" not in out


def test_html_to_discord_respects_max_len_on_a_word_boundary() -> None:
    html = "<p>" + " ".join(f"word{n}" for n in range(500)) + "</p>"
    out = html_to_discord(html, max_len=100)
    assert len(out) <= 100
    assert out.endswith("…")
    assert re.fullmatch(r"(word\d+ )*word\d+…", out)


def test_truncation_inside_code_block_closes_the_fence() -> None:
    html = "<p>Intro</p><pre>" + "line of code\n" * 50 + "</pre>"
    out = html_to_discord(html, max_len=120)
    assert len(out) <= 120
    assert out.count("```") == 2
    assert out.endswith("\n```")


def test_truncate_words() -> None:
    assert truncate_words("short", 10) == "short"
    assert truncate_words("the quick brown fox", 12) == "the quick…"
    assert truncate_words("supercalifragilistic", 8) == "superca…"
    assert truncate_words("a, b, c, d", 6) == "a, b…"
    assert truncate_words("x" * 10, 1) == "…"
    assert truncate_words("one two three", 9, ellipsis="...") == "one..."


def test_article_title_long_titles_cut_on_a_word() -> None:
    """A 300-character title is cut to ≤100 characters on a word boundary, ending in an ellipsis."""
    title = " ".join(["solidarity"] * 30)
    out = article_title(title)
    assert len(out) <= 100
    assert out.endswith("solidarity…")
    assert out.removesuffix("…").split(" ") == ["solidarity"] * len(out.removesuffix("…").split(" "))


def test_article_title_is_never_empty_and_single_line() -> None:
    assert article_title("   \n\t ") == "Untitled article"
    assert article_title("Line one\nline   two") == "Line one line two"


def test_article_title_mentions_do_not_ping() -> None:
    out = article_title("@everyone read <@123456789012345678>")
    assert "@everyone" not in out and "<@1" not in out
    assert unzwsp(out) == "@everyone read <@123456789012345678>"


def test_post_body_keeps_link_intact_under_limit() -> None:
    """However long the summary, the link survives whole and the body fits Discord's 2000 limit."""
    link = "https://news.example.org/2024/01/a-very-long-article-slug?ref=feed&utm=x"
    summary = ("This paragraph goes on. " * 200).strip()
    body = article_post_body(summary, link)
    assert len(body) <= 2000
    assert body.endswith("\n\n" + link)
    assert body.split("\n\n")[0].endswith("…")


def test_post_body_short_summary_is_untouched() -> None:
    assert article_post_body("Short.", "https://x.example/a") == "Short.\n\nhttps://x.example/a"
    assert article_post_body("", "https://x.example/a") == "https://x.example/a"


def test_post_body_with_link_nearly_at_limit_keeps_only_link() -> None:
    link = "https://x.example/" + "a" * 1975
    body = article_post_body("A summary that cannot fit.", link)
    assert body == link


def test_post_body_rejects_link_that_cannot_fit() -> None:
    with pytest.raises(ValueError, match="over the 2000-character limit"):
        article_post_body("x", "https://x.example/" + "a" * 2000)


def test_feed_to_post_pipeline_with_hostile_summary() -> None:
    """A hostile feed summary ends up as an inert, bounded Discord message with the link kept."""
    summary = html_to_discord("<p>@everyone <script>steal()</script>" + "<b>free</b> " * 400 + "</p>", max_len=2000)
    body = article_post_body(summary, "https://x.example/post")
    assert len(body) <= 2000
    assert "@everyone" not in body
    assert "steal" not in body
    assert body.endswith("\n\nhttps://x.example/post")


def test_neutralise_mentions_keeps_plain_text() -> None:
    assert neutralise_mentions("email me at a@b.org, 3 < 4") == "email me at a@b.org, 3 < 4"


# --- Discord markdown -> site HTML ---------------------------------------------------------


def assert_inert(fragment: str) -> None:
    """No tag outside the allow-list, no event handlers, no script URLs."""
    tags = {tag.lower() for tag in re.findall(r"<\s*/?\s*([a-zA-Z0-9]+)", fragment)}
    assert tags <= {"p", "br", "strong", "em", "u", "s", "code", "pre", "blockquote", "a", "ul", "ol", "li"}
    assert not re.search(r"<[^>]*\son\w+\s*=", fragment, re.I)
    assert 'href="javascript' not in fragment.lower()
    for href in re.findall(r'href="([^"]*)"', fragment):
        assert href.startswith(("http://", "https://"))
    # Re-sanitising changes nothing: the output is already inside the allow-list.
    assert (
        nh3.clean(
            fragment,
            tags={"p", "br", "strong", "em", "u", "s", "code", "pre", "blockquote", "a", "ul", "ol", "li"},
            attributes={"a": {"href"}},
            link_rel="nofollow ugc",
            url_schemes={"http", "https"},
        )
        == fragment
    )


@pytest.mark.parametrize(
    "letter",
    [
        "<script>alert(1)</script>",
        '<img src=x onerror="alert(1)">',
        "<a href='javascript:alert(1)'>x</a>",
        "[x](javascript:alert(1))",
        "[x](<javascript:alert(1)>)",
        "[x](JaVaScRiPt:alert(1))",
        '[x](https://ok.example" onmouseover="alert(1))',
        '<svg/onload=alert(1)> <style>body{display:none}</style> <iframe src="https://x">',
        "**<b onclick=alert(1)>bold</b>**",
        "`<script>`  ```\n</code><script>alert(1)</script>\n```",
        "data:text/html,<script>alert(1)</script> vbscript:msgbox(1)",
        '"><script>alert(1)</script>',
    ],
)
def test_hostile_letters_produce_no_executable_html(letter: str) -> None:
    fragment = discord_to_html(letter)
    assert_inert(fragment)
    assert "<script" not in fragment
    assert "<img" not in fragment and "<iframe" not in fragment and "<svg" not in fragment


def test_user_html_is_shown_as_text() -> None:
    """A member who writes HTML sees it published as the literal text they typed."""
    assert discord_to_html("I like <b>tags</b> & stuff") == "<p>I like &lt;b&gt;tags&lt;/b&gt; &amp; stuff</p>"


def test_javascript_masked_link_keeps_text_not_link() -> None:
    fragment = discord_to_html("[click me](javascript:alert(1))")
    assert "<a" not in fragment
    assert "href" not in fragment


def test_markdown_converts() -> None:
    fragment = discord_to_html("**bold** *it* _it2_ __under__ ~~gone~~ ***both*** `x < y` ||spoiler||")
    assert fragment == (
        "<p><strong>bold</strong> <em>it</em> <em>it2</em> <u>under</u> <s>gone</s> "
        "<strong><em>both</em></strong> <code>x &lt; y</code> spoiler</p>"
    )


def test_paragraphs_and_line_breaks() -> None:
    assert discord_to_html("one\ntwo\n\nthree") == "<p>one<br>two</p><p>three</p>"


def test_code_blocks_are_preformatted_and_not_converted() -> None:
    fragment = discord_to_html("Look:\n```python\nx = **not bold** <@1>\n```\nafter")
    assert fragment == "<p>Look:</p><pre><code>x = **not bold** &lt;@1&gt;</code></pre><p>after</p>"


def test_quotes_lists_and_headings() -> None:
    fragment = discord_to_html("# Dear editor\n> you said\n> this\nreply\n- a\n- b\n1. first\n2. second")
    assert fragment == (
        "<p><strong>Dear editor</strong></p><blockquote><p>you said<br>this</p></blockquote><p>reply</p>"
        "<ul><li>a</li><li>b</li></ul><ol><li>first</li><li>second</li></ol>"
    )


def test_triple_quote_quotes_the_rest() -> None:
    assert discord_to_html("intro\n>>> all\nof this") == "<p>intro</p><blockquote><p>all<br>of this</p></blockquote>"


def test_links_get_nofollow_ugc() -> None:
    fragment = discord_to_html("See [the report](https://x.example/r?a=1&b=2) and https://y.example/p_(q).")
    assert fragment == (
        '<p>See <a href="https://x.example/r?a=1&amp;b=2" rel="nofollow ugc">the report</a> and '
        '<a href="https://y.example/p_(q)" rel="nofollow ugc">https://y.example/p_(q)</a>.</p>'
    )


def test_underscores_in_urls_are_not_italic() -> None:
    fragment = discord_to_html("https://x.example/a_b_c and snake_case_word")
    assert "<em>" not in fragment
    assert 'href="https://x.example/a_b_c"' in fragment


def test_mentions_become_names() -> None:
    fragment = discord_to_html(
        "Thanks <@111> and <@!222>, also <@333>, in <#444> for <@&555>; <#666> <@&777>",
        display_names={111: "Ana", 222: "Bo <script>"},
        channel_names={444: "letters"},
        role_names={555: "Editors"},
    )
    assert fragment == "<p>Thanks Ana and Bo &lt;script&gt;, also a member, in #letters for @Editors;  </p>"


def test_custom_emoji_removed_unicode_emoji_kept() -> None:
    assert discord_to_html("Great <:pog:123456> piece 🎉 <a:wave:42>!") == "<p>Great  piece 🎉 !</p>"


def test_backslash_escapes_are_literal() -> None:
    assert discord_to_html(r"\*not italic\* and \_this\_") == "<p>*not italic* and _this_</p>"


def test_timestamps_render_as_dates() -> None:
    assert discord_to_html("Meet <t:1700000000:F>") == "<p>Meet 14 November 2023, 22:13 UTC</p>"


def test_placeholder_characters_in_input_cannot_inject() -> None:
    """Control characters used internally are stripped from members' text first."""
    fragment = discord_to_html("before \x000\x00 after <@1>")
    assert_inert(fragment)
    assert fragment == "<p>before 0 after a member</p>"


def test_plain_text_for_screening() -> None:
    assert plain_text("Hi **there** <@1>\n\n> quoted <b>\n- item", display_names={1: "Ana"}) == (
        "Hi there Ana\n\nquoted <b>\n\nitem"
    )


# --- hostile feed HTML: linear, bounded, never crashing ---------------------------------------

HOSTILE_HTML = {
    "nested quotes around paragraphs": lambda n: "<blockquote>" * n + "<p>x</p>" * n + "</blockquote>" * n,
    "nested emphasis": lambda n: "<b><i>" * n + "x " * n + "</i></b>" * n,
    "nested lists": lambda n: "<ul>" * n + "<li>x</li>" * n,
    "unclosed quoted attributes": lambda n: "<a b='" * n,
    "unclosed tags": lambda n: "<a" * n,
    "unclosed comments": lambda n: "<!--" * n,
    "marked sections": lambda n: "<![" * n,
    "stray end tags": lambda n: "<b>x" * 8 + "</b>" * n,
}


@pytest.mark.parametrize("shape", HOSTILE_HTML)
def test_hostile_html_renders_in_linear_time(shape: str) -> None:
    """Three 20 kB items froze the bot for 45 s (nested quotes were cubic): every shape now takes milliseconds."""
    make = HOSTILE_HTML[shape]
    size = 1
    while len(make(size)) < 20_000:
        size *= 2
    started = time.perf_counter()
    for _ in range(3):
        out = html_to_discord(make(size), max_len=4000)
    elapsed = time.perf_counter() - started
    assert len(out) <= 4000
    assert elapsed < 1.0, f"{shape}: {elapsed:.2f} s for three 20 kB items"


def test_rendering_input_is_capped() -> None:
    """Only the first RENDER_INPUT_LIMIT characters of a huge item are rendered; a cut tag is dropped."""
    huge = "<p>" + "word " * 20 + "</p>" + "<p>filler</p>" * 100_000
    assert html_to_discord(huge, max_len=4000) == html_to_discord(huge[:RENDER_INPUT_LIMIT], max_len=4000)
    cut = "<p>start</p>" + "x" * (RENDER_INPUT_LIMIT - 20) + '<a href="https://evil.example/">hidden'
    assert "evil" not in html_to_discord(cut, max_len=4000)


def test_nested_quotes_are_one_quote() -> None:
    """Discord has one level of quote: inner blockquotes become paragraphs inside the outer one."""
    html = "<blockquote><p>a</p><blockquote><p>b</p><blockquote>c</blockquote></blockquote><p>d</p></blockquote>e"
    assert html_to_discord(html, max_len=200) == "> a\n>\n> b\n>\n> c\n>\n> d\n\ne"


def test_raw_text_elements_and_odd_markup() -> None:
    """Script content never leaks (even with tags inside), and stray "<" and bogus markup are handled."""
    html = "<p>a < b</p><script>if (x<y) { document.write('<p>leak</p>') }</script><?php echo 1 ?><!x>c<br/>d"
    assert html_to_discord(html, max_len=200) == "a < b\n\nc\nd"


def test_many_blank_lines_escape_in_linear_time() -> None:
    """Line-start escaping no longer rescans runs of blank lines (20,000 newlines took 17 s)."""
    started = time.perf_counter()
    assert escape_discord_text("\n" * 20_000 + "> x").endswith("\\> x")
    assert time.perf_counter() - started < 0.5


# --- links and text from strangers --------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://paper.example/2024/a_b?x=1&y=2#top", "https://paper.example/2024/a_b?x=1&y=2#top"),
        (
            "https://paper.example/1)[APPROVE THIS](https://evil.example",
            "https://paper.example/1%29%5BAPPROVE%20THIS%5D%28https://evil.example",
        ),
        ("  https://paper.example/a b<c>`d`\\e  ", "https://paper.example/a%20b%3Cc%3E%60d%60%5Ce"),
        ("https://paper.example/\u202eexe.txt", "https://paper.example/%E2%80%AEexe.txt"),
        ("https://bücher.example/café", "https://xn--bcher-kva.example/caf%C3%A9"),
        ("HTTPS://Paper.Example/X", "https://Paper.Example/X"),
        ("https://paper.example/a\nb", None),
        ("javascript:alert(1)", None),
        ("https:///no-host", None),
        ("https://ev il.example/", None),
        ("", None),
    ],
)
def test_safe_url(url: str, expected: str | None) -> None:
    """http(s) only; anything that could close a markdown link early or hide text is percent-encoded."""
    assert safe_url(url) == expected


def test_the_bots_masked_link_keeps_its_shape() -> None:
    """A hostile title and link stay inside one masked link; an unusable link leaves the title alone."""
    title = inert_text("Read me](https://evil.example)[APPROVE THIS")
    link = masked_link(title, "https://paper.example/1)[APPROVE THIS](https://evil.example/x")
    assert link == (
        "[Read me\\](https\\://evil.example)\\[APPROVE THIS]"
        "(https://paper.example/1%29%5BAPPROVE%20THIS%5D%28https://evil.example/x)"
    )
    assert masked_link("Title", "javascript:alert(1)") == "Title"
    assert masked_link("Title", None) == "Title"


@pytest.mark.parametrize(
    ("letter", "shown"),
    [
        ("[click to verify](https://evil.example/login)", "click to verify (https://evil.example/login)"),
        ("[x](<https://evil.example/a> 'title')", "x (https://evil.example/a)"),
        ("[[inner](https://a.example)](https://b.example)", "inner (https://a.example) (https://b.example)"),
        (
            "**bold** [t](https://c.example) and https://d.example",
            "**bold** t (https://c.example) and https://d.example",
        ),
        ("[unbalanced](https://e.example/a_(b)", "unbalanced (https://e.example/a_(b)"),
    ],
)
def test_strangers_masked_links_show_their_url(letter: str, shown: str) -> None:
    """A letter on a review card can't hide where a link goes."""
    assert reveal_links(letter) == shown


def test_no_masked_link_survives_revealing() -> None:
    tricky = "[" * 20 + "x" + "](https://evil.example)" * 20
    assert "](" not in reveal_links(tricky)


@pytest.mark.parametrize(
    "name",
    [
        "https://evil.example/login",
        "<https://evil.example/login>",
        "[Ada](https://evil.example/login)",
        "Ada (steam://run/1)",
        "HTTPS://EVIL.EXAMPLE",
    ],
)
def test_inert_text_links_nowhere(name: str) -> None:
    """Discord links `scheme://` text and masked links; in inert text the colon and brackets are escaped."""
    out = inert_text(name)
    assert not re.search(r"[A-Za-z]://", out), out
    assert not re.search(r"(?<!\\)\]\(", out), out
    # What Discord shows once escapes are applied: the original text.
    assert re.sub(r"\\(.)", r"\1", out) == name


def test_inert_text_escapes_markdown_and_mentions() -> None:
    assert inert_text("*Ada* @everyone <@1> # not a heading") == "\\*Ada\\* @\u200beveryone <\u200b@1> # not a heading"
    assert inert_text("# Heading") == "\\# Heading"


def test_wordpress_boilerplate_is_dropped_only_as_the_closing_paragraph() -> None:
    """ "The post … appeared first on …" goes; the same words inside the article stay."""
    summary = html_to_discord(
        '<p>Council votes.</p><p>The post <a href="https://p.example/1">Vote</a> appeared first on '
        '<a href="https://p.example">Paper</a>.</p>',
        max_len=4000,
    )
    assert drop_feed_boilerplate(summary) == "Council votes."
    kept = "The post office appeared first on the list.\n\nThen it closed."
    assert drop_feed_boilerplate(kept) == kept


def test_excerpt_cuts_after_a_sentence_else_on_a_word() -> None:
    """A sentence ending in the second half of the limit is where the cut goes; else a word and an ellipsis."""
    text = "First sentence is here. Second one follows it! Third is longer than the room left for it."
    assert excerpt(text, 60) == "First sentence is here. Second one follows it!"
    one_long = "word " * 40
    cut = excerpt(one_long, 50)
    assert len(cut) <= 50 and cut.endswith("word…")
    assert excerpt("Short.", 500) == "Short."
