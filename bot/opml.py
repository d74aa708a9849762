"""OPML, the list-of-feeds format feed readers (and MonitoRSS) import and export. Pure; no Discord.

An uploaded OPML file is untrusted XML: it is size-capped, refused if it declares a DOCTYPE (so
no entity tricks reach the parser), and parsed with the stdlib's expat, which fetches nothing.
"""

from __future__ import annotations

import asyncio
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import datetime

MAX_OPML_BYTES = 1_000_000
MAX_IMPORT = 50  # feeds added by one import (each is fetched once to record what it holds)

_DOCTYPE = re.compile(rb"<!(?:DOCTYPE|ENTITY)", re.I)


class OpmlProblem(ValueError):
    """The file can't be used: the message is for the admin."""


@dataclass(frozen=True)
class OpmlFeed:
    url: str
    title: str


def parse_opml(data: bytes) -> list[OpmlFeed]:
    """Every feed outline (`xmlUrl`, at any depth) in document order, each URL once."""
    if len(data) > MAX_OPML_BYTES:
        raise OpmlProblem(f"The file is over {MAX_OPML_BYTES // 1000} kB; that is not a list of feeds.")
    if _DOCTYPE.search(data[:4096]):
        raise OpmlProblem("The file declares a DOCTYPE or entities; OPML needs neither, so it was not read.")
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        raise OpmlProblem(f"The file is not well-formed XML ({exc}).") from None
    if root.tag.lower() != "opml":
        raise OpmlProblem(f"The file is XML but not OPML (its root element is <{root.tag[:40]}>).")
    feeds: list[OpmlFeed] = []
    seen: set[str] = set()
    for outline in root.iter("outline"):
        url = (outline.get("xmlUrl") or outline.get("xmlurl") or "").strip()
        if not url or url in seen:
            continue
        seen.add(url)
        title = " ".join((outline.get("title") or outline.get("text") or "").split())
        feeds.append(OpmlFeed(url=url, title=title))
    return feeds


async def parse_opml_async(data: bytes) -> list[OpmlFeed]:
    """`parse_opml` in a worker thread (a megabyte of XML is not parsed on the event loop)."""
    return await asyncio.to_thread(parse_opml, data)


def build_opml(title: str, groups: list[tuple[str, list[OpmlFeed]]], created: datetime) -> bytes:
    """An OPML 2.0 document: one outline per group (e.g. per channel) holding its feeds."""
    root = ET.Element("opml", version="2.0")
    head = ET.SubElement(root, "head")
    ET.SubElement(head, "title").text = title
    ET.SubElement(head, "dateCreated").text = created.strftime("%a, %d %b %Y %H:%M:%S GMT")
    body = ET.SubElement(root, "body")
    for group, feeds in groups:
        parent = ET.SubElement(body, "outline", text=group, title=group)
        for feed in feeds:
            name = feed.title or feed.url
            ET.SubElement(parent, "outline", type="rss", text=name, title=name, xmlUrl=feed.url)
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


__all__ = ["MAX_IMPORT", "MAX_OPML_BYTES", "OpmlFeed", "OpmlProblem", "build_opml", "parse_opml", "parse_opml_async"]
