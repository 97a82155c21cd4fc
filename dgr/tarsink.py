"""A tar stream's sink: hashed, and written raw or gzip-compressed in the same pass.

The gzip member is made of fixed 1 MiB chunks deflated in parallel (zlib level 1, pigz
style), each primed with the end of the previous one, so the bytes depend only on the input.
dgr/layer.py writes its layer tars into it.
"""

from __future__ import annotations

import hashlib
import os
import struct
import zlib
from collections import deque
from collections.abc import Collection
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import IO

from dgr.log import log

CHUNK = 1 << 20  # unit of hashing, writing and parallel compression
PROGRESS_STEP = 256 << 20  # a progress line per 256 MiB of tar stream, for long packaging
WINDOW = 32 * 1024  # deflate history carried from one compressed chunk into the next
GZIP_LEVEL = 1


_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x04\x03"  # no name, mtime 0, fastest, unix
_DEFLATE_END = b"\x03\x00"  # an empty final block closes the raw deflate stream


@dataclass(frozen=True)
class StreamDigests:
    """What a :class:`TarSink` saw: sizes and hex digests of the tar, raw and as written."""

    size: int
    sha256: str | None = None
    sha512: str | None = None
    compressed_size: int | None = None
    compressed_sha256: str | None = None


def _deflate(chunk: bytes, history: bytes) -> bytes:
    """Raw deflate of `chunk` primed with `history`, ending byte-aligned (sync flush)."""
    if history:
        comp = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, -15, zdict=history)
    else:
        comp = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, -15)
    return comp.compress(chunk) + comp.flush(zlib.Z_SYNC_FLUSH)


class TarSink:
    """Receives a tar stream, hashes it, and writes it to `out` raw or as one gzip member.

    `hashes` names the digests of the raw stream to compute (`sha256`, `sha512`). With `gzip`,
    the stream is cut into fixed 1 MiB chunks deflated in parallel by `threads` workers, each
    primed with the previous chunk's last 32 KiB (as pigz does), so the output depends only
    on the input bytes, never on the thread count or the timing. :meth:`close` flushes and
    returns the digests; it does not close `out`.
    """

    def __init__(
        self,
        out: IO[bytes],
        *,
        gzip: bool = False,
        hashes: Collection[str] = ("sha256",),
        threads: int | None = None,
        label: str | None = None,
    ) -> None:
        self._out = out
        self._label = label  # when set, progress is logged every PROGRESS_STEP bytes
        self._next_progress = PROGRESS_STEP
        self._buffer = bytearray()
        self._hashers = {name: hashlib.new(name) for name in hashes}
        self._size = 0
        self._written = 0
        self._gzip = gzip
        self._out_hash = hashlib.sha256() if gzip else None
        self._crc = 0
        self._history = b""
        self._pending: deque[Future[bytes]] = deque()
        self._threads = threads or os.cpu_count() or 1
        self._pool = ThreadPoolExecutor(self._threads, thread_name_prefix="deflate") if gzip else None
        if gzip:
            self._emit(_GZIP_HEADER)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Append `data` to the stream."""
        self._buffer += data
        if len(self._buffer) >= CHUNK:
            self._drain(final=False)

    def _drain(self, *, final: bool) -> None:
        view = memoryview(self._buffer)
        start = 0
        while len(view) - start >= CHUNK or (final and start < len(view)):
            chunk = bytes(view[start : start + CHUNK])
            start += len(chunk)
            self._take(chunk)
        view.release()
        del self._buffer[:start]

    def _take(self, chunk: bytes) -> None:
        self._size += len(chunk)
        if self._label is not None and self._size >= self._next_progress:
            log.info("%s: %d MiB packed", self._label, self._size >> 20)
            self._next_progress += PROGRESS_STEP
        for hasher in self._hashers.values():
            hasher.update(chunk)
        if self._pool is None:
            self._emit(chunk)
            return
        self._crc = zlib.crc32(chunk, self._crc)
        self._pending.append(self._pool.submit(_deflate, chunk, self._history))
        self._history = chunk[-WINDOW:]
        while len(self._pending) > 2 * self._threads:
            self._emit(self._pending.popleft().result())

    def _emit(self, data: bytes) -> None:
        self._out.write(data)
        self._written += len(data)
        if self._out_hash is not None:
            self._out_hash.update(data)

    def close(self) -> StreamDigests:
        """Flush everything to `out` and return the digests (the sink is then unusable)."""
        self._drain(final=True)
        if self._pool is not None:
            while self._pending:
                self._emit(self._pending.popleft().result())
            self._pool.shutdown()
            self._emit(_DEFLATE_END + struct.pack("<II", self._crc, self._size & 0xFFFFFFFF))
        hexes = {name: hasher.hexdigest() for name, hasher in self._hashers.items()}
        return StreamDigests(
            size=self._size,
            sha256=hexes.get("sha256"),
            sha512=hexes.get("sha512"),
            compressed_size=self._written if self._gzip else None,
            compressed_sha256=self._out_hash.hexdigest() if self._out_hash is not None else None,
        )

    def abort(self) -> None:
        """Stop the workers without writing anything more (after a failure)."""
        if self._pool is not None:
            for pending in self._pending:
                pending.cancel()
            self._pool.shutdown(wait=True)
