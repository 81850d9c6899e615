"""Queue triggers: the message the worker decodes, the host's listener, the lab and its panel.

- ``message``: a queue message's fields, sent to a worker and decoded there as the worker does;
- ``listener``: the host's queue listener (batches, polling, poison queue), after the
  Storage Queues extension's code;
- ``lab``: ``QueueLab``, Azurite and worker processes, and ``drain()``, one measured run;
- ``panel``: ``QueuePanel``, the notebook's controls for a drain.
"""
