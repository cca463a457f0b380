"""The --config file watch: settling on a fake clock, the destructive-change guards,
and FileWatcher.check against real files with a fake clock and a real controller
(SQLite store in tmp_path): what is applied, what is refused and why, and that a
refusal changes nothing."""

from __future__ import annotations

import asyncio
import logging
import os

import pytest

from meshgrpc.config.loader import parse_text
from meshgrpc.controlplane.controller import Controller
from meshgrpc.controlplane.filewatch import FileWatcher, Settle, signature
from meshgrpc.controlplane.guard import emptying_problem, removal_limit
from meshgrpc.controlplane.main import apply_file_at_start
from meshgrpc.controlplane.state import MeshState, plan_apply
from meshgrpc.controlplane.store import SqliteStore
from meshgrpc.errors import ConfigError, FailedPrecondition
from tests.unit.test_state import BASE

FOUR_CLUSTERS = "clusters: [{name: a}, {name: b}, {name: c}, {name: d}]\n"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


# -- settling --------------------------------------------------------------------

def test_the_starting_signature_is_not_a_change():
    s = Settle(1.0, (10, 1, 1, 7))
    assert not s.observe((10, 1, 1, 7), 0.0) and not s.observe((10, 1, 1, 7), 50.0)
    assert not s.waiting


def test_a_change_is_taken_once_it_is_unchanged_for_the_window():
    s = Settle(1.0, (10, 1, 1, 7))
    assert not s.observe((20, 2, 2, 7), 5.0) and s.waiting
    assert not s.observe((20, 2, 2, 7), 5.9)
    assert s.observe((20, 2, 2, 7), 6.0) and not s.waiting
    assert not s.observe((20, 2, 2, 7), 9.0)            # taken: not again


def test_a_file_still_being_written_restarts_the_window():
    s = Settle(1.0, (10, 1, 1, 7))
    t = 0.0
    for size in range(20, 200, 10):                      # grows every 0.5 s: never settles
        assert not s.observe((size, size, size, 7), t)
        t += 0.5
    assert not s.observe((190, 190, 190, 7), t + 0.4)
    assert s.observe((190, 190, 190, 7), t + 0.5)


def test_a_change_back_to_the_handled_content_is_no_change():
    s = Settle(1.0, (10, 1, 1, 7))
    s.observe((20, 2, 2, 7), 0.0)
    assert not s.observe((10, 1, 1, 7), 0.5) and not s.waiting
    assert not s.observe((10, 1, 1, 7), 5.0)


def test_a_zero_window_takes_a_change_at_once():
    s = Settle(0.0, None)
    assert s.observe((1, 1, 1, 1), 0.0)


# -- guards ----------------------------------------------------------------------

def state_of(text: str) -> MeshState:
    return plan_apply(MeshState.empty(), parse_text(text), replace=True).state


def test_emptying_is_refused_and_removing_less_is_not():
    before = state_of(FOUR_CLUSTERS)
    assert emptying_problem(before, plan_apply(before, parse_text(""), replace=True)) == \
        "it would remove every configured resource (4)"
    assert emptying_problem(before, plan_apply(before, parse_text("clusters: [{name: a}]"), replace=True)) is None
    assert emptying_problem(MeshState.empty(), plan_apply(MeshState.empty(), parse_text(""), replace=True)) is None


@pytest.mark.parametrize("share, kept, refused", [
    (1.0, "[{name: a}]", False),            # the default: only emptying is refused
    (0.5, "[{name: a}, {name: b}]", False),  # half removed: not more than half
    (0.5, "[{name: a}]", True),              # three quarters removed
    (0.0, "[{name: a}, {name: b}, {name: c}, {name: d}, {name: e}]", False),  # adding only
    (0.0, "[{name: a}, {name: b}, {name: c}]", True),
])
def test_removal_share(share, kept, refused):
    before = state_of(FOUR_CLUSTERS)
    problem = removal_limit(share)(before, plan_apply(before, parse_text(f"clusters: {kept}"), replace=True))
    assert (problem is not None) is refused
    if refused:
        assert "of 4 configured resources" in problem and f"--max-removal-share {share:g}" in problem


def test_removal_limit_refuses_emptying_whatever_the_share():
    before = state_of(FOUR_CLUSTERS)
    assert removal_limit(1.0)(before, plan_apply(before, parse_text(""), replace=True)) == \
        "it would remove every configured resource (4)"


def test_a_refused_apply_changes_nothing_even_as_a_dry_run(tmp_path):
    store = SqliteStore(str(tmp_path))
    controller = Controller(store, MeshState.empty())
    asyncio.run(controller.apply(parse_text(FOUR_CLUSTERS), replace=True))
    before = controller.state
    for dry_run in (True, False):
        with pytest.raises(FailedPrecondition, match="every configured resource"):
            asyncio.run(controller.apply(parse_text(""), replace=True, dry_run=dry_run, guard=emptying_problem))
    assert controller.state is before
    assert len(MeshState.from_stored(store.read()).configured_mesh().clusters) == 4
    asyncio.run(store.close())


# -- the watcher -----------------------------------------------------------------

class Watched:
    """A watched file, a real controller, a fake clock; `step()` advances and checks."""

    def __init__(self, tmp_path, text: str = BASE, share: float = 1.0, settle: float = 1.0) -> None:
        self.path = str(tmp_path / "mesh.yaml")
        self.write(text)
        self.store = SqliteStore(str(tmp_path / "data"))
        self.controller = Controller(self.store, MeshState.empty())
        guard = removal_limit(share)
        digest = asyncio.run(apply_file_at_start(self.controller, self.path, "", guard))
        self.clock = Clock()
        self.watcher = FileWatcher(self.path, self.apply, digest, guard, settle=settle, clock=self.clock)
        self.applied = 0

    async def apply(self, mesh, digest, guard):
        self.applied += 1
        return await self.controller.apply(mesh, replace=True, config_digest=digest, guard=guard)

    def write(self, text: str | bytes) -> None:
        data = text.encode() if isinstance(text, str) else text
        with open(self.path, "wb") as f:
            f.write(data)
        # A distinct mtime for every write, whatever the filesystem's timestamp granularity.
        stamp = getattr(self, "_stamp", 1_000_000_000) + 1
        self._stamp = stamp
        os.utime(self.path, ns=(stamp * 10**9, stamp * 10**9))

    def step(self, seconds: float) -> bool:
        self.clock.now += seconds
        return asyncio.run(self.watcher.check())

    def settle(self) -> bool:
        """Checks until the watcher has taken the current file; True if it applied it."""
        self.step(0.0)
        return self.step(self.watcher._settle.window)

    def clusters(self) -> list[str]:
        return [c.name for c in self.controller.state.configured_mesh().clusters]


def test_an_edit_is_applied_only_after_it_settles(tmp_path):
    w = Watched(tmp_path)
    w.write(BASE.replace("- {name: spare}", "- {name: spare}\n  - {name: extra}"))
    assert not w.step(0.25) and not w.step(0.5)
    assert w.step(0.5)
    assert "extra" in w.clusters()


def test_a_file_still_being_written_is_not_read_until_complete(tmp_path):
    w = Watched(tmp_path)
    full = BASE.replace("- {name: spare}", "- {name: spare}\n  - {name: extra}")
    for end in range(len(full) // 4, len(full), len(full) // 4):   # a slow copy: a chunk every 0.3 s
        w.write(full[:end])
        assert not w.step(0.3)
    w.write(full)
    assert w.settle() and w.applied == 1   # only the complete file was ever read and applied
    assert "extra" in w.clusters()


@pytest.mark.parametrize("content, reason", [
    (b"", "the file is empty"),
    (b"  \n\n", "the file is empty"),
    (b"clusters: [{name: x\n", "YAML error at line 2"),
    (b"clusters: []\n", "Refused: it would remove every configured resource (5)"),
    (b"x0: &x0 [a, a, a, a, a, a, a, a, a, a]\n" + b"".join(
        b"x%d: &x%d [%s]\n" % (i, i, b", ".join([b"*x%d" % (i - 1)] * 10)) for i in range(1, 8)),
     "YAML aliases expand to"),
])
def test_refused_edits_are_logged_with_the_file_and_reason_and_change_nothing(tmp_path, caplog, content, reason):
    w = Watched(tmp_path)
    before, stored = w.controller.state, w.store.read()
    w.write(content)
    with caplog.at_level(logging.INFO, "meshgrpc.controlplane.filewatch"):
        assert not w.settle()
    assert w.controller.state is before and w.store.read() == stored
    refusal = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(refusal) == 1 and refusal[0].startswith(f"ignoring the edit of {w.path}; the last good config stays")
    assert reason in refusal[0]
    assert not w.step(10.0)                  # refused content is not retried until it changes
    w.write(BASE.replace("- {name: spare}", "- {name: spare}\n  - {name: extra}"))
    assert w.settle() and "extra" in w.clusters()


ONLY_GREETER = """
clusters: [{name: greeter}]
endpoints: [{cluster: greeter, endpoints: [{address: "127.0.0.1:50051"}]}]
routes:
  - {name: default, virtual_hosts: [{name: all, domains: ["*"], routes: [{match: {prefix: /}, route: {cluster: greeter}}]}]}
"""


def test_a_share_bound_refuses_a_large_removal(tmp_path, caplog):
    w = Watched(tmp_path, share=0.5)                  # BASE: 3 clusters, 1 endpoint set, 1 route config
    w.write("clusters: [{name: greeter}, {name: spare}]\n")
    with caplog.at_level(logging.ERROR, "meshgrpc.controlplane.filewatch"):
        assert not w.settle()
    assert "it would remove 3 of 5 configured resources (60%), more than --max-removal-share 0.5 allows" in caplog.text
    assert sorted(w.clusters()) == ["canary", "greeter", "spare"]
    w.write(ONLY_GREETER)                              # removes 2 of 5 (40%) and changes 2: allowed
    assert w.settle() and w.clusters() == ["greeter"]


def test_a_file_replaced_by_rename_is_seen(tmp_path):
    w = Watched(tmp_path)
    other = tmp_path / "mesh.yaml.tmp"
    other.write_text(BASE.replace("- {name: spare}", "- {name: spare}\n  - {name: renamed}"))
    os.utime(other, ns=(os.stat(w.path).st_mtime_ns,) * 2)   # same mtime: the inode tells them apart
    os.replace(other, w.path)
    assert w.settle() and "renamed" in w.clusters()


def test_signature_is_none_for_a_missing_file(tmp_path):
    assert signature(str(tmp_path / "absent.yaml")) is None


def test_an_empty_file_at_start_up_is_refused(tmp_path):
    path = tmp_path / "mesh.yaml"
    path.write_text("")
    controller = Controller(SqliteStore(str(tmp_path / "data")), MeshState.empty())
    with pytest.raises(ConfigError, match="the file is empty"):
        asyncio.run(apply_file_at_start(controller, str(path), "", removal_limit(1.0)))
