"""RabbitMQ: every process declares the topology the callbacks and webhooks need, idempotently."""

import aio_pika

from nespay.broker import (
    CALLBACKS_QUEUE,
    EVENTS_EXCHANGE,
    PROVIDER_WEBHOOKS_QUEUE,
    RETRY_DELAYS_S,
    Broker,
    retry_queue_name,
)
from tests.fixtures.database import make_settings

RABBITMQ = "amqp://guest:guest@127.0.0.1:5672/"


async def test_topology_is_declared_and_a_second_declaration_changes_nothing(database_url):
    settings = make_settings(database_url, rabbitmq_url=RABBITMQ)
    first, second = Broker(settings), Broker(settings)
    await first.start()
    await second.start()  # declaring again must not fail
    try:
        assert await first.health() == ("up", None)
        connection = await aio_pika.connect(RABBITMQ)
        async with connection:
            channel = await connection.channel()
            await channel.get_exchange(EVENTS_EXCHANGE, ensure=True)
            for name in [CALLBACKS_QUEUE, PROVIDER_WEBHOOKS_QUEUE] + [
                retry_queue_name(d) for d in RETRY_DELAYS_S
            ]:
                await channel.get_queue(name, ensure=True)  # passive: raises if missing
    finally:
        await first.close()
        await second.close()


async def test_a_published_event_reaches_the_callbacks_queue(database_url):
    broker = Broker(make_settings(database_url, rabbitmq_url=RABBITMQ))
    await broker.start()
    try:
        exchange = await broker.channel.get_exchange(EVENTS_EXCHANGE)
        marker = b'{"probe": "topology-test"}'
        await exchange.publish(aio_pika.Message(marker), routing_key="invoice.paid")
        queue = await broker.channel.get_queue(CALLBACKS_QUEUE)
        found = False
        for _ in range(50):
            message = await queue.get(fail=False, timeout=2)
            if message is None:
                break
            if message.body == marker:
                await message.ack()
                found = True
                break
            await message.nack(requeue=True)
        assert found
    finally:
        await broker.close()


async def test_rabbitmq_down_at_start_does_not_stop_the_process(database_url):
    broker = Broker(make_settings(database_url, rabbitmq_url="amqp://guest:guest@127.0.0.1:1/"))
    await broker.start(timeout_s=2)
    try:
        status, message = await broker.health()
        assert status == "down" and "retrying" in message
    finally:
        await broker.close()
