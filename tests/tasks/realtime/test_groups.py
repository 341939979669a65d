"""Sending to many channel-layer groups at once (``group_send_many``, and ``push_to_users`` from
sync code) on the real Redis layer: what each channel receives, in which order, and a full channel
dropping as ``group_send`` does.

Each test makes a layer of its own (the settings' configuration, this run's prefix): the
process's shared layer keeps receive state bound to the event loop of whoever used it last.
"""

import asyncio

import pytest

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from channels_redis.core import RedisChannelLayer

from tasks.realtime.groups import group_send_many, push_batch_message, push_to_users, user_group_name


@pytest.fixture
def new_layer(settings):
    """A function making a fresh layer with the settings' configuration and ``overrides``."""
    return lambda **overrides: RedisChannelLayer(**{**settings.CHANNEL_LAYERS["default"]["CONFIG"], **overrides})


def test_every_channel_of_each_group_receives_its_groups_messages_in_the_order_of_the_calls(new_layer):
    async def scenario():
        layer = new_layer()
        # Two channels of one process share a Redis key; a third group has nobody listening.
        ada_tab, ada_phone, grace = [await layer.new_channel() for _ in range(3)]
        for group, channel in (("user.ada", ada_tab), ("user.ada", ada_phone), ("user.grace", grace)):
            await layer.group_add(group, channel)
        await group_send_many(layer, [
            ("user.ada", {"type": "push", "n": 1}), ("user.grace", {"type": "push", "n": 2}),
            ("user.nobody", {"type": "push", "n": 0}),
        ])
        await group_send_many(layer, [("user.ada", {"type": "push", "n": 3})])
        try:
            return {
                "tab": [(await layer.receive(ada_tab))["n"] for _ in range(2)],
                "phone": [(await layer.receive(ada_phone))["n"] for _ in range(2)],
                "grace": [(await layer.receive(grace))["n"]],
            }
        finally:
            await layer.close_pools()

    assert async_to_sync(scenario)() == {"tab": [1, 3], "phone": [1, 3], "grace": [2]}


def test_a_full_channel_drops_the_new_message_as_group_send_does(new_layer):
    async def scenario():
        layer = new_layer(capacity=2)
        try:
            channel = await layer.new_channel()
            await layer.group_add("user.busy", channel)
            for n in range(3):
                await group_send_many(layer, [("user.busy", {"type": "push", "n": n})])
            received = [(await layer.receive(channel))["n"] for _ in range(2)]
            await group_send_many(layer, [("user.busy", {"type": "push", "n": 3})])  # room again
            return received + [(await layer.receive(channel))["n"]]
        finally:
            await layer.close_pools()

    assert async_to_sync(scenario)() == [0, 1, 3]


def test_group_send_and_group_send_many_to_one_channel_arrive_in_the_order_of_the_calls(new_layer):
    """The notification service pushes with ``group_send``, the bridge with ``group_send_many``:
    one socket receives both in the order they were sent."""
    async def scenario():
        layer = new_layer()
        try:
            channel = await layer.new_channel()
            await layer.group_add("user.mixed", channel)
            await layer.group_send("user.mixed", {"type": "push", "n": 1})
            await group_send_many(layer, [("user.mixed", {"type": "push", "n": 2})])
            await layer.group_send("user.mixed", {"type": "push", "n": 3})
            return [(await layer.receive(channel))["n"] for _ in range(3)]
        finally:
            await layer.close_pools()

    assert async_to_sync(scenario)() == [1, 2, 3]


def test_a_member_whose_membership_expired_is_dropped_from_its_group_and_the_others_receive(new_layer):
    async def scenario():
        layer = new_layer(group_expiry=60)
        group = "user.expiring"
        try:
            stale, fresh = await layer.new_channel(), await layer.new_channel()
            connection = layer.connection(layer.consistent_hash(group))
            # channels-redis scores a membership with its join time: this one joined long ago.
            await connection.zadd(layer._group_key(group), {stale: 0})
            await layer.group_add(group, fresh)
            await group_send_many(layer, [(group, {"type": "push", "n": 1})])
            received = (await layer.receive(fresh))["n"]
            return received, [name.decode() for name in await connection.zrange(layer._group_key(group), 0, -1)], fresh
        finally:
            await layer.close_pools()

    received, members, fresh = async_to_sync(scenario)()
    assert (received, members) == (1, [fresh])


def test_push_to_users_sends_each_user_their_messages_as_one_push_batch_again_and_again_from_one_thread():
    layer = get_channel_layer()  # push_to_users sends on the process's layer

    async def listening(*groups):
        channels = {group: await layer.new_channel() for group in groups}
        for group, channel in channels.items():
            await layer.group_add(group, channel)
        return channels

    channels = asyncio.run(listening(user_group_name(1), user_group_name(2)))
    push_to_users({1: [{"n": 1}, {"n": 2}], 2: [{"n": 3}]})
    push_to_users({1: [{"n": 4}]})  # the thread's loop and its connections, used again

    async def receive_all():
        return [await layer.receive(channels[user_group_name(user)]) for user in (1, 1, 2)]

    first, second, other = asyncio.run(asyncio.wait_for(receive_all(), timeout=5))
    assert first == push_batch_message([{"n": 1}, {"n": 2}]) and second == push_batch_message([{"n": 4}])
    assert other == push_batch_message([{"n": 3}])
