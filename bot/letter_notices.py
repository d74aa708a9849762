"""Messages owed after a letter's site event, and the periodic look at posts with the site's editors.

Part of the letters feature (`bot.letters_feature`); `cogs.editorial` starts and stops both workers.

- `NoticeSender` sends what `letter_notices` owes (the writer's DM, the thread announcement, the
  nominating editor's note), each as its own step: queued in the transaction that changed the
  letter, marked sent after Discord answered. A crash in between sends it again at the next start,
  with the same message nonce, which Discord dedupes (`enforce_nonce`), so people see it once.
- `SiteStatusChecker` asks the site (WordPress: GET /posts/<id>?context=edit) about letters whose
  posts are pending or draft, and queues "published" (with the public link) or "dropped" notices.
  The webhook can't be asked; the writer is told so when their letter goes to the site's editors.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

import discord

from bot import claims
from bot.letter_states import LetterError, public_url
from bot.letters import LetterService
from bot.render import escape_discord_text
from bot.site.base import StatusAdapter
from bot.store.contributions import Contribution
from bot.store.notices import Notice

if TYPE_CHECKING:
    from bot.app import ReadersViewsBot
    from bot.review import ReviewQueue

log = logging.getLogger(__name__)

NO_MENTIONS = discord.AllowedMentions.none()
RETRY_SECONDS = 60.0


class NoticeUndeliverable(Exception):
    """Sending will never work (DMs closed, thread deleted): the notice is done, with this reason."""


def notice_text(notice: Notice, letter: Contribution, *, can_follow: bool) -> str:
    """What each audience reads about each event (never a link the public can't open)."""
    byline = escape_discord_text(letter.byline or letter.author_name)
    url = public_url(letter)
    link = f": {url}" if url else ""
    event, audience = notice.event, notice.audience
    if event == "published":
        if audience == "thread":
            return f"📰 A reader's view by **{byline}** was published on the letters page{link}"
        return f"Your letter #{letter.id} was published on the letters page{link}"
    if event == "sent_for_review":
        if audience == "thread":
            return f"📨 A reader's view by **{byline}** was sent to the site's editors for the letters page."
        follow = (
            "I'll tell you here when they publish it."
            if can_follow
            else "The site doesn't tell me when they publish it, so watch the letters page."
        )
        return f"Your letter #{letter.id} was sent to the site's editors, who publish the letters page. {follow}"
    if event == "dropped":
        return (
            f"The site's editors decided not to publish your letter #{letter.id} on the letters page after all. "
            "Thank you for writing."
        )
    if event == "declined":
        return (
            f"{escape_discord_text(letter.author_name)} declined your request to publish their reply "
            f"(letter #{letter.id}) as a reader's view; they won't be asked again."
        )
    return f"Letter #{letter.id}: {event}"


class NoticeSender:
    def __init__(self, bot: ReadersViewsBot, queue: ReviewQueue, *, max_attempts: int = 10) -> None:
        self.bot = bot
        self.queue = queue
        self.max_attempts = max_attempts
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._busy = False

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._stopping = False
            self.bot.claims.on_wake(claims.NOTICES, self._wake.set)  # a notice queued in another process
            self._task = asyncio.create_task(self._loop(), name="letter-notices")

    async def stop(self) -> None:
        """Let a message being sent finish (up to 5 s); an idle worker stops at once."""
        self._stopping = True
        self._wake.set()
        task, self._task = self._task, None
        if task is None:
            return
        if self._busy:
            try:
                await asyncio.wait_for(asyncio.shield(task), timeout=5)
                return
            except TimeoutError:
                pass
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    def wake(self) -> None:
        self._wake.set()
        self.bot.claims.wake(claims.NOTICES)  # the process running the job, if it is another

    async def _loop(self) -> None:
        await self.bot.wait_until_ready()
        while not self._stopping:
            self._wake.clear()
            self._busy = True
            try:
                if self.bot.claims.holds(claims.NOTICES):  # else another process sends them (bot.claims)
                    await self.run_once()
            except Exception:
                log.exception("sending letter notices failed; trying again shortly")
            finally:
                self._busy = False
            if self._stopping:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=RETRY_SECONDS)

    async def run_once(self) -> int:
        """Send everything owed now; returns how many were sent."""
        repo = self.bot.store.notices
        sent = 0
        for notice in await repo.due(max_attempts=self.max_attempts):
            if self._stopping:
                break
            letter = await self.bot.store.contributions.get(notice.letter_id)
            if letter is None:
                await repo.mark_sent(notice.id, "the letter no longer exists")
                continue
            try:
                await self._send(notice, letter)
            except NoticeUndeliverable as exc:
                log.info("notice %s (%s to %s) not deliverable: %s", notice.id, notice.event, notice.audience, exc)
                await repo.mark_sent(notice.id, str(exc))
            except discord.HTTPException as exc:
                log.warning("notice %s (%s, %s) failed: %s; will retry", notice.id, notice.event, notice.audience, exc)
                await repo.mark_failed(notice.id, str(exc)[:300])
            except Exception as exc:
                log.exception(
                    "notice %s (%s, %s) failed unexpectedly; will retry", notice.id, notice.event, notice.audience
                )
                await repo.mark_failed(notice.id, f"{type(exc).__name__}: {exc}"[:300])
            else:
                await repo.mark_sent(notice.id)
                sent += 1
        return sent

    async def _send(self, notice: Notice, letter: Contribution) -> None:
        can_follow = isinstance(self.bot.outbox.adapter, StatusAdapter)
        text = notice_text(notice, letter, can_follow=can_follow)[:2000]
        # Same notice, same nonce: a resend after a crash is deduped by Discord (enforce_nonce).
        nonce = f"rvn{notice.id}"
        if notice.audience == "thread":
            await self._to_thread(letter, text, nonce)
        elif notice.audience == "writer":
            await self._dm(letter.author_id, text, nonce)
        elif notice.audience == "editor":
            if not letter.reviewer_id:
                raise NoticeUndeliverable("no editor to tell")
            try:
                await self._dm(letter.reviewer_id, text, nonce)
            except NoticeUndeliverable:
                await self.queue.note(letter, text)
        else:
            raise NoticeUndeliverable(f"unknown audience {notice.audience!r}")

    async def _dm(self, user_id: int, text: str, nonce: str) -> None:
        try:
            user = self.bot.get_user(user_id) or await self.bot.fetch_user(user_id)
            await user.send(text, allowed_mentions=NO_MENTIONS, nonce=nonce)
        except (discord.Forbidden, discord.NotFound) as exc:
            raise NoticeUndeliverable(f"can't DM user {user_id}: {exc}") from None

    async def _to_thread(self, letter: Contribution, text: str, nonce: str) -> None:
        article = await self.bot.store.contributions.article(letter.article_id) if letter.article_id else None
        thread_id = article.thread_id if article is not None and article.thread_id else letter.channel_id
        channel: Any = self.bot.get_channel(thread_id)
        if channel is None:
            try:
                channel = await self.bot.fetch_channel(thread_id)
            except (discord.Forbidden, discord.NotFound) as exc:
                raise NoticeUndeliverable(f"thread {thread_id} is gone: {exc}") from None
        if not isinstance(channel, discord.abc.Messageable):
            raise NoticeUndeliverable(f"channel {thread_id} can't take messages")
        kwargs: dict[str, Any] = {}
        if letter.message_id and letter.channel_id == thread_id:
            kwargs["reference"] = discord.MessageReference(
                message_id=letter.message_id, channel_id=thread_id, fail_if_not_exists=False
            )
        try:
            await channel.send(text, allowed_mentions=NO_MENTIONS, mention_author=False, nonce=nonce, **kwargs)
        except (discord.Forbidden, discord.NotFound) as exc:
            raise NoticeUndeliverable(f"can't post in {thread_id}: {exc}") from None


class SiteStatusChecker:
    """Every `site.review_check_minutes`, asks the site about letters with its editors."""

    def __init__(self, bot: ReadersViewsBot, service: LetterService, queue: ReviewQueue, notices: NoticeSender):
        self.bot = bot
        self.service = service
        self.queue = queue
        self.notices = notices
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._loop(), name="letter-status-checks")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _loop(self) -> None:
        await self.bot.wait_until_ready()
        interval = self.bot.config.site.review_check_minutes * 60.0
        while True:
            try:
                if self.bot.claims.holds(claims.SITE_STATUS):  # else another process checks (bot.claims)
                    await self.run_once()
            except Exception:
                log.exception("checking letters on the site failed; trying again later")
            await asyncio.sleep(interval)

    async def run_once(self) -> list[Contribution]:
        """One round; the letters whose status changed (their cards are refreshed, notices sent)."""
        adapter = self.bot.outbox.adapter
        if not isinstance(adapter, StatusAdapter):
            return []
        incident = await self.bot.outbox.incidents.get()
        if incident is not None and incident.open:
            return []  # the outbox's probe decides when the site is back
        changed = await self.service.check_on_site(adapter)
        if changed:
            self.notices.wake()
        for letter in changed:
            try:
                await self.queue.refresh(letter)
            except (discord.HTTPException, LetterError) as exc:
                log.info("could not refresh the card of letter #%s: %s", letter.id, exc)
        return changed
