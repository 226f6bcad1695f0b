"""Walking a SOURCE (directory, file or tar archive) into entries, and reading them back.

The walk streams: it never holds more than one directory's names per level. One walk
(``_children``: order, symlink loops, pruning of excluded directories) serves two
orderings: ``walk_tree`` in **key order** (the UTF-8 byte order S3 lists keys in, so logs
read like a listing) and ``walk_directories`` a directory at a time (image mode numbers per
directory); ``count_files`` is the same walk without a stat per file.

Every entry the walk yields is a file to consider (``problem`` None), or a file that is
skipped or failed already (``problem`` says why): special files, unfollowed symlinks,
unreadable directories, files that vanished.
"""

from __future__ import annotations

import errno
import io
import os
import stat
from typing import BinaryIO, Callable, Iterator, List, NamedTuple, Optional, Sequence, Tuple

from .decide import LINK_LOOP, MEMBER_NOT_REGULAR, SYMLINK, not_regular
from .errors import FileError
from .filters import Rule, excluded_by, prunes
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
    return "an unknown kind of file"


def _problem(parts, display, reason, outcome) -> Entry:
    return Entry(tuple(parts), display, Source("file", display), 0, 0, reason, outcome)


def file_entry(path: str, parts: Tuple[str, ...], *, follow_symlinks: bool,
               dirent: Optional[os.DirEntry] = None) -> Entry:
    """Stat one file into an entry (or an entry with the problem that stops it)."""
    try:
        is_link = dirent.is_symlink() if dirent is not None else os.path.islink(path)
        if is_link and not follow_symlinks:
            return _problem(parts, path, SYMLINK, SKIPPED)
        info = dirent.stat(follow_symlinks=True) if dirent is not None else os.stat(path)
    except FileNotFoundError:
        reason = "broken symbolic link" if os.path.islink(path) else "vanished while walking"
        return _problem(parts, path, reason, FAILED)
    except OSError as err:
        if err.errno == errno.ELOOP:
            return _problem(parts, path, LINK_LOOP, SKIPPED)
        return _problem(parts, path, f"cannot stat: {err.strerror or err}", FAILED)
    if not stat.S_ISREG(info.st_mode):
        return _problem(parts, path, not_regular(_special_kind(info.st_mode)), SKIPPED)
    return Entry(tuple(parts), path, Source("file", path), info.st_size, info.st_mtime_ns)


FILE, DIRECTORY = "file", "directory"


class _Dir(NamedTuple):
    path: str
    parts: Tuple[str, ...]
    ancestors: frozenset  # (st_dev, st_ino) of the directories above, for loop detection


def _children(directory: _Dir, follow_symlinks: bool, rules: Sequence[Rule],
              pruned: Callable[[str, str], None], stat_files: bool):
    """The children of DIRECTORY in key order (the UTF-8 byte order of their keys, a
    subdirectory's name taken with its ``/``): ``(FILE, Entry)`` or ``(DIRECTORY, _Dir)``.

    A subdirectory that the rules exclude as a whole is not descended (PRUNED is told); a
    link back to an ancestor is a SKIPPED entry. Raises OSError if DIRECTORY cannot be read.
    """
    with os.scandir(directory.path) as scan:
        items = []
        for dirent in scan:
            try:
                is_dir = dirent.is_dir(follow_symlinks=follow_symlinks)
            except OSError:
                is_dir = False
            items.append((encode_name(dirent.name), is_dir, dirent))
    items.sort(key=lambda item: (item[0] + "/" if item[1] else item[0]).encode("utf-8"))
    children = []
    for name, is_dir, dirent in items:
        path = os.path.join(directory.path, dirent.name)
        parts = directory.parts + (name,)
        if not is_dir:
            entry = file_entry(path, parts, follow_symlinks=follow_symlinks, dirent=dirent) \
                if stat_files else Entry(parts, path, Source("file", path), 0, 0)
            children.append((FILE, entry))
            continue
        why = prunes(rules, "/".join(parts))
        if why:
            pruned(path, why)
            continue
        identity = None
        if follow_symlinks:
            try:
                info = os.stat(path)
            except OSError as err:
                children.append((FILE, _problem(parts, path, f"cannot stat: {err.strerror}",
                                                FAILED)))
                continue
            identity = (info.st_dev, info.st_ino)
            if identity in directory.ancestors:
                children.append((FILE, _problem(parts, path,
                                                LINK_LOOP, SKIPPED)))
                continue
        children.append((DIRECTORY, _Dir(path, parts, directory.ancestors | {identity})))
    return children


def _root(top: str) -> _Dir:
    info = os.stat(top)
    return _Dir(top, (), frozenset({(info.st_dev, info.st_ino)}))


def _unreadable(directory: _Dir, err: OSError) -> Entry:
    return _problem(directory.parts, directory.path,
                    f"cannot read directory: {err.strerror or err}", FAILED)


def _ignore(path: str, why: str) -> None:
    pass


def walk_tree(top: str, *, follow_symlinks: bool = False, rules: Sequence[Rule] = (),
              pruned: Callable[[str, str], None] = _ignore,
              stat_files: bool = True) -> Iterator[Entry]:
    """Every file under directory TOP, in key order of its path relative to TOP: a
    directory's files and subdirectories interleaved as their keys sort (everything under
    ``a/`` after the file ``a-b`` and before ``a0``). Directories that RULES exclude as a
    whole are not walked (see ``filters.prunes``); files are not filtered here."""
    def walk(directory: _Dir) -> Iterator[Entry]:
        try:
            children = _children(directory, follow_symlinks, rules, pruned, stat_files)
        except OSError as err:
            yield _unreadable(directory, err)
            return
        for kind, item in children:
            if kind == FILE:
                yield item
            else:
                yield from walk(item)

    yield from walk(_root(top))


def walk_directories(top: str, *, follow_symlinks: bool = False, rules: Sequence[Rule] = (),
                     pruned: Callable[[str, str], None] = _ignore
                     ) -> Iterator[Tuple[Tuple[str, ...], List[Entry]]]:
    """Each directory under TOP (TOP first) with its files in name order: the unit image
    mode numbers. The same walk as ``walk_tree`` (pruning, loops), in another order:
    a directory's files, then each subdirectory's, depth first."""
    stack = [_root(top)]
    while stack:
        directory = stack.pop()
        try:
            children = _children(directory, follow_symlinks, rules, pruned, True)
        except OSError as err:
            yield directory.parts, [_unreadable(directory, err)]
            continue
        yield directory.parts, [item for kind, item in children if kind == FILE]
        stack.extend(reversed([item for kind, item in children if kind == DIRECTORY]))


def count_files(sources: Sequence[str], rules: Sequence[Rule], follow_symlinks: bool,
                counted: List[int]) -> None:
    """Count the files the walk will take under SOURCES (cheaply: no stat) into
    COUNTED[0], for the progress bar's total and ETA while the streaming walk goes on."""
    for source in sources:
        if not os.path.isdir(source):
            counted[0] += 1
            continue
        try:
            for entry in walk_tree(source, follow_symlinks=follow_symlinks, rules=rules,
                                   stat_files=False):
                if not entry.parts or not excluded_by(rules, "/".join(entry.parts)):
                    counted[0] += 1
        except OSError:
            pass


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
    import tarfile  # only a run with archives pays for it

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
                    yield _problem(parts, display, MEMBER_NOT_REGULAR, SKIPPED)
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


READ_AT_MOST = 1 << 30  # Linux reads at most 2 GiB at once: ask for less, then ask again


def _cannot_open(err: OSError, display: str) -> FileError:
    if isinstance(err, FileNotFoundError):
        return FileError("vanished before it could be read", op="read", path=display)
    return FileError(f"cannot open: {err.strerror or err}", op="read", path=display)


def open_source(source: Source, size: int, display: str) -> BinaryIO:
    """Open a job's bytes for reading; raise ``FileError`` if they are gone."""
    if source.kind == "inline":
        return io.BytesIO(source.data or b"")
    try:
        handle = open(source.path, "rb")
    except OSError as err:
        raise _cannot_open(err, display) from err
    if source.kind == "tar":
        handle.seek(source.offset)
        return _Window(handle, size)
    return handle


def read_whole(path: str, display: str) -> Tuple[bytes, os.stat_result]:
    """The bytes of the regular file at PATH, and its ``fstat`` from before they were read;
    raise ``FileError`` if it is gone. A file that grew since that ``fstat`` reads longer
    than its size said (the caller checks).

    Why not ``open(path, "rb").read()``: that is about ten system calls (an ``ioctl`` to
    ask whether a file is a terminal, ``lseek``s, a second ``fstat``, a ``read`` that finds
    the end), this is four, and each lets every other thread of a putter take the GIL."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as err:
        raise _cannot_open(err, display) from err
    try:
        info = os.fstat(fd)
        want = info.st_size + 1
        parts = []
        while want > 0:
            asked = min(want, READ_AT_MOST)
            chunk = os.read(fd, asked)
            parts.append(chunk)
            want -= len(chunk)
            if len(chunk) < asked:  # a short read of a regular file is its end
                break
    except OSError as err:
        raise FileError(f"cannot read: {err.strerror or err}", op="read",
                        path=display) from err
    finally:
        os.close(fd)
    return (parts[0] if len(parts) == 1 else b"".join(parts)), info
