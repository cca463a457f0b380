"""Watching the --config file: each edit is applied as a whole-mesh replace once
the file is complete and stable; an edit that cannot be right is refused with a
log line naming the file and the reason, and the last good config stays.

An edit is read only once it has settled: the file's signature (size, mtime,
ctime, inode) unchanged for a settle window, so a copy or an editor still writing
is not read half-done, and re-checked after reading so that what was parsed is
what settled. It is then parsed and validated whole. Refused: an empty file (what
a truncating editor or an interrupted copy leaves), one that does not parse or
validate, one past a parsing bound (config/bounds.py), and one that would remove
every configured resource or more than --max-removal-share of them (guard.py).

The file is polled rather than watched with inotify: it works on every filesystem
and for editors that replace the file by renaming. Reading and parsing run in a
worker thread; only the apply (the controller's single writer) runs on the loop. The digest of the content
applied is committed with the change, so a restart does not re-apply an unchanged
file over later `apply`s; content refused is not retried until it changes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import os
import time
from collections.abc import Awaitable, Callable

from meshapi.v1 import management_pb2, resources_pb2
from meshgrpc.config.loader import file_format, parse_text, read_file
from meshgrpc.controlplane.guard import Guard
from meshgrpc.errors import ConfigError, FieldError, MeshError
from meshgrpc.tasks import OwnedTask

log = logging.getLogger(__name__)

SETTLE_SECONDS = 1.0  # default settle window (--config-settle)
POLL_SECONDS = 0.25
Apply = Callable[[resources_pb2.MeshConfig, str, Guard], Awaitable[list[management_pb2.ResourceChange]]]
Signature = tuple[int, int, int, int] | None


def read_config(path: str) -> tuple[bytes, str]:
    """The file's bytes and their digest. Raises ConfigError when unreadable, empty or
    past the size bound."""
    raw = read_file(path)
    if not raw.strip():
        raise ConfigError([FieldError("", "the file is empty")], source=path)
    return raw, hashlib.sha256(raw).hexdigest()


def parse_config(path: str, raw: bytes) -> resources_pb2.MeshConfig:
    return parse_text(raw, source=path, fmt=file_format(path))


def signature(path: str) -> Signature:
    """What changes whenever the file does: size, mtime, ctime and inode (None: no file)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


class Settle:
    """Decides when a polled file has settled. Pure: the caller passes what it saw
    and when. `observe` is True once per change, when the signature has stayed the
    same for `window` seconds; the signature it started with is not a change."""

    def __init__(self, window: float, current: Signature) -> None:
        self.window = window
        self._handled = current
        self._pending: Signature = current
        self._since = 0.0

    def observe(self, seen: Signature, now: float) -> bool:
        if seen == self._handled:
            self._pending = seen
            return False
        if seen != self._pending:
            self._pending, self._since = seen, now
        if now - self._since < self.window:
            return False
        self._handled = seen
        return True

    @property
    def waiting(self) -> bool:
        """True while a change has been seen but has not settled yet."""
        return self._pending != self._handled


@dataclasses.dataclass(frozen=True)
class Edit:
    """A settled, parsed new content of the file, not yet applied."""

    mesh: resources_pb2.MeshConfig
    digest: str


class FileWatcher:
    """Polls `path` and applies each settled, new content through `apply`, with `guard`."""

    def __init__(self, path: str, apply: Apply, seen_digest: str, guard: Guard, *,
                 settle: float = SETTLE_SECONDS, interval: float = POLL_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.path = path
        self._apply = apply
        self._guard = guard
        self._seen_digest = seen_digest  # content last applied or refused: not retried until it changes
        self._settle = Settle(settle, signature(path))
        self._clock = clock
        self.interval = interval
        self._task = OwnedTask("config-file-watch", self._poll)

    async def check(self) -> bool:
        """One poll: applies the file if it settled on new content; True when a change was applied."""
        edit = self.poll_file()
        return edit is not None and await self.apply_edit(edit)

    def poll_file(self) -> Edit | None:
        """Stats the file and, once a change has settled, reads and parses it: the new
        content to apply, or None. Touches no mesh state, so it can run off the event loop."""
        seen, was_waiting = signature(self.path), self._settle.waiting
        if not self._settle.observe(seen, self._clock()):
            if self._settle.waiting and not was_waiting:
                log.info("%s changed; applying it once unchanged for %gs", self.path, self._settle.window)
            return None
        try:
            raw, digest = read_config(self.path)
            if signature(self.path) != seen:   # written to while being read: the next polls wait it out
                return None
            if digest == self._seen_digest:
                return None
            self._seen_digest = digest
            return Edit(parse_config(self.path, raw), digest)
        except ConfigError as e:
            self._refused(e)
            return None

    async def apply_edit(self, edit: Edit) -> bool:
        """Applies a parsed edit (on the event loop: the controller's single writer); True if applied."""
        try:
            changes = await self._apply(edit.mesh, edit.digest, self._guard)
        except MeshError as e:
            self._refused(e)
            return False
        log.info("applied the edit of %s: %s", self.path, _summary(changes))
        return True

    def _refused(self, error: MeshError) -> None:
        reason = str(error) if isinstance(error, ConfigError) else f"Refused: {error}"
        log.error("ignoring the edit of %s; the last good config stays. %s", self.path, reason)

    def start(self) -> asyncio.Task:
        return self._task.start()

    async def stop(self) -> None:
        await self._task.stop()

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            # Reading and parsing a large file must not stall the management API and discovery.
            edit = await asyncio.to_thread(self.poll_file)
            if edit is not None:
                await self.apply_edit(edit)


def _summary(changes: list[management_pb2.ResourceChange]) -> str:
    if not changes:
        return "no changes"
    action = management_pb2.ResourceChange.Action.Name
    return ", ".join(f"{action(c.action).lower()} {management_pb2.ResourceKind.Name(c.kind).lower()} {c.name}"
                     for c in changes)
