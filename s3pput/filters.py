"""Include/exclude rules on relative paths.

Precedence (the same as ``aws s3 sync``): every file is included by default; rules are
checked in command-line order and the **last rule that matches decides**. So
``--exclude '*' --include '*.jpg'`` takes only JPEGs, and ``--include '*.jpg' --exclude
'tmp/*'`` takes everything except what is under ``tmp/``.

Patterns are shell globs (``*``, ``?``, ``[abc]``) matched case-sensitively against the
path relative to SOURCE with ``/`` separators; ``*`` also matches ``/``, so ``*.tmp`` matches
``a/b/c.tmp``. A pattern is also tried against the file's base name when it has no ``/``.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import NamedTuple, Optional, Sequence

INCLUDE = "include"
EXCLUDE = "exclude"


class Rule(NamedTuple):
    kind: str  # INCLUDE or EXCLUDE
    pattern: str


def _matches(pattern: str, relpath: str) -> bool:
    if fnmatchcase(relpath, pattern):
        return True
    return "/" not in pattern and fnmatchcase(relpath.rsplit("/", 1)[-1], pattern)


def excluded_by(rules: Sequence[Rule], relpath: str) -> Optional[str]:
    """Return why RELPATH is excluded (``"--exclude '*.tmp'"``), or None if it is taken."""
    decisive: Optional[Rule] = None
    for rule in rules:
        if _matches(rule.pattern, relpath):
            decisive = rule
    if decisive is not None and decisive.kind == EXCLUDE:
        return f"--exclude {decisive.pattern!r}"
    return None
