"""The real discord.py client against FakeDiscord: connect, sync, interact, fail, reconnect."""

from __future__ import annotations

import asyncio
import io
import logging
import re
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import discord
import discord.gateway
import discord.http
import pytest
import yarl
from discord import app_commands
from discord.ext import commands

from . import FakeDiscord, Guild, perms

pytestmark = pytest.mark.asyncio


class SignButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=r"statements:sign:(?P<sid>\d+)"):
    def __init__(self, sid: int) -> None:
        super().__init__(
            discord.ui.Button(label="Sign", style=discord.ButtonStyle.primary, custom_id=f"statements:sign:{sid}")
        )
        self.sid = sid

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> SignButton:
        return cls(int(match["sid"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_modal(SignModal(self.sid))


class SignModal(discord.ui.Modal, title="Sign the statement"):
    name: discord.ui.Label[Any] = discord.ui.Label(
        text="Your name", component=discord.ui.TextInput(custom_id="name", max_length=100)
    )
    city: discord.ui.TextInput[Any] = discord.ui.TextInput(label="City", custom_id="city", required=False)

    def __init__(self, sid: int) -> None:
        super().__init__(custom_id=f"statements:modal:{sid}")
        self.sid = sid

    async def on_submit(self, interaction: discord.Interaction) -> None:
        assert isinstance(self.name.component, discord.ui.TextInput)
        bot = interaction.client
        assert isinstance(bot, SmokeBot)
        bot.signatures.append((self.sid, interaction.user.id, self.name.component.value, self.city.value))
        await interaction.response.send_message(f"Signed as {self.name.component.value}", ephemeral=True)


class SmokeBot(commands.Bot):
    def __init__(self, guild_id: int, intents: discord.Intents | None = None) -> None:
        intents = intents or discord.Intents.default()  # default: no members, no message content
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=intents,
            guild_ready_timeout=0.05,
            allowed_mentions=discord.AllowedMentions.none(),
        )
        self.guild_obj = discord.Object(guild_id)
        self.seen_messages: list[discord.Message] = []
        self.signatures: list[tuple[int, int, str, str]] = []
        self.letters: list[int] = []
        self.originals: list[int] = []
        self.late_errors: list[int] = []
        self.picked: list[list[str]] = []

    async def setup_hook(self) -> None:
        self.add_dynamic_items(SignButton)
        group = app_commands.Group(name="readersviews", description="Readers' views")

        @group.command(name="status", description="Show status")
        async def status(interaction: discord.Interaction) -> None:
            await interaction.response.send_message("all good", ephemeral=True)

        feed = app_commands.Group(name="feed", description="Feeds", parent=group)

        @feed.command(name="add", description="Add a feed")
        @app_commands.describe(url="Feed URL", channel="Where to post")
        async def feed_add(interaction: discord.Interaction, url: str, channel: discord.TextChannel) -> None:
            await interaction.response.defer(ephemeral=True, thinking=True)
            await asyncio.sleep(0.01)
            await interaction.followup.send(f"added {url} to {channel.mention}", ephemeral=True)

        @app_commands.command(name="statement", description="Publish a statement")
        async def statement(interaction: discord.Interaction, title: str) -> None:
            view = discord.ui.View(timeout=None)
            view.add_item(SignButton(42))
            await interaction.response.send_message(f"**{title}**", view=view)

        @app_commands.command(name="vote", description="A poll with a button that edits the message")
        async def vote(interaction: discord.Interaction) -> None:
            view = discord.ui.View(timeout=None)
            button: discord.ui.Button[Any] = discord.ui.Button(label="+1", custom_id="vote:up")

            async def up(inter: discord.Interaction) -> None:
                await inter.response.edit_message(content="votes: 1", view=None)

            button.callback = up  # type: ignore[method-assign,assignment]
            view.add_item(button)
            await interaction.response.send_message("votes: 0", view=view)
            original = await interaction.original_response()
            self.originals.append(original.id)

        @app_commands.command(name="slow", description="Answers too late")
        async def slow(interaction: discord.Interaction) -> None:
            await asyncio.sleep(0.3)
            try:
                await interaction.response.send_message("late")
            except discord.NotFound as exc:
                self.late_errors.append(exc.code)

        @app_commands.command(name="upload", description="Sends files")
        async def upload(interaction: discord.Interaction, note: str) -> None:
            await interaction.response.defer()
            await interaction.followup.send(note, file=discord.File(io.BytesIO(b"hello"), filename="a.txt"))
            await interaction.followup.send("second", file=discord.File(io.BytesIO(b"world"), filename="b.txt"))

        async def tag_choices(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
            return [app_commands.Choice(name=t, value=t) for t in ("news", "opinion") if t.startswith(current)]

        @app_commands.command(name="pick", description="Choose a tag and a role")
        @app_commands.autocomplete(tag=tag_choices)
        async def pick(interaction: discord.Interaction, tag: str, role: discord.Role | None = None) -> None:
            view = discord.ui.View(timeout=None)
            select: discord.ui.Select[Any] = discord.ui.Select(
                custom_id="pick:tags", options=[discord.SelectOption(label=t) for t in ("a", "b", "c")], max_values=2
            )

            async def chosen(inter: discord.Interaction) -> None:
                self.picked.append(list(select.values))
                await inter.response.defer()
                await inter.edit_original_response(content=f"picked {','.join(select.values)}")

            select.callback = chosen  # type: ignore[method-assign,assignment]
            view.add_item(select)
            await interaction.response.send_message(f"{tag} {role.name if role else '-'}", view=view)

        @app_commands.context_menu(name="Profile")
        async def profile(interaction: discord.Interaction, member: discord.Member) -> None:
            await interaction.response.send_message(f"{member.name} joined", ephemeral=True)

        @app_commands.context_menu(name="Submit as letter")
        async def submit_letter(interaction: discord.Interaction, message: discord.Message) -> None:
            self.letters.append(message.id)
            await interaction.response.send_message("submitted", ephemeral=True)

        self.tree.add_command(group, guild=self.guild_obj)
        self.tree.add_command(statement, guild=self.guild_obj)
        self.tree.add_command(submit_letter, guild=self.guild_obj)
        self.tree.add_command(vote, guild=self.guild_obj)
        self.tree.add_command(slow, guild=self.guild_obj)
        self.tree.add_command(upload, guild=self.guild_obj)
        self.tree.add_command(pick, guild=self.guild_obj)
        self.tree.add_command(profile, guild=self.guild_obj)
        await self.tree.sync(guild=self.guild_obj)

    async def on_message(self, message: discord.Message) -> None:
        self.seen_messages.append(message)


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    f = FakeDiscord()
    await f.start()
    old_base = discord.http.Route.BASE
    old_gateway = discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    discord.http.Route.BASE = f"{f.base_url}/api/v10"
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(f.gateway_url)
    try:
        yield f
    finally:
        discord.http.Route.BASE = old_base
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = old_gateway
        await f.stop()
    assert not f.errors, f.errors


class World:
    def __init__(self, fake: FakeDiscord) -> None:
        self.guild: Guild = fake.add_guild("Readers")
        self.editor_role = self.guild.add_role("Editor", permissions=perms.MANAGE_MESSAGES)
        self.admin_role = self.guild.add_admin_role()
        self.alice = self.guild.add_member("alice", roles=[self.editor_role])
        self.bob = self.guild.add_member("bob")
        self.general = self.guild.add_text_channel("general")
        self.forum = self.guild.add_forum_channel("articles", tags=["news", "opinion"])
        self.locked = self.guild.add_text_channel(
            "announcements",
            overwrites=[perms.overwrite(self.guild.id, deny=perms.SEND_MESSAGES)],
        )


@pytest.fixture
async def running(fake: FakeDiscord) -> AsyncIterator[tuple[FakeDiscord, World, SmokeBot]]:
    world = World(fake)
    bot = SmokeBot(world.guild.id)
    await bot.login(fake.token)
    task = asyncio.create_task(bot.connect(reconnect=True))
    try:
        await asyncio.wait_for(bot.wait_until_ready(), 5)
        yield fake, world, bot
    finally:
        await bot.close()
        try:
            await asyncio.wait_for(task, 5)
        except (asyncio.CancelledError, Exception):
            pass


async def test_ready_fast_and_synced(fake: FakeDiscord) -> None:
    world = World(fake)
    bot = SmokeBot(world.guild.id)
    t0 = time.monotonic()
    await bot.login(fake.token)
    task = asyncio.create_task(bot.connect())
    try:
        await asyncio.wait_for(bot.wait_until_ready(), 5)
        assert time.monotonic() - t0 < 1.0
        assert fake.identify_count == 1
        assert len(fake.command_syncs) == 1
        names = sorted(c["name"] for c in fake.commands_for(world.guild))
        assert names == ["Profile", "Submit as letter", "pick", "readersviews", "slow", "statement", "upload", "vote"]
        g = bot.get_guild(world.guild.id)
        assert g is not None and g.me is not None
        # without the members intent the guild lists only the bot
        assert [m.id for m in g.members] == [fake.bot.id]
        forum = g.get_channel(world.forum.id)
        assert isinstance(forum, discord.ForumChannel)
        assert [t.name for t in forum.available_tags] == ["news", "opinion"]
    finally:
        await bot.close()
        await asyncio.wait_for(task, 5)


async def test_bad_token_is_login_failure(fake: FakeDiscord) -> None:
    bot = commands.Bot(command_prefix="!", intents=discord.Intents.default())
    with pytest.raises(discord.LoginFailure):
        await bot.login("wrong")
    await bot.close()
    assert fake.requests[-1].status == 401


async def test_slash_and_subcommand_with_followup(running: tuple[FakeDiscord, World, SmokeBot]) -> None:
    fake, w, _bot = running
    ix = await fake.slash(w.guild, w.alice, "readersviews status")
    resp = await ix.wait_response()
    assert resp["type"] == 4
    assert ix.ephemeral and ix.original is not None and ix.original["content"] == "all good"

    ix2 = await fake.slash(w.guild, w.alice, "readersviews feed add", url="https://ex.org/feed", channel=w.general)
    resp = await ix2.wait_response()
    assert resp["type"] == 5
    msg = await ix2.wait_original()
    assert msg["content"] == f"added https://ex.org/feed to <#{w.general.id}>"
    assert ix2.ephemeral
    # the first follow-up after a deferral fills in the "thinking" message
    assert len(ix2.followups) == 1 and ix2.followups[0]["id"] == msg["id"]
    assert fake.messages_in(w.general) == []  # ephemeral messages are not in the channel

    with pytest.raises(ValueError):
        await fake.slash(w.guild, w.alice, "readersviews feed add", url="x")  # missing required option


async def test_button_modal_and_context_menu(running: tuple[FakeDiscord, World, SmokeBot]) -> None:
    fake, w, bot = running
    ix = await fake.slash(w.guild, w.alice, "statement", title="Stop the cuts")
    await ix.wait_response()
    posted = ix.original
    assert posted is not None and posted["components"][0]["components"][0]["custom_id"] == "statements:sign:42"
    assert fake.messages_in(w.general)[-1]["id"] == posted["id"]

    click = await fake.click(w.guild, w.bob, posted, "statements:sign:42")
    resp = await click.wait_response()
    assert resp["type"] == 9 and click.modal is not None
    assert click.modal["components"][0]["type"] == 18  # ui.Label layout

    submit = await fake.submit_modal(w.guild, w.bob, "statements:modal:42", {"name": "Bob B.", "city": "Leeds"})
    resp = await submit.wait_response()
    assert resp["data"]["content"] == "Signed as Bob B."
    assert bot.signatures == [(42, w.bob.id, "Bob B.", "Leeds")]

    user_msg = await fake.message_create(w.general, w.bob, "a fine letter")
    cm = await fake.context_menu(w.guild, w.alice, "Submit as letter", user_msg)
    await cm.wait_response()
    assert bot.letters == [int(user_msg["id"])]


async def test_forum_post_rate_limit_forbidden(running: tuple[FakeDiscord, World, SmokeBot]) -> None:
    fake, w, bot = running
    forum = bot.get_channel(w.forum.id)
    assert isinstance(forum, discord.ForumChannel)
    tag = next(t for t in forum.available_tags if t.name == "news")
    created = await forum.create_thread(name="An article", content="Read it", applied_tags=[tag])
    thread = created.thread
    assert thread.applied_tags == [tag]
    [fake_thread] = fake.threads_in(w.forum)
    assert fake_thread.applied_tags == [tag.id]
    assert fake.messages_in(fake_thread)[0]["content"] == "Read it"

    general = bot.get_channel(w.general.id)
    assert isinstance(general, discord.TextChannel)
    fake.fail_next("POST", r"/channels/\d+/messages$", 429, retry_after=0.05)
    t0 = time.monotonic()
    m = await general.send("after a 429")
    assert time.monotonic() - t0 >= 0.05
    assert fake.count_429 == 1
    assert fake.messages_in(w.general)[-1]["id"] == str(m.id)

    locked = bot.get_channel(w.locked.id)
    assert isinstance(locked, discord.TextChannel)
    with pytest.raises(discord.Forbidden) as info:
        await locked.send("nope")
    assert info.value.code == 50013

    with pytest.raises(discord.HTTPException) as info2:
        await general.send("x" * 2001)
    assert info2.value.code == 50035


async def test_enforced_rate_limit_still_delivers(running: tuple[FakeDiscord, World, SmokeBot]) -> None:
    fake, w, bot = running
    fake.rate_limits.enable(per_channel_messages=(2, 0.2))
    general = bot.get_channel(w.general.id)
    assert isinstance(general, discord.TextChannel)
    await asyncio.gather(*(general.send(f"m{i}") for i in range(5)))
    assert len(fake.messages_in(w.general)) == 5
    assert fake.count_429 == 0  # the client honours X-RateLimit-* headers and waits instead
    last = fake.requests_to("/channels/{channel_id}/messages", method="POST")[-1]
    assert last.status == 200
    fake.fail_next("GET", r"^/channels/\d+$", 429, retry_after=0.02, is_global=True)
    fetched = await bot.fetch_channel(w.general.id)
    assert fetched.id == w.general.id and fake.count_429 == 1


async def test_resume_and_message_create(running: tuple[FakeDiscord, World, SmokeBot]) -> None:
    fake, w, bot = running
    await fake.message_create(w.general, w.bob, "before drop")
    await fake.settle()
    assert [m.content for m in bot.seen_messages] == [""]  # no message-content intent

    await fake.drop_gateway()
    # dispatched while disconnected: replayed on RESUME
    await fake.message_create(w.general, w.bob, f"hello {fake.bot.mention}")
    await fake.wait_for_resume()
    await fake.settle()
    assert fake.resume_count == 1 and fake.identify_count == 1
    assert [m.content for m in bot.seen_messages] == ["", f"hello <@{fake.bot.id}>"]  # mentions show content


@pytest.fixture(autouse=True)
def no_client_errors(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """discord.py logs parser and handler crashes instead of raising: fail on them."""
    caplog.set_level(logging.WARNING, logger="discord")
    yield
    bad = [r for r in caplog.records if r.name.startswith("discord") and r.levelno >= logging.ERROR]
    assert not bad, [r.getMessage() for r in bad]


async def test_members_and_content_intents(fake: FakeDiscord) -> None:
    world = World(fake)
    intents = discord.Intents.default()
    intents.members = True
    intents.message_content = True
    bot = SmokeBot(world.guild.id, intents)
    await bot.login(fake.token)
    task = asyncio.create_task(bot.connect())
    try:
        await asyncio.wait_for(bot.wait_until_ready(), 5)
        g = bot.get_guild(world.guild.id)
        assert g is not None and g.chunked
        assert {m.name for m in g.members} == {"readers-owner", "readersviews", "alice", "bob"}
        alice = g.get_member(world.alice.id)
        assert alice is not None and [r.name for r in alice.roles[1:]] == ["Editor"]
        first = await fake.message_create(world.general, world.bob, "visible with the intent")
        await fake.message_create(world.general, world.alice, "a reply", reference=first)
        await fake.settle()
        assert [m.content for m in bot.seen_messages] == ["visible with the intent", "a reply"]
        assert bot.seen_messages[1].reference is not None
        assert bot.seen_messages[1].reference.message_id == int(first["id"])
        carol = await fake.member_add(world.guild, "carol")
        await fake.settle()
        assert g.get_member(carol.id) is not None
    finally:
        await bot.close()
        await asyncio.wait_for(task, 5)


async def test_update_message_original_and_files(running: tuple[FakeDiscord, World, SmokeBot]) -> None:
    fake, w, bot = running
    ix = await fake.slash(w.guild, w.alice, "vote")
    await ix.wait_response()
    await asyncio.sleep(0.05)
    assert ix.original is not None and bot.originals == [int(ix.original["id"])]
    click = await fake.click(w.guild, w.bob, ix.original, "vote:up")
    resp = await click.wait_response()
    assert resp["type"] == 7
    stored = fake.find_message(ix.original["id"])
    assert stored is not None and stored["content"] == "votes: 1" and stored["components"] == []
    assert fake.edits[-1].via == "interaction" and fake.edits[-1].before["content"] == "votes: 0"

    up = await fake.slash(w.guild, w.alice, "upload", note="the note")
    await up.wait_followup(2)
    first, second = up.followups
    assert first["id"] == up.original["id"]  # type: ignore[index]
    assert first["attachments"][0]["filename"] == "a.txt"
    assert fake.attachment_bytes(first["attachments"][0]) == b"hello"
    assert fake.attachment_bytes(second["attachments"][0]) == b"world"
    assert [m["content"] for m in fake.messages_in(w.general)][-2:] == ["the note", "second"]


async def test_interaction_protocol_errors(running: tuple[FakeDiscord, World, SmokeBot]) -> None:
    fake, w, bot = running
    fake.interaction_timeout = 0.2
    ix = await fake.slash(w.guild, w.alice, "slow")
    await ix.wait_for(lambda i: len(i.callbacks) == 1)
    await asyncio.sleep(0.05)
    assert bot.late_errors == [10062] and not ix.acknowledged

    fake.interaction_timeout = 3.0
    ix2 = await fake.slash(w.guild, w.alice, "readersviews status")
    await ix2.wait_response()
    url = f"{fake.api_base}/interactions/{ix2.id}/{ix2.token}/callback"
    async with aiohttp.ClientSession() as s, s.post(url, json={"type": 4, "data": {"content": "again"}}) as r:
        assert r.status == 400 and r.headers["Content-Type"] == "application/json"
        assert await r.json() == {"message": "Interaction has already been acknowledged.", "code": 40060}


async def test_threads_dms_and_errors(running: tuple[FakeDiscord, World, SmokeBot]) -> None:
    fake, w, bot = running
    general = bot.get_channel(w.general.id)
    assert isinstance(general, discord.TextChannel)
    msg = await general.send("article", file=discord.File(io.BytesIO(b"pdf"), filename="a.pdf"))
    assert msg.attachments[0].filename == "a.pdf" and await msg.attachments[0].read() == b"pdf"
    thread = await msg.create_thread(name="Discuss")
    assert thread.id == msg.id
    await fake.settle()
    assert bot.get_channel(thread.id) is not None
    await thread.send("first reply")
    [t] = fake.threads_in(w.general)
    assert [m["content"] for m in fake.messages_in(t)] == ["first reply"]
    await thread.edit(name="Renamed", archived=True)
    assert t.name == "Renamed" and t.archived

    forum = bot.get_channel(w.forum.id)
    assert isinstance(forum, discord.ForumChannel)
    post = (await forum.create_thread(name="Post", content="body")).thread
    opinion = next(x for x in forum.available_tags if x.name == "opinion")
    await post.edit(applied_tags=[opinion])
    assert fake.channel(post.id).applied_tags == [opinion.id]  # type: ignore[union-attr]

    with pytest.raises(discord.HTTPException) as too_long:
        await forum.create_thread(name="x" * 101, content="body")
    assert too_long.value.code == 50035
    with pytest.raises(discord.HTTPException) as empty:
        await general.send("")
    assert empty.value.code == 50006
    with pytest.raises(discord.NotFound) as unknown:
        await bot.http.send_message(123456789012345678, params=discord.http.handle_message_parameters("x"))
    assert unknown.value.code == 10003

    bob = await bot.fetch_user(w.bob.id)
    dm = await bob.send("hello bob")
    assert fake.messages_in(dm.channel.id)[0]["content"] == "hello bob"
    fake.dm_closed.add(w.alice.id)
    alice = await bot.fetch_user(w.alice.id)
    with pytest.raises(discord.Forbidden) as closed:
        await alice.send("hi")
    assert closed.value.code == 50007
    member = await bot.get_guild(w.guild.id).fetch_member(w.alice.id)  # type: ignore[union-attr]
    assert member.joined_at is not None


async def test_abrupt_drop_and_reconnect_op(running: tuple[FakeDiscord, World, SmokeBot]) -> None:
    fake, w, bot = running
    await fake.drop_gateway(abrupt=True)
    await fake.wait_for_resume()
    fake.gateway.resumed.clear()
    await fake.send_reconnect()
    await fake.wait_for_resume()
    await fake.message_create(w.general, w.bob, f"{fake.bot.mention} still there?")
    await fake.settle()
    assert fake.resume_count == 2 and fake.identify_count == 1
    assert bot.seen_messages[-1].content.endswith("still there?")


async def test_autocomplete_select_and_user_command(running: tuple[FakeDiscord, World, SmokeBot]) -> None:
    fake, w, bot = running
    ac = await fake.autocomplete(w.guild, w.alice, "pick", "tag", "op")
    await ac.wait_response()
    assert ac.choices == [{"name": "opinion", "value": "opinion"}]

    ix = await fake.slash(w.guild, w.alice, "pick", tag="news", role=w.editor_role)
    await ix.wait_response()
    assert ix.original is not None and ix.original["content"] == "news Editor"
    sel = await fake.select(w.guild, w.bob, ix.original, "pick:tags", ["a", "c"])
    assert (await sel.wait_response())["type"] == 6
    await sel.wait_edit()
    assert bot.picked == [["a", "c"]]
    assert fake.find_message(ix.original["id"])["content"] == "picked a,c"  # type: ignore[index]

    prof = await fake.context_menu(w.guild, w.alice, "Profile", w.bob)
    assert (await prof.wait_response())["data"]["content"] == "bob joined"


class ShardedSmokeBot(commands.AutoShardedBot):
    def __init__(self, shard_ids: list[int] | None, shard_count: int | None) -> None:
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=discord.Intents.default(),
            guild_ready_timeout=0.05,
            shard_ids=shard_ids,
            shard_count=shard_count,
        )
        self.seen: list[tuple[int, int | None]] = []  # (guild id, shard id) of each message

    async def on_message(self, message: discord.Message) -> None:
        self.seen.append((message.guild.id if message.guild else 0, message.guild.shard_id if message.guild else None))


async def test_shards_get_only_their_guilds(fake: FakeDiscord) -> None:
    """IDENTIFY with shard [id, count]: READY and every event of a guild go to shard (guild_id >> 22) % count."""
    on_zero = fake.add_guild("Zero", shard=(0, 2))
    on_one = fake.add_guild("One", shard=(1, 2))
    channels = {g.id: g.add_text_channel("general") for g in (on_zero, on_one)}
    writers = {g.id: g.add_member(f"writer-{g.name.lower()}") for g in (on_zero, on_one)}
    fake.recommended_shards = 2
    one = ShardedSmokeBot(shard_ids=[1], shard_count=2)
    await one.login(fake.token)
    task = asyncio.create_task(one.connect())
    try:
        await fake.wait_for_shards({1})
        await asyncio.wait_for(one.wait_until_ready(), 5)
        assert fake.shards == {1: (1, 2)}
        assert [g.id for g in one.guilds] == [on_one.id], "shard 1 of 2 gets only its guild"
        await fake.message_create(channels[on_one.id], writers[on_one.id], "to shard 1")
        assert not await fake.dispatch("MESSAGE_CREATE", {"guild_id": str(on_zero.id)}), "shard 0 is not connected"
        await fake.settle()
        assert one.seen == [(on_one.id, 1)]
    finally:
        await one.close()
        await asyncio.wait_for(task, 5)

    # One client running both shards (count from GET /gateway/bot) sees both guilds, each on its shard.
    both = ShardedSmokeBot(shard_ids=None, shard_count=None)
    await both.login(fake.token)
    task = asyncio.create_task(both.connect())
    try:
        await fake.wait_for_shards({0, 1})
        await asyncio.wait_for(both.wait_until_ready(), 10)
        assert {g.id: g.shard_id for g in both.guilds} == {on_zero.id: 0, on_one.id: 1}
        for guild in (on_zero, on_one):
            await fake.message_create(channels[guild.id], writers[guild.id], "hello")
        await fake.settle()
        assert sorted(both.seen) == sorted([(on_zero.id, 0), (on_one.id, 1)])
    finally:
        await both.close()
        await asyncio.wait_for(task, 5)


async def test_identify_with_a_bad_shard_is_closed_4010(fake: FakeDiscord) -> None:
    fake.add_guild("Any")
    for shard in ([2, 2], [0, 0], "0,1"):
        async with aiohttp.ClientSession() as session, session.ws_connect(fake.gateway_url) as ws:
            await ws.receive_json()  # HELLO
            await ws.send_json({"op": 2, "d": {"token": fake.token, "intents": 1, "properties": {}, "shard": shard}})
            closed = await ws.receive()
            assert closed.type == aiohttp.WSMsgType.CLOSE and closed.data == 4010, (shard, closed)
    assert fake.identify_count == 0
