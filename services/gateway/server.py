"""Starting and stopping the gateway process: NATS, the registry, the HTTP listener."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web
from nats.aio.client import Client as NATS

from services.gateway.app import create_app
from services.gateway.bad_requests import OutcomeRequestHandler, http_logger
from services.gateway.gateway import Gateway
from shared.auth.tokens import TokenVerifier, Verifiers, operator_caller_from_claims
from shared.config import Settings
from shared.patience import patiently
from shared.stack_clock import ClockFollower
from shared.transport.nats_connection import close, connect

log = logging.getLogger(__name__)


LISTEN_BACKLOG = 128
"""Connections the kernel queues before the gateway accepts them (aiohttp's default)."""


class GatewayServer:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.nc: NATS | None = None
        self.gateway: Gateway | None = None
        self._runner: web.AppRunner | None = None
        self._listener: asyncio.Server | None = None
        self._clock: ClockFollower | None = None

    async def start(self) -> None:
        settings = self.settings
        nc = await patiently("NATS", lambda: connect(settings, "barnebro-gateway"))
        self.nc = nc
        self._clock = ClockFollower(nc, settings)
        await self._clock.start()
        gateway = self.gateway = Gateway(settings, nc, verifiers(settings))
        await patiently("the service registry", gateway.registry.start)
        await patiently("the DPoP replay store", gateway.replays.start)
        await gateway.kinds.follow(nc, settings.nats_prefix)
        logger = http_logger()
        self._runner = web.AppRunner(
            create_app(self.gateway), access_log=None, auto_decompress=False, logger=logger
        )
        await self._runner.setup()
        # Listening with aiohttp's handler as the gateway answers (`bad_requests`) rather
        # than through a `web.TCPSite`, which can only make aiohttp's own.
        manager = self._runner.server
        assert manager is not None
        loop = asyncio.get_running_loop()
        self._listener = await loop.create_server(
            lambda: OutcomeRequestHandler(
                manager,
                loop=loop,
                access_log=None,  # type: ignore[arg-type]  # None: no access log, as above
                auto_decompress=False,
                logger=logger,
            ),
            settings.http_host,
            settings.http_port,
            backlog=LISTEN_BACKLOG,
        )
        log.info("gateway listening on %s:%s", settings.http_host, settings.http_port)

    async def stop(self) -> None:
        if self._listener is not None:
            self._listener.close()  # no new connections; the runner ends the open ones
        if self._runner is not None:
            await self._runner.cleanup()
        if self.gateway is not None:
            await self.gateway.kinds.stop()
            await self.gateway.registry.stop()
        if self._clock is not None:
            await self._clock.stop()
        if self.nc is not None:
            await close(self.nc)


def verifiers(settings: Settings) -> Verifiers:
    """Integration tokens against HelseID's (or the local) JWKS; operator and register
    credentials against the operator's own JWKS, when one is configured."""
    integration = TokenVerifier(
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        jwks_url=settings.jwks_url,
        jwks_file=settings.jwks_file,
    )
    operator = None
    if settings.operator_jwks_file:
        operator = TokenVerifier(
            issuer=settings.operator_issuer,
            audience=settings.jwt_audience,
            jwks_file=settings.operator_jwks_file,
            caller_of=operator_caller_from_claims,
        )
    return Verifiers(integration, operator)
