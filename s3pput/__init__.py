"""s3pput: put large local trees of files into S3 or any S3-compatible store, in parallel."""

__version__ = "0.1.0"
