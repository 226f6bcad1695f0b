"""Run configurations for tests, made the way users make them: from the option table,
through ``make_config``, as a command line (``from_argv``) or as ``put()`` keywords
(``from_keywords``). No test builds a ``Config`` by hand: it would be a set-up no user gets.
"""

from __future__ import annotations

import os
from typing import Iterable, Mapping, Optional

from s3pput.cli import values_from_argv
from s3pput.config import Config, make_config
from s3pput.options import values_from_keywords


def from_argv(argv, *, environ: Optional[Mapping[str, str]] = None, cwd=None) -> Config:
    """The configuration of the command line ARGV (SOURCEs included), with ENVIRON (none by
    default) and the ``.env`` of CWD (the current directory by default)."""
    return make_config(values_from_argv([str(arg) for arg in argv]),
                       environ={} if environ is None else environ,
                       cwd=str(cwd) if cwd is not None else os.getcwd())


def from_keywords(sources: Iterable, *, environ: Optional[Mapping[str, str]] = None,
                  cwd=None, **options) -> Config:
    """The configuration of ``put(SOURCES, **OPTIONS)``; ``no_state=True`` unless a journal
    is asked for (``state=...``), so that no test reads or writes a journal by accident."""
    if "state" not in options:
        options.setdefault("no_state", True)
    return make_config(values_from_keywords([str(s) for s in sources], options),
                       environ={} if environ is None else environ,
                       cwd=str(cwd) if cwd is not None else os.getcwd())
