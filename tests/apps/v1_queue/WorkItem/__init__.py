"""A v1-model queue-triggered function: function.json names the queue, main() gets the message."""

import json
import logging

import azure.functions as func


def main(msg: func.QueueMessage) -> None:
    item = json.loads(msg.get_body())  # not JSON: raises, and the host retries the message
    logging.info("work item %s, try %d", item, msg.dequeue_count)
