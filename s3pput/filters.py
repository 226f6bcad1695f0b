"""Include/exclude rules on relative paths.

Precedence (the same as ``aws s3 sync``): every file is included by default; rules are
checked in command-line order and the **last rule that matches decides**. So
``--exclude '*' --include '*.jpg'`` takes only JPEGs, and ``--include '*.jpg' --exclude
'tmp/*'`` takes everything except what is under ``tmp/``.

Patterns are shell globs (``*``, ``?``, ``[abc]``) matched case-sensitively against the
path relative to SOURCE with ``/`` separators; ``*`` also matches ``/``, so ``*.tmp`` matches
``a/b/c.tmp``. A pattern is also tried against the file's base name when it has no ``/``.

A directory whose every file is excluded by such rules is not walked at all (``prunes``),
as rclone prunes: ``--exclude 'cache/*'`` never reads ``cache/``.
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


def prunes(rules: Sequence[Rule], reldir: str) -> Optional[str]:
    """Why the directory RELDIR need not be walked (every path under it is excluded),
    or None.

    True only when an exclude rule matches every path under RELDIR (it ends with ``*``
    and the rest matches ``RELDIR/``: ``cache/*``, ``*/tmp/*``) and no include rule comes
    after it (a later include might take something back). Conservative: a directory not
    pruned is walked and its files filtered one by one, with the same outcome."""
    for index in range(len(rules) - 1, -1, -1):
        rule = rules[index]
        if rule.kind == INCLUDE:
            return None
        if rule.pattern.endswith("*") and fnmatchcase(reldir + "/", rule.pattern[:-1]):
            return f"--exclude {rule.pattern!r}"
    return None
