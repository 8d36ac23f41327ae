"""Where the project lives (`REPO`, `CONF_DIR`) and where results may go: a sweep name is one plain
directory under a writable results directory (`check_sweep_name`, `results_root`), and a file
named after config values is a slug that stays inside its folder (`slug`, `child`).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from harness.core.errors import UserError

REPO = Path(__file__).resolve().parents[2]
CONF_DIR = REPO / "conf"
SLUG_MAX = 80  # characters of a file-name part made from config values


SWEEP_NAME_MAX = 100  # characters; the paper sweeps' names are under 40


def check_sweep_name(sweep: str) -> None:
    """A sweep is one directory right under results_dir: no separators, no leading dot, no control
    characters (a newline), at most SWEEP_NAME_MAX characters."""
    if not sweep or any(c in sweep for c in "/\\") or sweep.startswith(".") or not sweep.isprintable():
        raise UserError(f"sweep name {sweep!r} must be a plain directory name")
    if len(sweep) > SWEEP_NAME_MAX:
        raise UserError(f"sweep name {sweep[:20]!r}... has {len(sweep)} characters; valid: at most {SWEEP_NAME_MAX}")


def results_root(results_dir: str) -> Path:
    """The absolute results directory (relative paths are taken from the repository root), refused
    when empty (it would be the repository itself) or when it cannot be a writable directory."""
    if not results_dir.strip():
        raise UserError("results_dir='' is empty (it would write into the repository root); valid: a directory "
                        "path, e.g. results_dir=results")
    path = Path(results_dir).expanduser()
    path = path if path.is_absolute() else REPO / path
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise UserError(f"results_dir={results_dir!r}: {probe} is not a directory; valid: a directory path")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise UserError(f"results_dir={results_dir!r}: {probe} is not writable; valid: a directory you can write")
    return path


def slug(text: object) -> str:
    """A file-name part from any value (a config value may hold `/`, `..` or newlines): letters,
    digits, `.`, `_`, `-` and `+` kept, `..` and every other run of characters one `_`, no
    leading or trailing dot or underscore, at most SLUG_MAX characters."""
    out = re.sub(r"[^A-Za-z0-9._+-]+", "_", re.sub(r"\.{2,}", "_", str(text)))
    out = re.sub(r"_+", "_", out).strip("._")[:SLUG_MAX]
    return out or "_"


def child(folder: Path, name: str) -> Path:
    """`folder / name` for a file this project writes, refused (ValueError) unless it resolves
    inside `folder`: a name made from user input never writes elsewhere."""
    path = folder / name
    if path.resolve().parent != folder.resolve():
        raise ValueError(f"refusing to write {name!r} outside {folder}")
    return path


def no_links(path: Path, under: Path) -> None:
    """ValueError if `path` or any folder between `under` and it is a symbolic link: files under
    results/ are never written or deleted through a link (its target may be anywhere)."""
    rel = path.relative_to(under)
    current = under
    for part in rel.parts:
        current = current / part
        if current.is_symlink():
            raise ValueError(f"{current} is a symbolic link; sibench never writes through links under a "
                             f"sweep directory (remove it and re-run)")
