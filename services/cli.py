"""The `barnebro` command: run the local stack, run one service, issue a development token,
and the operator's register commands.

barnebro up [--port 8080] [--data-dir DIR]       the whole stack on this machine
barnebro up --clock 2027-03-19T09:00             … on a test clock starting then
barnebro clock [advance 3d | set INSTANT]        show or move a test clock forward
barnebro serve SERVICE                           one process, configured by environment
barnebro token (--kind KIND | --org ORGNR) …     a signed JWT for the local stack
barnebro token --credential operator|register    an operator or register credential
barnebro token … --dpop                          the token bound to the local DPoP key
barnebro dpop-proof --method M --url U [--token T]  a DPoP proof for one request
barnebro org add --orgnr N --name T --kind K …   register one organisation
barnebro org import FILE                         register organisations from a file
barnebro register import FILE                    parental responsibility from the register
barnebro dead-letters [--consumer C] [--replay]  messages a consumer set aside: list, replay
barnebro status                                  how the deployment stands (NATS_URL)
barnebro package export [--out DIR]              the conformance resources as a FHIR package
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from shared.auth.local_keys import CREDENTIAL_SCOPES, dpop_proof, issue_credential, issue_token
from shared.auth.scopes import ALL_SYSTEM_SCOPES
from shared.clock import today
from shared.codes import ORGANISATION_KINDS
from shared.config import Settings
from shared.metrics import setup_metrics
from shared.telemetry import setup_logging, setup_tracing

if TYPE_CHECKING:
    from nats.aio.client import Client as NATS

SERVICES = ("gateway", "directory", "consent", "referral", "careplan", "subscriptions")
DEFAULT_URL = "http://127.0.0.1:8080/fhir"


class Runnable(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...


def build_process(name: str, settings: Settings) -> Runnable:
    if name == "gateway":
        from services.gateway.server import GatewayServer

        return GatewayServer(settings)
    if name == "directory":
        from services.directory import directory_spec
        from shared.runtime import ServiceRuntime

        return ServiceRuntime(directory_spec(settings), settings)
    if name == "consent":
        from services.consent import consent_spec
        from shared.runtime import ServiceRuntime

        return ServiceRuntime(consent_spec(settings), settings)
    if name == "referral":
        from services.referral import referral_spec
        from shared.runtime import ServiceRuntime

        return ServiceRuntime(referral_spec(settings), settings)
    if name == "careplan":
        from services.careplan import careplan_spec
        from shared.runtime import ServiceRuntime

        return ServiceRuntime(careplan_spec(settings), settings)
    if name == "subscriptions":
        from services.subscriptions import subscriptions_spec
        from shared.runtime import ServiceRuntime

        return ServiceRuntime(subscriptions_spec(settings), settings)
    raise SystemExit(f"Unknown service {name!r}; choose one of {', '.join(SERVICES)}")


async def serve(name: str) -> None:
    settings = Settings()
    setup_logging(settings, name)
    provider = setup_tracing(settings, f"barnebro-{name}")
    meters = setup_metrics(settings, f"barnebro-{name}")
    process = build_process(name, settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await process.start()
    try:
        await stop.wait()
    finally:
        await process.stop()
        if provider is not None:
            provider.shutdown()
        if meters is not None:
            meters.shutdown()


def _token(args: argparse.Namespace) -> str:
    from services.operator.demo import demo_orgnr

    if args.credential:
        return issue_credential(args.data_dir, args.credential, ttl=args.ttl, dpop=args.dpop)
    if args.kind and args.org:
        raise SystemExit(
            "barnebro token: give --org or --kind, not both: an organisation's kind is the"
            " register's (barnebro org add --orgnr ORGNR --kind KIND --name NAME)"
        )
    orgnr = args.org or (demo_orgnr(args.kind) if args.kind else "")
    if not orgnr and not args.fhir_user:
        raise SystemExit("barnebro token: give --kind, --org, --fhir-user or --credential")
    return issue_token(
        args.data_dir,
        orgnr=orgnr,
        hpr=args.hpr,
        fhir_user=args.fhir_user,
        roles=args.role,
        scope=args.scope,
        ttl=args.ttl,
        dpop=args.dpop,
    )


def _operator_token(args: argparse.Namespace, credential: str) -> str:
    """The credential a register command writes with: `--token` (or the environment
    variable BARNEBRO_OPERATOR_TOKEN), else one signed with the operator key in
    `--data-dir` (the local stack's)."""
    given = args.token or os.environ.get("BARNEBRO_OPERATOR_TOKEN")
    return given or issue_credential(args.data_dir, credential, ttl=600)


def _base_url(args: argparse.Namespace) -> str:
    """`--url`, else the one the last `barnebro up` in `--data-dir` served, else :8080."""
    from services.stack import local_base_url

    return args.url or local_base_url(args.data_dir) or DEFAULT_URL


async def _register(args: argparse.Namespace) -> int:
    import aiohttp

    from services.operator.client import RegisterClient, Report
    from services.operator.organisations import RowError, read_rows
    from services.operator.parents import read_responsibilities

    credential = "register" if args.command == "register" else "operator"
    token = _operator_token(args, credential)
    try:
        if args.command == "org" and args.action == "add":
            rows: list[dict[str, Any]] = [
                {
                    "organisasjonsnummer": args.orgnr,
                    "navn": args.name,
                    "kind": args.kind,
                    "kommunenummer": args.kommune,
                    "overordnetEnhet": args.part_of,
                }
            ]
            if args.her_id is not None:  # without --her-id, the stored ones are kept
                rows[0]["herId"] = args.her_id
        else:
            data = await asyncio.to_thread(Path(args.file).read_bytes)
            rows = read_rows(data, args.file) if args.command == "org" else (
                read_responsibilities(data))  # fmt: skip
    except (OSError, RowError, ValueError) as exc:
        print(f"barnebro {args.command}: {exc}", file=sys.stderr)
        return 2
    timeout = aiohttp.ClientTimeout(total=30)
    url = _base_url(args)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        client = RegisterClient(session, url, token)
        report: Report
        try:
            if args.command == "org":
                report = await client.import_organisations(
                    rows, check_digit=not args.no_check_digit
                )
            else:
                report = await client.import_responsibilities(rows, today())
        except aiohttp.ClientError as exc:
            print(f"barnebro {args.command}: cannot reach {url}: {exc}", file=sys.stderr)
            return 2
    for key, outcome, detail in report.rows:
        print(f"{key}: {outcome}" + (f" ({detail})" if detail else ""))
    print(report.summary())
    return 1 if report.failed else 0


async def _import(args: argparse.Namespace) -> int:
    from services.operator.import_command import import_files

    token = args.token or os.environ.get("BARNEBRO_TOKEN")
    if not token:
        print("barnebro import: give --token (or BARNEBRO_TOKEN): the import writes as its"
              " caller", file=sys.stderr)  # fmt: skip
        return 2
    return await import_files(
        _base_url(args), token, args.files, batch=args.batch, parallel=args.parallel,
        state=args.state,
    )  # fmt: skip


async def _command_connection(settings: Settings, name: str) -> NATS | None:
    """An operator command's connection (`one_shot`: it gives up rather than wait for
    ever), or None, said on stdout, when no server answers or the credentials are
    refused."""
    from shared.transport.nats_connection import connect

    try:
        return await connect(settings, name, one_shot=True)
    except Exception as exc:
        print(f"NATS cannot be reached ({exc or type(exc).__name__})")
        return None


async def _status() -> int:
    """Print how the deployment NATS_URL and BARNEBRO_NATS_PREFIX name stands; 1 if it is
    not healthy, or if NATS cannot be reached."""
    from services.operator.status import gather, report
    from shared.transport.nats_connection import close

    settings = Settings()
    nc = await _command_connection(settings, "barnebro-status")
    if nc is None:
        return 1
    try:
        found = await gather(nc, settings)
    finally:
        await close(nc)
    print(report(found))
    return 0 if found.healthy else 1


async def _dead_letters(consumer: str | None, replaying: bool) -> int:
    """List (or replay) the dead letters of the deployment NATS_URL and BARNEBRO_NATS_PREFIX
    name."""
    from shared.transport.dead_letters import dead_letters, replay
    from shared.transport.nats_connection import close

    settings = Settings()
    nc = await _command_connection(settings, "barnebro-dead-letters")
    if nc is None:
        return 1
    try:
        stream = settings.dead_letter_stream_name
        if replaying:
            print(f"replayed {await replay(nc, stream, consumer)} dead letters")
            return 0
        letters = await dead_letters(nc, stream, consumer)
        for letter in letters:
            print(f"{letter.sequence}\t{letter.consumer}\t{letter.subject}\t{letter.error}")
        print(f"{len(letters)} dead letters")
        return 0
    finally:
        await close(nc)


async def _clock(args: argparse.Namespace) -> int:
    """Show the test clock of the stack NATS_URL names (else the local stack in
    `--data-dir`), or move it forward; refused for a stack without a test clock (a local
    one: a data directory `up --clock` did not start)."""
    from services.stack import local_nats_url, runs_on_test_clock
    from shared.clock import NORWAY
    from shared.stack_clock import ClockRefused, move, parse_moment, parse_step, shown
    from shared.transport.nats_connection import close, connect

    url = os.environ.get("NATS_URL") or local_nats_url(args.data_dir)
    if url is None:
        print(f"barnebro clock: no local stack runs in {args.data_dir}, and NATS_URL is not"
              " set", file=sys.stderr)  # fmt: skip
        return 2
    settings = Settings(nats_url=url)
    try:
        if not os.environ.get("NATS_URL") and not runs_on_test_clock(args.data_dir):
            raise ClockRefused(
                f"the local stack in {args.data_dir} does not run with a test clock: only one"
                " started with `barnebro up --clock <instant>` can be moved"
            )
        step = parse_step(args.value) if args.action == "advance" else None
        to = parse_moment(args.value) if args.action == "set" else None
        nc = await connect(settings, "barnebro-clock")
        try:
            if args.action in ("advance", "set"):
                moment = await move(nc, settings, step=step, to=to)
            else:
                moment = await shown(nc, settings)
        finally:
            await close(nc)
    except ClockRefused as exc:
        print(f"barnebro clock: {exc}", file=sys.stderr)
        return 1
    print(moment.astimezone(NORWAY).isoformat(timespec="seconds"))
    return 0


def _export_package(out: Path) -> Path:
    from services.catalogue import PROJECT_CODE_SYSTEMS, project_conformance
    from shared.fhir.code_systems import code_system_resource
    from shared.fhir.package import write_package

    resources = [
        *project_conformance(Settings()).all(),
        *(code_system_resource(source) for source in PROJECT_CODE_SYSTEMS),
    ]
    return write_package(resources, out)


def _within(low: int, high: int) -> Callable[[str], int]:
    def number(text: str) -> int:
        if not text.isdigit() or not low <= int(text) <= high:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number from {low} to {high}")
        return int(text)

    return number


def _register_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url",
        help="the FHIR base URL of barnebro (default: that of the last `barnebro up` with"
        f" --data-dir, else {DEFAULT_URL})",
    )
    parser.add_argument(
        "--token", help="an operator credential (default: signed with --data-dir's key)"
    )
    parser.add_argument("--data-dir", type=Path, default=Path("barnebro-data"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="barnebro", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    up = commands.add_parser("up", help="run NATS, every service and the gateway locally")
    up.add_argument("--port", type=int, default=8080, help="HTTP port of the FHIR endpoint")
    up.add_argument("--data-dir", type=Path, default=Path("barnebro-data"))
    up.add_argument(
        "--clock",
        metavar="INSTANT",
        help="run on a test clock starting at this instant (e.g. 2027-03-19T09:00, Norwegian"
        " time), moved forward with `barnebro clock`; never for production",
    )

    clock = commands.add_parser(
        "clock", help="show the test clock of a stack run with --clock, or move it forward"
    )
    clock.add_argument(
        "action", nargs="?", choices=("show", "advance", "set"), default="show",
        help="show it (default); advance it by a step; set it to a later instant",
    )  # fmt: skip
    clock.add_argument("value", nargs="?", help="a step (3d, 1d12h, 2w, 90m) or an instant")
    clock.add_argument("--data-dir", type=Path, default=Path("barnebro-data"),
                       help="the local stack's (unless NATS_URL is set)")  # fmt: skip

    run = commands.add_parser("serve", help="run one service (configured by environment)")
    run.add_argument("service", choices=SERVICES)

    token = commands.add_parser("token", help="print a token for the local stack")
    token.add_argument("--kind", choices=sorted(ORGANISATION_KINDS),
                       help="the demonstration organisation of this kind")  # fmt: skip
    token.add_argument("--org", help="organisasjonsnummer of a registered organisation")
    token.add_argument("--credential", choices=sorted(CREDENTIAL_SCOPES),
                       help="an operator or population-register credential")  # fmt: skip
    token.add_argument("--hpr", help="HPR-nummer of the health person acting")
    token.add_argument("--fhir-user", help="the person acting, e.g. RelatedPerson/<id>")
    token.add_argument("--role", action="append", help="a care role the person acts in")
    token.add_argument("--scope", default=ALL_SYSTEM_SCOPES, help="space-separated scopes")
    token.add_argument("--ttl", type=int, default=3600, help="lifetime in seconds")
    token.add_argument(
        "--dpop", action="store_true", help="bind it to the local DPoP key (see dpop-proof)"
    )
    token.add_argument("--data-dir", type=Path, default=Path("barnebro-data"))

    proof = commands.add_parser(
        "dpop-proof", help="print a DPoP proof for one request, signed with the local DPoP key"
    )
    proof.add_argument("--method", required=True, help="the request's method, e.g. GET")
    proof.add_argument("--url", required=True, help="the request's URL (its query is left out)")
    proof.add_argument("--token", help="the access token the proof goes with (its hash: ath)")
    proof.add_argument("--data-dir", type=Path, default=Path("barnebro-data"))

    org = commands.add_parser("org", help="the operator's register of organisations")
    org_actions = org.add_subparsers(dest="action", required=True)
    add = org_actions.add_parser("add", help="register (or update) one organisation")
    add.add_argument("--orgnr", required=True)
    add.add_argument("--name", required=True)
    add.add_argument("--kind", required=True, choices=sorted(ORGANISATION_KINDS))
    add.add_argument("--kommune", help="kommunenummer (required for a barneverninstitusjon)")
    add.add_argument(
        "--her-id",
        action="append",
        help="the organisation's HER-id in NHN's address register (repeat for several);"
        " referrals may name it by HER-id. Without it the stored HER-ids are kept;"
        ' --her-id "" removes them',
    )
    add.add_argument("--part-of", help="organisasjonsnummer of the parent unit")
    org_import = org_actions.add_parser("import", help="register organisations from a file")
    org_import.add_argument("file", help="JSON or CSV (see the deploy guide)")
    for sub in (add, org_import):
        _register_options(sub)
        sub.add_argument("--no-check-digit", action="store_true",
                         help="accept test organisation numbers that fail mod 11")  # fmt: skip

    register = commands.add_parser("register", help="parental responsibility (Folkeregisteret)")
    register_actions = register.add_subparsers(dest="action", required=True)
    parents = register_actions.add_parser("import", help="import foreldreansvar rows")
    parents.add_argument("file", help="JSON array or JSON lines (see the deploy guide)")
    _register_options(parents)

    bulk = commands.add_parser(
        "import", help="create resources from FHIR NDJSON files, as the token's caller"
    )
    bulk.add_argument("files", nargs="+", type=Path, help="NDJSON files, in dependency order")
    bulk.add_argument(
        "--url",
        help="the FHIR base URL of barnebro (default: that of the last `barnebro up` with"
        f" --data-dir, else {DEFAULT_URL})",
    )
    bulk.add_argument("--token", help="the caller's access token (or BARNEBRO_TOKEN)")
    bulk.add_argument("--data-dir", type=Path, default=Path("barnebro-data"))
    bulk.add_argument("--batch", type=_within(1, 500), default=100,
                      help="resources per transaction, 1-500 (100)")  # fmt: skip
    bulk.add_argument("--parallel", type=_within(1, 32), default=4,
                      help="transactions at a time, 1-32 (4)")  # fmt: skip
    bulk.add_argument(
        "--state",
        type=Path,
        help="a file recording what was imported; with it, running again skips that",
    )

    dead = commands.add_parser(
        "dead-letters", help="messages a consumer could not handle: list them, or replay them"
    )
    dead.add_argument("--consumer", help="only those of this durable consumer")
    dead.add_argument(
        "--replay", action="store_true", help="publish them again where they came from"
    )

    commands.add_parser(
        "status", help="services and instances, outbox backlog, consumer lag, dead letters"
    )

    package = commands.add_parser("package", help="the FHIR package of the conformance resources")
    package_actions = package.add_subparsers(dest="action", required=True)
    export = package_actions.add_parser(
        "export", help="write barnebro.fhir-<version>.tgz: profiles, extensions, value sets,"
        " code systems, search parameters and operation definitions"
    )  # fmt: skip
    export.add_argument("--out", type=Path, default=Path("."), help="the directory to write to")

    args = parser.parse_args(argv)
    if args.command == "clock" and (args.action == "show") != (args.value is None):
        parser.error("barnebro clock: give `advance STEP` or `set INSTANT`, or nothing to show")
    if args.command == "token":
        print(_token(args))
    elif args.command == "dpop-proof":
        print(dpop_proof(args.data_dir, args.method.upper(), args.url, args.token))
    elif args.command == "serve":
        asyncio.run(serve(args.service))
    elif args.command in ("org", "register"):
        raise SystemExit(asyncio.run(_register(args)))
    elif args.command == "import":
        raise SystemExit(asyncio.run(_import(args)))
    elif args.command == "status":
        raise SystemExit(asyncio.run(_status()))
    elif args.command == "clock":
        raise SystemExit(asyncio.run(_clock(args)))
    elif args.command == "package":
        print(_export_package(args.out))
    elif args.command == "dead-letters":
        raise SystemExit(asyncio.run(_dead_letters(args.consumer, args.replay)))
    else:
        from services.stack import LocalStack, StackError
        from shared.stack_clock import ClockRefused, parse_moment

        try:
            start = parse_moment(args.clock) if args.clock else None
            with contextlib.suppress(KeyboardInterrupt):
                LocalStack(args.data_dir, args.port, SERVICES, start).run()
        except (StackError, ClockRefused) as exc:
            print(f"barnebro: {exc}", file=sys.stderr)
            raise SystemExit(1) from exc


if __name__ == "__main__":
    main()
