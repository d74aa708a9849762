"""One bot per database: an exclusive lock on a file beside the database, held while the process lives.

Two `readersviews run` on one database would both poll the feeds and post every article twice.
The guard is `fcntl.flock` on `<database>.lock`, not a heartbeat row in the database:

- The kernel releases the lock the moment the holder dies, SIGKILL and OOM-kill included, so a
  restart after a crash takes over at once: there is no expiry to wait for and no clock to trust.
  A heartbeat row would have to expire (a killed bot blocks its restart for ~30 s) and would take a
  write on the busy database every few seconds.
- SQLite in WAL mode already requires every process using the database to be on the same machine
  (its -shm file is shared memory), which is exactly the scope of a kernel lock. Containers that
  share the database's volume share the host's kernel, so the lock holds between them too.

The file's text names the holder (host, pid, since when, command) for the one-line refusal. Its
contents are information only: the lock is what counts, so a stale text left by a killed process
is simply overwritten by the next holder.
"""

from __future__ import annotations

import fcntl
import logging
import os
import socket
from datetime import UTC, datetime
from pathlib import Path

from bot.store.database import PRIVATE_FILE, StoreError, prepare_location

log = logging.getLogger(__name__)


class DatabaseInUse(StoreError):
    """Another process holds the database's lease."""


def lease_path(db_path: Path) -> Path:
    return Path(f"{db_path}.lock")


class Lease:
    """The exclusive right to run against one database; `release()` (or the process's end) gives it up."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, db_path: Path | str, command: str) -> Lease | None:
        """Take the lease for `command` ("run", "migrate"); raise DatabaseInUse naming the holder.

        None for databases without a file (":memory:", "file:" URIs): nothing to share.
        """
        text = str(db_path)
        if text == ":memory:" or text.startswith("file:"):
            return None
        db_path = Path(db_path)
        prepare_location(db_path, create_file=False)
        path = lease_path(db_path)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, PRIVATE_FILE)
        except OSError as exc:
            raise StoreError(f"cannot open the lock file {path}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise DatabaseInUse(
                f"another readersviews is using {db_path} ({holder}); stop it first "
                "(a process that was killed gives the database up at once)"
            ) from None
        except OSError as exc:
            os.close(fd)
            raise StoreError(f"cannot lock {path}: {exc.strerror}") from None
        since = datetime.now(UTC).isoformat(timespec="seconds")
        info = f"{command} on host {socket.gethostname()}, pid {os.getpid()}, since {since}\n"
        os.ftruncate(fd, 0)
        os.pwrite(fd, info.encode(), 0)
        log.debug("holding %s: %s", path, info.strip())
        return cls(path, fd)

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)  # no stale holder text for the next reader; the file itself stays
        except OSError:
            pass
        os.close(fd)  # closing the only descriptor drops the lock


def _read_holder(fd: int) -> str:
    try:
        text = os.pread(fd, 500, 0).decode("utf-8", "replace").strip()
    except OSError:
        text = ""
    # The holder writes its line just after locking: an empty file means it is starting right now.
    return text or "it is starting"


__all__ = ["DatabaseInUse", "Lease", "lease_path"]
