"""Letters on the site: composing a letter (or a digest) as the site shows it, and what the site says back.

A part of `LetterService` (a mixin over its store, clock and settings), kept apart from the review
rules: everything here is about the site's copy, its status and the messages its changes owe.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING

from bot.letter_states import DROPPED_STATUSES, REVIEW_STATUSES, DigestDraft, LetterError, public_url, with_site_editors
from bot.render import plain_text
from bot.site.base import PermanentSiteError, StatusAdapter, TransientSiteError
from bot.site.compose import Digest, Letter, compose_digest, templated_title
from bot.store.contributions import LIVE_STATES, Contribution, letter_id_of

if TYPE_CHECKING:
    from bot.clock import Clock
    from bot.config import LetterSettings
    from bot.site.base import RemoteRef
    from bot.store import Store
    from bot.store.contributions import ContributionsRepo
    from bot.store.outbox import OutboxRow

log = logging.getLogger(__name__)


class LetterSite:
    """The site side of `LetterService`."""

    store: Store
    repo: ContributionsRepo
    clock: Clock
    settings: LetterSettings
    disclaimer: str | None

    async def _load(self, letter_id: int, guild_id: int | None = None) -> Contribution:
        raise NotImplementedError

    async def site_letter(
        self,
        letter: Contribution,
        display_names: Mapping[int, str] | None = None,
        *,
        role_names: Mapping[int, str] | None = None,
        channel_names: Mapping[int, str] | None = None,
    ) -> Letter:
        """The letter as the site shows it: title, byline, the article it answers and the letter it replies to.

        Mentions show as the names given (members, roles, channels); unknown ones as "a member" or nothing.
        """
        article = await self.repo.article(letter.article_id) if letter.article_id else None
        reply_title = reply_url = None
        if letter.reply_to_message_id:
            parent = await self.repo.by_message(letter.reply_to_message_id)
            if parent is not None and parent.state in LIVE_STATES:
                reply_title = f"Letter from {parent.byline or 'a reader'}"
                reply_url = public_url(parent)  # never a pending post's ?p= link
        names = dict(display_names or {})
        roles = dict(role_names or {})
        channels = dict(channel_names or {})
        byline = letter.byline or letter.author_name
        title = templated_title(
            self.settings.title_template,
            letter_id=letter.id,
            byline=byline,
            text=plain_text(letter.content, display_names=names, role_names=roles, channel_names=channels),
            article=article.title if article else None,
        )
        return Letter(
            id=letter.id,
            text=letter.content,
            byline=byline,
            location=letter.location,
            title=title,
            article_title=article.title if article else None,
            article_link=article.link if article else None,
            in_reply_to_title=reply_title,
            in_reply_to_url=reply_url,
            display_names=names,
            channel_names=channels,
            role_names=roles,
            submitted_at=letter.submitted_at,
        )

    async def on_delivered(self, row: OutboxRow, ref: RemoteRef) -> Contribution | None:
        """The outbox delivered a letter's row: the letter as it is now (None: not a letter, or deleted since).

        A create or update marks it published (queueing the writer's and the thread's notices).
        """
        letter_id = letter_id_of(row.entity) if row.kind.startswith("letter.") else None
        if letter_id is None:
            return None
        try:
            if row.action in ("create", "update"):
                letter, _first = await self.mark_published(letter_id, ref.remote_id, ref.url, ref.status)
                return letter
            return await self.repo.get(letter_id)
        except LetterError:
            return None  # the writer has since deleted their records

    async def mark_published(
        self, letter_id: int, remote_id: str | None, url: str | None, status: str | None = None
    ) -> tuple[Contribution, bool]:
        """The site has the letter: remember where and in what status; True if this is its first delivery.

        In the same transaction, the writer and the thread are owed a message: "published" (with the
        public link) when the public can read it, else "sent to the site's editors". A pending post
        becoming public later (seen by an update's answer or a status check) owes "published" then.
        """
        letter = await self._load(letter_id)
        public = status in (None, "publish")
        first = False
        async with self.store.db.transaction() as conn:
            await self.repo.set_site_status(conn, letter_id, remote_id, url, status, self.clock.now())
            if letter.state == "approved":
                cursor = await conn.execute(
                    "UPDATE contributions SET state = 'published' WHERE id = ? AND state = 'approved'", (letter_id,)
                )
                first = cursor.rowcount > 0
                await cursor.close()
            if first:
                event = "published" if public else "sent_for_review"
                await self.store.notices.queue(conn, letter_id, event, ("writer", "thread"))
            elif public and with_site_editors(letter):
                await self.store.notices.queue(conn, letter_id, "published", ("writer", "thread"))
        return await self._load(letter_id), first

    async def apply_site_status(self, letter_id: int, status: str | None, url: str | None) -> Contribution | None:
        """A status check's answer for a letter with the site's editors; the letter if something changed.

        Published: the writer and the thread are owed the public link. Trashed or deleted: the writer
        is told. Either message is queued in the same transaction as the new status.
        """
        letter = await self._load(letter_id)
        if letter.state != "published":
            return None
        changed = status != letter.remote_status
        async with self.store.db.transaction() as conn:
            link = url if status == "publish" else None
            await self.repo.set_site_status(conn, letter_id, None, link, status, self.clock.now())
            if changed and status == "publish":
                await self.store.notices.queue(conn, letter_id, "published", ("writer", "thread"))
            elif changed and status in DROPPED_STATUSES:
                await self.store.notices.queue(conn, letter_id, "dropped", ("writer",))
        return await self._load(letter_id) if changed else None

    async def check_on_site(self, adapter: StatusAdapter, *, limit: int = 50) -> list[Contribution]:
        """Ask the site about letters with its editors; the letters whose status changed.

        A failing site ends the round (the next one tries again); one unreadable post is skipped.
        """
        changed: list[Contribution] = []
        for letter in await self.repo.awaiting_site_editors(REVIEW_STATUSES, limit=limit):
            assert letter.remote_id is not None
            try:
                ref = await adapter.fetch_status(letter.remote_id, "letter")
            except TransientSiteError as exc:
                log.info("status check stopped: %s", exc)
                break
            except PermanentSiteError as exc:
                if exc.site_wide:
                    log.info("status check stopped: %s", exc)
                    break
                log.warning("could not check letter #%s on the site: %s", letter.id, exc)
                continue
            updated = await self.apply_site_status(letter.id, ref.status, ref.url)
            if updated is not None:
                changed.append(updated)
        return changed

    async def digest(self, guild_id: int, since: datetime, until: datetime, actor_id: int) -> DigestDraft:
        """Draft one "Readers' Views" post from the letters approved in [since, until)."""
        letters = await self.repo.for_digest(guild_id, since, until)
        if not letters:
            raise LetterError(f"No letters were approved between {since:%d %b %Y} and {until:%d %b %Y}.")
        key = f"{guild_id}-{since:%Y%m%d}-{until:%Y%m%d}"
        title = f"Readers' Views, {since:%d %B %Y} to {until:%d %B %Y}"
        site_letters = [await self.site_letter(letter) for letter in letters]
        item = compose_digest(Digest(key=key, title=title, letters=site_letters), disclaimer=self.disclaimer)
        revision = hashlib.sha256(",".join(f"{c.id}.{c.version}" for c in letters).encode()).hexdigest()[:16]
        async with self.store.db.transaction() as conn:
            outbox_id = await self.store.outbox.enqueue_item(conn, "create", item, revision=revision, guild_id=guild_id)
            await self.store.audit.record(
                "digest.create",
                guild_id=guild_id,
                actor_id=actor_id,
                entity=item.entity,
                detail={"letters": [c.id for c in letters]},
                conn=conn,
            )
        return DigestDraft(key=key, title=title, letters=letters, outbox_id=outbox_id)
