"""Service Bus triggers: the entity (emulated in process), the message the worker decodes,
the host's listener after the Service Bus extension, and the lab.

- ``broker``: ``ServiceBusQueue``, an in-process queue entity with peek-lock, lock expiry,
  delivery count, dead-lettering and sessions (no emulator installs without containers);
- ``message``: the fields sent to a worker, built into ``azure.functions.ServiceBusMessage``;
- ``listener``: ``ServiceBusOptions`` (host.json ``extensions.serviceBus``) and
  ``ServiceBusListener``: maxConcurrentCalls, sessions, autoCompleteMessages;
- ``lab``: ``ServiceBusLab`` and ``ServiceBusTrigger``, one measured run.
"""
