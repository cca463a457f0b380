"""The mesh's SPIFFE IDs: a workload of service S in trust domain T is
`spiffe://T/service/S` (SPIFFE ID standard, spiffe/spiffe standards/SPIFFE-ID.md:
scheme "spiffe", the trust domain as authority, a path; X509-SVID.md: exactly one
URI SAN carries it). Service names follow the mesh's resource-name rule, so a
service and the cluster it registers into share one spelling.
"""

from __future__ import annotations

import re

from meshgrpc.config.rules_common import name_problem

DEFAULT_TRUST_DOMAIN = "mesh.local"
SCHEME = "spiffe://"
SERVICE_PATH = "/service/"
# SPIFFE-ID.md "Trust Domain": lower-case letters, digits, '.', '-' and '_'.
_TRUST_DOMAIN = re.compile(r"[a-z0-9._-]{1,255}")


def trust_domain_problem(trust_domain: str) -> str | None:
    if not _TRUST_DOMAIN.fullmatch(trust_domain):
        return f"trust domain {trust_domain!r} must be 1-255 of [a-z0-9._-] (SPIFFE ID standard)"
    return None


def service_problem(service: str) -> str | None:
    return name_problem(service, "service")


def service_id(trust_domain: str, service: str) -> str:
    """The SPIFFE ID of `service`'s workloads."""
    return f"{SCHEME}{trust_domain}{SERVICE_PATH}{service}"


def trust_domain_id(trust_domain: str) -> str:
    """The trust domain's own ID, which the root certificate carries."""
    return f"{SCHEME}{trust_domain}"


def service_of(spiffe_id: str, trust_domain: str) -> str | None:
    """The service a SPIFFE ID names within `trust_domain`; None for any other ID."""
    prefix = f"{SCHEME}{trust_domain}{SERVICE_PATH}"
    if not spiffe_id.startswith(prefix):
        return None
    service = spiffe_id[len(prefix):]
    return service if service_problem(service) is None else None
