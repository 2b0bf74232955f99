"""Agents under CURVE: each connection (routing id) is bound to the key that said HELLO for its node.

A key may claim only the node ids of its allow file (``NAME`` and the
metadata's ``nodes``). Routing ids are chosen by the peer, so every frame's key
(its ``User-Id``) is checked against the connection's binding, and against the
key ring as it is now: a key removed from the folder (or no longer allowed its
node) is refused from its next frame on.
"""

from __future__ import annotations

from dataclasses import dataclass

from collector.keyring import KeyEntry, KeyRing
from collector.refusals import KEY_MISMATCH, KEY_REMOVED

__all__ = ["AgentKeys", "Binding"]


@dataclass(frozen=True)
class Binding:
    """The key (Z85) an agent connection said HELLO with, and the node it speaks for."""

    public: str
    node: str


class AgentKeys:
    """Bindings of agent connections to keys; one per CURVE collector."""

    def __init__(self, keyring: KeyRing) -> None:
        self.keyring = keyring
        self.bound: dict[bytes, Binding] = {}

    def check(self, ident: bytes, public: str) -> str:
        """The refusal reason for a frame from ``ident`` carrying ``public``, or "" when it may pass."""
        binding = self.bound.get(ident)
        if binding is None:
            return "" if self.keyring.agent(public) is not None else KEY_REMOVED
        if binding.public != public:
            return KEY_MISMATCH
        entry = self.keyring.agent(public)
        return "" if entry is not None and binding.node in entry.nodes else KEY_REMOVED

    def may_claim(self, public: str, node: str) -> bool:
        """Whether the agent key ``public`` may say HELLO for ``node``."""
        entry = self.keyring.agent(public)
        return entry is not None and node in entry.nodes

    def entry(self, public: str) -> KeyEntry | None:
        """The key ring's entry for ``public``, if it is still allowed."""
        return self.keyring.agent(public)

    def bind(self, ident: bytes, public: str, node: str) -> None:
        """Bind the connection ``ident`` to ``public`` after its accepted HELLO for ``node``."""
        self.bound[ident] = Binding(public, node)

    def forget(self, ident: bytes) -> None:
        """Drop the binding of a connection that said BYE."""
        self.bound.pop(ident, None)
