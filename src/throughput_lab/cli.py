"""``python -m throughput_lab bench|sweep|serve``: the command-line contract in design.md.

Bad input exits with status 2 and one line on stderr; Ctrl-C exits with 130 and leaves no
worker process behind; neither prints a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from tqdm import tqdm

from .app_loader import AppLoadError
from .app_settings import (
    PROCESS_COUNT_SETTING,
    SettingError,
    check_processes,
    check_threads_flag,
    processes_from_setting,
)
from .drain import add_queue_options, bench_queue
from .host import Host
from .lab import DEFAULT_TIMEOUT_S, Lab, function_timeout_s
from .metrics import Summary
from .remote import UnreachableError, check_url, plan_remote_load, run_bench_url
from .upstream import Upstream

PROG = "throughput_lab"


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


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def app_options(p: argparse.ArgumentParser, threads_list: bool = False) -> None:
        p.add_argument("--app", default="sample_functions", help="function app folder")
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
            type=float,
            default=100.0,
            help="delay of the embedded upstream (default 100)",
        )
        p.add_argument(
            "--timeout",
            type=float,
            help="function timeout in seconds (default: functionTimeout in host.json, else 30)",
        )

    def load_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--concurrency", type=_positive_int, default=8, help="requests in flight")
        p.add_argument("--requests", type=_positive_int, help="requests in total")
        p.add_argument("--duration", type=float, help="seconds to run instead of a count")
        p.add_argument(
            "--param",
            type=_param,
            action="append",
            default=[],
            help="query parameter NAME=VALUE for the function (repeatable)",
        )
        p.add_argument("--json", action="store_true", help="print one JSON object")

    bench = commands.add_parser("bench", help="measure one function, or a live URL")
    app_options(bench)
    bench.add_argument("--function", help="function name (with --app)")
    bench.add_argument("--url", help="measure a live HTTP endpoint instead")
    load_options(bench)
    add_queue_options(bench)

    sweep = commands.add_parser("sweep", help="a grid of thread counts x process counts")
    app_options(sweep, threads_list=True)
    sweep.add_argument("--function", required=True)
    load_options(sweep)

    serve = commands.add_parser("serve", help="serve the app at /api/<route> like func start")
    app_options(serve)
    serve.add_argument("--port", type=int, default=7071)
    return parser


def _processes(value: int | None) -> int:
    if value is None:
        return processes_from_setting(os.environ.get(PROCESS_COUNT_SETTING))
    return check_processes(value)


def _app(path: str) -> Path:
    app = Path(path)
    if not app.is_dir():
        raise AppLoadError(f"function app folder not found: {path}")
    return app


def _progress(total: int | None) -> tuple[Callable[[Any], None], Any]:
    """A tqdm bar on stderr that shows itself only for runs longer than about 2 s."""
    bar = tqdm(total=total, unit="req", delay=2.0, file=sys.stderr, leave=False, disable=None)
    return (lambda _record: bar.update()), bar


def _emit(summary: Summary, as_json: bool) -> None:
    if as_json:
        print(json.dumps(summary.as_dict()))
    else:
        print(summary.line())
        if summary.error_samples:
            print("errors: " + " | ".join(summary.error_samples))


def cmd_bench(args: argparse.Namespace) -> int:
    if args.url:
        check_url(args.url)
        asked = args.requests is not None or args.duration is not None
        requests, duration = plan_remote_load(args.url, args.requests or 100, args.duration, asked)
        on_record, bar = _progress(requests)
        with bar:
            summary = run_bench_url(args.url, args.concurrency, requests, duration, on_record)
        _emit(summary, args.json)
        return 0
    if not args.function:
        raise UsageError("bench needs --function NAME (with --app) or --url URL")
    if args.messages is not None:  # a queue-triggered function: drain a queue
        result = bench_queue(args, _processes(args.processes), _app(args.app))
        print(json.dumps(result.as_dict()) if args.json else result.line())
        return 0
    processes = _processes(args.processes)
    check_threads_flag(args.threads)
    app = _app(args.app)
    requests = args.requests if args.requests or args.duration else max(args.concurrency * 10, 20)
    on_record, bar = _progress(requests)
    with Lab(app, upstream_delay_ms=args.upstream_delay_ms, timeout_s=args.timeout) as lab, bar:
        result = lab.run(
            args.function,
            processes=processes,
            threads=args.threads,
            concurrency=args.concurrency,
            requests=requests,
            duration_s=args.duration,
            params=dict(args.param),
            on_record=on_record,
        )
    _emit(result.summary, args.json)
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    processes_list = args.processes or [_processes(None)]
    threads_list = args.threads or [None]
    for p in processes_list:
        check_processes(p)
    for t in threads_list:
        check_threads_flag(t)
    app = _app(args.app)
    summaries: list[Summary] = []
    with Lab(app, upstream_delay_ms=args.upstream_delay_ms, timeout_s=args.timeout) as lab:
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
                )
                summaries.append(result.summary)
                if not args.json:
                    print(result.summary.line(), flush=True)
    if args.json:
        print(json.dumps({"function": args.function, "runs": [s.as_dict() for s in summaries]}))
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


def cmd_serve(args: argparse.Namespace) -> int:
    from .serve import serve

    processes = _processes(args.processes)
    check_threads_flag(args.threads)
    app = _app(args.app)
    timeout = args.timeout or function_timeout_s(app) or DEFAULT_TIMEOUT_S
    with (
        Upstream(args.upstream_delay_ms) as upstream,
        Host(
            app,
            processes=processes,
            threads=args.threads,
            timeout_s=timeout,
            app_settings={"UPSTREAM_URL": upstream.url},
        ) as host,
    ):
        try:
            asyncio.run(serve(host, args.port))
        except OSError as exc:
            raise UsageError(f"cannot listen on 127.0.0.1:{args.port}: {exc.strerror}") from None
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        command = {"bench": cmd_bench, "sweep": cmd_sweep, "serve": cmd_serve}[args.command]
        return command(args)
    except (UsageError, AppLoadError, SettingError, UnreachableError, ValueError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a fault of ours: still one line, with what it was
        print(f"{PROG}: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
