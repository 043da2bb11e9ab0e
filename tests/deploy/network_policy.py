"""Evaluate Kubernetes NetworkPolicy objects for one connection, to test rendered manifests.

The rules follow the networking.k8s.io/v1 semantics. A pod that no policy selects for a
direction is open in that direction. A selected pod accepts only what some rule of those
policies allows. A connection needs both the source's egress and the destination's ingress.
Named ports are not supported, because the manifests use port numbers.
"""

import ipaddress
from dataclasses import dataclass, field
from typing import Any

Manifest = dict[str, Any]


@dataclass(frozen=True)
class Endpoint:
    """A pod in a namespace, or with no namespace an address outside the cluster."""

    namespace: str | None
    labels: dict[str, str] = field(default_factory=dict)
    namespace_labels: dict[str, str] = field(default_factory=dict)
    address: str | None = None


def selector_matches(selector: Manifest, labels: dict[str, str]) -> bool:
    """Return whether a LabelSelector selects labels. An empty selector selects all."""
    for key, value in selector.get("matchLabels", {}).items():
        if labels.get(key) != value:
            return False

    for expression in selector.get("matchExpressions", []):
        key = expression["key"]
        operator = expression["operator"]
        values = expression.get("values", [])
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and key in labels and labels[key] in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True


def _ip_block_matches(block: Manifest, endpoint: Endpoint) -> bool:
    if endpoint.address is None:
        return False
    address = ipaddress.ip_address(endpoint.address)
    if address not in ipaddress.ip_network(block["cidr"]):
        return False
    return all(
        address not in ipaddress.ip_network(cidr) for cidr in block.get("except", [])
    )


def _peer_matches(peer: Manifest, policy_namespace: str, endpoint: Endpoint) -> bool:
    if "ipBlock" in peer:
        return _ip_block_matches(peer["ipBlock"], endpoint)
    if endpoint.namespace is None:
        return False

    if "namespaceSelector" in peer:
        if not selector_matches(peer["namespaceSelector"], endpoint.namespace_labels):
            return False
    elif endpoint.namespace != policy_namespace:
        return False
    return selector_matches(peer.get("podSelector", {}), endpoint.labels)


def _port_matches(ports: list[Manifest], port: int, protocol: str) -> bool:
    if not ports:
        return True

    for entry in ports:
        if entry.get("protocol", "TCP") != protocol:
            continue
        if "port" not in entry:
            return True
        first = entry["port"]
        if not isinstance(first, int):
            raise ValueError(f"named port {first!r} is not supported by this evaluator")
        if first <= port <= entry.get("endPort", first):
            return True
    return False


def _policy_types(policy: Manifest) -> list[str]:
    spec = policy["spec"]
    if "policyTypes" in spec:
        return list(spec["policyTypes"])
    return ["Ingress", "Egress"] if "egress" in spec else ["Ingress"]


def _direction_allows(
    policies: list[Manifest],
    direction: str,
    subject: Endpoint,
    peer: Endpoint,
    port: int,
    protocol: str,
) -> bool:
    if subject.namespace is None:
        return True

    selecting = [
        policy
        for policy in policies
        if policy["metadata"].get("namespace") == subject.namespace
        and direction in _policy_types(policy)
        and selector_matches(policy["spec"]["podSelector"], subject.labels)
    ]
    if not selecting:
        return True

    rules_key, peers_key = (
        ("ingress", "from") if direction == "Ingress" else ("egress", "to")
    )
    for policy in selecting:
        namespace = policy["metadata"]["namespace"]
        for rule in policy["spec"].get(rules_key, []):
            peers = rule.get(peers_key, [])
            peer_allowed = not peers or any(
                _peer_matches(entry, namespace, peer) for entry in peers
            )
            if peer_allowed and _port_matches(rule.get("ports", []), port, protocol):
                return True
    return False


def connection_allowed(
    policies: list[Manifest],
    source: Endpoint,
    destination: Endpoint,
    port: int,
    protocol: str = "TCP",
) -> bool:
    """Return whether the policies let source open a connection to destination:port."""
    egress = _direction_allows(policies, "Egress", source, destination, port, protocol)
    ingress = _direction_allows(
        policies, "Ingress", destination, source, port, protocol
    )
    return egress and ingress
