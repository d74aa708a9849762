"""The outbox and its worker against the loopback fake site: retries, unknown outcomes, crashes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from bot.config import WebhookSettings, WordPressSettings
from bot.site.base import RemoteRef
from bot.site.none import NoSiteAdapter
from bot.site.webhook import WebhookAdapter
from bot.site.wordpress import WordPressAdapter
from bot.store.database import Database
from bot.store.outbox import OutboxRepo
from tests.helpers import FakeClock, Harness, letter, wordpress
from tests.sitefake import WEBHOOK_SECRET, WP_PASSWORD, WP_USER, FakeSite

DISCLAIMER = "Views are the writers' own."


@pytest.fixture
async def db(store_location: str) -> AsyncIterator[Database]:
    database = await Database.open(store_location)
    yield database
    await database.close()


def posts_requests(site: FakeSite, method: str = "POST") -> list[str]:
    return [path for m, path in site.requests if m == method and "/wp/v2/posts" in path]


async def test_5xx_streak_then_success_creates_one_post(db: Database, clock: FakeClock, site: FakeSite, http):
    """Three 503s and a 500 are retried with growing delays; the item ends up on the site once."""
    h = Harness(db, clock, wordpress(site, http, clock))
    item = letter(1)
    row_id = await h.enqueue("create", item)
    site.fail_next(3, 503)
    site.fail_next(1, 500)

    assert await h.worker.run_once() == 0
    first = await h.row(row_id)
    assert first.state == "pending" and first.attempts == 1
    assert "503" in (first.last_error or "")
    assert first.next_attempt_at > clock.now()

    await h.drain()
    done = await h.row(row_id)
    assert done.state == "done" and done.attempts == 5
    assert site.copies(item.slug) == 1
    post = site.post_by_id(done.remote_id or "")
    assert post["title"] == "Letter 1" and post["status"] == "pending" and post["categories"] == [3]
    assert h.alerts == []


async def test_backoff_grows_with_jitter_and_is_capped(db: Database, clock: FakeClock):
    """Back-off doubles from 2 s, keeps at least half of it (jitter), and never exceeds an hour."""
    worker = Harness(db, clock, NoSiteAdapter()).worker
    for attempts in range(1, 30):
        ceiling = min(3600.0, 2.0 * 2 ** (attempts - 1))
        delay = worker.backoff(attempts)
        assert ceiling / 2 <= delay <= ceiling
    assert worker.backoff(3, retry_after=120) == 120


async def test_429_honours_retry_after(db: Database, clock: FakeClock, site: FakeSite, http):
    """A 429 schedules the next attempt exactly Retry-After seconds later, not earlier."""
    h = Harness(db, clock, wordpress(site, http, clock))
    row_id = await h.enqueue("create", letter(2))
    site.fail_next(1, 429, {"Retry-After": "120"})

    await h.worker.run_once()
    row = await h.row(row_id)
    assert row.state == "pending"
    assert row.next_attempt_at == clock.now() + timedelta(seconds=120)
    assert not row.outcome_unknown  # a 429 certainly did not create anything

    clock.advance(119)
    assert await h.worker.run_once() == 0
    clock.advance(1)
    assert await h.worker.run_once() == 1
    assert site.copies(letter(2).slug) == 1


async def test_reset_after_apply_still_one_post(db: Database, clock: FakeClock, site: FakeSite, http):
    """The site creates the post but the answer is lost: the retry finds it by slug instead of duplicating."""
    h = Harness(db, clock, wordpress(site, http, clock))
    item = letter(3)
    row_id = await h.enqueue("create", item)
    site.reset_after_apply(path="/wp/v2/posts", method="POST")

    await h.worker.run_once()
    row = await h.row(row_id)
    assert row.state == "pending" and row.outcome_unknown
    assert site.copies(item.slug) == 1  # it is there already

    await h.drain()
    row = await h.row(row_id)
    assert row.state == "done"
    assert site.copies(item.slug) == 1
    assert len(posts_requests(site)) == 1  # no second create was sent
    assert row.remote_id == str(site.live_posts()[0]["id"])


async def test_hanging_site_times_out_without_blocking_the_loop(db: Database, clock: FakeClock, site: FakeSite, http):
    """A site that never answers costs a timeout (transient) while other coroutines keep running."""
    h = Harness(db, clock, wordpress(site, http, clock, timeout=0.3))
    item = letter(4)
    row_id = await h.enqueue("create", item)
    site.hang_next(1, seconds=60)

    delivering = asyncio.create_task(h.worker.run_once())
    await asyncio.wait_for(site.wait_for_requests(1), timeout=10)  # it is sitting on the hanging site
    # Meanwhile the rest of the bot (here: a DB read and a busy coroutine) carries on.
    progressed = 0
    for _ in range(20):
        await asyncio.sleep(0)
        progressed += 1
    backlog = await h.repo.backlog()
    assert not delivering.done()
    assert progressed == 20 and backlog["inflight"] == 1

    assert await delivering == 0
    row = await h.row(row_id)
    assert row.state == "pending" and row.outcome_unknown
    assert "did not answer within 0.3s" in (row.last_error or "")

    await h.drain()
    assert (await h.row(row_id)).state == "done"
    assert site.copies(item.slug) == 1


async def test_wrong_password_is_one_incident_not_a_dead_letter_per_item(
    db: Database, clock: FakeClock, site: FakeSite, http, tmp_path: Path
):
    """A refused password is one alert; items wait (never dead); a restart with the fixed one resumes, noted once."""
    h = Harness(db, clock, wordpress(site, http, clock, password="wrong"))
    rows = [await h.enqueue("create", letter(n)) for n in (5, 6, 7)]

    await h.worker.run_once()
    assert [(await h.row(r)).state for r in rows] == ["pending"] * 3
    assert [(await h.row(r)).attempts for r in rows] == [0, 0, 0]
    assert len(h.alerts) == 1
    alert = h.alerts[0]
    assert "READERSVIEWS_WP_APP_PASSWORD" in alert and "readersviews outbox retry --all" in alert
    assert "3 item(s) wait" in alert
    assert len(posts_requests(site)) == 1  # the first item told us; the others were not tried

    # Hours later nothing has died and nothing was announced again; the site is only probed.
    for _ in range(10):
        clock.advance(3600)
        await h.worker.run_once()
    assert [(await h.row(r)).state for r in rows] == ["pending"] * 3
    assert len(posts_requests(site)) == 1
    assert len(h.alerts) == 1
    # A restarted worker with the same wrong password does not announce it again either.
    restarted = h.new_worker(wordpress(site, http, clock, password="wrong"))
    assert await restarted.run_once() == 0
    assert len(h.alerts) == 1

    # The operator fixes the password and restarts: the start-up probe succeeds and all three go out.
    fixed = h.new_worker(wordpress(site, http, clock))
    fixed.start()
    try:
        for _ in range(200):
            if [(await h.row(r)).state for r in rows] == ["done"] * 3:
                break
            await asyncio.sleep(0.02)
    finally:
        await fixed.stop()
    assert [(await h.row(r)).state for r in rows] == ["done"] * 3
    assert len(h.alerts) == 2 and "resumed" in h.alerts[1] and "3 waiting item(s)" in h.alerts[1]
    assert await h.worker.incidents.get() is None
    await fixed.run_once()
    assert len(h.alerts) == 2


async def test_password_fixed_on_the_site_resumes_by_itself(db: Database, clock: FakeClock, site: FakeSite, http):
    """Credentials refused, then accepted again without a restart: the next probe resumes delivery."""
    site.wp_password = "rotated on the site"
    h = Harness(db, clock, wordpress(site, http, clock))
    row_id = await h.enqueue("create", letter(8))
    await h.worker.run_once()
    assert (await h.row(row_id)).state == "pending" and len(h.alerts) == 1

    site.wp_password = WP_PASSWORD
    await h.worker.run_once()  # the probe is not due yet: nothing is sent
    assert len(posts_requests(site)) == 1
    clock.advance(h.worker.probe_delay(0))
    assert await h.worker.run_once() == 1
    assert (await h.row(row_id)).state == "done"
    assert len(h.alerts) == 2 and "resumed" in h.alerts[1]


async def test_site_down_for_a_day_is_one_alert_and_nothing_dies(db: Database, clock: FakeClock, site: FakeSite, http):
    """Persistent 503s on every item become one incident; items wait past max_attempts; recovery is noted once."""
    h = Harness(db, clock, wordpress(site, http, clock))
    rows = [await h.enqueue("create", letter(n)) for n in range(10, 16)]
    site.fail_next(10_000, 503)

    for _ in range(60):
        await h.worker.run_once()
        clock.advance(1800)
    states = [(await h.row(r)).state for r in rows]
    assert "dead" not in states and set(states) == {"pending"}
    assert len(h.alerts) == 1 and "not answering" in h.alerts[0]
    incident = await h.worker.incidents.get()
    assert incident is not None and incident.kind == "down" and incident.probes > 5

    site.faults.clear()
    await h.drain()
    assert [(await h.row(r)).state for r in rows] == ["done"] * 6
    assert len(h.alerts) == 2 and "resumed" in h.alerts[1]
    assert all(site.copies(letter(n).slug) == 1 for n in range(10, 16))


async def test_a_short_outage_pauses_delivery_without_alerts(db: Database, clock: FakeClock, site: FakeSite, http):
    """A 503 streak whose probe fails opens an incident, but it ends at the next probe: no alert, no note."""
    h = Harness(db, clock, wordpress(site, http, clock))
    rows = [await h.enqueue("create", letter(n)) for n in range(50, 53)]
    site.fail_next(6, 503)  # five deliveries and the probe
    for _ in range(10):
        await h.worker.run_once()
        incident = await h.worker.incidents.get()
        if incident is not None:
            break
        clock.advance(3600)
    assert incident is not None and incident.open and incident.kind == "down"
    clock.advance(h.worker.probe_delay(0))
    await h.drain()
    assert [(await h.row(r)).state for r in rows] == ["done"] * 3
    assert h.alerts == [] and await h.worker.incidents.get() is None


async def test_one_item_failing_while_the_site_works_still_dies_alone(
    db: Database, clock: FakeClock, site: FakeSite, http
):
    """A 5xx that only one item gets (the probe succeeds) is that item's dead letter, not an incident."""
    h = Harness(db, clock, wordpress(site, http, clock))
    h.worker.max_attempts = 3
    row_id = await h.enqueue("create", letter(20))
    site.fail_next(50, 500, path="/wp/v2/posts")
    await h.drain()
    row = await h.row(row_id)
    assert row.state == "dead" and "gave up after 3 attempts" in (row.last_error or "")
    assert len(h.alerts) == 1 and f"outbox #{row_id}" in h.alerts[0]
    assert await h.worker.incidents.get() is None


async def test_retry_all_probes_at_once(db: Database, clock: FakeClock, site: FakeSite, http):
    """`outbox retry --all` makes dead and waiting items due and asks the running worker to probe now."""
    site.wp_password = "rotated"
    h = Harness(db, clock, wordpress(site, http, clock))
    row_id = await h.enqueue("create", letter(21))
    await h.worker.run_once()
    site.wp_password = WP_PASSWORD
    assert await h.worker.incidents.probe_now()
    await h.repo.retry_all()
    assert await h.worker.run_once() == 1
    assert (await h.row(row_id)).state == "done"


async def test_alert_owed_after_crash_is_sent_once(db: Database, clock: FakeClock):
    """A row marked dead whose alert was not sent (crash in between) is announced at the next pass."""
    h = Harness(db, clock, NoSiteAdapter())
    row_id = await h.enqueue("create", letter(6))
    await h.repo.claim_due()
    await h.repo.mark_dead(row_id, "WordPress refused the credentials (401): check things")
    await h.worker.run_once()
    await h.worker.run_once()
    assert len(h.alerts) == 1 and "check things" in h.alerts[0]


async def test_updates_go_to_the_remote_id_of_the_create(db: Database, clock: FakeClock, site: FakeSite, http):
    """Create then two edits: one post, holding the last edit; every row knows the same remote id."""
    h = Harness(db, clock, wordpress(site, http, clock))
    ids = [
        await h.enqueue("create", letter(7, "first")),
        await h.enqueue("update", letter(7, "second"), revision=2),
        await h.enqueue("update", letter(7, "third"), revision=3),
    ]
    assert await h.worker.run_once() == 3

    rows = [await h.row(i) for i in ids]
    assert {row.state for row in rows} == {"done"}
    assert len({row.remote_id for row in rows}) == 1
    assert site.copies(letter(7).slug) == 1
    post = site.post_by_id(rows[0].remote_id or "")
    assert "third" in post["content"]
    assert await h.repo.remote_for("letter:7") == RemoteRef(rows[0].remote_id, rows[0].remote_url)
    assert [ref.remote_id for _, ref in h.delivered] == [rows[0].remote_id] * 3


async def test_retract_moves_the_post_to_trash(db: Database, clock: FakeClock, site: FakeSite, http):
    """Retracting trashes the post it created; a 410 (already trashed) on a retry counts as done."""
    h = Harness(db, clock, wordpress(site, http, clock))
    await h.enqueue("create", letter(8))
    await h.worker.run_once()
    remote = await h.repo.remote_for("letter:8")
    assert remote is not None and remote.remote_id

    site.reset_after_apply(method="DELETE")  # trashed, but the answer is lost: the retry gets 410
    retract_id = await h.enqueue("retract", letter(8))
    await h.drain()
    assert (await h.row(retract_id)).state == "done"
    assert site.post_by_id(remote.remote_id)["status"] == "trash"
    assert site.live_posts() == []
    assert await h.repo.remote_for("letter:8") is None


async def test_retract_of_never_created_only_looks(db: Database, clock: FakeClock, site: FakeSite, http):
    """Retracting something with no stored id looks it up; when it is not there, nothing is deleted."""
    h = Harness(db, clock, wordpress(site, http, clock))
    row_id = await h.enqueue("retract", letter(9))
    assert await h.worker.run_once() == 1
    assert (await h.row(row_id)).state == "done"
    assert [method for method, _path in site.requests] == ["GET"]


async def test_retract_finds_a_post_whose_create_was_given_up(db: Database, clock: FakeClock, site: FakeSite, http):
    """A create applied but unanswered, then dropped by the operator: the retract still takes the post down."""
    h = Harness(db, clock, wordpress(site, http, clock))
    h.worker.max_attempts = 1
    item = letter(10)
    create_id = await h.enqueue("create", item)
    site.reset_after_apply(path="/wp/v2/posts", method="POST")  # applied, the answer lost
    await h.worker.run_once()
    assert (await h.row(create_id)).state == "dead"
    assert await h.repo.drop(create_id)
    assert len(site.live_posts()) == 1

    await h.enqueue("retract", item, revision=2)
    await h.drain()
    assert site.live_posts() == []


async def test_create_given_up_after_a_lost_answer_is_not_cancelled_by_a_withdrawal(
    db: Database, clock: FakeClock, site: FakeSite, http
):
    """The last attempt timed out after the site made the post, then the row went dead: the dead row
    says the outcome is unknown, a withdrawal keeps it, and the retract queued behind it takes the post down."""
    h = Harness(db, clock, wordpress(site, http, clock))
    h.worker.max_attempts = 1
    item = letter(11)
    create_id = await h.enqueue("create", item)
    site.reset_after_apply(path="/wp/v2/posts", method="POST")  # applied, the answer lost
    await h.worker.run_once()
    dead = await h.row(create_id)
    assert dead.state == "dead" and dead.outcome_unknown
    assert len(h.alerts) == 1 and "may have applied it" in h.alerts[0]
    assert [row.id for row in await h.repo.list(("dead",))] == [create_id]

    async with db.transaction() as conn:
        assert await h.repo.cancel_undelivered(conn, item.entity)  # may be on the site: retract
        await h.repo.enqueue_item(conn, "retract", item, revision=2)
    assert [(r.action, r.state) for r in await h.repo.for_entity(item.entity)] == [
        ("create", "dead"),
        ("retract", "pending"),
    ]
    assert len(site.live_posts()) == 1
    assert await h.repo.drop(create_id)  # the operator gives up on publishing it
    await h.drain()
    assert site.live_posts() == []


async def test_cancel_undelivered_drops_only_rows_the_site_never_applied(db: Database, clock: FakeClock):
    """Waiting or given-up rows whose every attempt failed knowingly go; a maybe-applied or inflight row stays."""
    repo = OutboxRepo(db, clock)
    fresh, refused, maybe, sending = letter(12), letter(13), letter(14), letter(15)
    async with db.transaction() as conn:
        for item in (fresh, refused, maybe, sending):
            await repo.enqueue_item(conn, "create", item, revision=1)
    claimed = {row.entity: row for row in await repo.claim_due()}
    await repo.release([claimed[fresh.entity].id])
    await repo.mark_dead(claimed[refused.entity].id, "the site answered 400")
    await repo.mark_dead(claimed[maybe.entity].id, "gave up; last error: timed out", outcome_unknown=True)
    async with db.transaction() as conn:
        assert not await repo.cancel_undelivered(conn, fresh.entity)
        assert not await repo.cancel_undelivered(conn, refused.entity)
        assert await repo.cancel_undelivered(conn, maybe.entity)
        assert await repo.cancel_undelivered(conn, sending.entity)
    assert await repo.for_entity(fresh.entity) == []
    assert await repo.for_entity(refused.entity) == []
    assert [r.state for r in await repo.for_entity(maybe.entity)] == ["dead"]
    assert [r.state for r in await repo.for_entity(sending.entity)] == ["inflight"]


async def test_wordpress_redirect_is_dead_at_once_with_the_fix(db: Database, clock: FakeClock):
    """A site that moved (http -> https) is a setting to fix, not an outage to retry for hours."""

    def moved(request: httpx.Request) -> httpx.Response:
        return httpx.Response(301, headers={"Location": "https://paper.example" + request.url.raw_path.decode()})

    async with httpx.AsyncClient(transport=httpx.MockTransport(moved)) as client:
        settings = WordPressSettings(url="http://paper.example", username=WP_USER)
        h = Harness(db, clock, WordPressAdapter(settings, WP_PASSWORD, client, clock=clock))
        row_id = await h.enqueue("create", letter(11))
        await h.worker.run_once()
    row = await h.row(row_id)
    assert row.state == "dead" and row.attempts == 1
    assert "set site.wordpress.url to https://paper.example" in (row.last_error or "")
    assert len(h.alerts) == 1


async def test_order_is_strict_per_entity_and_entities_interleave(db: Database, clock: FakeClock, site: FakeSite, http):
    """An update waits for its create, while another letter goes ahead."""
    h = Harness(db, clock, wordpress(site, http, clock))
    create_a = await h.enqueue("create", letter(10, "a1"))
    update_a = await h.enqueue("update", letter(10, "a2"), revision=2)
    create_b = await h.enqueue("create", letter(11, "b1"))
    site.fail_next(1, 503)  # the first request (letter 10's create) fails

    await h.worker.run_once()
    assert (await h.row(create_b)).state == "done"
    assert (await h.row(create_a)).state == "pending"
    assert (await h.row(update_a)).state == "pending" and (await h.row(update_a)).attempts == 0

    await h.drain()
    assert (await h.row(update_a)).state == "done"
    remote = await h.repo.remote_for("letter:10")
    assert remote is not None
    writes = [path for method, path in site.requests if method == "POST"]
    assert writes.index(f"/wp-json/wp/v2/posts/{remote.remote_id}") > writes.index("/wp-json/wp/v2/posts")
    assert "a2" in site.post_by_id(remote.remote_id or "")["content"]


async def test_dead_row_holds_back_later_rows_of_its_entity_until_dropped(db: Database, clock: FakeClock):
    """A parked create keeps its updates waiting; dropping it lets them through (update-as-create)."""
    h = Harness(db, clock, NoSiteAdapter())
    create = await h.enqueue("create", letter(12))
    update = await h.enqueue("update", letter(12, "edited"), revision=2)
    await h.repo.claim_due()
    await h.repo.mark_dead(create, "broken")
    assert await h.worker.run_once() == 0
    assert (await h.row(update)).state == "pending"
    assert await h.repo.drop(create)
    assert await h.worker.run_once() == 1
    assert (await h.row(update)).state == "done"


async def test_recover_after_crash_looks_up_before_creating(tmp_path: Path, clock: FakeClock, site: FakeSite, http):
    """The process dies after the site created the post: at restart the row is found, not re-created."""
    path = tmp_path / "crash.sqlite3"
    db = await Database.open(path)
    h = Harness(db, clock, wordpress(site, http, clock))
    item = letter(13)
    row_id = await h.enqueue("create", item)
    [claimed] = await h.repo.claim_due()
    adapter = wordpress(site, http, clock)
    await adapter.create(item.model_copy(update={"idempotency_key": claimed.idempotency_key}))
    await db.close()  # "kill -9": the row stays inflight

    db = await Database.open(path)
    h = Harness(db, clock, wordpress(site, http, clock))
    assert (await h.row(row_id)).state == "inflight"
    assert await h.repo.recover() == 1
    recovered = await h.row(row_id)
    assert recovered.state == "pending" and recovered.outcome_unknown
    site.requests.clear()

    assert await h.worker.run_once() == 1
    assert site.requests[0][0] == "GET" and f"slug={item.slug}" in site.requests[0][1]
    assert posts_requests(site) == []
    assert site.copies(item.slug) == 1
    assert (await h.row(row_id)).remote_id == str(site.live_posts()[0]["id"])
    await db.close()


async def test_recover_when_the_crash_came_before_sending_creates_once(
    tmp_path: Path, clock: FakeClock, site: FakeSite, http
):
    """Died after claiming but before sending: the lookup finds nothing, so it is created once."""
    path = tmp_path / "crash.sqlite3"
    db = await Database.open(path)
    h = Harness(db, clock, wordpress(site, http, clock))
    row_id = await h.enqueue("create", letter(14))
    await h.repo.claim_due()
    await db.close()

    db = await Database.open(path)
    h = Harness(db, clock, wordpress(site, http, clock))
    h.worker.start(recover=True)
    try:
        for _ in range(500):
            if (await h.row(row_id)).state == "done":
                break
            await asyncio.sleep(0.01)
    finally:
        await h.worker.stop()
    assert (await h.row(row_id)).state == "done"
    assert site.copies(letter(14).slug) == 1
    await db.close()


async def test_enqueue_commits_with_the_callers_transaction(db: Database, clock: FakeClock):
    """The outbox row shares the fate of the state change; the same key twice is one row."""
    repo = OutboxRepo(db, clock)
    with pytest.raises(RuntimeError):
        async with db.transaction() as conn:
            await repo.enqueue_item(conn, "create", letter(15), revision=1)
            raise RuntimeError("the approval failed")
    assert await repo.backlog() == {"pending": 0, "inflight": 0, "done": 0, "dead": 0}

    async with db.transaction() as conn:
        first = await repo.enqueue_item(conn, "create", letter(15), revision=1)
        again = await repo.enqueue_item(conn, "create", letter(15), revision=1)
    assert first == again
    assert (await repo.backlog())["pending"] == 1


async def test_background_loop_delivers_when_notified(db: Database, clock: FakeClock, site: FakeSite, http):
    """start() + notify(): an enqueued item is delivered without waiting for the poll interval."""
    h = Harness(db, clock, wordpress(site, http, clock))
    h.worker.idle_poll = 3600
    h.worker.start()
    try:
        await asyncio.sleep(0)
        row_id = await h.enqueue("create", letter(16))
        h.worker.notify()
        for _ in range(500):
            if h.delivered:
                break
            await asyncio.sleep(0.01)
    finally:
        await h.worker.stop()
    assert not h.worker.running
    assert (await h.row(row_id)).state == "done"


async def test_none_adapter_completes_locally(db: Database, clock: FakeClock):
    """With site.kind none everything is done at once, with no remote id."""
    h = Harness(db, clock, NoSiteAdapter())
    await h.enqueue("create", letter(17))
    await h.enqueue("update", letter(17, "edit"), revision=2)
    await h.enqueue("retract", letter(17), revision=3)
    assert await h.worker.run_once() == 3
    assert await h.repo.backlog() == {"pending": 0, "inflight": 0, "done": 3, "dead": 0}


async def test_webhook_retry_after_lost_answer_is_deduped_by_the_receiver(
    db: Database, clock: FakeClock, site: FakeSite, http
):
    """Webhook: the same Idempotency-Key is re-sent after an unknown outcome; the receiver keeps one."""
    adapter = WebhookAdapter(WebhookSettings(url=site.webhook_url, timeout=5), WEBHOOK_SECRET, http)
    h = Harness(db, clock, adapter)
    create = await h.enqueue("create", letter(18))
    await h.enqueue("update", letter(18, "edited"), revision=2)
    site.reset_after_apply(path="/webhook")

    await h.drain()
    assert await h.repo.backlog() == {"pending": 0, "inflight": 0, "done": 2, "dead": 0}
    assert site.stats()["webhook_created_entities"] == 1
    assert site.stats()["webhook_duplicate_creates"] == 0
    key = (await h.row(create)).idempotency_key
    assert site.webhook_deliveries[key] == 2
    assert [e["event"] for e in site.webhook_events] == ["letter.create", "letter.update"]
    assert site.webhook_events[1]["data"]["remote_id"] == (await h.row(create)).remote_id


async def test_list_retry_drop_for_the_cli(db: Database, clock: FakeClock):
    """What `readersviews outbox list|retry|drop` use."""
    repo = OutboxRepo(db, clock)
    async with db.transaction() as conn:
        a = await repo.enqueue_item(conn, "create", letter(19), revision=1)
        b = await repo.enqueue_item(conn, "create", letter(20), revision=1)
    await repo.claim_due()
    await repo.mark_dead(a, "broken")
    await repo.mark_retry(b, "later", clock.now() + timedelta(hours=1))
    assert [row.id for row in await repo.list(["dead"])] == [a]
    assert {row.id for row in await repo.list()} == {a, b}
    assert await repo.retry(a)
    assert (await repo.get(a)).state == "pending"  # type: ignore[union-attr]
    assert await repo.drop(b)
    assert await repo.get(b) is None
    assert not await repo.drop(9999)


async def test_backlog_reads_stay_consistent_while_the_worker_writes(db: Database, clock: FakeClock):
    """Counting the backlog (the status command) while the worker commits never sees a torn result."""
    h = Harness(db, clock, NoSiteAdapter())
    h.worker.batch = 20
    async with db.transaction() as conn:
        for n in range(1, 601):
            await h.repo.enqueue_item(conn, "create", letter(n), revision=1)
    running = asyncio.create_task(h.worker.run_once())
    seen = []
    while not running.done():
        seen.append(await h.repo.backlog())
    assert await running == 600
    assert seen and all(set(counts) == {"pending", "inflight", "done", "dead"} for counts in seen)
    assert all(sum(counts.values()) == 600 for counts in seen)


async def test_cli_retry_all_revives_dead_items_and_asks_for_a_probe(tmp_path: Path) -> None:
    """`readersviews outbox retry --all`: every dead item is due again and an open incident is probed next pass."""
    from datetime import UTC, datetime

    from bot.__main__ import main
    from bot.store.outbox import SiteIncidentRepo

    path = tmp_path / "rv.sqlite3"
    config = tmp_path / "config.yaml"
    config.write_text(f"database:\n  path: {path}\n", encoding="utf-8")
    clock = FakeClock(datetime.now(UTC))  # the CLI runs on the system clock
    db = await Database.open(path)
    h = Harness(db, clock, NoSiteAdapter())
    dead = [await h.enqueue("create", letter(n)) for n in (30, 31)]
    await h.repo.claim_due()
    for row_id in dead:
        await h.repo.mark_dead(row_id, "refused")
    incidents = SiteIncidentRepo(db, clock)
    await incidents.open("credentials", "refused", clock.now() + timedelta(hours=1))
    await db.close()

    code = await asyncio.to_thread(main, ["--config", str(config), "outbox", "retry", "--all"])
    assert code == 0

    db = await Database.open(path)
    try:
        repo = OutboxRepo(db, clock)
        assert [(await repo.get(r)).state for r in dead] == ["pending", "pending"]  # type: ignore[union-attr]
        incident = await SiteIncidentRepo(db, clock).get()
        assert incident is not None and incident.next_probe_at < clock.now() + timedelta(minutes=1)
    finally:
        await db.close()


async def test_delivered_letter_texts_are_purged_after_the_retention(
    db: Database, clock: FakeClock, site: FakeSite, http
) -> None:
    """A delivered letter's text leaves the outbox after `site.delivered_retention_days`; the site link stays."""
    h = Harness(db, clock, wordpress(site, http, clock))
    h.worker.retention = timedelta(days=30)
    row_id = await h.enqueue("create", letter(40, text="My very private opinion about bins."))
    await h.drain()
    assert (await h.row(row_id)).state == "done"
    waiting = await h.enqueue("create", letter(41, text="Still waiting for the site."))
    site.fail_next(1, 400, path="/wp/v2/posts", method="POST")
    await h.drain()

    async def texts() -> int:
        rows = await db.fetchall("SELECT count(*) FROM outbox WHERE payload LIKE '%private opinion%'")
        return int(next(iter(rows))[0])

    clock.advance(29 * 86400)
    await h.worker.purge_delivered(force=True)
    assert await texts() == 1

    clock.advance(2 * 86400)
    await h.worker.run_once()
    assert await texts() == 0 and await h.repo.get(row_id) is None
    assert await h.repo.remote_for("letter:40") is not None
    assert (await h.row(waiting)).state == "dead"  # undelivered items are kept until someone acts


async def test_items_of_a_server_no_longer_served_are_held(db: Database, clock: FakeClock, site: FakeSite, http):
    """With `allowed_guild_ids` set, another server's items wait untouched: not sent, not given up, no alert."""
    h = Harness(db, clock, wordpress(site, http, clock))
    h.worker.served_guilds = frozenset({1})
    async with db.transaction() as conn:
        ours = await h.repo.enqueue_item(conn, "create", letter(1), revision=1, guild_id=1)
        theirs = await h.repo.enqueue_item(conn, "create", letter(2), revision=1, guild_id=2)
        nobodys = await h.repo.enqueue_item(conn, "create", letter(3), revision=1)
    for _ in range(3):
        await h.worker.run_once()
        clock.advance(7200)
    assert (await h.row(ours)).state == "done" and (await h.row(nobodys)).state == "done"
    held = await h.row(theirs)
    assert (held.state, held.attempts, held.guild_id, held.last_error) == ("pending", 0, 2, None)
    assert len(posts_requests(site)) == 2 and h.alerts == []
    assert await h.repo.next_due_at(served=h.worker.served_guilds) is None  # the worker doesn't wake for it

    h.worker.served_guilds = None  # the server is listed again (or the list emptied): it goes out
    await h.worker.run_once()
    assert (await h.row(theirs)).state == "done"
