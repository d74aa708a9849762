"""Statement sign-ons: the rules, with no Discord in sight.

- A statement is created as a draft, posted by the cog, then published: status open and the site
  create enqueued in one transaction.
- Sign-ons go through `SignatureWriter`: each submit waits for its commit, so an answer "signed"
  always means "on disk". With nothing queued it commits at once on a connection used in the event
  loop's thread (`LoopConnection`: no hop to aiosqlite's thread, which costs more than the write);
  otherwise it joins a group commit, one transaction per batch (aiosqlite manages ~4.5k commits/s).
- A click on Sign reads the statement, the block list and the account's live signature through
  `SignContextReader`: directly on that connection (WAL readers never wait), else as a group read
  where clicks that arrive while a read is in flight share the next hop to the DB thread.
- The site copy is refreshed at most every `site_update_minutes`: a signature only marks the
  statement `site_dirty`; `flush_site_updates` (run by the cog's timer) composes the public list
  from the DB and enqueues one update with key `statement:<id>:update:<revision>`. Closing enqueues
  a final update at once. The outbox stores the composed item as its payload (the worker has no
  hook to rebuild it at delivery), so the payload is built inside the transaction that enqueues it.
- Deadlines are DB-driven: `next_timer_at` tells the cog's timer when to wake; `close_due`
  closes what is due (also after a restart).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from bot.clock import Clock, to_db
from bot.logs import ids
from bot.signing import LoopConnection, SignatureWriter, SignContextReader
from bot.site.compose import Signatory, Statement, compose_statement, slugify
from bot.statement_export import build_export
from bot.statement_rules import (
    BODY_MAX,
    NAME_MAX,
    ORGANIZATION_MAX,
    PLACE_MAX,
    ROLE_MAX,
    SLUG_MAX,
    TITLE_MAX,
    SeveralSignatures,
    SignRequest,
    Snapshot,
    StatementError,
    bold_title,
    clean_text,
    in_guild,
    screening_flags,
    with_read_flags,
)
from bot.store.statement_rows import (
    ORGANIZATIONS_PER_MEMBER,
    Counts,
    SignatureInput,
    SignatureRow,
    SignKind,
    SignOutcome,
    StatementRow,
)

if TYPE_CHECKING:
    from bot.store import Store

log = logging.getLogger(__name__)


class StatementService:
    def __init__(
        self,
        store: Store,
        clock: Clock,
        *,
        site_update_minutes: int = 10,
        on_enqueued: Callable[[], None] | None = None,
        on_changed: Callable[[int], None] | None = None,
        on_schedule: Callable[[], None] | None = None,
        max_batch: int = 500,
        served_guilds: frozenset[int] | None = None,
    ) -> None:
        self.store = store
        # With discord.allowed_guild_ids set, deadlines of other servers' statements are not acted on.
        self.served_guilds = served_guilds
        self.repo = store.statements
        self.clock = clock
        self.site_update_interval = timedelta(minutes=site_update_minutes)
        self._on_enqueued = on_enqueued or (lambda: None)
        # Called with a statement id when its Discord message or timers need a look.
        self._on_changed = on_changed or (lambda _id: None)
        # Called when a deadline or an owed site update may have moved (the timer recomputes).
        self._on_schedule = on_schedule or (lambda: None)
        self.direct = LoopConnection(self.repo.db)
        self.writer = SignatureWriter(self.repo, max_batch=max_batch, direct=self.direct)
        self.reader = SignContextReader(self.repo, direct=self.direct)

    # -- lifecycle of a statement ---------------------------------------------------------------

    async def create_draft(
        self,
        *,
        guild_id: int,
        organizer_id: int,
        title: str,
        body: str,
        channel_id: int,
        closes_at: datetime | None,
        allow_organizations: bool = True,
        public_by_default: bool = True,
        slug: str | None = None,
    ) -> StatementRow:
        """Store a statement not yet visible anywhere; `publish` once its message is posted."""
        clean_title = clean_text(title, limit=TITLE_MAX, what="a title", required=True)
        assert clean_title is not None
        clean_body = (body or "").strip()
        if not clean_body:
            raise StatementError("Please give the statement's text.")
        if len(clean_body) > BODY_MAX:
            raise StatementError(f"The text can be at most {BODY_MAX} characters (it has {len(clean_body)}).")
        if closes_at is not None and closes_at <= self.clock.now():
            raise StatementError("The deadline is already past; choose a later one.")
        wanted = slugify(slug or clean_title, SLUG_MAX) or "statement"
        if slug is not None and slugify(slug, SLUG_MAX) != slug:
            raise StatementError(f"Slugs are lowercase ASCII letters, digits and hyphens, e.g. `{wanted}`.")
        async with self.repo.db.transaction() as conn:
            taken = await self.repo.slugs_like(conn, guild_id, wanted)
            if slug is not None and slug in taken:
                raise StatementError(f"The slug `{slug}` is already used in this server; choose another.")
            final, n = wanted, 2
            while final in taken:
                final, n = f"{wanted[: SLUG_MAX - 4]}-{n}", n + 1
            statement_id = await self.repo.insert_draft(
                conn,
                guild_id=guild_id,
                slug=final,
                title=clean_title,
                body=clean_body,
                organizer_id=organizer_id,
                channel_id=channel_id,
                closes_at=closes_at,
                allow_organizations=allow_organizations,
                public_by_default=public_by_default,
            )
            statement = await self.repo.get(statement_id, conn)
        assert statement is not None
        return statement

    async def publish(self, statement_id: int, *, channel_id: int, message_id: int, actor_id: int) -> StatementRow:
        """The statement's message is posted: open it and enqueue the site create, together."""
        now = self.clock.now()
        async with self.repo.db.transaction() as conn:
            await self.repo.update_fields(
                conn, statement_id, status="open", channel_id=channel_id, message_id=message_id, site_synced_at=now
            )
            statement = await self.repo.get(statement_id, conn)
            assert statement is not None
            item = compose_statement(_site_statement(statement, []))
            await self.store.outbox.enqueue_item(conn, "create", item, revision=1)
            await self.store.audit.record(
                "statement.create",
                guild_id=statement.guild_id,
                actor_id=actor_id,
                entity=statement.entity,
                detail={"slug": statement.slug, "closes_at": to_db(statement.closes_at)},
                conn=conn,
            )
        self._on_enqueued()
        self._on_changed(statement_id)
        self._on_schedule()
        return statement

    async def reposted(self, statement_id: int, *, channel_id: int, message_id: int, actor_id: int) -> StatementRow:
        """The statement's message was posted again (the old one was deleted): record where it is now.

        The message is marked for a refresh too, so a signature made while it was being posted shows."""
        async with self.repo.db.transaction() as conn:
            before = await self.repo.get(statement_id, conn)
            if before is None or before.status == "draft":
                raise StatementError("That statement no longer exists.")
            await self.repo.update_fields(
                conn, statement_id, channel_id=channel_id, message_id=message_id, message_changed=True
            )
            await self.store.audit.record(
                "statement.repost",
                guild_id=before.guild_id,
                actor_id=actor_id,
                entity=before.entity,
                detail={
                    "old_channel_id": before.channel_id,
                    "old_message_id": before.message_id,
                    "channel_id": channel_id,
                    "message_id": message_id,
                },
                conn=conn,
            )
            statement = await self.repo.get(statement_id, conn)
        assert statement is not None
        self._on_changed(statement_id)
        return statement

    async def discard_draft(self, statement_id: int) -> bool:
        """Drop an unpublished statement; False if it is no longer a draft."""
        return await self.repo.delete_draft(statement_id)

    async def get(self, statement_id: int, *, guild_id: int | None = None) -> StatementRow:
        """The statement; with `guild_id`, only if it belongs to that server (another's is as if missing)."""
        statement = await self.repo.get(statement_id)
        if statement is None or statement.status == "draft" or not in_guild(statement, guild_id):
            raise StatementError("That statement no longer exists.")
        return statement

    async def find(self, guild_id: int, slug: str) -> StatementRow:
        """The statement a command names (by slug, as autocomplete fills it in)."""
        statement = await self.repo.by_slug(guild_id, slug.strip())
        if statement is None or statement.status == "draft":
            matches = await self.repo.search(guild_id, slug.strip(), limit=2)
            if len(matches) == 1:
                return matches[0]
            raise StatementError(f"No statement `{slug}` in this server: pick one from the list as you type.")
        return statement

    async def edit(
        self, statement_id: int, *, actor_id: int, title: str | None, body: str, guild_id: int | None = None
    ) -> StatementRow:
        statement = await self.get(statement_id, guild_id=guild_id)
        clean_title = clean_text(title, limit=TITLE_MAX, what="a title") or statement.title
        clean_body = (body or "").strip()
        if not clean_body:
            raise StatementError("Please give the statement's text.")
        if len(clean_body) > BODY_MAX:
            raise StatementError(f"The text can be at most {BODY_MAX} characters (it has {len(clean_body)}).")
        async with self.repo.db.transaction() as conn:
            await self.repo.update_fields(
                conn, statement_id, title=clean_title, body=clean_body, message_changed=True, site_dirty=1
            )
            await self.store.audit.record(
                "statement.edit",
                guild_id=statement.guild_id,
                actor_id=actor_id,
                entity=statement.entity,
                detail={"old_title": statement.title, "old_body": statement.body},
                conn=conn,
            )
            updated = await self.repo.get(statement_id, conn)
        assert updated is not None
        self._on_changed(statement_id)
        self._on_schedule()
        return updated

    async def close(self, statement_id: int, *, actor_id: int | None, reason: str = "organizer") -> StatementRow | None:
        """Close (None if it was not open); the final site update is enqueued at once."""
        now = self.clock.now()
        async with self.repo.db.transaction() as conn:
            statement = await self.repo.get(statement_id, conn)
            if statement is None or statement.status != "open":
                return None
            await self.repo.update_fields(
                conn, statement_id, status="closed", closed_at=now, message_changed=True, close_announced=0
            )
            closed = await self.repo.get(statement_id, conn)
            assert closed is not None
            await self._enqueue_site_update(conn, closed)
            await self.store.audit.record(
                "statement.close",
                guild_id=statement.guild_id,
                actor_id=actor_id,
                entity=statement.entity,
                detail={"reason": reason},
                conn=conn,
            )
        self._on_enqueued()
        self._on_changed(statement_id)
        log.info(
            "statement %s (%s) closed (%s)",
            statement_id,
            closed.slug,
            reason,
            extra=ids(guild_id=closed.guild_id, statement_id=statement_id),
        )
        return closed

    async def reopen(
        self, statement_id: int, *, actor_id: int, closes_at: datetime | None
    ) -> tuple[StatementRow, bool]:
        """Open again; returns (statement, whether a past deadline was removed)."""
        statement = await self.get(statement_id)
        if statement.status == "open" and statement.accepting(self.clock.now()):
            raise StatementError(f"{bold_title(statement)} is already open.")
        dropped = False
        if closes_at is None and statement.closes_at is not None and statement.closes_at <= self.clock.now():
            dropped = True
        new_deadline = closes_at if closes_at is not None else (None if dropped else statement.closes_at)
        async with self.repo.db.transaction() as conn:
            await self.repo.update_fields(
                conn,
                statement_id,
                status="open",
                closed_at=None,
                closes_at=new_deadline,
                message_changed=True,
                site_dirty=1,
                close_announced=0,
            )
            await self.store.audit.record(
                "statement.reopen",
                guild_id=statement.guild_id,
                actor_id=actor_id,
                entity=statement.entity,
                detail={"closes_at": to_db(new_deadline)},
                conn=conn,
            )
            reopened = await self.repo.get(statement_id, conn)
        assert reopened is not None
        self._on_changed(statement_id)
        self._on_schedule()
        return reopened, dropped

    # -- signing --------------------------------------------------------------------------------

    async def prepare_sign(
        self, statement_id: int, user_id: int, kind: SignKind, *, guild_id: int | None = None
    ) -> tuple[StatementRow, SignatureRow | None]:
        """Before showing the form: refuse early what the submit would refuse anyway, and the account's
        live personal signature, in one group read (the click on Sign)."""
        statement, blocked, current = await self.reader.get(statement_id, user_id)
        if statement is None or statement.status == "draft" or not in_guild(statement, guild_id):
            raise StatementError("That statement no longer exists.")
        self._refuse(SignOutcome("closed", statement) if not statement.accepting(self.clock.now()) else None)
        if blocked:
            self._refuse(SignOutcome("blocked", statement))
        if kind == "organization" and not statement.allow_organizations:
            self._refuse(SignOutcome("no_organizations", statement))
        return statement, current

    def validate(self, request: SignRequest) -> SignatureInput:
        name = clean_text(request.name, limit=NAME_MAX, what="your name", required=True)
        assert name is not None
        organization = clean_text(
            request.organization,
            limit=ORGANIZATION_MAX,
            what="the organization's name",
            required=request.kind == "organization",
        )
        return SignatureInput(
            statement_id=request.statement_id,
            user_id=request.user_id,
            kind=request.kind,
            name=name,
            organization=organization,
            role=clean_text(request.role, limit=ROLE_MAX, what="the role"),
            city=clean_text(request.city, limit=PLACE_MAX, what="the city"),
            country=clean_text(request.country, limit=PLACE_MAX, what="the country"),
            public=request.public,
            flags=screening_flags(name, organization, request.account_created_at, self.clock.now()),
            guild_id=request.guild_id,
            replaces=request.replaces if request.kind == "organization" else None,
        )

    async def sign(self, request: SignRequest) -> SignOutcome:
        """Record (or update) a signature; raises StatementError with the reason when refused."""
        outcome = await self.writer.write(self.validate(request))
        self._refuse(outcome)
        self._on_changed(request.statement_id)
        if outcome.became_dirty:
            self._on_schedule()
        return outcome

    @staticmethod
    def _refuse(outcome: SignOutcome | None) -> None:
        if outcome is None or outcome.status in ("created", "updated"):
            return
        title = bold_title(outcome.statement) if outcome.statement else "This statement"
        if outcome.status == "missing":
            raise StatementError("That statement no longer exists.")
        if outcome.status == "closed":
            raise StatementError(f"{title} is closed: it no longer takes signatures.")
        if outcome.status == "blocked":
            raise StatementError(f"You can't sign {title}: the organizers have blocked your account from it.")
        if outcome.status == "too_many":
            raise StatementError(
                f"You have signed {title} for {ORGANIZATIONS_PER_MEMBER} organizations, the most one account may; "
                "withdraw one to sign for another. Nothing was changed."
            )
        if outcome.status == "taken":
            raise StatementError(
                f"You have already signed {title} for an organization of that name: change that signature "
                "instead (Sign for an organization). Nothing was changed."
            )
        if outcome.status == "gone":
            raise StatementError(
                "The signature this form was changing has been withdrawn meanwhile; nothing was changed. "
                "Use Sign for an organization to sign again."
            )
        raise StatementError(f"{title} takes signatures from individuals only, not on behalf of organizations.")

    async def withdraw(
        self, statement_id: int, user_id: int, signature_id: int | None = None, *, guild_id: int | None = None
    ) -> SignatureRow | None:
        """Withdraw one of the account's live signatures (None if it has none); refused once the statement closed.

        Without `signature_id`, an account with several live signatures (personal and for organizations)
        gets `SeveralSignatures` listing them, and nothing changes. `guild_id`: the server asking; a
        statement of any other server is answered as missing."""
        now = self.clock.now()
        async with self.repo.db.transaction() as conn:
            # Checked in the transaction, as sign_batch does: a close or the deadline cannot slip in between.
            statement = await self.repo.get(statement_id, conn)
            if statement is None or statement.status == "draft" or not in_guild(statement, guild_id):
                raise StatementError("That statement no longer exists.")
            if not statement.accepting(now):
                raise StatementError(f"{bold_title(statement)} is closed: its list of signatures is final.")
            if signature_id is None:
                mine = await self.repo.live_signatures_of(statement_id, user_id, conn)
                if len(mine) > 1:
                    raise SeveralSignatures(mine)
            withdrawn = await self.repo.withdraw(conn, statement_id, user_id, signature_id)
            if withdrawn is not None:
                await self.repo.update_fields(conn, statement_id, message_changed=True, site_dirty=1)
        if withdrawn is not None:
            self._on_changed(statement_id)
            self._on_schedule()
        return withdrawn

    async def my_signatures(self, statement_id: int, user_id: int) -> list[SignatureRow]:
        """All the account's live signatures: personal first, then organizations in signing order."""
        return await self.repo.live_signatures_of(statement_id, user_id)

    # -- moderation -----------------------------------------------------------------------------

    async def hide(self, statement_id: int, signature_id: int, *, actor_id: int, hidden: bool = True) -> SignatureRow:
        statement = await self.get(statement_id)
        signature = await self.repo.signature(signature_id)
        if signature is None or signature.statement_id != statement_id:
            raise StatementError(
                f"No signature #{signature_id} on {bold_title(statement)} (see `/statement signatures`)."
            )
        async with self.repo.db.transaction() as conn:
            changed = await self.repo.set_hidden(conn, signature_id, actor_id, hidden)
            await self.repo.update_fields(conn, statement_id, message_changed=True, site_dirty=1)
            await self.store.audit.record(
                "statement.signature.hide" if hidden else "statement.signature.unhide",
                guild_id=statement.guild_id,
                actor_id=actor_id,
                entity=statement.entity,
                detail={"signature_id": signature_id, "user_id": signature.user_id, "name": signature.name},
                conn=conn,
            )
        assert changed is not None
        self._on_changed(statement_id)
        self._on_schedule()
        return changed

    async def block(self, statement_id: int, user_id: int, *, actor_id: int, blocked: bool = True) -> tuple[bool, int]:
        """Block (and hide the live signature of) an account; returns (changed, signatures hidden)."""
        statement = await self.get(statement_id)
        async with self.repo.db.transaction() as conn:
            changed = await self.repo.set_blocked(conn, statement_id, user_id, actor_id, blocked)
            hidden = await self.repo.hide_live_of_user(conn, statement_id, user_id, actor_id) if blocked else 0
            if hidden:
                await self.repo.update_fields(conn, statement_id, message_changed=True, site_dirty=1)
            await self.store.audit.record(
                "statement.block" if blocked else "statement.unblock",
                guild_id=statement.guild_id,
                actor_id=actor_id,
                entity=statement.entity,
                detail={"user_id": user_id, "signatures_hidden": hidden},
                conn=conn,
            )
        if hidden:
            self._on_changed(statement_id)
            self._on_schedule()
        return changed, hidden

    async def signatures_for_organizers(self, statement_id: int) -> list[SignatureRow]:
        return with_read_flags(await self.repo.live_signatures(statement_id))

    # -- what Discord shows ---------------------------------------------------------------------

    async def snapshot(self, statement_id: int, *, latest: int = 10) -> Snapshot:
        statement = await self.get(statement_id)
        return Snapshot(statement, await self.repo.counts(statement_id, latest=latest))

    async def public_signers(self, statement_id: int) -> list[SignatureRow]:
        return await self.repo.live_signatures(statement_id, public_only=True)

    async def counts(self, statement_id: int, *, latest: int = 0) -> Counts:
        return await self.repo.counts(statement_id, latest=latest)

    async def search(self, guild_id: int, text: str, *, limit: int = 25) -> list[StatementRow]:
        """Published statements of a server whose slug or title contains `text` (autocomplete)."""
        return await self.repo.search(guild_id, text, limit=limit)

    async def current(self, statement_id: int) -> StatementRow | None:
        """The stored row as is (drafts included), for the message refresher."""
        return await self.repo.get(statement_id)

    async def with_message_changes(self) -> list[StatementRow]:
        """Statements whose message does not show their latest changes yet."""
        return await self.repo.with_message_changes()

    async def message_shown(self, statement: StatementRow) -> bool:
        """The message now shows `statement` as read: forget its changes unless more came since."""
        return await self.repo.clear_message_changes(statement.id, statement.message_changes)

    async def stale_drafts(self) -> list[StatementRow]:
        """Drafts left by a crash between posting a statement's message and publishing it (any older
        than an interaction lasts: a create that is still running is not one)."""
        return await self.repo.drafts_before(self.clock.now() - timedelta(minutes=15), self.served_guilds)

    async def closed_unannounced(self) -> list[StatementRow]:
        return await self.repo.closed_unannounced()

    async def mark_announced(self, statement_id: int) -> None:
        await self.repo.mark_announced(statement_id)

    # -- timers: deadlines and site updates -----------------------------------------------------

    async def close_due(self) -> list[StatementRow]:
        """Close every open statement whose deadline has passed."""
        closed = []
        for statement in await self.repo.due_to_close(self.clock.now(), self.served_guilds):
            done = await self.close(statement.id, actor_id=None, reason="deadline")
            if done is not None:
                log.info("statement %s (%s) closed at its deadline", statement.id, statement.slug)
                closed.append(done)
        return closed

    def _site_due_at(self, statement: StatementRow) -> datetime:
        origin = statement.site_synced_at or statement.created_at
        return origin + self.site_update_interval

    async def flush_site_updates(self) -> int:
        """Enqueue a site update for each statement whose copy is stale and whose throttle allows."""
        now = self.clock.now()
        enqueued = 0
        for candidate in await self.repo.site_dirty():
            if self._site_due_at(candidate) > now:
                continue
            async with self.repo.db.transaction() as conn:
                statement = await self.repo.get(candidate.id, conn)
                if statement is None or not statement.site_dirty:
                    continue
                await self._enqueue_site_update(conn, statement)
            enqueued += 1
        if enqueued:
            self._on_enqueued()
        return enqueued

    async def next_timer_at(self) -> datetime | None:
        """The earliest deadline or owed site update (None: nothing scheduled)."""
        moments = [moment for moment in [await self.repo.next_close_at(self.served_guilds)] if moment is not None]
        moments += [self._site_due_at(s) for s in await self.repo.site_dirty()]
        return min(moments, default=None)

    async def _enqueue_site_update(self, conn: Any, statement: StatementRow) -> None:
        live = await self.repo.live_signatures(statement.id, conn=conn)
        counted = [s for s in live if s.hidden_at is None]
        signers = [s for s in counted if s.public]
        item = compose_statement(_site_statement(statement, signers, total=len(counted)))
        revision = statement.site_revision + 1
        await self.store.outbox.enqueue_item(conn, "update", item, revision=revision)
        await self.repo.update_fields(
            conn, statement.id, site_revision=revision, site_dirty=0, site_synced_at=self.clock.now()
        )

    # -- export ---------------------------------------------------------------------------------

    async def export(
        self,
        statement: StatementRow,
        *,
        fmt: Literal["csv", "json"],
        include_discord_ids: bool,
        bom: bool = False,
        actor_id: int | None = None,
    ) -> bytes:
        data = await build_export(self.repo, statement, fmt=fmt, include_discord_ids=include_discord_ids, bom=bom)
        await self.store.audit.record(
            "statement.export",
            guild_id=statement.guild_id,
            actor_id=actor_id,
            entity=statement.entity,
            detail={"format": fmt, "organizer_columns": include_discord_ids},
        )
        return data

    async def aclose(self) -> None:
        await self.writer.drain()
        self.direct.close()


def _site_statement(statement: StatementRow, signers: Sequence[SignatureRow], *, total: int = 0) -> Statement:
    """The site's copy: `signers` the public list, `total` every counted signature (private ones too)."""
    return Statement(
        id=statement.id,
        title=statement.title,
        body=statement.body,
        slug=statement.slug,
        closes_at=statement.closes_at,
        status="closed" if statement.status == "closed" else "open",
        signature_count=max(total, len(signers)),
        closed_at=statement.closed_at if statement.status == "closed" else None,
        signatories=[
            Signatory(
                name=s.name, role=s.role, organization=s.organization, city=s.city, country=s.country, kind=s.kind
            )
            for s in signers
        ],
    )
