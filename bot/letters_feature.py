"""Letters as one feature: the service, the review queue, the reply recorder and the notice workers.

Built once by the bot (`bot.letters`) and shared by the two letters cogs, which never import or look
up each other: `cogs.readers_views` (members: recording, submitting, withdrawing) and
`cogs.editorial` (editors: review, nomination, digests). Each cog starts and stops the workers it
owns in its `cog_load` / `cog_unload`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bot.letter_notices import NoticeSender, SiteStatusChecker
from bot.letters import LetterService, Recorder
from bot.review import ReviewHandler, ReviewQueue

if TYPE_CHECKING:
    from bot.app import ReadersViewsBot


@dataclass
class Letters:
    service: LetterService
    queue: ReviewQueue
    recorder: Recorder
    notices: NoticeSender
    status_checks: SiteStatusChecker
    # Who answers the review and consent buttons: set by the editorial cog while it is loaded.
    review: ReviewHandler | None = field(default=None)

    @classmethod
    def build(cls, bot: ReadersViewsBot) -> Letters:
        service = LetterService(bot.store, bot.clock, bot.config.letters, disclaimer=bot.config.site.disclaimer)
        queue = ReviewQueue(bot)
        notices = NoticeSender(bot, queue)
        return cls(
            service=service,
            queue=queue,
            recorder=Recorder(bot.store.contributions),
            notices=notices,
            status_checks=SiteStatusChecker(bot, service, queue, notices),
        )
