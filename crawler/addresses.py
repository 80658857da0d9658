"""Which hosts a crawl may contact by default: public addresses only.

Feed entries pointing at loopback, private, link-local, carrier-grade NAT or cloud metadata
addresses are refused unless the source opts in (``allow_private = true``), so a hostile feed
cannot aim the crawler at the network it runs in.
"""

from __future__ import annotations

import ipaddress
import socket

METADATA_HOSTS = frozenset({"metadata.google.internal", "metadata", "instance-data",
                            "169.254.169.254", "169.254.170.2", "fd00:ec2::254", "100.100.100.200"})  # fmt: skip
LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})


def address_is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def is_metadata_host(host: str) -> bool:
    """Cloud metadata endpoints: refused even for sources allowed to reach private hosts."""
    return (host or "").strip("[]").lower().rstrip(".") in METADATA_HOSTS


def is_public_host(host: str, resolve: bool = False) -> bool:
    """True for a host name or address that is on the public internet.

    Literal addresses are judged directly. Names are judged by their form unless ``resolve``:
    ``localhost``, ``*.localhost``, ``*.internal``, ``*.local`` and metadata names are private.
    """
    host = (host or "").strip("[]").lower().rstrip(".")
    if not host:
        return False
    try:
        return address_is_public(host)
    except ValueError:
        pass
    if host in LOCAL_NAMES or host in METADATA_HOSTS:
        return False
    if host.endswith((".localhost", ".internal", ".local", ".localdomain", ".home.arpa")):
        return False
    if "." not in host:
        return False  # single-label names resolve on the local network only
    if resolve:
        try:
            infos = socket.getaddrinfo(host, None)
        except OSError:
            return True  # unresolvable: the download fails on its own
        return all(address_is_public(info[4][0]) for info in infos)
    return True
