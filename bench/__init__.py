"""The s3pput benchmark harness (issues 5, 9, 18 and 19): s3pput side by side with s5cmd,
rclone and the AWS CLI on one local SeaweedFS, on loopback and through a latency proxy
(the WAN runs), every run checked with an independent client.

``make bench`` (``python -m bench``, then ``python -m bench --wan``) or ``make
bench-quick`` (the same with ``--quick``); ``python -m bench --help`` lists the options.
Data sets are generated once into ``bench/data/`` (git-ignored); results go to
``bench/results/``.

One module, one idea:

* ``settings``      the sizes and run counts of a full, a quick and a WAN run
* ``datasets``      generating (and caching) the trees, photos, image layouts, large files
* ``peers``         where each tool is, whether it runs, its environment and command lines
* ``measure``       running one command: wall time, CPU of the process tree, peak memory
* ``verify``        checking a run's result with an independent boto3 client
* ``naive_images``  the *naive* image reference the issue compares image mode against
* ``floors``        CPU floors measured in one process: decode-only, s3pput's thumbnailer
* ``workloads``     small, rerun, photos (JPEG, PNG, HEIC, AVIF), large, walk; WAN: images
                    (two layouts) and many (20,000 small files)
* ``session``       one run: the server, the tools found, the results' header, a context
                    per endpoint, the loop over workloads
* ``profile``       a py-spy profile of s3pput's putters on the small workload
* ``report``        the loopback table (figures and ratios to s5cmd) and the JSON file
* ``latency``       the latency proxy (a process of its own) and the harness's handle on it
* ``latency_check`` the proxy's self-check (``python -m bench.latency_check``)
* ``wan``           the WAN runs: every workload at every round trip
* ``wan_report``    the WAN tables (figures, spread, client CPU), issues 9's and 19's
                    targets, the chart, ``--publish``
* ``sweep``         (separate tool) s3pput --processes/--inflight settings against s5cmd
"""
