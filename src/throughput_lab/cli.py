"""``python -m throughput_lab bench|sweep|serve|tune|locustfile|scale``: see docs/cli.md.

Bad input exits with status 2 and one line on stderr; Ctrl-C exits with 130 and leaves no
worker process behind; neither prints a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import faulthandler
import json
import math
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from tqdm import tqdm

from . import __version__
from .app_loader import AppLoadError
from .app_settings import (
    PROCESS_COUNT_SETTING,
    SettingError,
    check_processes,
    check_threads_flag,
    processes_from_setting,
)
from .broker_bench import (
    STORAGE_QUEUE,
    add_broker_options,
    bench_broker,
    check_flags,
    refuse_for_tune,
    trigger_of,
)
from .host import Host
from .lab import ALONE_SAME, DEFAULT_TIMEOUT_S, Lab, alone_note, find_app, function_timeout_s
from .local_settings import LocalSettingsError, app_environment
from .metrics import Summary
from .queue.lab import DrainResult, QueueLab
from .queue.listener import MAX_BATCH_SIZE
from .remote import UnreachableError, check_url, plan_remote_load, run_bench_url
from .upstream import Upstream

PROG = "throughput_lab"
MAX_CONCURRENCY = 1000  # requests in flight: each is a task and a message in a worker
JSON_TYPE = "application/json"
STOP_LIMIT_S = 10.0  # after Ctrl-C or SIGTERM, the longest an orderly stop may take


class Terminated(KeyboardInterrupt):
    """SIGTERM: stop as for Ctrl-C (workers ended in order), exit 143."""


class UsageError(Exception):
    """Bad input: one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _concurrency(text: str) -> int:
    value = _positive_int(text)
    if value > MAX_CONCURRENCY:
        raise argparse.ArgumentTypeError(f"must be <= {MAX_CONCURRENCY}, got {value}")
    return value


def _number(low: float, high: float, *, low_open: bool = False) -> Callable[[str], float]:
    """A finite number in [low, high] (or (low, high] with ``low_open``)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        too_low = value <= low if low_open else value < low
        if not math.isfinite(value) or too_low or value > high:
            bound = f"> {low:g}" if low_open else f">= {low:g}"
            raise argparse.ArgumentTypeError(
                f"must be a number {bound} and <= {high:g}, got {text}"
            )
        return value

    return parse


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be 0-65535 (0: any free port), got {value}")
    return value


def _int_list(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers like 1,4,16, got {text!r}") from None


def _param(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, value


def _header(text: str) -> tuple[str, str]:
    """``Name: value``. The name may hold a space ("X Agent: 1"): bench has always sent
    such a header on, so refusing it now would break a command that works."""
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected 'Name: value', got {text!r}")
    return name.strip(), value.strip()


def request_options(p: argparse.ArgumentParser) -> None:
    """The request each invocation gets: by path, method, body and headers."""
    p.add_argument("--method", help="HTTP method (default: GET, or the function's only one)")
    p.add_argument(
        "--path",
        help="request path such as /api/users/7, routed like the host "
        "(routePrefix from host.json); --function may then be left out",
    )
    body = p.add_mutually_exclusive_group()
    body.add_argument("--body", help="request body text (sent without a Content-Type)")
    body.add_argument("--body-file", type=Path, help="request body from a file")
    body.add_argument(
        "--json-body",
        help="a JSON request body, sent with Content-Type and Accept: application/json "
        "(as curl --json)",
    )
    p.add_argument(
        "--alone",
        default=ALONE_SAME,
        help="what is sent before the run to warm up and time alone: 'same' (default), "
        "'none', or another request such as 'GET /api/users/2' (for a request that "
        "changes state)",
    )
    p.add_argument(
        "--header",
        type=_header,
        action="append",
        default=[],
        help="request header 'Name: value' (repeatable)",
    )


def request_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """``Lab.run`` keyword arguments for the request options."""
    if args.body_file is not None:
        try:
            body = args.body_file.read_bytes()
        except OSError as exc:
            raise UsageError(f"cannot read --body-file {args.body_file}: {exc.strerror}") from None
    else:
        body = (args.body or "").encode()
    headers = dict(args.header)
    if args.json_body is not None:
        try:
            json.loads(args.json_body)
        except ValueError as exc:
            raise UsageError(f"--json-body is not JSON: {exc}") from None
        body = args.json_body.encode()
        named = {k.lower() for k in headers}
        # curl --json: these two headers, unless given.
        for name in ("Content-Type", "Accept"):
            if name.lower() not in named:
                headers[name] = JSON_TYPE
    return {
        "method": args.method,
        "path": args.path,
        "body": body,
        "headers": headers,
        "alone": args.alone,
    }


def sent_line(args: argparse.Namespace, request: dict[str, Any]) -> str:
    """What each request carried, for a 422 (a web framework refused the request's shape)."""
    content_type = next(
        (v for k, v in request["headers"].items() if k.lower() == "content-type"), None
    )
    what = f"Content-Type: {content_type}" if content_type else "no Content-Type"
    line = (
        f"sent: {(request['method'] or 'GET').upper()} {request.get('path') or args.function}"
        f" with a {len(request['body'])}-byte body and {what}"
    )
    if request["body"] and not content_type:
        line += "; a JSON API (FastAPI) reads a JSON body only with its Content-Type: --json-body"
    return line


def _app_options(p: argparse.ArgumentParser, threads_list: bool = False) -> None:
    """The app and its workers: folder, processes, threads, upstream, limits.

    ``threads_list``: --processes and --threads take lists such as 1,4,16 (sweep, tune).
    """
    p.add_argument(
        "--app",
        help="function app folder (default: sample_functions here or above, "
        "else the sample app installed with this tool)",
    )
    p.add_argument(
        "--processes",
        type=_int_list if threads_list else int,
        help=f"worker processes (default: ${PROCESS_COUNT_SETTING} or 1)",
    )
    p.add_argument(
        "--threads",
        type=_int_list if threads_list else int,
        help="PYTHON_THREADPOOL_THREAD_COUNT (default: the environment's, "
        "else the worker's default)",
    )
    p.add_argument(
        "--upstream-delay-ms",
        type=_number(0, 600_000),
        default=100.0,
        help="delay of the embedded upstream (default 100)",
    )
    p.add_argument(
        "--timeout",
        type=_number(0, 86_400, low_open=True),
        help="function timeout in seconds (default: functionTimeout in host.json, else 30)",
    )
    p.add_argument(
        "--max-worker-mb",
        type=_number(50, 1_000_000),
        help="end (and report) a worker whose memory, its children's included, passes this",
    )


def _load_options(p: argparse.ArgumentParser) -> None:
    """The load: requests in flight, how many or how long, the request, --json."""
    p.add_argument(
        "--concurrency",
        type=_concurrency,
        default=8,
        help=f"requests in flight (1-{MAX_CONCURRENCY})",
    )
    p.add_argument("--requests", type=_positive_int, help="requests in total")
    p.add_argument(
        "--duration",
        type=_number(0, 86_400, low_open=True),
        help="seconds to run instead of a count",
    )
    p.add_argument(
        "--param",
        type=_param,
        action="append",
        default=[],
        help="query parameter NAME=VALUE for the function (repeatable)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    request_options(p)


def add_queue_options(bench: argparse.ArgumentParser) -> None:
    """``bench --messages N`` drains a queue (storage, Service Bus) or an event hub."""
    bench.add_argument(
        "--messages",
        type=int,
        help="queue-, Service Bus- or Event Hubs-triggered function: messages (events) to "
        "send and drain",
    )
    bench.add_argument("--batch-size", type=int, help="batchSize (default: host.json, else 16)")
    bench.add_argument(
        "--new-batch-threshold",
        type=int,
        help="newBatchThreshold (default: host.json, else batchSize / 2 x cores)",
    )
    bench.add_argument(
        "--bad-messages", type=int, default=0, help="of the messages, how many fail (poison)"
    )
    add_broker_options(bench)
    bench.add_argument(
        "--blobs",
        type=_positive_int,
        help="blob-triggered function: images to upload to its container and run (Azurite)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    # The order here is the order --help lists them in.
    parsers = (_bench_parser, _sweep_parser, _tune_parser, _serve_parser, _locustfile_parser)
    for add in (*parsers, _scale_parser):
        add(commands)
    return parser


def _bench_parser(commands: Any) -> None:
    bench = commands.add_parser("bench", help="measure one function, or a live URL")
    _app_options(bench)
    bench.add_argument("--function", help="function name (with --app)")
    bench.add_argument("--url", help="measure a live HTTP endpoint instead")
    _load_options(bench)
    add_queue_options(bench)


def _sweep_parser(commands: Any) -> None:
    sweep = commands.add_parser("sweep", help="a grid of thread counts x process counts")
    _app_options(sweep, threads_list=True)
    sweep.add_argument("--function", help="function name (or give --path)")
    _load_options(sweep)


def _tune_parser(commands: Any) -> None:
    tune = commands.add_parser("tune", help="measured app settings for one function or request")
    _app_options(tune, threads_list=True)
    tune.add_argument("--function", help="function name (or give --path)")
    tune.add_argument("--concurrency", type=_concurrency, default=32, help="requests in flight")
    tune.add_argument(
        "--duration",
        type=_number(0, 86_400, low_open=True),
        default=1.5,
        help="seconds per setting tried",
    )
    tune.add_argument(
        "--param", type=_param, action="append", default=[], help="query parameter NAME=VALUE"
    )
    tune.add_argument("--json", action="store_true", help="print one JSON object")
    request_options(tune)


def _serve_parser(commands: Any) -> None:
    serve = commands.add_parser("serve", help="serve the app at /api/<route> like func start")
    _app_options(serve)
    serve.add_argument("--port", type=_port, default=7071, help="0: any free port")


def _locustfile_parser(commands: Any) -> None:
    locust = commands.add_parser(
        "locustfile", help="write the bench scenario as a Locust test (and Azure Load Testing YAML)"
    )
    locust.add_argument("--url", required=True, help="the function's URL (the key: $FUNCTION_KEY)")
    locust.add_argument("--path", help="path and query, e.g. /api/sync_io (replaces the URL's)")
    locust.add_argument("--method", default="GET")
    locust.add_argument("--body", help="request body")
    locust.add_argument(
        "--header", type=_header, action="append", default=[], help="'Name: value' (repeatable)"
    )
    locust.add_argument("--users", type=_positive_int, default=8, help="requests in flight")
    locust.add_argument("--run-time", type=_positive_int, default=60, help="seconds (default 60)")
    locust.add_argument("--out", default="loadtest", help="folder to write into (default loadtest)")
    locust.add_argument("--engine-instances", type=_positive_int, default=1)
    locust.add_argument(
        "--key-vault-secret", help="Key Vault secret identifier of the function key"
    )
    locust.add_argument("--test-id", help="Azure Load Testing testId")


def _scale_parser(commands: Any) -> None:
    from .scale.controller import DEFAULT_MAX_INSTANCES, HIGHEST_MAX_INSTANCES
    from .scale.traffic import SHAPES

    scale = commands.add_parser(
        "scale", help="scale a function out: simulate the platform's controller, or run it live"
    )
    _app_options(scale)
    scale.add_argument("--function", help="function name (or give --path)")
    request_options(scale)
    scale.add_argument("--traffic", choices=SHAPES, required=True, help="the load's shape")
    scale.add_argument(
        "--peak-rps",
        type=_number(0, 1_000_000, low_open=True),
        required=True,
        help="requests per second at the peak",
    )
    scale.add_argument(
        "--duration",
        type=_number(0, 86_400, low_open=True),
        help="seconds of traffic (default: 600 simulated, 30 live)",
    )
    _scale_concurrency_options(scale)
    scale.add_argument(
        "--decision-s",
        type=_number(0, 3600, low_open=True),
        help="seconds between the controller's decisions (HTTP 1; a queue 30, the platform's "
        "rate for non-HTTP triggers: give less for a short live run)",
    )
    scale.add_argument(
        "--max-instances",
        type=_bounded_int(1, HIGHEST_MAX_INSTANCES),
        default=DEFAULT_MAX_INSTANCES,
        help=f"maximumInstanceCount, 1-{HIGHEST_MAX_INSTANCES} (default {DEFAULT_MAX_INSTANCES})",
    )
    scale.add_argument(
        "--always-ready",
        type=_bounded_int(0, HIGHEST_MAX_INSTANCES),
        default=0,
        help="always-ready instances (default 0)",
    )
    scale.add_argument(
        "--startup-s",
        type=_number(0, 600),
        help="seconds before a new instance serves (default: this machine's measured "
        "start-up + the allocation delay)",
    )
    scale.add_argument("--seed", type=int, default=1, help="the arrivals' random seed")
    scale.add_argument("--live", action="store_true", help="run real instances on this machine")
    scale.add_argument("--json", action="store_true", help="print one JSON object")


def _scale_concurrency_options(scale: argparse.ArgumentParser) -> None:
    """What one instance holds at once: HTTP's per-instance concurrency, or a queue
    listener's batchSize + newBatchThreshold (``cmd_scale`` refuses the other trigger's)."""
    scale.add_argument(
        "--per-instance-concurrency",
        type=_concurrency,
        help="HTTP requests one instance holds at once (Flex's default for Python: 1)",
    )
    scale.add_argument(
        "--batch-size",
        type=_bounded_int(1, MAX_BATCH_SIZE),
        help="a queue-triggered function: host.json queues.batchSize (its value, else 16)",
    )
    scale.add_argument(
        "--new-batch-threshold",
        type=_bounded_int(0, 10_000),
        help="a queue-triggered function: queues.newBatchThreshold (host.json's, else "
        "batchSize / 2 x cores)",
    )


def _bounded_int(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be {low}-{high}, got {value}")
        return value

    return parse


def _processes(value: int | None, app: Path | None = None) -> int:
    """The flag, else FUNCTIONS_WORKER_PROCESS_COUNT as func start sees it (local.settings.json
    included), else 1."""
    if value is None:
        return processes_from_setting(app_environment(app).get(PROCESS_COUNT_SETTING))
    return check_processes(value)


def _app(path: str | None) -> Path:
    app = find_app() if path is None else Path(path)
    if not app.is_dir():
        raise AppLoadError(f"function app folder not found: {path or app}")
    return app


def _progress(total: int | None) -> tuple[Callable[[Any], None], Any]:
    """A tqdm bar on stderr that shows itself only for runs longer than about 2 s."""
    bar = tqdm(total=total, unit="req", delay=2.0, file=sys.stderr, leave=False, disable=None)
    return (lambda _record: bar.update()), bar


def _emit(summary: Summary, as_json: bool, sent: str = "") -> None:
    if as_json:
        print(json.dumps(summary.as_dict()))
    else:
        print(summary.line())
        if summary.error_samples:
            print("errors: " + " | ".join(summary.error_samples))
    if sent and any(e.startswith("HTTP 422") for e in summary.error_samples):
        print(sent, file=sys.stderr if as_json else sys.stdout)


def _note_alone(args: argparse.Namespace, processes: int) -> None:
    note = alone_note(args.method, args.alone, processes)
    if note:
        print(note, file=sys.stderr, flush=True)


def bench_queue(args: argparse.Namespace, processes: int, app: Path) -> DrainResult:
    """The CLI's queue bench: one drain in a fresh QueueLab."""
    if args.messages < 1:
        raise ValueError(f"--messages must be >= 1, got {args.messages}")
    with QueueLab(app, upstream_delay_ms=args.upstream_delay_ms, timeout_s=args.timeout) as lab:
        return lab.drain(
            args.function,
            args.messages,
            processes=processes,
            threads=args.threads,
            batch_size=args.batch_size,
            new_batch_threshold=args.new_batch_threshold,
            bad_messages=args.bad_messages,
        )


def cmd_bench(args: argparse.Namespace) -> int:
    if args.url:
        return _bench_url(args)
    if args.blobs is not None:  # a blob-triggered function: drain a container
        return _bench_blobs(args)
    if args.messages is not None:  # a broker's trigger: drain its queue or event hub
        return _bench_messages(args)
    return _bench_http(args)


def _bench_url(args: argparse.Namespace) -> int:
    if args.path:
        raise UsageError("with --url, put the path in the URL; --path is for --app")
    check_url(args.url)
    request = request_kwargs(args)
    asked = args.requests is not None or args.duration is not None
    requests, duration = plan_remote_load(args.url, args.requests or 100, args.duration, asked)
    on_record, bar = _progress(requests)
    with bar:
        summary = run_bench_url(
            args.url,
            args.concurrency,
            requests,
            duration,
            on_record,
            method=(args.method or "GET").upper(),
            body=request["body"],
            headers=request["headers"],
        )
    _emit(summary, args.json, sent_line(args, {**request, "path": args.url}))
    return 0


def _bench_blobs(args: argparse.Namespace) -> int:
    if not args.function:
        raise UsageError("bench --blobs needs --function NAME (a blob-triggered function)")
    app = _app(args.app)
    from .blob import BlobLab

    with BlobLab(app, upstream_delay_ms=args.upstream_delay_ms, timeout_s=args.timeout) as lab:
        drained = lab.drain(
            args.function,
            args.blobs,
            processes=_processes(args.processes, app),
            threads=check_threads_flag(args.threads),
        )
    print(json.dumps(drained.as_dict()) if args.json else drained.line())
    return 0


def _bench_messages(args: argparse.Namespace) -> int:
    if not args.function:
        raise UsageError(
            "bench --messages needs --function NAME (a queue-, Service Bus- or "
            "Event Hubs-triggered function)"
        )
    if args.messages < 1:
        raise UsageError(f"--messages must be >= 1, got {args.messages}")
    app = _app(args.app)
    processes = _processes(args.processes, app)
    kind = trigger_of(app, args.function)
    check_flags(args, kind)
    if kind == STORAGE_QUEUE:
        result = bench_queue(args, processes, app)
    else:
        result = bench_broker(args, processes, app, kind)
    print(json.dumps(result.as_dict()) if args.json else result.line())
    return 0


def _bench_http(args: argparse.Namespace) -> int:
    if not args.function and not args.path:
        raise UsageError(
            "bench needs --function NAME or --path /api/... (with --app), or --url URL"
        )
    app = _app(args.app)
    processes = _processes(args.processes, app)
    check_threads_flag(args.threads)
    requests = args.requests if args.requests or args.duration else max(args.concurrency * 10, 20)
    request = request_kwargs(args)
    _note_alone(args, processes)
    on_record, bar = _progress(requests)
    lab = Lab(
        app,
        upstream_delay_ms=args.upstream_delay_ms,
        timeout_s=args.timeout,
        max_worker_mb=args.max_worker_mb,
    )
    with lab, bar:
        result = lab.run(
            args.function,
            processes=processes,
            threads=args.threads,
            concurrency=args.concurrency,
            requests=requests,
            duration_s=args.duration,
            params=dict(args.param),
            on_record=on_record,
            **request,
        )
    _emit(result.summary, args.json, sent_line(args, request))
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    if not args.function and not args.path:
        raise UsageError("sweep needs --function NAME or --path /api/...")
    request = request_kwargs(args)
    app = _app(args.app)
    processes_list = args.processes or [_processes(None, app)]
    threads_list = args.threads or [None]
    for p in processes_list:
        check_processes(p)
    for t in threads_list:
        check_threads_flag(t)
    _note_alone(args, max(processes_list))
    summaries: list[Summary] = []
    lab = Lab(
        app,
        upstream_delay_ms=args.upstream_delay_ms,
        timeout_s=args.timeout,
        max_worker_mb=args.max_worker_mb,
    )
    with lab:
        for processes in processes_list:
            for threads in threads_list:
                result = lab.run(
                    args.function,
                    processes=processes,
                    threads=threads,
                    concurrency=args.concurrency,
                    requests=args.requests,
                    duration_s=args.duration,
                    params=dict(args.param),
                    **request,
                )
                summaries.append(result.summary)
                if not args.json:
                    print(result.summary.line(), flush=True)
    if args.json:
        print(
            json.dumps(
                {"function": summaries[0].function, "runs": [s.as_dict() for s in summaries]}
            )
        )
    else:
        print(_table(summaries))
    return 0


def _table(summaries: Sequence[Summary]) -> str:
    rows = [("processes", "threads", "req/s", "ideal", "p50 ms", "p95 ms", "errors")]
    rows += [
        (
            str(s.processes),
            str(s.threads),
            f"{s.throughput_rps:.1f}",
            f"{s.ideal_rps:.1f}",
            f"{s.latency_ms['p50']:.0f}",
            f"{s.latency_ms['p95']:.0f}",
            str(s.errors),
        )
        for s in summaries
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows)


def cmd_tune(args: argparse.Namespace) -> int:
    from .tune import tune

    if not args.function and not args.path:
        raise UsageError("tune needs --function NAME or --path /api/...")
    for p in args.processes or []:
        check_processes(p)
    for t in args.threads or []:
        check_threads_flag(t)
    if args.duration <= 0:
        raise UsageError(f"--duration must be > 0 seconds, got {args.duration:g}")
    app = _app(args.app)
    if args.function:
        refuse_for_tune(app, args.function)
    _note_alone(args, max(args.processes or [1]))
    with Lab(app, upstream_delay_ms=args.upstream_delay_ms, timeout_s=args.timeout) as lab:
        result = tune(
            lab,
            args.function,
            concurrency=args.concurrency,
            duration_s=args.duration,
            threads=args.threads,
            processes=args.processes,
            on_run=None if args.json else lambda s: print(s.line(), file=sys.stderr, flush=True),
            params=dict(args.param),
            **request_kwargs(args),
        )
    if args.json:
        best = result.best.as_dict() if result.best else None
        print(
            json.dumps(
                {
                    "function": result.function,
                    "kind": result.kind,
                    "alone": result.alone.as_dict(),
                    "runs": [s.as_dict() for s in result.runs],
                    "best": best,
                    "settings": result.settings,
                    "az_command": result.az_command() if result.best else None,
                }
            )
        )
    else:
        print(result.report())
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from .serve import serve

    app = _app(args.app)
    processes = _processes(args.processes, app)
    check_threads_flag(args.threads)
    timeout = args.timeout or function_timeout_s(app) or DEFAULT_TIMEOUT_S
    with (
        Upstream(args.upstream_delay_ms) as upstream,
        Host(
            app,
            processes=processes,
            threads=args.threads,
            timeout_s=timeout,
            app_settings={"UPSTREAM_URL": upstream.url},
            max_worker_mb=args.max_worker_mb,
            capture_logs=True,
        ) as host,
    ):
        try:
            asyncio.run(serve(host, args.port))
        except OSError as exc:
            raise UsageError(f"cannot listen on 127.0.0.1:{args.port}: {exc.strerror}") from None
    return 0


def cmd_locustfile(args: argparse.Namespace) -> int:
    from .locust_export import distributed_commands, scenario, write_load_test

    s = scenario(
        args.url,
        path=args.path,
        method=args.method,
        body=args.body,
        headers=dict(args.header),
        users=args.users,
        run_time_s=args.run_time,
    )
    try:
        locustfile, config = write_load_test(
            s, args.out, args.engine_instances, args.key_vault_secret, args.test_id
        )
    except OSError as exc:
        raise UsageError(f"cannot write the test into {args.out}: {exc.strerror}") from None
    print(f"wrote {locustfile} and {config}: {s.users} users, {s.method} {s.url}")
    print("the function key is read from $FUNCTION_KEY when the test runs; it is in no file")
    print(
        f"here:  cd {args.out} && locust -f {locustfile.name} --headless -u {s.users} "
        f"-r {s.users} -t {s.run_time_s}s"
    )
    for what, command in distributed_commands(s, workers=2, test_id=args.test_id).items():
        print(f"{what}:  " + command.replace("\n", "\n    "))
    return 0


def cmd_scale(args: argparse.Namespace) -> int:
    from .scale.lab import ScaleLab
    from .scale.traffic import Traffic

    if not args.function and not args.path:
        raise UsageError("scale needs --function NAME or --path /api/...")
    processes = _processes(args.processes)
    check_threads_flag(args.threads)
    app = _app(args.app)
    duration = args.duration or (30.0 if args.live else 600.0)
    traffic = Traffic(args.traffic, args.peak_rps, duration)
    queued = bool(args.function) and _queue_triggered(app, args.function)
    _check_scale_flags(args, queued)
    with ScaleLab(
        app, upstream_delay_ms=args.upstream_delay_ms, processes=processes, threads=args.threads
    ) as lab:
        settings: dict[str, Any] = {
            "max_instances": args.max_instances,
            "always_ready": args.always_ready,
        }
        if args.decision_s is not None:
            settings["decision_s"] = args.decision_s
        if queued:
            result = _scale_queue(args, lab, traffic, settings)
        else:
            settings["per_instance_concurrency"] = args.per_instance_concurrency or 1
            result = _scale_http(args, lab, traffic, settings)
    summary = result.summary()
    if args.json:
        print(json.dumps(summary))
    else:
        print(result.line())
    return 0


def _queue_triggered(app: Path, function: str) -> bool:
    from .app_loader import load_app

    info = load_app(app).get(function)
    return info is not None and info.queue is not None


def _check_scale_flags(args: argparse.Namespace, queued: bool) -> None:
    """Each trigger's own flags, refused with one line for the other."""
    if queued and args.per_instance_concurrency is not None:
        raise UsageError(
            f"{args.function!r} is queue-triggered: an instance runs batchSize + "
            "newBatchThreshold messages at once; give --batch-size / --new-batch-threshold"
        )
    if not queued and (args.batch_size is not None or args.new_batch_threshold is not None):
        raise UsageError("--batch-size and --new-batch-threshold are for queue-triggered functions")


def _scale_http(args: argparse.Namespace, lab: Any, traffic: Any, settings: dict[str, Any]) -> Any:
    request = request_kwargs(args)
    if args.live:
        return lab.live(
            args.function,
            traffic,
            startup_s=args.startup_s,
            seed=args.seed,
            path=request["path"],
            **settings,
        )
    rules = lab.rules(args.startup_s, **settings)
    return lab.simulate(args.function, traffic, rules, seed=args.seed, **request)


def _scale_queue(args: argparse.Namespace, lab: Any, traffic: Any, settings: dict[str, Any]) -> Any:
    """A queue-triggered function: messages sent to its queue, target-based scaling."""
    options = {"batch_size": args.batch_size, "new_batch_threshold": args.new_batch_threshold}
    if args.live:
        return lab.live_queue(
            args.function, traffic, startup_s=args.startup_s, seed=args.seed, **options, **settings
        )
    return lab.simulate_queue(
        args.function, traffic, startup_s=args.startup_s, seed=args.seed, **options, **settings
    )


_stop_deadline = threading.Event()  # set once the first stop signal has armed the limit
_bounded_stop = True  # False for a caller that runs main() in its own process


def _arm_stop_limit(code: int) -> None:
    """Bound the orderly stop, as a service manager bounds a unit's (TimeoutStopSec).

    Stopping waits on worker processes and threads that run code we do not control. If
    that takes longer than STOP_LIMIT_S, say so with every thread's stack (so the cause
    can be found), then exit: the workers see their stdin close and end their groups.
    """
    if _stop_deadline.is_set() or not _bounded_stop:
        return
    _stop_deadline.set()

    def limit() -> None:
        threading.Event().wait(STOP_LIMIT_S)
        print(
            f"{PROG}: still stopping after {STOP_LIMIT_S:g} s; ending now. Where it waited:",
            file=sys.stderr,
            flush=True,
        )
        with contextlib.suppress(Exception):
            faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
        os._exit(code)

    threading.Thread(target=limit, name="stop-limit", daemon=True).start()


def _terminate(signum: int, frame: Any) -> None:
    _arm_stop_limit(143)
    raise Terminated


def main(argv: Sequence[str] | None = None, *, bounded_stop: bool = True) -> int:
    """The CLI. ``bounded_stop=False`` for a caller running it inside its own process: an
    interrupted stop then never ends that process (see _arm_stop_limit)."""
    global _bounded_stop
    _bounded_stop = bounded_stop
    # Ctrl-C keeps Python's own handler: asyncio.run (serve) replaces only that one with a
    # handler that cancels its task cleanly. Its stop is bounded once it reaches _main.
    previous = signal.getsignal(signal.SIGTERM)
    if previous is signal.SIG_DFL:  # stop in order, as on Ctrl-C
        signal.signal(signal.SIGTERM, _terminate)
    try:
        return _main(argv)
    finally:  # a caller in this process (a test, a notebook) gets its handler back
        if previous is signal.SIG_DFL:
            signal.signal(signal.SIGTERM, previous)


def _main(argv: Sequence[str] | None) -> int:
    try:
        args = build_parser().parse_args(argv)
        command = {
            "bench": cmd_bench,
            "sweep": cmd_sweep,
            "serve": cmd_serve,
            "tune": cmd_tune,
            "locustfile": cmd_locustfile,
            "scale": cmd_scale,
        }[args.command]
        return command(args)
    except (
        UsageError,
        AppLoadError,
        SettingError,
        LocalSettingsError,
        UnreachableError,
        ValueError,
    ) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        _arm_stop_limit(143 if isinstance(exc, Terminated) else 130)  # e.g. threads to join
        print(
            f"{PROG}: {'terminated' if isinstance(exc, Terminated) else 'interrupted'}",
            file=sys.stderr,
        )
        return 143 if isinstance(exc, Terminated) else 130
    except Exception as exc:  # a fault of ours: still one line, with what it was
        print(f"{PROG}: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
