"""What the worker hands a function besides its trigger: ``context`` and ``func.Out`` objects.

The worker passes a ``context`` argument when the function declares one (any parameter
named ``context`` that is not a binding), and one ``Out`` object per output binding; after
the call it reads each ``Out`` back and sends the value to the host, which writes it to
the queue, blob, ... Here the values are kept on the invocation's record instead, so a
run or ``serve`` can show what the function would have written.
Sources: azure-functions-python-worker ``functions.py`` (``is_context_required``, ``Out``
annotations), ``bindings/context.py``, ``bindings/out.py``.
"""

from __future__ import annotations

import threading
import uuid
from typing import TYPE_CHECKING, Any

import azure.functions as func
from azure.functions import _abc

if TYPE_CHECKING:
    from .app_loader import FunctionInfo


class Out(func.Out):
    """An output binding's value holder, as the worker's ``bindings.out.Out``."""

    def __init__(self) -> None:
        self._value: Any = None

    def set(self, val: Any) -> None:
        self._value = val

    def get(self) -> Any:
        return self._value


class _TraceContext(_abc.TraceContext):
    trace_parent = ""
    trace_state = ""
    attributes: dict[str, str] = {}  # noqa: RUF012 - read-only, as the worker's


class _RetryContext(_abc.RetryContext):
    retry_count = 0
    max_retry_count = 0
    exception = None  # type: ignore[assignment]


class Context(func.Context):
    """The invocation context the worker builds: id, function name and folder."""

    _tls = threading.local()

    def __init__(self, invocation_id: str, function_name: str, function_directory: str) -> None:
        self._invocation_id = invocation_id
        self._function_name = function_name
        self._function_directory = function_directory

    @property
    def invocation_id(self) -> str:
        return self._invocation_id

    @property
    def function_name(self) -> str:
        return self._function_name

    @property
    def function_directory(self) -> str:
        return self._function_directory

    @property
    def thread_local_storage(self) -> threading.local:  # type: ignore[override]
        return self._tls

    @property
    def trace_context(self) -> _abc.TraceContext:
        return _TraceContext()

    @property
    def retry_context(self) -> _abc.RetryContext:
        return _RetryContext()


def shown_value(value: Any) -> Any:
    """An output value as the record keeps it: plain data as is, anything else as text."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, (list, tuple)):
        return [shown_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): shown_value(v) for k, v in value.items()}
    if isinstance(value, func.HttpResponse):
        return f"HttpResponse({value.status_code}, {value.get_body()[:200]!r})"
    return repr(value)


def output_bytes(value: Any) -> bytes:
    """A blob output's value as the host writes it: bytes, text as UTF-8, a stream read."""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, str):
        return value.encode()
    if hasattr(value, "read"):
        return bytes(value.read())
    raise TypeError(f"a blob output takes bytes, str or a stream, not {type(value).__name__}")


def arguments(
    fn: FunctionInfo, trigger_value: Any, invocation_id: int, inputs: dict[str, Any] | None = None
) -> tuple[dict[str, Any], dict[str, Out]]:
    """The keyword arguments the worker passes, and the ``Out`` objects among them;
    ``inputs``: input bindings' values the host read for this invocation (e.g. blobs)."""
    kwargs: dict[str, Any] = {fn.trigger_param: trigger_value} if fn.trigger_param else {}
    kwargs.update(inputs or {})
    if fn.context_param:
        # The host's invocation id is a GUID; this one is derived from the engine's counter.
        kwargs[fn.context_param] = Context(
            str(uuid.UUID(int=abs(invocation_id))), fn.name, fn.directory
        )
    outs = {name: Out() for name, _type in fn.outputs}
    if fn.http_output != "$return":
        outs[fn.http_output] = Out()
    return {**kwargs, **outs}, outs
