"""The built-in distributions, one file ``dist_<type>.py`` each (docs/distributions.md).

- ``dist_jsonl.py``: one JSON object a line into a file, rotated by size.
- ``dist_custom.py``: the classic starting point, exactly as the guide shows it.

collector/dist_loader.py imports a file only when a ``[distributions.NAME]``
section names its type.
"""
