"""Regenerate messages/labscope_pb2.py and .pyi from labscope.proto (needs grpcio-tools).

Run ``make proto`` (``python messages/generate.py``: as a script, so that a
stale package never stands in the way); tests/test_messages.py checks
that the committed files match what this produces.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROTO = "labscope.proto"


def generate(out_dir: Path) -> None:
    """Write labscope_pb2.py and labscope_pb2.pyi for labscope.proto into ``out_dir``."""
    from grpc_tools import protoc  # imported here: grpcio-tools is a build/test tool only

    args = ["protoc", f"-I{HERE}", f"--python_out={out_dir}", f"--pyi_out={out_dir}", str(HERE / PROTO)]
    if protoc.main(args) != 0:
        raise SystemExit(f"protoc failed on {HERE / PROTO}")


if __name__ == "__main__":
    generate(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE)
