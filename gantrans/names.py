"""Names that become parts of file names, and where written files may go.

A domain name ends up in output file names (`<stem>.<domain>.png`), so a model file shared by a
stranger must not be able to name a domain `../../x`. Domain names are checked wherever they enter:
data folders, `--domains`, `gantrans import`, and every model file's metadata. As a second line of
defence, every output path is checked to stay inside the folder it was meant for.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from gantrans.errors import GantransError, UsageError

MAX_NAME_LENGTH = 64
# Letters, digits, '-', '_' and '.', not starting with '.': no separators, no hidden files, no '..'.
_DOMAIN_NAME = re.compile(rf"[A-Za-z0-9_-][A-Za-z0-9._-]{{0,{MAX_NAME_LENGTH - 1}}}")
# Words with a meaning of their own in file names and flags: `--to all`, `<stem>.grid.png`.
RESERVED_NAMES = ("all", "grid")


def domain_name_problem(name: object) -> str | None:
    """Why `name` cannot be a domain name, or None when it can."""
    if not isinstance(name, str):
        return f"{name!r} is not a text name"
    if name in RESERVED_NAMES:
        return f"{name!r} is reserved ({', '.join(RESERVED_NAMES)} have a meaning of their own)"
    if not _DOMAIN_NAME.fullmatch(name):
        shown = name if len(name) <= MAX_NAME_LENGTH else name[:MAX_NAME_LENGTH] + "..."
        return (
            f"{shown!r} is not a usable domain name (letters, digits, '-', '_' and '.', "
            f"not starting with '.', at most {MAX_NAME_LENGTH} characters)"
        )
    return None


def check_domain_name(name: object, where: str) -> str:
    """`name` if it is a usable domain name; else a UsageError that says `where` it came from."""
    problem = domain_name_problem(name)
    if problem is not None:
        raise UsageError(f"{where}: {problem}")
    return name  # type: ignore[return-value]  (checked above)


class OutsideFolderError(GantransError):
    """An output path that would leave the folder it belongs in."""


def inside(folder: Path, path: Path) -> Path:
    """`path`, after checking that it stays inside `folder` once '..' and '.' are taken out
    (a lexical check: a folder the user symlinked elsewhere is still theirs to write to)."""
    base = os.path.normpath(os.path.abspath(folder))
    target = os.path.normpath(os.path.abspath(path))
    if os.path.commonpath([base, target]) != base or target == base:
        raise OutsideFolderError(f"refusing to write {path}: it is outside {folder}")
    return path
