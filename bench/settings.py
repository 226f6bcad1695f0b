"""The sizes and run counts of a benchmark run: the full defaults, the quick variant, and
the command line that overrides them. Nothing here does I/O."""

from __future__ import annotations

import argparse
import os
from dataclasses import asdict, dataclass
from typing import List, Optional, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

TOOLS = ("s3pput", "s5cmd", "rclone", "aws")
WORKLOADS = ("small", "rerun", "photos", "large", "walk", "profile")


@dataclass
class Settings:
    """One run of the harness. Defaults are the full run (a few minutes on 2 cores)."""

    quick: bool = False
    runs: int = 3  # measured runs per tool and workload; the table shows the median
    walk_runs: int = 1  # the 1,000,000-file walk takes a minute or more per run
    # unmeasured runs of each tool before the small workload's measured ones: the first
    # uploads into a fresh server and a cold page cache are slower for whoever goes first
    warmup_runs: int = 1
    tools: Tuple[str, ...] = TOOLS
    workloads: Tuple[str, ...] = WORKLOADS
    # small / rerun: FILES files of SIZE bytes spread over DIRS directories
    small_files: int = 5000
    small_dirs: int = 50
    small_size: int = 2048
    # photos: generated photo-like images, WIDTH x HEIGHT (a quarter of them landscape)
    photos_jpeg: int = 300
    photos_png: int = 60
    photo_size: Tuple[int, int] = (1024, 1536)
    naive_workers: int = 8  # threads of the naive image reference
    # large: FILES files of MIB MiB each
    large_files: int = 3
    large_mib: int = 256
    # walk: (files, directories) trees of empty files, walked with --dry-run; two sizes
    # so that the time per file shows whether the walk is linear
    walk_sizes: Tuple[Tuple[int, int], ...] = ((100_000, 100), (1_000_000, 1000))
    # how many objects per run get downloaded and MD5-compared with their source
    md5_sample: int = 25
    large_md5_sample: int = 1
    # tool settings (None: the tool's own default)
    s3pput_processes: Optional[int] = None
    s3pput_inflight: Optional[int] = None
    rclone_transfers: int = 16
    rclone_checkers: int = 16
    run_timeout: float = 900.0  # seconds before a run is killed and marked FAILED
    data_dir: str = os.path.join(HERE, "data")
    results_dir: str = os.path.join(HERE, "results")
    keep_going: bool = True

    def as_dict(self) -> dict:
        return asdict(self)


QUICK = dict(
    runs=1, walk_runs=1, warmup_runs=0,
    small_files=500, small_dirs=10,
    photos_jpeg=16, photos_png=6,
    large_files=2, large_mib=32,
    walk_sizes=((5_000, 250), (20_000, 1000)),
    md5_sample=10,
    run_timeout=120.0,
    workloads=tuple(w for w in WORKLOADS if w != "profile"),
)


def _csv(text: str, allowed: Tuple[str, ...], what: str) -> Tuple[str, ...]:
    items = tuple(x.strip() for x in text.split(",") if x.strip())
    bad = [x for x in items if x not in allowed]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown {what}: {', '.join(bad)} "
                                         f"(choose from {', '.join(allowed)})")
    return items


def _walk_sizes(text: str) -> Tuple[Tuple[int, int], ...]:
    """``100000:100,1000000:1000`` -> ((100000, 100), (1000000, 1000))."""
    sizes: List[Tuple[int, int]] = []
    for item in text.split(","):
        files, _, dirs = item.partition(":")
        sizes.append((int(files), int(dirs or max(1, int(files) // 1000))))
    return tuple(sizes)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark s3pput against s5cmd, rclone and the AWS CLI on one local "
                    "SeaweedFS (loopback only). Every run is checked with an independent "
                    "boto3 client; a wrong run is marked FAILED.",
        epilog="examples:\n  python -m bench --quick\n  python -m bench --runs 5 "
               "--workloads small,rerun\n  python -m bench --workloads walk "
               "--walk-sizes 1000000:1000",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="smoke test: 1 run, tiny sizes, no profile (under a minute)")
    p.add_argument("--runs", type=int, help="measured runs per tool and workload (median)")
    p.add_argument("--walk-runs", type=int, help="runs of each walk size")
    p.add_argument("--warmup-runs", type=int,
                   help="unmeasured runs of each tool before the small workload")
    p.add_argument("--tools", type=lambda t: _csv(t, TOOLS, "tool"),
                   help=f"comma-separated subset of {','.join(TOOLS)}")
    p.add_argument("--workloads", type=lambda t: _csv(t, WORKLOADS, "workload"),
                   help=f"comma-separated subset of {','.join(WORKLOADS)}")
    p.add_argument("--small-files", type=int)
    p.add_argument("--small-dirs", type=int)
    p.add_argument("--small-size", type=int, help="bytes per small file")
    p.add_argument("--photos-jpeg", type=int)
    p.add_argument("--photos-png", type=int)
    p.add_argument("--large-files", type=int)
    p.add_argument("--large-mib", type=int)
    p.add_argument("--walk-sizes", type=_walk_sizes, metavar="FILES:DIRS,...")
    p.add_argument("--s3pput-processes", type=int,
                   help="s3pput --processes (default: s3pput's own, the CPU count)")
    p.add_argument("--s3pput-inflight", type=int,
                   help="s3pput --inflight (default: s3pput's own)")
    p.add_argument("--rclone-transfers", type=int)
    p.add_argument("--rclone-checkers", type=int)
    p.add_argument("--data-dir", help="cache of generated data sets (default bench/data)")
    p.add_argument("--results-dir", help="where results JSON goes (default bench/results)")
    return p


def from_args(argv=None) -> Settings:
    args = parser().parse_args(argv)
    values = {}
    if args.quick:
        values.update(QUICK)
        values["quick"] = True
    for name, value in vars(args).items():
        if name != "quick" and value is not None:
            values[name] = value
    settings = Settings(**values)
    if settings.runs < 1 or settings.walk_runs < 1 or settings.warmup_runs < 0:
        raise SystemExit("--runs and --walk-runs must be at least 1")
    return settings
