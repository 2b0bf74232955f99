"""Who sent a frame: a client's or an agent's key name, fingerprint and role (docs/security.md).

With CURVE the collector knows every frame's public key (its ``User-Id``) and
looks it up in the key ring (collector/keyring.py); without CURVE everyone is
an operator named by their address. The audit trail records a :class:`Peer`
as "who".
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["AGENT", "OPERATOR", "OPERATOR_TYPES", "VIEWER", "Peer", "needs_operator", "plain_peer"]

AGENT, VIEWER, OPERATOR = "agent", "viewer", "operator"

# Request types only an operator may send, besides every request that goes to a node.
OPERATOR_TYPES = frozenset({"Audit"})


@dataclass(frozen=True)
class Peer:
    """One sender: key ``name`` and ``fingerprint`` (empty without CURVE), ``role`` and network ``address``."""

    name: str
    fingerprint: str
    role: str
    address: str = ""

    @property
    def operator(self) -> bool:
        """Whether this peer may command nodes and read the audit."""
        return self.role == OPERATOR

    def describe(self) -> str:
        """``name (fingerprint)``, or the address without CURVE: one phrase for logs and the audit."""
        if self.fingerprint:
            return f"{self.name} ({self.fingerprint})"
        return self.name or self.address or "unknown"


def plain_peer(address: str) -> Peer:
    """The peer of a frame without CURVE: an operator known only by its address."""
    return Peer(name=address, fingerprint="", role=OPERATOR, address=address)


def needs_operator(type: str, for_a_node: bool) -> bool:
    """Whether a request needs the operator role: anything for a node, and the audit."""
    return for_a_node or type in OPERATOR_TYPES
