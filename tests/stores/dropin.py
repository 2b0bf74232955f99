"""A drop-in store (``store = "tests.stores.dropin:DropInStore"``): the memory store under another name."""

from __future__ import annotations

from pathlib import Path

from collector.stores.memory import MemoryStore


class DropInStore(MemoryStore):
    """Memory parts; ``label`` shows that store_args reach a drop-in's constructor."""

    name = "dropin"

    def __init__(self, data_dir: Path, label: str = "dropin") -> None:
        super().__init__(data_dir)
        self.label = label
