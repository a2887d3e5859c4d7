"""The `barnebro` command: run the local stack, run one service, issue a development token.

barnebro up [--port 8080] [--data-dir DIR]     the whole stack on this machine
barnebro serve SERVICE                         one process, configured by environment
barnebro token --org ORGNR --kind KIND …       a signed JWT for the local stack
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from pathlib import Path
from typing import Protocol

from shared.auth.local_keys import issue_token
from shared.auth.scopes import ALL_SYSTEM_SCOPES
from shared.codes import ORGANISATION_KINDS
from shared.config import Settings
from shared.telemetry import setup_logging, setup_tracing

SERVICES = ("gateway", "directory", "consent", "referral", "careplan", "subscriptions")


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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="barnebro", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    up = commands.add_parser("up", help="run NATS, every service and the gateway locally")
    up.add_argument("--port", type=int, default=8080, help="HTTP port of the FHIR endpoint")
    up.add_argument("--data-dir", type=Path, default=Path("barnebro-data"))

    run = commands.add_parser("serve", help="run one service (configured by environment)")
    run.add_argument("service", choices=SERVICES)

    token = commands.add_parser("token", help="print a development token for the local stack")
    token.add_argument("--org", required=True, help="organisasjonsnummer of the client")
    token.add_argument("--kind", required=True, choices=sorted(ORGANISATION_KINDS))
    token.add_argument("--hpr", help="HPR-nummer of the person acting")
    token.add_argument("--fhir-user", help="the person acting, e.g. RelatedPerson/<id>")
    token.add_argument("--role", action="append", help="a care role the person acts in")
    token.add_argument("--scope", default=ALL_SYSTEM_SCOPES, help="space-separated scopes")
    token.add_argument("--ttl", type=int, default=3600, help="lifetime in seconds")
    token.add_argument("--data-dir", type=Path, default=Path("barnebro-data"))

    args = parser.parse_args(argv)
    if args.command == "token":
        print(
            issue_token(
                args.data_dir,
                orgnr=args.org,
                kind=args.kind,
                hpr=args.hpr,
                fhir_user=args.fhir_user,
                roles=args.role,
                scope=args.scope,
                ttl=args.ttl,
            )
        )
    elif args.command == "serve":
        asyncio.run(serve(args.service))
    else:
        from services.stack import LocalStack, StackError

        try:
            with contextlib.suppress(KeyboardInterrupt):
                LocalStack(args.data_dir, args.port, SERVICES).run()
        except StackError as exc:
            print(f"barnebro: {exc}", file=sys.stderr)
            raise SystemExit(1) from exc


if __name__ == "__main__":
    main()
