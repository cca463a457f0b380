"""Config that should never apply, against a real control plane: the alias bomb in
`validate`, `apply` and the watched --config file; an empty, truncated or
half-written watched file; `apply --replace` of an empty file; configs larger than
gRPC's default 4 MiB message limit. Each refusal is fast, clear, and leaves
`get all` byte-identical."""

from __future__ import annotations

import re
import shutil
import time

from tests.integration.cp_support import EXAMPLE, cli, start_control_plane
from tests.support.procs import poll_until, run_meshgrpc
from tests.unit.test_config_bounds import alias_bomb


def get_all(address: str) -> str:
    result = cli(address, "get", "all")
    assert result.returncode == 0, result.stderr
    return result.stdout


def timed(*args: str):
    started = time.monotonic()
    result = run_meshgrpc(*args)
    return result, time.monotonic() - started


def refusals(proc, path) -> int:
    return len(re.findall(rf"ignoring the edit of {re.escape(str(path))}", proc.output()))


def watched(tmp_path, *extra: str):
    config = tmp_path / "mesh.yaml"
    shutil.copy(EXAMPLE, config)
    proc, address = start_control_plane(tmp_path / "data", "--config", str(config), *extra)
    return config, proc, address


def test_the_alias_bomb_fails_validate_and_apply_in_under_2s_with_exit_2(tmp_path):
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(alias_bomb())
    result, took = timed("validate", "-f", str(bomb))
    assert result.returncode == 2 and took < 2.0, (took, result.stderr)
    assert result.stderr.splitlines() == [
        f"{bomb}: YAML aliases expand to more than 16777216 characters of text (at line 8, column 5), "
        "the limit for a whole file",
        f"{bomb}: refused (1 error)"]

    proc, address = start_control_plane(tmp_path / "data", "--config", EXAMPLE)
    try:
        before = get_all(address)
        result, took = timed("apply", "-f", str(bomb), "--control-plane", address)
        assert result.returncode == 2 and took < 2.0, (took, result.stderr)
        assert "YAML aliases expand to more than 16777216 characters of text" in result.stderr
        assert get_all(address) == before
    finally:
        proc.kill()


def test_the_alias_bomb_in_the_watched_file_is_refused_and_get_keeps_answering(tmp_path):
    config, proc, address = watched(tmp_path, "--config-settle", "0.2")
    try:
        before = get_all(address)
        config.write_text(alias_bomb())
        proc.wait_for_line(rf"ignoring the edit of {re.escape(str(config))}; the last good config stays", 10)
        proc.wait_for_line(r"YAML aliases expand to more than", 1)
        started = time.monotonic()
        assert get_all(address) == before
        assert time.monotonic() - started < 2.0
        assert proc.popen.poll() is None
    finally:
        proc.kill()


def test_an_empty_or_unparsable_truncated_watched_file_leaves_the_mesh_as_it_was(tmp_path):
    config, proc, address = watched(tmp_path, "--config-settle", "0.2")
    try:
        before = get_all(address)
        text = config.read_bytes()
        config.write_bytes(b"")                          # truncated to zero bytes
        poll_until(lambda: refusals(proc, config) == 1, 10, "the empty file refused")
        proc.wait_for_line(r"the file is empty", 1)
        assert get_all(address) == before

        config.write_bytes(text[: text.index(b"lb_policy: ROUND_ROBIN") + 8])   # cut mid-value: invalid
        poll_until(lambda: refusals(proc, config) == 2, 10, "the truncated file refused")
        assert get_all(address) == before

        config.write_bytes(b"clusters: []\nendpoints: []\nroutes: []\n")       # parses, but empties the mesh
        poll_until(lambda: refusals(proc, config) == 3, 10, "the emptying edit refused")
        proc.wait_for_line(r"Refused: it would remove every configured resource \(5\)", 1)
        assert get_all(address) == before

        config.write_bytes(text.replace(b"clusters:\n", b"clusters:\n  - name: payments\n", 1))
        poll_until(lambda: "name: payments" in get_all(address), 10, "a good edit after them is applied")
    finally:
        proc.kill()


def test_a_half_written_watched_file_is_applied_only_once_complete(tmp_path):
    config, proc, address = watched(tmp_path, "--config-settle", "1.5")
    try:
        full = config.read_text().replace("clusters:\n", "clusters:\n  - name: payments\n", 1)
        with open(config, "w") as f:                     # a copy in progress: the first half...
            f.write(full[: len(full) // 2])
            f.flush()
            proc.wait_for_line(r"mesh\.yaml changed; applying it once unchanged for 1\.5s", 10)
            f.write(full[len(full) // 2:])               # ...and, within the settle window, the rest
        poll_until(lambda: "name: payments" in get_all(address), 10, "the complete file applied")
        assert get_all(address).startswith("# versions: clusters=2 endpoints=1 routes=1")  # one change only
        assert len(re.findall(r"applied the edit of", proc.output())) == 1
        assert refusals(proc, config) == 0
    finally:
        proc.kill()


def test_apply_replace_of_an_empty_file_needs_allow_empty(tmp_path):
    proc, address = start_control_plane(tmp_path / "data", "--config", EXAMPLE)
    try:
        before = get_all(address)
        empty = tmp_path / "empty.yaml"
        empty.write_text("")
        refused = cli(address, "apply", "-f", str(empty), "--replace")
        assert refused.returncode == 2
        assert "removed cluster greeter\n" in refused.stdout and "-lb_policy: PEAK_EWMA" in refused.stdout
        assert refused.stderr == (f"refusing to apply {empty} with --replace: it is empty and would remove every "
                                  "resource above (pass --allow-empty to do that)\n")
        assert get_all(address) == before

        dry = cli(address, "apply", "-f", str(empty), "--replace", "--dry-run", "--allow-empty")
        assert dry.returncode == 0 and "(dry run: nothing changed)" in dry.stdout
        assert get_all(address) == before

        allowed = cli(address, "apply", "-f", str(empty), "--replace", "--allow-empty")
        assert allowed.returncode == 0, allowed.stderr
        assert allowed.stdout.count("removed ") == 5
        assert "name:" not in get_all(address)
        again = cli(address, "apply", "-f", str(empty), "--replace")   # nothing left to remove: nothing refused
        assert again.returncode == 0 and again.stdout == "no changes\n"
    finally:
        proc.kill()


def test_a_config_larger_than_grpcs_default_message_limit_applies_and_reads_back(tmp_path):
    # 6 MiB as a message (gRPC's default receive limit is 4 MiB on both ends).
    value = "v" * (64 * 1024)
    endpoints = "\n".join(f'      - {{address: "10.0.0.{i + 1}:80", metadata: {{blob: "{value}"}}}}' for i in range(96))
    big = tmp_path / "big.yaml"
    big.write_text(f"clusters: [{{name: big}}]\nendpoints:\n  - cluster: big\n    endpoints:\n{endpoints}\n")
    proc, address = start_control_plane(tmp_path / "data")
    try:
        applied = cli(address, "apply", "-f", str(big))
        assert applied.returncode == 0, applied.stderr
        got = cli(address, "get", "endpoints", "-o", "json")
        assert got.returncode == 0, got.stderr
        assert got.stdout.count(value) == 96
    finally:
        proc.kill()
