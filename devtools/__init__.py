"""Development helpers (not part of the s3pput package): the embedded local S3 server."""
