"""The s3pput benchmark harness (issue 5): s3pput side by side with s5cmd, rclone and the
AWS CLI on one local SeaweedFS, every run checked with an independent client.

``make bench`` (``python -m bench``) or ``make bench-quick`` (``python -m bench --quick``);
``python -m bench --help`` lists the options. Data sets are generated once into
``bench/data/`` (git-ignored); results go to ``bench/results/``.

One module, one idea:

* ``settings``     the sizes and run counts of a full and a quick run
* ``datasets``     generating (and caching) the trees, photos and large files
* ``peers``        where each tool is, whether it runs, its environment and command lines
* ``measure``      running one command: wall time, CPU of the process tree, peak memory
* ``verify``       checking a run's result with an independent boto3 client
* ``naive_images`` the *naive* image reference the issue compares image mode against
* ``floors``       CPU floors measured in one process: decode-only, s3pput's thumbnailer
* ``workloads``    small, rerun, photos, large, walk
* ``profile``      a py-spy profile of s3pput's putters on the small workload
* ``report``       the table (absolute figures and ratios to s5cmd) and the JSON file
* ``sweep``        (separate tool) s3pput --processes/--inflight settings against s5cmd
"""
