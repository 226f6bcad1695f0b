"""A run: its processes and their roles.

``lifecycle`` starts, watches and stops a run (local putter processes, or Dask workers
through ``cluster``); the roles: ``walker``/``imagemode`` (the walk), ``feed`` (the walker's
loop), ``putter`` and ``transfer`` (the uploads), ``concurrency`` (requests in flight),
``statter`` (counters and all output).
"""
