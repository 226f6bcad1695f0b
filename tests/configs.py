"""Run configurations for tests, made the way users make them: from the option table,
through ``make_config``, as a command line (``from_argv``) or as ``put()`` keywords
(``from_keywords``). No test builds a ``Config`` by hand: it would be a set-up no user gets.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
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


def seam_config(tmp_path: Path, *, internal: Optional[dict] = None, **options) -> Config:
    """The configuration of ``put([TMP_PATH/src], bucket="bucket", **OPTIONS)`` for tests at
    the Store seam; INTERNAL replaces fields no option can set that low (1 MiB parts, so
    that multipart is tested with small files)."""
    (tmp_path / "src").mkdir(exist_ok=True)
    cfg = from_keywords([tmp_path / "src"], bucket="bucket", no_progress=True, **options)
    return dataclasses.replace(cfg, **internal) if internal else cfg
