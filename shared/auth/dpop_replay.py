"""The DPoP replay store every gateway instance shares: a JetStream key-value bucket.

A proof's key is written with create-only semantics (`kv.create` fails when the key
exists), so of two instances that receive the same proof at once exactly one accepts it.
The bucket's TTL forgets a proof once its `iat` is outside the accepted window, when it
would be refused anyway.
"""

from __future__ import annotations

from nats.aio.client import Client as NATS
from nats.js.api import KeyValueConfig
from nats.js.errors import BadRequestError, BucketNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue


class NatsReplayStore:
    """Used proofs in the bucket `bucket`, each remembered for `ttl` seconds."""

    def __init__(self, nc: NATS, bucket: str, ttl: float, replicas: int = 1) -> None:
        self._nc = nc
        self._bucket = bucket
        self._ttl = ttl
        self._replicas = replicas
        self._kv: KeyValue | None = None

    async def start(self) -> None:
        js = self._nc.jetstream()
        try:
            self._kv = await js.key_value(self._bucket)
        except BucketNotFoundError:
            config = KeyValueConfig(bucket=self._bucket, ttl=self._ttl, replicas=self._replicas)
            try:
                self._kv = await js.create_key_value(config)
            except BadRequestError:  # created meanwhile by another instance
                self._kv = await js.key_value(self._bucket)

    async def first_use(self, key: str) -> bool:
        if self._kv is None:
            await self.start()
        assert self._kv is not None
        try:
            await self._kv.create(key, b"")
        except KeyWrongLastSequenceError:
            return False
        return True
