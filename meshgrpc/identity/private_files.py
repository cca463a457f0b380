"""Files only the control plane's user may read: the data directory (0700) and
every secret in it (0600), checked at start and written so that no other user
ever sees them half-made or world-readable.

A directory or file that others can read is refused with the path, its mode and
the command that fixes it, rather than silently tightened: a secret that was
readable may already have been read, and the operator should know.
"""

from __future__ import annotations

import os
import stat

from meshgrpc.errors import FailedPrecondition

DIR_MODE = 0o700
FILE_MODE = 0o600


class InsecureFiles(FailedPrecondition):
    """A data directory or secret that users other than its owner can reach."""


def ensure_private_dir(path: str) -> None:
    """Creates `path` with mode 0700, or checks an existing one and the files in it.
    Raises InsecureFiles naming every problem."""
    try:
        os.makedirs(path, mode=DIR_MODE)
    except FileExistsError:
        pass
    problems = [p for p in [_problem(path, is_dir=True)] + [
        _problem(os.path.join(path, name)) for name in sorted(os.listdir(path))] if p]
    if problems:
        raise InsecureFiles("refusing to use data directory with open permissions:\n"
                            + "\n".join(f"  {p}" for p in problems))


def _problem(path: str, is_dir: bool = False) -> str | None:
    st = os.lstat(path)
    if not is_dir and not stat.S_ISREG(st.st_mode):
        return None   # sockets, sub-directories: nothing of ours
    mode = stat.S_IMODE(st.st_mode)
    if st.st_uid != os.geteuid():
        return f"{path} belongs to uid {st.st_uid}, not this user (uid {os.geteuid()})"
    if mode & 0o077:
        want = DIR_MODE if is_dir else FILE_MODE
        return f"{path} has mode {mode:04o}: others can read it (chmod {want:o} {path})"
    return None


def write_private(path: str, data: bytes) -> None:
    """Writes `path` (mode 0600) atomically: readers see the old content or the new, whole."""
    tmp = f"{path}.tmp-{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def read_private(path: str) -> bytes:
    """Reads a secret, refusing one that others can read."""
    problem = _problem(path)
    if problem:
        raise InsecureFiles(f"refusing to read a secret with open permissions: {problem}")
    with open(path, "rb") as f:
        return f.read()
