"""The sizes and run counts of a benchmark run: the full defaults, the quick variant, and
the command line that overrides them. Nothing here does I/O."""

from __future__ import annotations

import argparse
import os
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

TOOLS = ("s3pput", "s5cmd", "rclone", "aws")
WORKLOADS = ("small", "rerun", "photos", "large", "walk", "profile")
# in the order they run at each round trip (many last: its 20,000-file buckets load the
# server most, and the others keep the conditions they were measured under before)
WAN_WORKLOADS = ("small", "rerun", "large", "images", "many")


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
    # phone photos, HEIC (as iPhones save them: 512-pixel grid tiles, a 320-pixel
    # thumbnail inside, EXIF) and AVIF, at a quarter of a 12 MP phone's pixels (3 MP, the
    # same 3:4; a quarter of them landscape): 12 MP would cost 4x the generation (x265
    # encodes at about 1 s of CPU per MP) and the decoding of every run and floor
    photos_heic: int = 40
    photos_avif: int = 40
    phone_photo_size: Tuple[int, int] = (1512, 2016)
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
    # many (WAN): MANY_FILES files of SMALL_SIZE bytes in MANY_DIRS directories, cold. A
    # peer other than s3pput and s5cmd runs it at a round trip only if its small-workload
    # rate at that round trip predicts a run of at most MANY_PEER_SECONDS (None: always);
    # otherwise its row says why it was left out
    many_files: int = 20000
    many_dirs: int = 200
    many_peer_seconds: Optional[float] = 60.0
    # tool settings (None: the tool's own default)
    s3pput_processes: Optional[int] = None
    s3pput_inflight: Optional[int] = None
    rclone_transfers: Optional[int] = 16  # None: rclone's own default (4)
    rclone_checkers: Optional[int] = 16  # None: rclone's own default (8)
    rclone_fast_list: bool = True  # sync with --fast-list (one listing, not one per dir)
    # Variants of a tool: extra flags, one string each ("" = the tool as configured
    # above). Each variant is a row of its own in small and rerun; the other workloads
    # run the first variant only. The loopback runs add s3pput on a local Dask cluster of
    # two workers: what a cluster run costs over a local one (issue 11; no target).
    variants: Dict[str, Tuple[str, ...]] = field(
        default_factory=lambda: {"s3pput": ("", "--cluster local:2")})
    # a contender whose first run of a workload took longer than this many seconds is
    # not run again at that round trip (its figure is then the one run); None: always
    slow_run_seconds: Optional[float] = None
    # -- the WAN runs (python -m bench --wan): the workloads through a latency proxy
    wan: bool = False
    rtts: Tuple[float, ...] = (0.0, 10.0, 40.0, 100.0)  # round trips, ms; 0: no proxy
    # images: the same JPEGs laid out as FOLDERS folders x PER images, WIDTH x HEIGHT
    image_layouts: Tuple[Tuple[int, int], ...] = ((100, 2), (1, 200))
    image_size: Tuple[int, int] = (400, 600)
    proxy_check_mib: int = 256  # the proxy's self-check transfer, 0: none
    publish: bool = False  # copy the WAN table and chart into docs/bench/
    run_timeout: float = 900.0  # seconds before a run is killed and marked FAILED
    data_dir: str = os.path.join(HERE, "data")
    results_dir: str = os.path.join(HERE, "results")
    keep_going: bool = True

    def as_dict(self) -> dict:
        return asdict(self)


QUICK = dict(
    runs=1, walk_runs=1, warmup_runs=0,
    small_files=500, small_dirs=10,
    photos_jpeg=16, photos_png=6, photos_heic=4, photos_avif=4,
    phone_photo_size=(756, 1008),
    large_files=2, large_mib=32,
    walk_sizes=((5_000, 250), (20_000, 1000)),
    md5_sample=10,
    run_timeout=120.0,
    variants={},
    workloads=tuple(w for w in WORKLOADS if w != "profile"),
)

# The WAN runs of issue 9: every RTT in rtts, these sizes; peers with their defaults.
WAN = dict(
    wan=True, workloads=WAN_WORKLOADS,
    small_files=2000, small_dirs=20, large_files=1, large_mib=256,
    rclone_transfers=None, rclone_checkers=None, rclone_fast_list=False,
    variants={"s3pput": ("", "--processes 8"), "rclone": ("", "--transfers 64")},
    slow_run_seconds=10.0, run_timeout=300.0,
)
# make bench-quick's WAN smoke: one round trip, two small trees (the 20,000-file one at
# 600 files), s3pput and s5cmd, once
WAN_QUICK = dict(
    runs=1, warmup_runs=0, rtts=(40.0,), workloads=("small", "many"),
    tools=("s3pput", "s5cmd"), small_files=200, small_dirs=4, many_files=600, many_dirs=12,
    md5_sample=10, variants={}, proxy_check_mib=32, run_timeout=120.0,
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


def _size(text: str) -> Tuple[int, int]:
    """``1512x2016`` -> (1512, 2016)."""
    width, _, height = text.lower().partition("x")
    return int(width), int(height)


def _rtts(text: str) -> Tuple[float, ...]:
    return tuple(float(x) for x in text.split(",") if x.strip())


def _variants(text: str) -> Tuple[str, ...]:
    """``default,--processes 8`` -> ("", "--processes 8")."""
    items = [x.strip() for x in text.split(",") if x.strip()]
    return tuple("" if x == "default" else x for x in items)


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
    p.add_argument("--wan", action="store_true",
                   help="the WAN runs: the workloads small, rerun, large, images and "
                        "many through a latency proxy at each --rtt (with --quick: 40 ms, "
                        "200 and 600 files, s3pput and s5cmd, once)")
    p.add_argument("--rtt", dest="rtts", type=_rtts, metavar="MS,...",
                   help="round trips for --wan, ms (default 0,10,40,100; 0: no proxy)")
    p.add_argument("--s3pput-variants", type=_variants, metavar="FLAGS,...",
                   help="s3pput rows for --wan: comma-separated flag strings, 'default' "
                        "for none (default: 'default,--processes 8')")
    p.add_argument("--image-layouts", type=_walk_sizes, metavar="FOLDERS:PER,...",
                   help="--wan images: layouts of the same JPEGs (default 100:2,1:200)")
    p.add_argument("--slow-run-seconds", type=float,
                   help="--wan: a contender whose first run took longer than this is not "
                        "run again at that round trip (default 10)")
    p.add_argument("--proxy-check-mib", type=int,
                   help="--wan: MiB of the proxy's self-check transfers (256; 0: none)")
    p.add_argument("--publish", action="store_true",
                   help="--wan: copy the table and the chart into docs/bench/")
    p.add_argument("--runs", type=int, help="measured runs per tool and workload (median)")
    p.add_argument("--walk-runs", type=int, help="runs of each walk size")
    p.add_argument("--warmup-runs", type=int,
                   help="unmeasured runs of each tool before the small workload")
    p.add_argument("--tools", type=lambda t: _csv(t, TOOLS, "tool"),
                   help=f"comma-separated subset of {','.join(TOOLS)}")
    p.add_argument("--workloads",
                   type=lambda t: _csv(t, tuple(dict.fromkeys(WORKLOADS + WAN_WORKLOADS)),
                                       "workload"),
                   help=f"comma-separated subset of {','.join(WORKLOADS)} (with --wan: "
                        f"{','.join(WAN_WORKLOADS)})")
    p.add_argument("--small-files", type=int)
    p.add_argument("--small-dirs", type=int)
    p.add_argument("--small-size", type=int, help="bytes per small file")
    p.add_argument("--many-files", type=int,
                   help="--wan: files of the 'many' workload (20000; --quick: 600)")
    p.add_argument("--many-dirs", type=int, help="--wan: its directories (200)")
    p.add_argument("--many-peer-seconds", type=float, metavar="S",
                   help="--wan: rclone and aws run 'many' at a round trip only if their "
                        "small-workload rate there predicts at most S seconds (60; "
                        "a negative value: always)")
    p.add_argument("--photos-jpeg", type=int)
    p.add_argument("--photos-png", type=int)
    p.add_argument("--photos-heic", type=int, help="phone-like HEIC photos (40; 0: none)")
    p.add_argument("--photos-avif", type=int, help="phone-like AVIF photos (40; 0: none)")
    p.add_argument("--phone-photo-size", type=_size, metavar="WxH",
                   help="size of the HEIC and AVIF photos (1512x2016; --quick: 756x1008)")
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
    p = parser()
    args = p.parse_args(argv)
    values: dict = {}
    if args.wan:
        values.update(WAN)
        if args.quick:
            values.update(WAN_QUICK)
    elif args.quick:
        values.update(QUICK)
    values["quick"] = args.quick
    for name, value in vars(args).items():
        if name in ("quick", "s3pput_variants") or value is None or value is False:
            continue
        values[name] = value
    if args.s3pput_variants is not None:
        values["variants"] = dict(values.get("variants", {}), s3pput=args.s3pput_variants)
    if values.get("many_peer_seconds") is not None and values["many_peer_seconds"] < 0:
        values["many_peer_seconds"] = None
    settings = Settings(**values)
    if settings.runs < 1 or settings.walk_runs < 1 or settings.warmup_runs < 0:
        p.error("--runs and --walk-runs must be at least 1")
    allowed = WAN_WORKLOADS if settings.wan else WORKLOADS
    unknown = [w for w in settings.workloads if w not in allowed]
    if unknown:
        p.error(f"unknown workload for {'--wan' if settings.wan else 'this run'}: "
                f"{', '.join(unknown)} (choose from {', '.join(allowed)})")
    if any(rtt < 0 for rtt in settings.rtts):
        p.error("--rtt: round trips are 0 or more milliseconds")
    return settings
