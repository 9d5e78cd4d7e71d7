"""The ``poller`` command.

Exit codes: 0 success, 1 runtime failure, 2 bad configuration or usage, 3 NATS refused the
credentials at start-up (``run``), 130 interrupted; ``run``,
``demo`` and ``simulate`` stop gracefully on the first SIGINT/SIGTERM (exit 0) and exit at once on a
second one with 128 + the signal number (130 SIGINT, 143 SIGTERM).
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import platform
import sys
from collections.abc import Sequence
from functools import partial
from typing import TypeVar

import anyio

from poller import __version__
from poller.config import Config, load_config
from poller.errors import ConfigError, NatsClosed, NatsRejected

EXIT_OK, EXIT_FAILURE, EXIT_CONFIG, EXIT_NATS_REJECTED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
EXIT_CODES = (
    "Exit codes: 0 ok, 1 runtime failure, 2 bad configuration or usage, 3 NATS refused the credentials, "
    "130 interrupted; "
    "a second SIGINT/SIGTERM while stopping exits at once with 130/143."
)
SECOND_SIGNAL = "130/143 a second SIGINT/SIGTERM while stopping (exit now, no drain)"

log = logging.getLogger("poller.cli")
E = TypeVar("E", bound=BaseException)


def _load(path: str, *, resolve_secrets: bool = True) -> Config | None:
    """The config, or None after saying on stderr which file and field are wrong."""
    from poller.ops import logs

    try:
        config = load_config(path, resolve_secrets=resolve_secrets)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return None
    problem = logs.check(config.logging.level, config.logging.format)
    if problem is not None:
        print(f"config error: {path}: {problem}", file=sys.stderr)
        return None
    return config


def _cmd_run(args: argparse.Namespace) -> int:
    from poller.ops.configview import secret_values
    from poller.ops.logs import configure
    from poller.runtime.lifecycle import run_until_signalled
    from poller.runtime.service import Service

    config = _load(args.config)
    if config is None:
        return EXIT_CONFIG
    if not any(source.enabled for source in config.sources):
        # a service that polls nothing looks healthy and does nothing: most likely a typo'd table
        print(f"config error: {args.config}: sources: no enabled [[sources]] table", file=sys.stderr)
        return EXIT_CONFIG
    if args.once:
        from poller.pipeline.privacy import Privacy
        from poller.pipeline.redact import Redactor

        salt = config.privacy.hash_salt.reveal() if config.privacy.hash_salt else ""
        redactor = Redactor(secret_values(config), Privacy(config.privacy.personal_data, salt))
        configure(config.logging.level, config.logging.format, redactor=redactor)
        return _run_once(config)
    try:
        service = Service(config)
    except ConfigError as exc:  # e.g. TLS files that cannot be read: before anything connects
        print(f"config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    configure(config.logging.level, config.logging.format, redactor=service.redactor)
    try:
        anyio.run(partial(run_until_signalled, service, config_path=args.config))
    except Exception as exc:
        rejected = _first(exc, NatsRejected)
        if rejected is not None:
            log.error(str(rejected))  # a mistake in the config, not a bug: no traceback
            return EXIT_NATS_REJECTED
        closed = _first(exc, NatsClosed)
        if closed is not None:
            log.error(str(closed))
            return EXIT_FAILURE
        # one JSON log line with the traceback, rather than a bare traceback a log shipper splits up
        log.exception("poller failed")
        return EXIT_FAILURE
    return EXIT_OK


def _first(exc: BaseException, kind: type[E]) -> E | None:
    """``exc`` or the first ``kind`` inside the exception groups the task groups wrapped it in."""
    if isinstance(exc, kind):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _first(inner, kind)
            if found is not None:
                return found
    return None


def _run_once(config: Config) -> int:
    from poller.runtime.once import run_once

    try:
        code: int = anyio.run(run_once, config)
    except Exception:
        log.exception("run --once failed")
        return EXIT_FAILURE
    return code


def _cmd_demo(args: argparse.Namespace) -> int:
    from poller.ops.logs import configure
    from poller.simulators.base import Fault
    from poller.tools.demo import EPISODE_VENDOR, run_demo
    from poller.tools.faults import FaultSpec

    configure("WARNING", "text")
    if args.episode_after < 0 or args.episode_for <= 0:
        print("demo: --episode-after must be >= 0 and --episode-for > 0", file=sys.stderr)
        return EXIT_CONFIG
    episode = (
        None
        if args.no_episode
        else FaultSpec(
            vendor=EPISODE_VENDOR, kind=Fault.THROTTLE, after=args.episode_after, lasts=args.episode_for
        )
    )
    try:
        code: int = anyio.run(run_demo, args.seed, args.evolve_every, args.duration, episode)
    except FileNotFoundError as exc:  # no nats-server binary
        print(f"demo: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    return code


def _cmd_check_config(args: argparse.Namespace) -> int:
    from poller.ops.configview import effective, inline_secrets, to_toml
    from poller.vendors import VENDORS

    config = _load(args.config, resolve_secrets=not args.no_secrets)
    if config is None:
        return EXIT_CONFIG
    document = effective(config)
    if args.format == "json":
        print(json.dumps(document, indent=2, ensure_ascii=False))
    else:
        print(f"# effective configuration of {args.config}; secrets are shown as their references")
        print(to_toml(document), end="")
    for where in inline_secrets(config):
        print(f"warning: {where} is an inline secret; use {{env = ...}} or {{file = ...}}", file=sys.stderr)
    for source in config.sources:
        # the limits in force: the vendor's documented defaults, overridden by rate_limits
        limits = {**VENDORS[source.vendor].apis, **source.rate_limits}
        shown = ", ".join(f"{api} {limit}/s" for api, limit in limits.items())
        state = "" if source.enabled else " (disabled)"
        print(f"{source.vendor}/{source.account}{state}: {shown}", file=sys.stderr)
    enabled = sum(1 for source in config.sources if source.enabled)
    if not enabled:
        print("warning: no enabled source: `poller run` refuses this file", file=sys.stderr)
    print(f"ok: {len(config.sources)} source(s), {enabled} enabled", file=sys.stderr)
    return EXIT_OK


def _cmd_tail(args: argparse.Namespace) -> int:
    from poller.tools.tail import (
        EVENT_TYPE_NAMES,
        TailError,
        TailUsageError,
        check_choice,
        known_vendors,
        parse_since,
        tail,
        tail_subject,
    )

    try:
        check_choice("--vendor", args.vendor, known_vendors())
        check_choice("--type", args.type, EVENT_TYPE_NAMES)
        since = None if args.since is None else parse_since(args.since)
    except TailUsageError as exc:
        print(f"tail: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    subject = tail_subject(args.prefix, args.vendor, args.account, args.type)
    if since is not None:
        mode = f"stream {args.stream} from {args.since} ago"
    else:
        mode = f"stream {args.stream} from its start" if args.from_start else "live"
    task = f", task {args.task}" if args.task else ""
    print(f"tail: {args.server} {subject}{task} ({mode})", file=sys.stderr)

    async def main() -> int:
        await tail(
            args.server,
            subject,
            as_json=args.json,
            from_start=args.from_start,
            since=since,
            task=args.task,
            stream=args.stream,
            limit=args.limit,
        )
        return EXIT_OK

    try:
        code: int = anyio.run(main)
    except TailError as exc:
        print(f"tail: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    return code


def _cmd_notify(args: argparse.Namespace) -> int:
    from poller.ops.logs import check, configure
    from poller.tools.notify import load_notify_config, serve

    try:
        config = load_notify_config(args.config)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    problem = check(config.logging.level, config.logging.format)
    if problem is not None:
        print(f"config error: {args.config}: {problem}", file=sys.stderr)
        return EXIT_CONFIG
    configure(config.logging.level, config.logging.format, secrets=config.secret_values())
    try:
        anyio.run(serve, config)
    except Exception:
        log.exception("notifier failed")
        return EXIT_FAILURE
    return EXIT_OK


def _cmd_status(args: argparse.Namespace) -> int:
    from poller.tools.status import main_status

    return main_status(args.url, args.json)


def _cmd_schema(args: argparse.Namespace) -> int:
    from schemas import contract

    if args.write:
        for path in contract.write():
            print(f"wrote {path}", file=sys.stderr)
        return EXIT_OK
    if args.check:
        stale = contract.stale()
        for path in stale:
            print(f"stale: {path} (run `poller schema --write`)", file=sys.stderr)
        return EXIT_FAILURE if stale else EXIT_OK
    print(contract.render(contract.asyncapi() if args.asyncapi else contract.json_schema()), end="")
    return EXIT_OK


def _cmd_simulate(args: argparse.Namespace) -> int:
    from poller.simulators.registry import simulator_names
    from poller.tools.faults import FaultUsageError, parse_fault
    from poller.tools.simulate import run_simulators

    try:
        faults = [parse_fault(text, simulator_names(), args.after, args.lasts) for text in args.fault]
    except FaultUsageError as exc:
        print(f"simulate: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    code: int = anyio.run(
        run_simulators, args.seed, args.host, args.port, args.vendor, args.evolve_every, faults
    )
    return code


def _cmd_bench(args: argparse.Namespace) -> int:
    try:
        bench = importlib.import_module("poller.tools.bench")
    except ModuleNotFoundError as exc:
        if exc.name != "poller.tools.bench":
            raise  # the benchmark exists but something it imports is missing: say so, not "not built"
        print("bench: the benchmark is not built yet in this version", file=sys.stderr)
        return EXIT_FAILURE
    code: int = bench.main(args.bench_args)
    return code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="poller",
        description="Watch AI outbound-calling platforms and publish change events to NATS JetStream.",
        epilog=EXIT_CODES,
    )
    parser.add_argument(
        "--version",
        action="version",
        version=f"poller {__version__} (aicc-poller; Python {platform.python_version()})",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_text: str, codes: str) -> argparse.ArgumentParser:
        return sub.add_parser(
            name,
            help=help_text,
            description=help_text,
            epilog=f"Exit codes: {codes}; 2 bad usage.",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )

    run = command(
        "run",
        "run the poller with a configuration file (SIGTERM drains and exits 0, SIGHUP reloads the file)",
        "0 stopped by SIGTERM/SIGINT after draining, 1 runtime failure (logged), "
        "2 bad configuration (file and field on stderr; nothing was connected), "
        "3 NATS refused the credentials (one log line), " + SECOND_SIGNAL + "; "
        "with --once: 0 every source answered, 1 a source failed (named on stderr)",
    )
    run.add_argument("--config", "-c", required=True, help="TOML configuration file")
    run.add_argument(
        "--once",
        action="store_true",
        help="one cycle per enabled source (every shard's), each event as a JSON line on stdout; "
        "nothing published or committed, no NATS needed; exit 0 if every source answered, 1 otherwise",
    )
    run.set_defaults(func=_cmd_run)

    demo = command(
        "demo",
        "local NATS + every vendor simulator + the poller, events printed live",
        "0 stopped cleanly (Ctrl-C or --duration), 1 failure (e.g. nats-server missing), "
        "2 bad --episode-after/--episode-for, "
        "130/143 a second Ctrl-C/SIGTERM (exit now; nats-server and its store removed)",
    )
    demo.add_argument("--seed", type=int, default=7, help="seed of the simulators' evolution")
    demo.add_argument("--evolve-every", type=float, default=2.0, help="seconds between world changes")
    demo.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    demo.add_argument(
        "--no-episode",
        action="store_true",
        help="skip the scripted trouble (byrobot throttles, then recovers)",
    )
    demo.add_argument(
        "--episode-after", type=float, default=8.0, help="seconds before byrobot starts throttling"
    )
    demo.add_argument("--episode-for", type=float, default=6.0, help="seconds byrobot keeps throttling")
    demo.set_defaults(func=_cmd_demo)

    check = command(
        "check-config",
        "validate a configuration file and print the effective one (defaults filled, secrets redacted)",
        "0 valid, 2 invalid (file and field on stderr)",
    )
    check.add_argument("config", help="TOML configuration file")
    check.add_argument("--format", choices=("toml", "json"), default="toml", help="output format")
    check.add_argument(
        "--no-secrets",
        action="store_true",
        help='check secret references for shape ({env = "NAME"}, {file = "/path"}) without reading them '
        "(for CI, where the production secrets are not available)",
    )
    check.set_defaults(func=_cmd_check_config)

    tail = command(
        "tail",
        "follow events: readable lines (or --json), filtered by vendor, account, type, task",
        "0 --limit reached, 1 cannot connect or no such stream, 2 unknown --vendor/--type or bad --since, "
        "130 Ctrl-C",
    )
    tail.add_argument("--server", "-s", default="nats://127.0.0.1:4222", help="NATS URL")
    tail.add_argument("--prefix", default="aicc", help="subject prefix (config nats.subject_prefix)")
    tail.add_argument(
        "--stream", default="AICC", help="JetStream stream for --from-start/--since (config nats.stream)"
    )
    tail.add_argument("--vendor", help="one of the vendors, e.g. tencent-ccc (checked)")
    tail.add_argument("--account", help="the configured account name")
    tail.add_argument("--type", help="event type, e.g. call-finished (checked)")
    tail.add_argument("--task", help="only events about this task id: the task, its jobs, its calls")
    tail.add_argument("--json", action="store_true", help="print raw JSON payloads, one per line")
    start = tail.add_mutually_exclusive_group()
    start.add_argument(
        "--from-start",
        action="store_true",
        help="read the stream from its beginning, say when caught up, then follow (default: live only)",
    )
    start.add_argument(
        "--since",
        help="read the stream from this long ago (90s, 15m, 2h, 1d), say when caught up, then follow",
    )
    tail.add_argument("--limit", type=int, default=None, help="stop after this many events")
    tail.set_defaults(func=_cmd_tail)

    status = command(
        "status",
        "per source: last poll, outcome, next poll, requests/limit, errors; from a running poller's ops port",
        "0 the poller is ready, 1 it is not ready or cannot be reached",
    )
    status.add_argument(
        "--url",
        default="http://127.0.0.1:9464",
        help="the poller's ops port ([http] host:port), or its /status.json",
    )
    status.add_argument("--json", action="store_true", help="print the status document (/status.json) as is")
    status.set_defaults(func=_cmd_status)

    simulate = command(
        "simulate",
        "run the vendor simulators standalone; prints URLs and the [[sources]] config for each",
        "0 stopped by Ctrl-C/SIGTERM, 2 unknown --vendor or bad --fault, " + SECOND_SIGNAL,
    )
    simulate.add_argument("--seed", type=int, default=7)
    simulate.add_argument("--host", default="127.0.0.1")
    simulate.add_argument("--port", type=int, default=0, help="port of the first simulator (0: any free)")
    simulate.add_argument("--vendor", default=None, help="only this vendor's simulator")
    simulate.add_argument("--evolve-every", type=float, default=2.0, help="seconds between world changes")
    simulate.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="VENDOR:KIND",
        help="make VENDOR's simulator answer KIND (throttle, auth, server_error, hang, drop, malformed, "
        "truncated, schema_drift); repeatable",
    )
    simulate.add_argument("--after", type=float, default=0.0, help="seconds before the faults begin")
    simulate.add_argument(
        "--for",
        dest="lasts",
        type=float,
        default=None,
        help="seconds the faults last (default: until stopped)",
    )
    simulate.set_defaults(func=_cmd_simulate)

    bench = command(
        "bench",
        "benchmark against local NATS and simulators (README, Performance); `poller bench --help`",
        "0 finished, 1 not built in this version, 130 interrupted",
    )
    bench.add_argument("bench_args", nargs="*", help="arguments passed to the benchmark")
    bench.set_defaults(func=_cmd_bench)

    notify = command(
        "notify",
        "send [[notify]] rules' messages (DingTalk, Feishu, WeCom, webhook) from a durable consumer",
        "0 stopped by SIGTERM/SIGINT (held events go back to the stream), 1 runtime failure, "
        "2 bad configuration (file and field on stderr)",
    )
    notify.add_argument("--config", "-c", required=True, help="TOML file with [targets.*] and [[notify]]")
    notify.set_defaults(func=_cmd_notify)

    schema = command(
        "schema",
        "print the events' JSON Schema (or --asyncapi); --write regenerates the committed files",
        "0 ok, 1 --check found stale files",
    )
    schema.add_argument("--asyncapi", action="store_true", help="the AsyncAPI 3 document instead")
    schema.add_argument("--write", action="store_true", help="regenerate the files committed in schemas/")
    schema.add_argument("--check", action="store_true", help="exit 1 if the committed files are stale")
    schema.set_defaults(func=_cmd_schema)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if argv[:1] == ["bench"]:
        # the benchmark has a parser of its own: hand it every word verbatim (argparse would split
        # "--only cpu" between the positional list and the unknown options)
        args = argparse.Namespace(command="bench", bench_args=argv[1:], func=_cmd_bench)
    else:
        args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    return code


if __name__ == "__main__":
    sys.exit(main())
