"""Event Hubs triggers: the event hub (emulated in process), the events the worker decodes,
the host's partition processors after the Event Hubs extension, and the lab.

- ``broker``: ``EventHub`` (partitions, sequence numbers, partition keys) and
  ``CheckpointStore`` (no emulator installs without containers);
- ``message``: the fields sent to a worker, built into ``azure.functions.EventHubEvent``
  (a list of them for ``cardinality="many"``);
- ``listener``: ``EventHubOptions`` (host.json ``extensions.eventHubs``) and
  ``EventHubListener``: one batch at a time per partition, checkpoints, no retry;
- ``lab``: ``EventHubLab`` and ``EventHubTrigger``, one measured run.
"""
