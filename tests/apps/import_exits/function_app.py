"""An app whose import ends the worker process: the host must say so in one line."""

import os

print("about to leave", flush=True)
os._exit(7)
