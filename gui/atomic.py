"""Write a file so that it appears only when complete: a temporary name beside it, then a rename."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO


@contextlib.contextmanager
def atomic_file(target: Path) -> Iterator[IO[bytes]]:
    """Yield a file to write ``target``'s bytes into; ``target`` appears only if the block ends normally.

    The bytes go to ``.NAME.XXXX.part`` in the target's folder, are synced and
    renamed over the target; on any exception (Ctrl-C included) the temporary
    file is removed and the target is left as it was.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile(dir=target.parent, prefix=f".{target.name}.", suffix=".part", delete=False)
    try:
        with handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(handle.name, target)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise
