"""boto3 and botocore, imported on first use.

Importing them costs about 0.2 s of CPU, and building a client from the S3 service model
as much again: a run whose requests all take the lean path (``lean``) need pay neither
(see ``client.lean_start``). ``store`` reaches boto3 and botocore only through these names
(the only other use of botocore is ``headers.http_date``, which borrows its date parser for
``--header Expires``); the import happens the first time one of their attributes is read.
"""

from __future__ import annotations

import importlib
import threading
from types import ModuleType


class _Module:
    """Stands for the module NAME and imports it when first used (thread-safe)."""

    _lock = threading.Lock()

    def __init__(self, name: str):
        self._name = name
        self._module: ModuleType | None = None

    def __getattr__(self, attribute: str):
        if self._module is None:
            with self._lock:
                if self._module is None:
                    self._module = importlib.import_module(self._name)
        return getattr(self._module, attribute)


boto3 = _Module("boto3")
botocore_config = _Module("botocore.config")
botocore_session = _Module("botocore.session")
botocore_parsers = _Module("botocore.parsers")
botocore_httpsession = _Module("botocore.httpsession")
botocore_exceptions = _Module("botocore.exceptions")
