"""What a media file holds, as a short digest, for keys of caches that outlive one copy of it.

The shared data is copied afresh for every working session, so its files get new modification
times while their bytes stay the same; a key built on the time threw away hours of extracted
crops and delivered recordings each session. The bytes are read once per process per file
(its path, size and modification time name it in memory), which for the whole shared set
(~240 MB) costs about a second.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

CHUNK = 1 << 20


def content_digest(path: Path) -> str:
    stat = path.stat()
    return _digest(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=65536)
def _digest(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()
