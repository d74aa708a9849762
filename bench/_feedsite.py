"""A loopback news site for bench/feeds.py, run in its own process so it does not share the bot's CPU.

    python bench/_feedsite.py --feeds 200 --items 50 [--port 0]

Serves `/feed/{n}.xml` (n = 0 .. feeds-1): RSS 2.0 with `content:encoded` bodies of realistic size
(about 4-9 kB of HTML per item), a strong ETag and a Last-Modified; answers 304 to a matching
If-None-Match (or If-Modified-Since without If-None-Match). Prints `PORT <n> BYTES <total>` once
listening, then serves until stdin closes or it is killed.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import random
import sys
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from xml.sax.saxutils import escape

from aiohttp import web

WORDS = " ".join(
    [
        "council budget housing river bridge school library transport strike union tenants rent market",
        "harvest festival election mayor report inquiry hospital nurses climate flood energy wind solar",
        "museum archive letters readers editor statement campaign petition workers wages community park",
        "street night bus rail station village town city county parliament minister vote committee",
    ]
).split(" ")
CATEGORIES = ["News", "Opinion", "Sport", "Culture", "Politics", "Local", "Business", "Science"]


def _sentence(rng: random.Random, words: int) -> str:
    text = " ".join(rng.choice(WORDS) for _ in range(words))
    return text[0].upper() + text[1:] + "."


def _paragraph(rng: random.Random) -> str:
    return " ".join(_sentence(rng, rng.randint(8, 22)) for _ in range(rng.randint(3, 6)))


def article_html(rng: random.Random, feed: int, item: int) -> str:
    """A full article body as WordPress emits it in content:encoded: paragraphs, links, a figure, a quote."""
    parts: list[str] = []
    for n in range(rng.randint(6, 12)):
        para = _paragraph(rng)
        if n % 3 == 1:
            word = rng.choice(WORDS)
            para = para.replace(f" {word} ", f' <a href="https://paper.example/topic/{word}">{word}</a> ', 1)
        if n % 4 == 2:
            para = f"<strong>{_sentence(rng, 5)}</strong> " + para
        parts.append(f"<p>{para}</p>")
        if n == 2:
            parts.append(
                f'<figure class="wp-block-image"><img src="https://paper.example/img/{feed}-{item}.jpg"'
                f' alt="{_sentence(rng, 6)}" width="1200" height="800" loading="lazy"/>'
                f"<figcaption>{_sentence(rng, 10)}</figcaption></figure>"
            )
        if n == 4:
            parts.append(f"<blockquote><p>{_paragraph(rng)}</p><cite>{_sentence(rng, 3)}</cite></blockquote>")
    parts.append("<ul>" + "".join(f"<li>{_sentence(rng, 7)}</li>" for _ in range(rng.randint(2, 5))) + "</ul>")
    return "\n".join(parts)


def feed_xml(feed: int, items: int, now: datetime) -> bytes:
    rng = random.Random(feed * 7919 + 17)
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>\n<rss version="2.0" xmlns:content="http://purl.org/rss/1.0/modules/'
        'content/" xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:atom="http://www.w3.org/2005/Atom">'
        f"<channel><title>Paper {feed} &#8211; local news</title><link>https://paper{feed}.example/</link>"
        f'<atom:link href="https://paper{feed}.example/feed/" rel="self" type="application/rss+xml"/>'
        "<description>News, opinion and letters</description><language>en-GB</language>"
        f"<lastBuildDate>{format_datetime(now)}</lastBuildDate>"
    ]
    for item in range(items):
        title = _sentence(rng, rng.randint(5, 12)).rstrip(".")
        link = f"https://paper{feed}.example/{now:%Y/%m}/{'-'.join(title.lower().split()[:6])}-{item}/"
        body = article_html(rng, feed, item)
        summary = _paragraph(rng)[:400]
        cats = "".join(f"<category><![CDATA[{c}]]></category>" for c in rng.sample(CATEGORIES, rng.randint(1, 3)))
        published = now - timedelta(minutes=37 * item + rng.randint(0, 30))
        out.append(
            f"<item><title>{escape(title)}</title><link>{escape(link)}</link>"
            f"<dc:creator><![CDATA[{rng.choice(WORDS).title()} {rng.choice(WORDS).title()}]]></dc:creator>"
            f"<pubDate>{format_datetime(published)}</pubDate>{cats}"
            f'<guid isPermaLink="false">https://paper{feed}.example/?p={100000 + item}</guid>'
            f"<description><![CDATA[<p>{summary}</p>]]></description>"
            f"<content:encoded><![CDATA[{body}]]></content:encoded></item>"
        )
    out.append("</channel></rss>")
    return "".join(out).encode()


def build_site(feeds: int, items: int) -> dict[str, tuple[bytes, str, str]]:
    now = datetime.now(UTC).replace(microsecond=0)
    site = {}
    for n in range(feeds):
        body = feed_xml(n, items, now)
        etag = '"' + hashlib.sha1(body).hexdigest()[:20] + '"'
        site[f"/feed/{n}.xml"] = (body, etag, format_datetime(now, usegmt=True))
    return site


def make_app(site: dict[str, tuple[bytes, str, str]]) -> web.Application:
    async def handle(request: web.Request) -> web.StreamResponse:
        entry = site.get(request.path)
        if entry is None:
            return web.Response(status=404, text="no such feed")
        body, etag, modified = entry
        validators = {"ETag": etag, "Last-Modified": modified}
        inm = request.headers.get("If-None-Match")
        if inm is not None:
            if etag in {t.strip().removeprefix("W/") for t in inm.split(",")} or inm.strip() == "*":
                return web.Response(status=304, headers=validators)
        elif request.headers.get("If-Modified-Since") == modified:
            return web.Response(status=304, headers=validators)
        return web.Response(body=body, headers={**validators, "Content-Type": "application/rss+xml; charset=UTF-8"})

    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    return app


async def serve(feeds: int, items: int, port: int) -> None:
    site = build_site(feeds, items)
    runner = web.AppRunner(make_app(site), access_log=None)
    await runner.setup()
    tcp = web.TCPSite(runner, "127.0.0.1", port)
    await tcp.start()
    bound = runner.addresses[0][1]
    print(f"PORT {bound} BYTES {sum(len(b) for b, _, _ in site.values())}", flush=True)
    loop = asyncio.get_running_loop()
    # Stop when the parent closes our stdin (or dies).
    await loop.run_in_executor(None, sys.stdin.read)
    await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--feeds", type=int, default=200)
    parser.add_argument("--items", type=int, default=50)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    asyncio.run(serve(args.feeds, args.items, args.port))


if __name__ == "__main__":
    main()
