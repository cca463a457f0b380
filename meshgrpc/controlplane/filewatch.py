"""Watching the --config file: each edit is loaded, validated and applied as a
whole-mesh replace; a bad edit is logged with every error and changes nothing.

The file is polled (size, mtime and ctime, then a content hash) rather than
watched with inotify: it works on every filesystem and for editors that replace
the file by renaming. The digest of the content applied is committed with the
change, so a restart does not re-apply an unchanged file over later `apply`s.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from typing import Awaitable, Callable

from meshapi.v1 import management_pb2, resources_pb2
from meshgrpc.tasks import OwnedTask
from meshgrpc.config.loader import parse_text
from meshgrpc.errors import ConfigError, FieldError, MeshError

log = logging.getLogger(__name__)

MAX_BYTES = 16 * 1024 * 1024  # a mesh config is kilobytes; refuse to read a runaway file
Apply = Callable[[resources_pb2.MeshConfig, str], Awaitable[list[management_pb2.ResourceChange]]]


def read_config(path: str) -> tuple[bytes, str]:
    """The file's bytes and their digest. Raises ConfigError when unreadable or too big."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_BYTES + 1)
    except OSError as e:
        raise ConfigError([FieldError("", f"cannot read file: {e.strerror or e}")], source=path) from e
    if len(raw) > MAX_BYTES:
        raise ConfigError([FieldError("", f"file is larger than {MAX_BYTES} bytes")], source=path)
    return raw, hashlib.sha256(raw).hexdigest()


def parse_config(path: str, raw: bytes) -> resources_pb2.MeshConfig:
    return parse_text(raw, source=path, fmt="json" if path.endswith(".json") else "yaml")


def _signature(path: str) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class FileWatcher:
    """Polls `path` every `interval` seconds and applies each new content through `apply`."""

    def __init__(self, path: str, apply: Apply, seen_digest: str, interval: float = 0.5) -> None:
        self.path = path
        self._apply = apply
        self._seen_digest = seen_digest  # content last applied or rejected: not retried until it changes
        self._signature = _signature(path)
        self.interval = interval
        self._task = OwnedTask("config-file-watch", self._poll)

    async def check(self) -> bool:
        """Applies the file if its content changed; True when a change was applied."""
        signature = _signature(self.path)
        if signature == self._signature:
            return False
        self._signature = signature
        try:
            raw, digest = read_config(self.path)
            if digest == self._seen_digest:
                return False
            self._seen_digest = digest
            changes = await self._apply(parse_config(self.path, raw), digest)
        except MeshError as e:   # invalid, or refused by the store (another replica changed it)
            log.error("ignoring the edit of %s; the previous config stays. %s", self.path, e)
            return False
        log.info("applied the edit of %s: %s", self.path, _summary(changes))
        return True

    def start(self) -> asyncio.Task:
        return self._task.start()

    async def stop(self) -> None:
        await self._task.stop()

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self.check()


def _summary(changes: list[management_pb2.ResourceChange]) -> str:
    if not changes:
        return "no changes"
    action = management_pb2.ResourceChange.Action.Name
    return ", ".join(f"{action(c.action).lower()} {management_pb2.ResourceKind.Name(c.kind).lower()} {c.name}"
                     for c in changes)
