"""A Service Bus batch function (cardinality "many") for tests/test_servicebus.py: each
message's work is a 50 ms wait, awaited together; a body that is not JSON fails the batch."""

import asyncio
import json

import azure.functions as func

app = func.FunctionApp()


@app.service_bus_queue_trigger(
    arg_name="messages",
    queue_name="orders",
    connection="ServiceBusConnection",
    cardinality=func.Cardinality.MANY,
)
async def orders_batch(messages: list[func.ServiceBusMessage]) -> None:
    for message in messages:
        json.loads(message.get_body())
    await asyncio.gather(*(asyncio.sleep(0.05) for _ in messages))
