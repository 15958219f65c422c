"""State that only its owner may read: the store's SQLite file, the key file, the dev stack's
Temporal database, and the folders made to hold them (0600 files, 0700 folders, whatever
the process's umask). A folder that already existed keeps its mode (it may be ``/tmp`` or a
mounted volume); a state file of ours is tightened even when an older version made it."""
from __future__ import annotations

import os
from pathlib import Path

PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700


def private_dir(path: Path) -> Path:
    """``path`` and every missing parent, each created 0700."""
    missing = []
    folder = Path(path)
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=PRIVATE_DIR)
        except FileExistsError:  # another process made it first
            continue
        os.chmod(folder, PRIVATE_DIR)
    return Path(path)


def private_file(path: Path) -> Path:
    """``path`` created empty 0600 in a private folder if missing; an existing one made
    owner-only (left as it is when another user owns it: not ours to change)."""
    path = Path(path)
    private_dir(path.parent)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE))
    except FileExistsError:
        pass
    tighten(path)
    return path


def tighten(path: Path) -> None:
    """Drop group and other permissions from an existing state file of ours."""
    try:
        mode = os.stat(path).st_mode & 0o777
        if mode & 0o077:
            os.chmod(path, mode & PRIVATE_DIR)
    except OSError:  # gone, another user's, or on a read-only mount (a mounted secret)
        pass
