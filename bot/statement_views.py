"""Discord side of statements: the statement message (embed, persistent buttons), private answers' buttons, forms."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol, cast

import discord

from bot.checks import member_can_post
from bot.errors import answers_errors
from bot.forms import stateless
from bot.render import inert_text
from bot.signing import server_of
from bot.statement_rules import (
    BODY_MAX,
    NAME_MAX,
    ORGANIZATION_MAX,
    ROLE_MAX,
    Snapshot,
    StatementError,
)
from bot.store.statement_rows import ORGANIZATIONS_PER_MEMBER, Counts, SignatureRow, SignKind, SignOutcome, StatementRow

if TYPE_CHECKING:
    from bot.statements import StatementService

log = logging.getLogger(__name__)

LATEST_SHOWN = 10
LATEST_NAME = "Latest signers"
FIELD_VALUE_MAX = 1024  # Discord's limits: one embed field's value, and a whole embed
EMBED_MAX = 6000
NONE = discord.AllowedMentions.none()
MODAL_TITLE_MAX = 45


# -- rendering ------------------------------------------------------------------------------------


def inert(text: str | None) -> str:
    """Members' text (names, organizations, titles): literal, and no bare URL or masked link becomes a link."""
    return inert_text(text or "")


def signer_line(s: SignatureRow) -> str:
    """One signer, escaped (names are untrusted: no markdown, no mentions)."""
    if s.kind == "organization":
        line = f"**{inert(s.organization)}**, signed by {inert(s.name)}"
        if s.role:
            line += f" ({inert(s.role)})"
    else:
        details = ", ".join(inert(part) for part in (s.role, s.organization) if part)
        line = inert(s.name) + (f", {details}" if details else "")
    if s.city or s.country:
        line += " — " + ", ".join(inert(part) for part in (s.city, s.country) if part)
    return line


_ESCAPE_PAIR = re.compile(r"\\.", re.S)


def cut_line(line: str, limit: int) -> str:
    """`line` (escaped markdown) in at most `limit` characters: cut with an ellipsis, never inside
    an escape pair (a dangling backslash would escape the ellipsis), bold closed if the cut opened it."""
    if len(line) <= limit:
        return line
    room = limit - 1
    while room > 0:
        cut = line[:room]
        if (len(cut) - len(cut.rstrip("\\"))) % 2:  # an odd run of backslashes ends in half a pair
            cut = cut[:-1]
        closing = "**" if _ESCAPE_PAIR.sub("", cut).count("**") % 2 else ""
        if len(cut) + 1 + len(closing) <= limit:
            return cut + "…" + closing
        room -= len(closing)
    return "…"[:limit]


def latest_lines(signers: Sequence[SignatureRow], room: int) -> list[str]:
    """Bullet lines for the newest public signers in at most `room` characters (lines joined by newlines)."""
    lines: list[str] = []
    size = 0
    for signer in signers:
        line = cut_line("• " + signer_line(signer), room)
        needed = len(line) + (1 if lines else 0)
        if len(line) < 3 or size + needed > room:
            continue  # does not fit next to newer ones; an older, shorter line may
        lines.append(line)
        size += needed
    return lines


def discord_timestamp(moment: datetime) -> str:
    ts = int(moment.timestamp())
    return f"<t:{ts}:f> (<t:{ts}:R>)"


def statement_embed(snapshot: Snapshot, now: datetime) -> discord.Embed:
    statement, counts = snapshot.statement, snapshot.counts
    accepting = statement.accepting(now)
    embed = discord.Embed(
        title=statement.title[:256],
        description=statement.body[:4096],
        colour=discord.Colour.green() if accepting else discord.Colour.dark_grey(),
    )
    total = f"**{counts.signed}**"
    if counts.signed != counts.public:
        total += f" ({counts.public} listed publicly)"
    if counts.organizations:
        total += f"\n{counts.organizations} on behalf of organizations"
    embed.add_field(name="Final count" if not accepting else "Signatures", value=total, inline=True)
    if statement.status == "closed" or not accepting:
        when = statement.closed_at or statement.closes_at
        embed.add_field(name="Closed", value=discord_timestamp(when) if when else "yes", inline=True)
    elif statement.closes_at:
        embed.add_field(name="Closes", value=discord_timestamp(statement.closes_at), inline=True)
    footer = "Sign with the buttons below; your answer is private until you choose to be listed."
    if not accepting:
        footer = "This statement is closed and no longer takes signatures."
    embed.set_footer(text=f"{footer} · {statement.slug}")
    # An empty or over-long field makes Discord refuse the whole edit (400), freezing the message.
    room = min(FIELD_VALUE_MAX, EMBED_MAX - len(embed) - len(LATEST_NAME))
    lines = latest_lines(counts.latest, room) if counts.latest else []
    if lines:
        embed.add_field(name=LATEST_NAME, value="\n".join(lines), inline=False)
    return embed


def statement_view(statement: StatementRow, now: datetime) -> discord.ui.View:
    closed = not statement.accepting(now)
    view = discord.ui.View(timeout=None)
    view.add_item(StatementButton(statement.id, "sign", disabled=closed))
    if statement.allow_organizations:
        view.add_item(StatementButton(statement.id, "sign_org", disabled=closed))
    view.add_item(StatementButton(statement.id, "withdraw", disabled=closed))
    view.add_item(StatementButton(statement.id, "who"))
    return view


def describe_signature(s: SignatureRow | Any, statement: StatementRow) -> str:
    parts = [f"Name: {inert(s.name)}"]
    if s.kind == "organization" or s.organization:
        parts.append(f"Organization: {inert(s.organization)}")
    if s.role:
        parts.append(f"Role: {inert(s.role)}")
    place = ", ".join(inert(p) for p in (s.city, s.country) if p)
    if place:
        parts.append(f"Place: {place}")
    parts.append("Listed publicly: " + ("yes" if s.public else "no (counted, but your name is not shown)"))
    return "\n".join(parts)


def signed_answer(outcome: SignOutcome) -> str:
    """The private answer to a sign-on: which signature was created or changed, and what it says."""
    recorded, statement = outcome.recorded, outcome.statement
    assert recorded is not None and statement is not None
    verb = "Signed" if outcome.status == "created" else "Updated your signature on"
    if recorded.kind == "organization":
        which = f" for **{inert(recorded.organization)}**"
        after = (
            "Use Sign for an organization to change it or to sign for another one; Withdraw removes it. "
            "Your personal signature, if you have one, is unchanged."
        )
    else:
        which = " (your personal signature)"
        after = "Sign again to change it, or use Withdraw to remove it."
    return f"{verb} **{inert(statement.title)}**{which}. Recorded:\n{describe_signature(recorded, statement)}\n{after}"


class StatementHandler(Protocol):
    """Who answers the statement message's buttons (the statements cog, while it is loaded)."""

    async def on_button(self, interaction: discord.Interaction, statement_id: int, action: str) -> None: ...

    async def on_choice(
        self, interaction: discord.Interaction, statement_id: int, action: str, signature_id: int
    ) -> None: ...


def statement_handler(interaction: discord.Interaction) -> StatementHandler:
    handler = cast("StatementHandler | None", interaction.client.get_cog("Statements"))  # type: ignore[attr-defined]
    if handler is None:
        raise StatementError("Statements are not available right now; try again shortly.")
    return handler


_LABELS: dict[str, tuple[str, discord.ButtonStyle]] = {
    "sign": ("Sign", discord.ButtonStyle.success),
    "sign_org": ("Sign for an organization", discord.ButtonStyle.primary),
    "withdraw": ("Withdraw", discord.ButtonStyle.secondary),
    "who": ("Who signed", discord.ButtonStyle.secondary),
}


class StatementButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=r"statements:(?P<action>sign|sign_org|withdraw|who):(?P<sid>\d+)",
):
    """A persistent button: all it knows is its action and the statement id."""

    def __init__(self, statement_id: int, action: str, *, disabled: bool = False) -> None:
        label, style = _LABELS[action]
        super().__init__(
            discord.ui.Button(
                label=label, style=style, custom_id=f"statements:{action}:{statement_id}", disabled=disabled
            )
        )
        self.statement_id = statement_id
        self.action = action

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> StatementButton:
        return cls(int(match["sid"]), match["action"])

    @answers_errors
    async def callback(self, interaction: discord.Interaction) -> None:
        await statement_handler(interaction).on_button(interaction, self.statement_id, self.action)


class SignatureChoiceButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=r"statements:(?P<action>orgedit|orgnew|unsign):(?P<sid>\d+):(?P<sig>\d+)",
):
    """A button on a private "which signature?" answer: change or withdraw one of the member's
    signatures (`sig`, checked against the clicker in the DB), or sign for another organization."""

    def __init__(
        self, statement_id: int, action: str, signature_id: int, *, label: str = "…", disabled: bool = False
    ) -> None:
        style = discord.ButtonStyle.danger if action == "unsign" else discord.ButtonStyle.primary
        super().__init__(
            discord.ui.Button(
                label=_short(label, 80),
                style=style,
                custom_id=f"statements:{action}:{statement_id}:{signature_id}",
                disabled=disabled,
            )
        )
        self.statement_id = statement_id
        self.action = action
        self.signature_id = signature_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> SignatureChoiceButton:
        return cls(int(match["sid"]), match["action"], int(match["sig"]))

    @answers_errors
    async def callback(self, interaction: discord.Interaction) -> None:
        await statement_handler(interaction).on_choice(interaction, self.statement_id, self.action, self.signature_id)


def withdrawn_answer(withdrawn: SignatureRow | None) -> str:
    if withdrawn is None:
        return "You haven't signed this statement, so there is nothing to withdraw."
    if withdrawn.kind == "organization":
        return (
            f"Your signature for {inert(withdrawn.organization)} (as {inert(withdrawn.name)}) was withdrawn. "
            "Your other signatures stay. You can sign again while it is open."
        )
    return f"Your signature as {inert(withdrawn.name)} was withdrawn. You can sign again while it is open."


def organizations_question(statement: StatementRow, mine: Sequence[SignatureRow]) -> str:
    """Asked of a member who signed for organizations already: change one, or sign for another?"""
    full = len(mine) >= ORGANIZATIONS_PER_MEMBER
    # Each name cut (escaped, a name can double in length): five long ones must still fit one message.
    return (
        f"You have signed **{cut_line(inert(statement.title), 200)}** for "
        + ", ".join(f"**{cut_line(inert(s.organization), 150)}**" for s in mine)
        + ". Change one of those signatures, or sign for another organization"
        + (f" (at most {ORGANIZATIONS_PER_MEMBER}: withdraw one first)." if full else ".")
        + " Your personal signature is separate."
    )


def _bounded_list(head: str, lines: Sequence[str], limit: int, more: str) -> str:
    """`head` and as many `lines` as fit in `limit` characters, then `more` with how many were left."""
    shown, size = [head], len(head)
    for index, line in enumerate(lines):
        if size + len(line) + 1 > limit:
            shown.append(more.format(left=len(lines) - index))
            break
        shown.append(line)
        size += len(line) + 1
    return "\n".join(shown)


def who_signed(statement: StatementRow, counts: Counts, signers: Sequence[SignatureRow]) -> str:
    """The Who signed? answer: the counts and the public list, as much of it as one message holds."""
    head = f"**{inert(statement.title)}**: {counts.signed} signature{'s' if counts.signed != 1 else ''}"
    if counts.signed != counts.public:
        head += f", {counts.public} listed publicly"
    if counts.organizations:
        head += f" ({counts.organizations} on behalf of organizations)"
    if not signers:
        return head + "\nNobody is listed publicly yet."
    return _bounded_list(head, ["• " + signer_line(s) for s in signers], 1900, "…and {left} more.")


def organizers_list(statement: StatementRow, rows: Sequence[SignatureRow]) -> str:
    """/statement signatures: live signatures, newest first, with ids, visibility and flags."""
    head = f"**{inert(statement.title)}**: {len(rows)} live signature(s), newest first. Flags are for organizers only."
    lines = []
    for s in rows:
        marks = (["hidden"] if s.hidden_at else []) + ([] if s.public else ["private"]) + list(s.flags)
        lines.append(f"`#{s.id}` <@{s.user_id}> {signer_line(s)}" + (f" — ⚑ {', '.join(marks)}" if marks else ""))
    return _bounded_list(head, lines, 1850, "…and {left} more: use `/statement export` for the full list.")


def signature_label(s: SignatureRow) -> str:
    """How a member's own signature is named on buttons (plain text: labels show no markdown)."""
    if s.kind == "organization":
        return f"for {s.organization}"
    return f"personal ({s.name})"


def choice_view(statement_id: int, buttons: Sequence[tuple[str, int, str, bool]]) -> discord.ui.View:
    """A private answer's buttons, (action, signature id, label, disabled) each; kept out of the view
    store (stopped): clicks reach `SignatureChoiceButton` by its custom_id, state comes from the DB."""
    view = discord.ui.View(timeout=None)
    for action, signature_id, label, disabled in buttons:
        view.add_item(SignatureChoiceButton(statement_id, action, signature_id, label=label, disabled=disabled))
    view.stop()
    return view


def _text_input(custom_id: str, *, max_length: int, required: bool = False, **kwargs: Any) -> discord.ui.TextInput[Any]:
    return discord.ui.TextInput(custom_id=custom_id, max_length=max_length, required=required, **kwargs)


class _FixedModal(discord.ui.Modal):
    """A stopped modal whose payload is built once: a blank sign form is shared by every click."""

    _payload: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        if self._payload is None:
            self._payload = super().to_dict()
        return self._payload


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def sign_form(
    statement: StatementRow, kind: SignKind, current: SignatureRow | None, *, another: bool = False
) -> discord.ui.Modal:
    """The sign-on form; its title says which signature it creates or changes.

    Personal: "Sign the statement" or "Change your personal signature". Organization: "Sign for an
    organization" (or "another organization"), or, naming one of the member's organization
    signatures (`current`), "Change: <organization>"; that form's custom_id carries the signature id.
    """
    custom_id = f"statements:signform:{statement.id}:{kind}"
    if kind == "organization" and current is not None:
        custom_id += f":{current.id}"
        title = _short(f"Change: {current.organization or 'organization'}", MODAL_TITLE_MAX)
    elif kind == "organization":
        title = "Sign for another organization" if another else "Sign for an organization"
    else:
        title = "Change your personal signature" if current is not None else "Sign the statement"
    modal = _FixedModal(title=title, custom_id=custom_id, timeout=None)
    place = ", ".join(p for p in ((current.city, current.country) if current else ()) if p) or None
    if kind == "organization":
        modal.add_item(
            discord.ui.Label(
                text="Organization",
                description=(
                    "Changing the name changes this signature (it does not add one)."
                    if current is not None
                    else "A new signature for this organization; your personal signature stays as it is."
                ),
                component=_text_input(
                    "organization", max_length=ORGANIZATION_MAX, required=True, default=current and current.organization
                ),
            )
        )
    modal.add_item(
        discord.ui.Label(
            text="Your name" if kind == "individual" else "Your name (signing for the organization)",
            description=(
                f"Your personal signature, at most {NAME_MAX} characters. Organizations sign separately."
                if kind == "individual"
                else f"As it should appear, at most {NAME_MAX} characters."
            ),
            component=_text_input("name", max_length=NAME_MAX, required=True, default=current and current.name),
        )
    )
    modal.add_item(
        discord.ui.Label(
            text="Role or title",
            component=_text_input("role", max_length=ROLE_MAX, default=current and current.role),
        )
    )
    if kind == "individual":
        modal.add_item(
            discord.ui.Label(
                text="Organization (optional affiliation)",
                component=_text_input(
                    "organization", max_length=ORGANIZATION_MAX, default=current and current.organization
                ),
            )
        )
    modal.add_item(
        discord.ui.Label(
            text="City, country",
            description="e.g. Leeds, UK",
            component=_text_input("place", max_length=150, default=place),
        )
    )
    public = current.public if current else statement.public_by_default
    modal.add_item(
        discord.ui.Label(
            text="List my name publicly?",
            component=discord.ui.Select(
                custom_id="public",
                options=[
                    discord.SelectOption(label="Yes, list my name", value="yes", default=public),
                    discord.SelectOption(label="No, count me but don't show my name", value="no", default=not public),
                ],
            ),
        )
    )
    return stateless(modal)


def statement_form(custom_id: str, title: str, current: StatementRow | None = None) -> discord.ui.Modal:
    modal = discord.ui.Modal(title=title, custom_id=custom_id, timeout=None)
    modal.add_item(
        discord.ui.Label(
            text="Title",
            component=_text_input("title", max_length=200, required=True, default=current and current.title),
        )
    )
    modal.add_item(
        discord.ui.Label(
            text="Text of the statement",
            description="Markdown works. Signers sign onto exactly this text.",
            component=_text_input(
                "body",
                max_length=BODY_MAX,
                required=True,
                style=discord.TextStyle.paragraph,
                default=current and current.body,
            ),
        )
    )
    if current is None:
        modal.add_item(
            discord.ui.Label(
                text="Short name (slug), optional",
                description="ASCII letters, digits and hyphens; made from the title if empty.",
                component=_text_input("slug", max_length=60),
            )
        )
    return stateless(modal)


async def existing_message(
    client: discord.Client, statement: StatementRow, guild_id: int, *, must_check: bool
) -> discord.Message | None:
    """The statement's current message, or None if it was deleted (or never recorded, or, unless
    `must_check`, can't be seen: reposting elsewhere needs no access to the old channel)."""
    if statement.channel_id is None or statement.message_id is None:
        return None
    channel = client.get_partial_messageable(statement.channel_id, guild_id=guild_id)
    try:
        return await channel.fetch_message(statement.message_id)
    except discord.NotFound:
        return None
    except discord.Forbidden:
        if not must_check:
            return None
        raise StatementError(
            f"I can't see the statement's channel <#{statement.channel_id}> to check its message; give me "
            "View Channel and Read Message History there, or repost it elsewhere with `channel:`."
        ) from None


async def recover_drafts(client: discord.Client, service: StatementService, reported: set[int]) -> None:
    """Finish what a crash between posting a statement's message and publishing it left: a draft
    whose message is in its channel is published (the organizer asked for it; its buttons work
    again); one whose message isn't, or whose channel is gone, is dropped (its slug is free again).
    A channel the bot can't read is tried again at each timer, and logged once (`reported`: ids of
    drafts already logged), not at every tick."""
    for draft in await service.stale_drafts():
        if draft.channel_id is None or client.user is None:
            await service.discard_draft(draft.id)
            continue
        channel = client.get_partial_messageable(draft.channel_id, guild_id=draft.guild_id)
        wanted = f"statements:sign:{draft.id}"
        found = None
        try:
            since = draft.created_at - timedelta(minutes=1)
            async for message in channel.history(limit=100, after=since, oldest_first=True):
                ids = [
                    getattr(c, "custom_id", None) for row in message.components for c in getattr(row, "children", [])
                ]
                if message.author.id == client.user.id and wanted in ids:
                    found = message
                    break
        except discord.NotFound:  # the channel was deleted, and any message posted in it with it
            log.warning("statement %s: channel %s is gone; dropping the unpublished draft", draft.id, draft.channel_id)
            await service.discard_draft(draft.id)
            continue
        except discord.HTTPException as exc:
            if draft.id not in reported:
                reported.add(draft.id)
                log.warning(
                    "statement %s: can't look for its message in %s: %s (trying again at each timer)",
                    draft.id, draft.channel_id, exc,
                )  # fmt: skip
            continue
        if found is None:
            log.warning("statement %s: its publishing was interrupted before its message was posted", draft.id)
            await service.discard_draft(draft.id)
        else:
            log.warning("statement %s: its message %s was posted, its publishing interrupted", draft.id, found.id)
            await service.publish(
                draft.id, channel_id=found.channel.id, message_id=found.id, actor_id=draft.organizer_id
            )


async def channel_in_guild(client: discord.Client, interaction: discord.Interaction, channel_id: int) -> None:
    """Refuse a channel (from a form's custom_id: untrusted) outside the form's server or closed to the member."""
    channel = client.get_channel(channel_id)
    if channel is None:
        try:
            channel = await client.fetch_channel(channel_id)
        except discord.HTTPException:
            channel = None
    if getattr(getattr(channel, "guild", None), "id", None) != server_of(interaction):
        raise StatementError("I can't find that channel in this server; run `/statement create` again.")
    ensure_member_can_post(interaction, channel)


def ensure_member_can_post(interaction: discord.Interaction, channel: Any) -> None:
    """What the bot posts for an organizer goes only where they could post themselves."""
    if not member_can_post(interaction.user, channel):
        raise StatementError(f"You can't post in <#{channel.id}> yourself, so I won't post a statement there.")
