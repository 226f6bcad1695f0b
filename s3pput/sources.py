"""Walking a SOURCE (directory, file or tar archive) into entries, and reading them back.

The walk streams: it never holds more than one directory's names. Directory trees are
walked in **key order** (the UTF-8 byte order S3 lists keys in): a directory's entries are
sorted with ``/`` appended to subdirectory names, so everything under ``a/`` comes after
the file ``a-b`` and before the file ``a0``, exactly as the keys sort. A listing of the
destination in S3's order then arrives in the order the walk asks for it.

Every entry the walk yields is a file to consider (``problem`` None), or a file that is
skipped or failed already (``problem`` says why): special files, unfollowed symlinks,
unreadable directories, files that vanished.
"""

from __future__ import annotations

import errno
import io
import os
import stat
import tarfile
from typing import BinaryIO, Iterator, List, NamedTuple, Optional, Tuple

from .errors import FileError
from .jobs import FAILED, SKIPPED, Source
from .keys import encode_name

ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")


class Entry(NamedTuple):
    parts: Tuple[str, ...]  # key segments relative to SOURCE (already valid UTF-8)
    display: str  # local path for messages
    source: Source
    size: int
    mtime_ns: int
    problem: Optional[str] = None  # why this entry is not a file to put
    outcome: str = ""  # with a problem: SKIPPED or FAILED


def is_archive(path: str) -> bool:
    return os.path.isfile(path) and path.lower().endswith(ARCHIVE_SUFFIXES)


def _special_kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISDIR, "a directory")):
        if test(mode):
            return name
    return "not a regular file"


def _problem(parts, display, reason, outcome) -> Entry:
    return Entry(tuple(parts), display, Source("file", display), 0, 0, reason, outcome)


def file_entry(path: str, parts: Tuple[str, ...], *, follow_symlinks: bool,
               dirent: Optional[os.DirEntry] = None) -> Entry:
    """Stat one file into an entry (or an entry with the problem that stops it)."""
    try:
        is_link = dirent.is_symlink() if dirent is not None else os.path.islink(path)
        if is_link and not follow_symlinks:
            return _problem(parts, path, "symbolic link, not followed (--follow-symlinks)",
                            SKIPPED)
        info = dirent.stat(follow_symlinks=True) if dirent is not None else os.stat(path)
    except FileNotFoundError:
        reason = "broken symbolic link" if os.path.islink(path) else "vanished while walking"
        return _problem(parts, path, reason, FAILED)
    except OSError as err:
        if err.errno == errno.ELOOP:
            return _problem(parts, path, "symbolic link loop, not followed", SKIPPED)
        return _problem(parts, path, f"cannot stat: {err.strerror or err}", FAILED)
    if not stat.S_ISREG(info.st_mode):
        return _problem(parts, path, f"{_special_kind(info.st_mode)}, not a regular file",
                        SKIPPED)
    return Entry(tuple(parts), path, Source("file", path), info.st_size, info.st_mtime_ns)


def _sorted_dir(path: str, follow_symlinks: bool):
    """The entries of PATH as (name, is_dir, DirEntry), in key order (see module doc)."""
    with os.scandir(path) as scan:
        items = []
        for dirent in scan:
            try:
                is_dir = dirent.is_dir(follow_symlinks=follow_symlinks)
            except OSError:
                is_dir = False
            items.append((encode_name(dirent.name), is_dir, dirent))
    items.sort(key=lambda item: (item[0] + "/" if item[1] else item[0]).encode("utf-8"))
    return items


def walk_tree(top: str, *, follow_symlinks: bool = False) -> Iterator[Entry]:
    """Every file under directory TOP, in key order of its path relative to TOP."""
    root = os.stat(top)
    yield from _walk_dir(top, (), follow_symlinks, {(root.st_dev, root.st_ino)})


def _walk_dir(path: str, parts: Tuple[str, ...], follow_symlinks: bool,
              ancestors: set) -> Iterator[Entry]:
    try:
        items = _sorted_dir(path, follow_symlinks)
    except OSError as err:
        yield _problem(parts, path, f"cannot read directory: {err.strerror or err}", FAILED)
        return
    for name, is_dir, dirent in items:
        child = os.path.join(path, dirent.name)
        child_parts = parts + (name,)
        if not is_dir:
            yield file_entry(child, child_parts, follow_symlinks=follow_symlinks,
                             dirent=dirent)
            continue
        if follow_symlinks:
            try:
                info = os.stat(child)
            except OSError as err:
                yield _problem(child_parts, child, f"cannot stat: {err.strerror}", FAILED)
                continue
            identity = (info.st_dev, info.st_ino)
            if identity in ancestors:
                yield _problem(child_parts, child, "symbolic link loop, not followed",
                               SKIPPED)
                continue
            yield from _walk_dir(child, child_parts, follow_symlinks, ancestors | {identity})
        else:
            yield from _walk_dir(child, child_parts, follow_symlinks, ancestors)


def walk_directories(top: str, *, follow_symlinks: bool = False
                     ) -> Iterator[Tuple[Tuple[str, ...], List[Entry]]]:
    """Each directory under TOP (TOP first) with its files sorted by name: the unit image
    mode numbers. Subdirectories follow their parent, in name order."""
    root = os.stat(top)
    stack = [(top, (), frozenset({(root.st_dev, root.st_ino)}))]
    while stack:
        path, parts, ancestors = stack.pop()
        try:
            items = _sorted_dir(path, follow_symlinks)
        except OSError as err:
            yield parts, [_problem(parts, path, f"cannot read directory: {err.strerror}",
                                   FAILED)]
            continue
        files, subdirs = [], []
        for name, is_dir, dirent in sorted(items, key=lambda item: item[0]):
            child = os.path.join(path, dirent.name)
            if not is_dir:
                files.append(file_entry(child, parts + (name,),
                                        follow_symlinks=follow_symlinks, dirent=dirent))
                continue
            identity = None
            if follow_symlinks:
                try:
                    info = os.stat(child)
                    identity = (info.st_dev, info.st_ino)
                except OSError:
                    identity = None
                if identity in ancestors:
                    files.append(_problem(parts + (name,), child,
                                          "symbolic link loop, not followed", SKIPPED))
                    continue
            subdirs.append((child, parts + (name,), ancestors | {identity}))
        yield parts, files
        stack.extend(reversed(subdirs))


# Members of compressed archives larger than this are spooled to a temporary file
# (compressed streams cannot be re-opened at an offset by the putters).
INLINE_LIMIT = 8 * 1024 * 1024


def _member_parts(name: str) -> Optional[Tuple[str, ...]]:
    parts = tuple(encode_name(part) for part in name.split("/") if part and part != ".")
    if not parts or ".." in parts:
        return None
    return parts


def walk_archive(path: str, spool_dir: str) -> Iterator[Entry]:
    """Every regular member of the tar archive at PATH, in archive order.

    Members of an uncompressed ``.tar`` are read by the putters at their offset in the
    archive; members of compressed archives travel inline (or spooled to SPOOL_DIR when
    large), so nothing is extracted into the source tree.
    """
    compressed = not path.lower().endswith(".tar")
    try:
        archive = tarfile.open(path, "r|*" if compressed else "r:")
    except (tarfile.TarError, OSError) as err:
        yield _problem((), path, f"cannot read archive: {err}", FAILED)
        return
    spooled = 0
    with archive:
        try:
            for member in archive:
                display = f"{path}:{member.name}"
                parts = _member_parts(member.name)
                if member.isdir():
                    continue
                if parts is None:
                    yield _problem((member.name,), display, "unsafe member name", FAILED)
                    continue
                if not member.isreg():
                    yield _problem(parts, display, "archive member is not a regular file",
                                   SKIPPED)
                    continue
                mtime_ns = int(member.mtime) * 1_000_000_000
                if not compressed:
                    source = Source("tar", path, member.offset_data)
                else:
                    handle = archive.extractfile(member)
                    if member.size <= INLINE_LIMIT:
                        source = Source("inline", path, 0, handle.read())
                    else:
                        spooled += 1
                        spool = os.path.join(spool_dir, f"member-{spooled}")
                        with open(spool, "wb") as out:
                            while True:
                                chunk = handle.read(1024 * 1024)
                                if not chunk:
                                    break
                                out.write(chunk)
                        source = Source("spool", spool)
                yield Entry(parts, display, source, member.size, mtime_ns)
        except (tarfile.TarError, OSError, EOFError) as err:
            yield _problem((), path, f"archive is damaged: {err}", FAILED)


class _Window(io.RawIOBase):
    """SIZE bytes of an open file from its current position (a tar member).

    Seekable within the member (position 0 is the member's first byte): a multipart
    upload reads its content more than once (digest, then parts)."""

    def __init__(self, handle: BinaryIO, size: int):
        self.handle = handle
        self.start = handle.tell()
        self.size = size
        self.left = size

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.size - self.left

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.tell(), io.SEEK_END: self.size}[whence]
        position = base + offset
        if position < 0:
            raise ValueError(f"negative seek position {position}")
        position = min(position, self.size)
        self.handle.seek(self.start + position)
        self.left = self.size - position
        return position

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0 or size > self.left:
            size = self.left
        data = self.handle.read(size)
        self.left -= len(data)
        return data

    def fileno(self) -> int:
        return self.handle.fileno()

    def close(self) -> None:
        self.handle.close()
        super().close()


def open_source(source: Source, size: int, display: str) -> BinaryIO:
    """Open a job's bytes for reading; raise ``FileError`` if they are gone."""
    if source.kind == "inline":
        return io.BytesIO(source.data or b"")
    try:
        handle = open(source.path, "rb")
    except FileNotFoundError as err:
        raise FileError("vanished before it could be read", op="read",
                        path=display) from err
    except OSError as err:
        raise FileError(f"cannot open: {err.strerror or err}", op="read",
                        path=display) from err
    if source.kind == "tar":
        handle.seek(source.offset)
        return _Window(handle, size)
    return handle
