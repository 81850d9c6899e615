"""A blob crossing the host-worker boundary, and what the worker makes of it.

The host reads the new blob (and any blob input binding the function declares) and sends
the bytes with the blob's path and URI; the worker gives the function an
``azure.functions.InputStream`` (``blob.py``; ``name`` is "container/blob", as the worker
passes it). A blob-triggered function has no HTTP response: an exception fails the
invocation; what it sets on a blob output binding the host then writes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from azure.functions.blob import InputStream

from ..invocation import HttpResponseFields


@dataclass
class BlobFields:
    """What the host sends to a worker for a blob-triggered invocation."""

    name: str  # container/blob
    data: bytes
    uri: str = ""
    inputs: dict[str, bytes] = field(default_factory=dict)  # blob input bindings, by argument

    def to_request(self) -> InputStream:
        return InputStream(data=self.data, name=self.name, uri=self.uri, length=len(self.data))

    def input_values(self) -> dict[str, Any]:
        return {
            argument: InputStream(data=data, length=len(data))
            for argument, data in self.inputs.items()
        }

    def encode_return(self, value: Any) -> HttpResponseFields:
        """Success whatever it returned (no $return binding here)."""
        return HttpResponseFields(200)


def path_values(pattern: str, path: str) -> dict[str, str] | None:
    """The ``{name}`` values of a blob path pattern ("images/{name}") in a blob's path, or
    None when it does not match (the trigger ignores that blob)."""
    regex, pos = "", 0
    for match in re.finditer(r"\{(\w+)\}", pattern):
        regex += re.escape(pattern[pos : match.start()]) + f"(?P<{match.group(1)}>.+?)"
        pos = match.end()
    found = re.fullmatch(regex + re.escape(pattern[pos:]), path)
    return found.groupdict() if found else None


def fill(pattern: str, values: dict[str, str]) -> str:
    """A binding's path with the trigger's ``{name}`` values put in."""
    return re.sub(r"\{(\w+)\}", lambda m: values.get(m.group(1), m.group(0)), pattern)
