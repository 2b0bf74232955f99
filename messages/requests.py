"""The view of a REQUEST that handlers on both sides get: type, params, params as attributes."""

from __future__ import annotations

__all__ = ["RequestView"]


class RequestView:
    """One REQUEST: ``type``, ``params`` (strings) and ``request_id``.

    Parameters are also attributes (``msg.filename``); a missing one raises
    AttributeError, as classic modules expect.
    """

    def __init__(self, type: str, params: dict[str, str] | None = None, request_id: int = 0) -> None:
        self.type = type
        self.params = dict(params or {})
        self.request_id = request_id

    def __getattr__(self, name: str) -> str:
        params = self.__dict__.get("params", {})
        if name in params:
            return str(params[name])
        raise AttributeError(f"request {self.__dict__.get('type')!r} has no parameter {name!r}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(type={self.type!r}, params={self.params!r})"
