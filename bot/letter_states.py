"""What a letter's state means to the people who see it: labels, its public link, refusals and conflicts.

No Discord and no database here: shared by the letters service, the review cards and the notices.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.errors import UserFacingError
from bot.store.contributions import LIVE_STATES, Contribution

STATE_LABELS = {
    "recorded": "recorded (not submitted)",
    "nominated": "nominated, waiting for the writer's consent",
    "submitted": "waiting for review",
    "approved": "approved, being published",
    "rejected": "not selected",
    "published": "published",
    "retracted": "retracted by an editor",
    "withdrawn": "withdrawn by the writer",
    "declined": "nomination declined by the writer",
}


# Post statuses that mean the site holds the letter but the public can't read it yet.
REVIEW_STATUSES = ("pending", "draft", "future", "private")
# The site's editors took it down (trash) or deleted it.
DROPPED_STATUSES = ("trash", "deleted")
WITH_SITE_EDITORS = "sent to the site's editors"


def with_site_editors(letter: Contribution) -> bool:
    """The site has the letter, but as a pending/draft post the public can't open yet."""
    return letter.state == "published" and letter.remote_status in REVIEW_STATUSES


def dropped_by_site(letter: Contribution) -> bool:
    return letter.state == "published" and letter.remote_status in DROPPED_STATUSES


def state_label(letter: Contribution) -> str:
    """What to tell people about a letter: as STATE_LABELS, but "published" only when the public can read it."""
    if with_site_editors(letter):
        return WITH_SITE_EDITORS
    if dropped_by_site(letter):
        return "not published by the site's editors"
    return STATE_LABELS.get(letter.state, letter.state)


def public_url(letter: Contribution) -> str | None:
    """The letter's link on the site, only if the public can open it."""
    if letter.state in LIVE_STATES and letter.remote_status in (None, "publish"):
        return letter.remote_url
    return None


WRITER_CHANGED_AFTER_EDIT = (
    "the writer changed their message after your edit (your text is kept; the Original link shows theirs)"
)


class LetterError(UserFacingError):
    """An expected refusal, phrased for the member or editor who asked."""


class Conflict(LetterError):
    """Someone else changed the letter first; `current` is what it is now."""

    def __init__(self, message: str, current: Contribution) -> None:
        super().__init__(message)
        self.current = current


@dataclass(frozen=True)
class DigestDraft:
    key: str
    title: str
    letters: list[Contribution]
    outbox_id: int


def writer_text(letter: Contribution) -> str:
    """The text as its writer last wrote it (an editor's edit keeps the writer's in `original_content`)."""
    return letter.original_content if letter.original_content is not None else letter.content


def describe_actor(contribution: Contribution) -> str:
    """Who made the last decision, as text editors read (mention syntax renders but never pings in embeds)."""
    return f"<@{contribution.reviewer_id}>" if contribution.reviewer_id else "someone"


def conflict_text(current: Contribution) -> str:
    state = current.state
    who = describe_actor(current)
    if state in ("approved", "published", "rejected", "retracted"):
        return f"Too late: {who} already marked letter #{current.id} as {STATE_LABELS[state]}."
    if state == "withdrawn":
        return f"Letter #{current.id} was withdrawn by its writer."
    return f"Letter #{current.id} changed while you were looking (now {STATE_LABELS.get(state, state)}); try again."
