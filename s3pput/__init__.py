"""s3pput: put large local trees of files into S3 or any S3-compatible store, in parallel."""

__version__ = "0.1.0"

from .api import put  # noqa: E402 - after __version__, which the modules it loads read

__all__ = ["__version__", "put"]
