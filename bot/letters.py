"""Readers' views: the rules for recording replies, submitting, nominating, reviewing and publishing letters.

No Discord here: cogs translate interactions into these calls and render the results. Review
decisions are compare-and-set on the row's `version`, and every change that must reach the site
enqueues its outbox row in the same transaction as the state change.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from bot.clock import Clock
from bot.concurrency import Batcher
from bot.config import LetterSettings
from bot.letter_states import (
    STATE_LABELS,
    WRITER_CHANGED_AFTER_EDIT,
    Conflict,
    LetterError,
    conflict_text,
    writer_text,
)
from bot.letters_site import LetterSite
from bot.render import plain_text
from bot.site.compose import clean_line, compose_letter
from bot.store.contributions import (
    LIVE_STATES,
    ArticleRef,
    Contribution,
    ContributionsRepo,
    NewContribution,
    row_of,
)

if TYPE_CHECKING:
    import aiosqlite

    from bot.store import Store

log = logging.getLogger(__name__)

BYLINE_MAX = 80
LOCATION_MAX = 80
_URL = re.compile(r"https?://\S+", re.I)


class Recorder(Batcher[tuple[object, ...], None]):
    """Group commit for recorded replies: rows are queued and written together every few ms or N rows.

    aiosqlite pays a thread hop per statement, so one transaction per message tops out at a few
    thousand per second; a batch of hundreds costs about the same as one row.
    """

    def __init__(self, repo: ContributionsRepo, *, max_rows: int = 500, max_delay: float = 0.005) -> None:
        async def write(rows: list[tuple[object, ...]]) -> list[None]:
            await repo.record_rows(rows)
            return [None] * len(rows)

        super().__init__(write, name="letters-recorder", max_batch=max_rows, linger=max_delay)

    def add(self, contribution: NewContribution) -> None:
        self.post(row_of(contribution))

    def add_row(self, row: tuple[object, ...]) -> None:
        """Queue a row made by `contribution_row` (the listener's hot path)."""
        self.post(row)

    @property
    def written(self) -> int:
        return self.done

    async def flush(self) -> None:
        """Write everything queued so far (and wait for a batch already being written)."""
        await self.drain()

    async def stop(self) -> None:
        """Write what is queued (at shutdown, before the database closes)."""
        await self.drain()


def publication_terms(byline: str, location: str | None, consent: bool) -> tuple[str, str | None]:
    """The writer's explicit consent, and the cleaned byline and location, or a refusal."""
    if not consent:
        raise LetterError("Nothing was submitted: we publish only with your explicit agreement (type yes).")
    cleaned = clean_line(byline, BYLINE_MAX)
    if not cleaned:
        raise LetterError("Please give the name to print under your letter.")
    return cleaned, clean_line(location, LOCATION_MAX) or None


class LetterService(LetterSite):
    def __init__(self, store: Store, clock: Clock, settings: LetterSettings, *, disclaimer: str | None) -> None:
        self.store = store
        self.repo: ContributionsRepo = store.contributions
        self.clock = clock
        self.settings = settings
        self.disclaimer = disclaimer

    # -- recording ------------------------------------------------------------------------------

    async def ensure_recorded(self, new: NewContribution) -> Contribution:
        """The row for a Discord message, recording it now if the listener has not (yet).

        A row that is not live takes the message's current text first: an edit the listener missed
        (or made while the letter was withdrawn) must not leave the old text to be submitted.
        """
        assert new.message_id is not None
        found = await self.repo.by_message(new.message_id)
        if found is not None:
            if found.state not in LIVE_STATES and new.content.strip() and writer_text(found) != new.content:
                await self.on_message_edit(new.message_id, new.content)
                found = await self.repo.by_message(new.message_id) or found
            return found
        await self.repo.record(new)
        found = await self.repo.by_message(new.message_id)
        assert found is not None
        return found

    async def on_message_edit(self, message_id: int, content: str) -> Contribution | None:
        """Apply a member's edit; returns the letter if editors must be told (in review, approved or published)."""
        current = await self.repo.by_message(message_id)
        # Compared with the writer's own text: an editor's edit is not something the writer changed.
        if current is None or writer_text(current) == content:
            return None
        if current.state in LIVE_STATES:
            await self.repo.add_flag(current.id, "edited on Discord after approval (the site keeps the approved text)")
            return await self.repo.get(current.id)
        if current.state == "submitted" and current.original_content is not None:
            await self.repo.keep_writer_edit(message_id, content, self.clock.now())
            await self.repo.add_flag(current.id, WRITER_CHANGED_AFTER_EDIT)
            return await self.repo.get(current.id)
        await self.repo.apply_edit(message_id, content, self.clock.now())
        if current.state == "submitted":
            await self.repo.add_flag(current.id, "edited by the writer after submission")
            return await self.repo.get(current.id)
        return None

    async def on_message_delete(self, message_ids: Iterable[int]) -> list[Contribution]:
        """Mark deleted; returns letters editors must hear about (in review, approved or published)."""
        ids = list(message_ids)
        await self.repo.mark_deleted(ids, self.clock.now())
        notable = []
        for message_id in ids:
            current = await self.repo.by_message(message_id)
            if current is not None and current.state in ("submitted", *LIVE_STATES):
                note = (
                    "deleted on Discord after approval"
                    if current.state in LIVE_STATES
                    else "deleted on Discord by the writer"
                )
                await self.repo.add_flag(current.id, note)
                notable.append(await self.repo.get(current.id) or current)
        return notable

    # -- screening ------------------------------------------------------------------------------

    def screen_text(self, text: str) -> list[str]:
        """Flags for editors from the text alone (never a reason to publish or reject by itself)."""
        flags = []
        plain = plain_text(text)
        length = len(plain)
        if length < self.settings.min_chars:
            flags.append(f"short: {length} characters (at least {self.settings.min_chars} expected)")
        if length > self.settings.max_chars:
            flags.append(f"long: {length} characters (at most {self.settings.max_chars} expected)")
        links = len(_URL.findall(text))
        if links > self.settings.max_links:
            flags.append(f"many links: {links}")
        lowered = plain.casefold()
        hits = [
            word
            for word in self.settings.blocked_words
            if word.strip() and re.search(rf"(?<!\w){re.escape(word.strip().casefold())}(?!\w)", lowered)
        ]
        if hits:
            flags.append("contains listed word(s): " + ", ".join(sorted(set(hits))))
        return flags

    async def screen(self, letter: Contribution, author_created_at: datetime | None) -> list[str]:
        return await self._screen(letter.guild_id, letter.content, letter.id, author_created_at)

    async def _screen(
        self, guild_id: int, content: str, letter_id: int, author_created_at: datetime | None
    ) -> list[str]:
        flags = self.screen_text(content)
        earlier = await self.repo.same_text(guild_id, content, letter_id)
        if earlier is not None:
            flags.append(f"repeated text: same as letter #{earlier}")
        if author_created_at is not None:
            age = self.clock.now() - author_created_at
            if age < timedelta(days=self.settings.new_account_days):
                flags.append(f"new account: created {max(0, age.days)} day(s) ago")
        return flags

    async def check_rate(self, guild_id: int, author_id: int, author_created_at: datetime | None = None) -> None:
        """Refuse a member who has reached the daily number of submissions, or a new account while the
        server's queue of new accounts' letters is full (before showing the form, so nobody writes a
        letter for nothing; the submit checks again, in its transaction)."""
        since = self.clock.now() - timedelta(days=1)
        self._refuse_over_limit(await self.repo.submissions_since(guild_id, author_id, since))
        if self.is_new_account(author_created_at):
            self._refuse_full_queue(await self.repo.waiting_from_new_accounts(guild_id))

    def _refuse_over_limit(self, sent: int) -> None:
        limit = self.settings.submissions_per_day
        if sent >= limit:
            raise LetterError(
                f"You've sent {sent} letters in the last 24 hours, and this server accepts {limit} a day. "
                "Please try again tomorrow; your reply stays here in the meantime."
            )

    def is_new_account(self, author_created_at: datetime | None) -> bool:
        if author_created_at is None:
            return False
        return self.clock.now() - author_created_at < timedelta(days=self.settings.new_account_days)

    async def _check_limits(
        self, conn: aiosqlite.Connection, guild_id: int, author_id: int, *, new_account: bool
    ) -> None:
        """Inside the submitting transaction (one writer at a time), so concurrent submits can't all pass:
        the member's daily limit, and the server's cap on letters from new accounts waiting for review."""
        since = self.clock.now() - timedelta(days=1)
        self._refuse_over_limit(await self.repo.submissions_since_in(conn, guild_id, author_id, since))
        if new_account:
            self._refuse_full_queue(await self.repo.waiting_from_new_accounts_in(conn, guild_id))

    def _refuse_full_queue(self, waiting: int) -> None:
        cap = self.settings.new_account_queue_cap
        if cap and waiting >= cap:
            raise LetterError(
                f"Your account is less than {self.settings.new_account_days} days old, and the editors already "
                f"have {cap} letters from new accounts waiting, which is as many as this server takes at once. "
                "Nothing was submitted; please try again once they have caught up (in a day or two)."
            )

    # -- submitting and nominating --------------------------------------------------------------

    def check_can_submit(self, letter: Contribution, user_id: int) -> None:
        if letter.author_id != user_id:
            raise LetterError("You can only submit your own messages as letters.")
        if letter.deleted_at is not None:
            raise LetterError("That message was deleted.")
        if letter.state in ("submitted", "approved", "published"):
            raise LetterError(f"Letter #{letter.id} is already {STATE_LABELS[letter.state]}: see `/letter mine`.")
        if letter.state in ("rejected", "retracted"):
            raise LetterError(f"Letter #{letter.id} was {STATE_LABELS[letter.state]}; it can't be submitted again.")

    async def submit(
        self,
        letter_id: int,
        *,
        user_id: int,
        byline: str,
        location: str | None,
        consent: bool,
        author_created_at: datetime | None,
        rate_limited: bool = True,
        guild_id: int | None = None,
    ) -> Contribution:
        """The writer agrees to publication under `byline`: the letter goes to the review queue.

        `guild_id`: the server the form came from (None in a DM); another server's letter is refused as missing.
        """
        byline, location = publication_terms(byline, location, consent)
        letter = await self.repo.get(letter_id)
        if letter is None or (guild_id is not None and letter.guild_id != guild_id):
            raise LetterError("That letter no longer exists.")
        self.check_can_submit(letter, user_id)
        if rate_limited:
            await self.check_rate(letter.guild_id, user_id)
        if len(letter.content) > 4000:
            raise LetterError("Letters can be at most 4,000 characters.")
        flags = await self.screen(letter, author_created_at)
        new_account = self.is_new_account(author_created_at)
        async with self.store.db.transaction() as conn:
            if rate_limited:  # an editor's nomination is not the member's own submission
                await self._check_limits(conn, letter.guild_id, user_id, new_account=new_account)
            await self._mark_submitted(
                conn, letter, user_id, byline=byline, location=location, flags=flags, new_account=new_account
            )
        submitted = await self.repo.get(letter.id)
        assert submitted is not None
        return submitted

    async def _mark_submitted(
        self,
        conn: aiosqlite.Connection,
        letter: Contribution,
        user_id: int,
        *,
        byline: str,
        location: str | None,
        flags: list[str],
        new_account: bool = False,
    ) -> None:
        """Inside a transaction: the letter goes to the review queue (compare-and-set on its version)."""
        ok = await self.repo.update_if_version(
            conn,
            letter.id,
            letter.version,
            {
                "state": "submitted",
                "consent": "granted",
                "byline": byline,
                "location": location,
                "flags": flags,
                "submitted_at": self.clock.now(),
                "review_note": None,
                "new_account": int(new_account),
            },
        )
        if not ok:
            current = await self.repo.get_in(conn, letter.id)
            assert current is not None
            raise Conflict("Your letter changed while you were submitting it; please try again.", current)
        await self.store.audit.record(
            "letter.submit", guild_id=letter.guild_id, actor_id=user_id, entity=letter.entity, conn=conn
        )

    async def write_letter(
        self,
        *,
        guild_id: int,
        channel_id: int,
        author_id: int,
        author_name: str,
        article_id: int | None,
        text: str,
        byline: str,
        location: str | None,
        consent: bool,
        author_created_at: datetime | None,
    ) -> Contribution:
        """`/letter submit`: a letter written for the page, not a recorded reply.

        Everything is checked before anything is stored, and the letter is recorded and submitted in
        one transaction: a refusal leaves no half-made row behind.
        """
        byline, location = publication_terms(byline, location, consent)
        text = text.strip()
        if not text:
            raise LetterError("Your letter is empty.")
        if len(text) > 4000:
            raise LetterError("Letters can be at most 4,000 characters.")
        await self.check_rate(guild_id, author_id)
        flags = await self._screen(guild_id, text, 0, author_created_at)
        new = NewContribution(
            guild_id=guild_id,
            message_id=None,
            channel_id=channel_id,
            author_id=author_id,
            author_name=author_name,
            content=text,
            created_at=self.clock.now(),
            article_id=article_id,
        )
        new_account = self.is_new_account(author_created_at)
        async with self.store.db.transaction() as conn:
            await self._check_limits(conn, guild_id, author_id, new_account=new_account)
            letter_id = await self.repo.insert_letter(conn, new)
            recorded = await self.repo.get_in(conn, letter_id)
            assert recorded is not None
            await self._mark_submitted(
                conn, recorded, author_id, byline=byline, location=location, flags=flags, new_account=new_account
            )
        return await self._load(letter_id)

    async def nominate(self, letter: Contribution, editor_id: int) -> Contribution:
        """An editor would like to publish a reply: ask its writer (state nominated)."""
        if letter.consent == "declined" or letter.state == "declined":
            raise LetterError(
                f"{letter.author_name} declined when asked about this reply; we don't ask the same person twice."
            )
        if letter.deleted_at is not None:
            raise LetterError("That message was deleted.")
        if letter.state == "nominated":
            raise LetterError(f"{letter.author_name} has already been asked; waiting for their answer.")
        if letter.state != "recorded":
            raise LetterError(f"Letter #{letter.id} is already {STATE_LABELS.get(letter.state, letter.state)}.")
        async with self.store.db.transaction() as conn:
            ok = await self.repo.update_if_version(
                conn, letter.id, letter.version, {"state": "nominated", "reviewer_id": editor_id}
            )
            if not ok:
                current = await self.repo.get_in(conn, letter.id)
                assert current is not None
                raise Conflict(conflict_text(current), current)
            await self.store.audit.record(
                "letter.nominate", guild_id=letter.guild_id, actor_id=editor_id, entity=letter.entity, conn=conn
            )
        nominated = await self.repo.get(letter.id)
        assert nominated is not None
        return nominated

    async def unnominate(self, letter: Contribution, editor_id: int) -> Contribution:
        """The writer could not be asked anywhere: the reply goes back to recorded (it may be nominated again)."""
        async with self.store.db.transaction() as conn:
            ok = await self.repo.update_if_version(
                conn, letter.id, letter.version, {"state": "recorded", "reviewer_id": None}
            )
            if ok:
                await self.store.audit.record(
                    "letter.unnominate", guild_id=letter.guild_id, actor_id=editor_id, entity=letter.entity, conn=conn
                )
        return await self._load(letter.id)

    async def consent_target(self, letter_id: int, user_id: int, *, guild_id: int | None = None) -> Contribution:
        """The nominated letter the writer is answering about (refuses anyone else, and other servers' letters)."""
        letter = await self.repo.get(letter_id)
        if letter is None or (guild_id is not None and letter.guild_id != guild_id):
            raise LetterError("That reply no longer exists.")
        if letter.author_id != user_id:
            raise LetterError("Only the writer of this reply can answer this request.")
        if letter.state != "nominated":
            raise LetterError(f"Already answered: this reply is {STATE_LABELS.get(letter.state, letter.state)}.")
        return letter

    async def decline(self, letter_id: int, user_id: int, *, guild_id: int | None = None) -> Contribution:
        letter = await self.consent_target(letter_id, user_id, guild_id=guild_id)
        async with self.store.db.transaction() as conn:
            ok = await self.repo.update_if_version(
                conn, letter.id, letter.version, {"state": "declined", "consent": "declined"}
            )
            if not ok:
                raise LetterError("This request changed while you answered; please try again.")
            await self.store.audit.record(
                "letter.decline", guild_id=letter.guild_id, actor_id=user_id, entity=letter.entity, conn=conn
            )
            if letter.reviewer_id:
                # The editor who nominated it hears the answer (a durable notice, like the others).
                await self.store.notices.queue(conn, letter.id, "declined", ("editor",))
        declined = await self.repo.get(letter.id)
        assert declined is not None
        return declined

    # -- review ---------------------------------------------------------------------------------

    async def _load(self, letter_id: int, guild_id: int | None = None) -> Contribution:
        """The letter; with `guild_id`, only if it belongs to that server (another's is as if missing)."""
        letter = await self.repo.get(letter_id)
        if letter is None or (guild_id is not None and letter.guild_id != guild_id):
            raise LetterError(f"Letter #{letter_id} no longer exists (its writer may have deleted it).")
        return letter

    async def letter_in(self, letter_id: int, guild_id: int) -> Contribution:
        """The letter an editor of `guild_id` is acting on; another server's letter is refused as missing."""
        return await self._load(letter_id, guild_id)

    async def approve(
        self,
        letter_id: int,
        editor_id: int,
        version: int,
        *,
        guild_id: int | None = None,
        display_names: Mapping[int, str] | None = None,
        role_names: Mapping[int, str] | None = None,
        channel_names: Mapping[int, str] | None = None,
    ) -> Contribution:
        """Approve the `version` the editor read and enqueue publication, in one transaction.

        A concurrent decision, or an edit since that version, raises Conflict.
        """
        letter = await self._load(letter_id, guild_id)
        if letter.state != "submitted" or letter.version != version:
            raise Conflict(conflict_text(letter), letter)
        now = self.clock.now()
        approved = replace(letter, state="approved", reviewer_id=editor_id, decided_at=now, version=letter.version + 1)
        site_letter = await self.site_letter(
            approved, display_names, role_names=role_names, channel_names=channel_names
        )
        item = compose_letter(site_letter, disclaimer=self.disclaimer)
        await self._decide(
            letter,
            editor_id,
            {"state": "approved", "reviewer_id": editor_id, "decided_at": now},
            action="letter.approve",
            outbox=("create", item),
        )
        return await self._load(letter_id)

    async def edit(
        self,
        letter_id: int,
        editor_id: int,
        version: int,
        text: str,
        *,
        guild_id: int | None = None,
        display_names: Mapping[int, str] | None = None,
        role_names: Mapping[int, str] | None = None,
        channel_names: Mapping[int, str] | None = None,
    ) -> Contribution:
        """Light editing: the writer's original is kept; a letter already on the site is updated there."""
        letter = await self._load(letter_id, guild_id)
        text = text.strip()
        if not text:
            raise LetterError("A letter can't be empty; reject it instead.")
        if len(text) > 4000:
            raise LetterError("Letters can be at most 4,000 characters.")
        if letter.version != version:
            raise Conflict(conflict_text(letter), letter)
        if letter.state not in ("submitted", *LIVE_STATES):
            raise Conflict(conflict_text(letter), letter)
        fields: dict[str, Any] = {"content": text}
        if letter.original_content is None:
            fields["original_content"] = letter.content
        outbox = None
        if letter.state in LIVE_STATES:
            edited = replace(letter, content=text, version=letter.version + 1)
            site_letter = await self.site_letter(
                edited, display_names, role_names=role_names, channel_names=channel_names
            )
            item = compose_letter(site_letter, disclaimer=self.disclaimer)
            outbox = ("update", item)
        await self._decide(letter, editor_id, fields, action="letter.edit", outbox=outbox)
        return await self._load(letter_id)

    async def reject(
        self, letter_id: int, editor_id: int, version: int | None, reason: str | None, *, guild_id: int | None = None
    ) -> Contribution:
        letter = await self._load(letter_id, guild_id)
        if letter.state != "submitted" or (version is not None and letter.version != version):
            raise Conflict(conflict_text(letter), letter)
        reason = (reason or "").strip()[:1000] or None
        fields = {"state": "rejected", "reviewer_id": editor_id, "decided_at": self.clock.now(), "review_note": reason}
        await self._decide(letter, editor_id, fields, action="letter.reject")
        return await self._load(letter_id)

    async def withdraw(
        self, letter_id: int, actor_id: int, *, by_editor: bool, guild_id: int | None = None
    ) -> Contribution:
        """The writer withdraws (or an editor retracts) a letter; a site copy is retracted via the outbox.

        Its publication, if not sent yet, is cancelled instead (see `_decide`).
        """
        letter, _retracting = await self.withdraw_letter(letter_id, actor_id, by_editor=by_editor, guild_id=guild_id)
        return letter

    async def withdraw_letter(
        self, letter_id: int, actor_id: int, *, by_editor: bool, guild_id: int | None = None
    ) -> tuple[Contribution, bool]:
        """`withdraw`, also saying whether a retract was queued (the letter is, or may be, on the site).

        False: nothing of it was ever sent to the site (its publication, if any, was cancelled).
        """
        letter = await self._load(letter_id, guild_id)
        if not by_editor and letter.author_id != actor_id:
            raise LetterError("You can only withdraw your own letters.")
        allowed = ("approved", "published") if by_editor else ("submitted", "nominated", "approved", "published")
        if letter.state not in allowed:
            if by_editor:
                raise Conflict(conflict_text(letter), letter)
            raise LetterError(
                f"Letter #{letter.id} is {STATE_LABELS.get(letter.state, letter.state)}: nothing to withdraw."
            )
        state = "retracted" if by_editor else "withdrawn"
        fields: dict[str, Any] = {"state": state, "decided_at": self.clock.now()}
        if by_editor:
            fields["reviewer_id"] = actor_id
        outbox = None
        if letter.state in LIVE_STATES:
            item = compose_letter(await self.site_letter(letter), disclaimer=self.disclaimer)
            outbox = ("retract", item)
        retracting = await self._decide(
            letter,
            actor_id,
            fields,
            action="letter.retract" if by_editor else "letter.withdraw",
            outbox=outbox,
        )
        return await self._load(letter_id), retracting

    async def _decide(
        self,
        letter: Contribution,
        actor_id: int,
        fields: dict[str, Any],
        *,
        action: str,
        outbox: tuple[str, Any] | None = None,
    ) -> bool:
        """Apply the decision; True if an outbox row was queued (for a retract: the letter may be on the site)."""
        queued = False
        async with self.store.db.transaction() as conn:
            ok = await self.repo.update_if_version(conn, letter.id, letter.version, fields)
            if not ok:
                current = await self.repo.get_in(conn, letter.id)
                if current is None:
                    raise LetterError(f"Letter #{letter.id} no longer exists.")
                raise Conflict(conflict_text(current), current)
            if outbox is not None:
                verb, item = outbox
                # Delivery is ordered per entity, so a retract queued behind an unsent create would
                # publish the letter first: cancel what was never sent, retract only what may be there.
                if verb != "retract" or await self.store.outbox.cancel_undelivered(conn, item.entity):
                    await self.store.outbox.enqueue_item(
                        conn, verb, item, revision=letter.version + 1, guild_id=letter.guild_id
                    )
                    queued = True
            await self.store.audit.record(
                action,
                guild_id=letter.guild_id,
                actor_id=actor_id,
                entity=letter.entity,
                detail={"from": letter.state, "version": letter.version + 1},
                conn=conn,
            )
        return queued

    # -- reads for the Discord side (cogs ask the service, never the repository) ----------------

    async def letter(self, letter_id: int) -> Contribution | None:
        return await self.repo.get(letter_id)

    async def in_state(self, state: str) -> list[Contribution]:
        return await self.repo.in_state(state)

    async def unposted_queue(self, guild_id: int) -> list[Contribution]:
        """Submitted letters with no card in the review channel yet."""
        return await self.repo.unposted_queue(guild_id)

    async def article_for_thread(self, thread_id: int) -> int | None:
        return await self.repo.article_for_thread(thread_id)

    async def article_in(self, article_id: int, guild_id: int) -> ArticleRef | None:
        """The article, only if one of this server's feeds posted it."""
        return await self.repo.article(article_id, guild_id=guild_id)

    async def recent_articles(self, guild_id: int, query: str = "", *, limit: int = 25) -> list[ArticleRef]:
        return await self.repo.recent_articles(guild_id, query, limit=limit)

    async def letters_of(self, guild_id: int, user_id: int, *, limit: int = 25) -> list[Contribution]:
        return await self.repo.by_author(guild_id, user_id, limit=limit)

    async def counts_of(self, guild_id: int, user_id: int) -> dict[str, int]:
        return await self.repo.count_by_author(guild_id, user_id)

    # -- privacy --------------------------------------------------------------------------------

    async def mine(self, guild_id: int, user_id: int) -> tuple[list[Contribution], dict[str, int]]:
        return await self.letters_of(guild_id, user_id), await self.counts_of(guild_id, user_id)

    async def forget(self, guild_id: int, user_id: int) -> list[Contribution]:
        deleted = await self.repo.forget(guild_id, user_id)
        if deleted:
            await self.store.audit.record(
                "letters.forget", guild_id=guild_id, actor_id=user_id, detail={"deleted": len(deleted)}
            )
        return deleted

    async def purge_expired(self) -> int:
        before = self.clock.now() - timedelta(days=self.settings.retention_days)
        return await self.repo.purge_recorded(before)
