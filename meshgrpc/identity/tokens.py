"""Bearer tokens: the admin token written at first start, `read` tokens, and join
tokens bound to one service identity. Stored hashed, in one private file of the
data directory; the token itself is shown once, when it is made.

A token is `mg1.<id>.<secret>`: the id names it (for `token revoke` and logs; not
secret), the secret is 256 random bits. Only SHA-256 of the secret is kept: a
fast hash is enough for a secret that cannot be guessed (a slow, salted hash
protects guessable passwords; NIST SP 800-63B 5.1.1.2 asks for it only for
memorized secrets), and the comparison is constant-time.

A revoked token authenticates nothing: not a call, and not a certificate issued
on it (ca.py records the token id in each workload certificate), so revoking a
join token stops its workloads renewing. An expired join token cannot be
exchanged for a certificate any more, but certificates issued on it go on
renewing: joining is the token's job, staying joined the certificate's.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import os
import secrets
import time
from collections.abc import Callable

from meshgrpc.errors import NotFound, ResourceExhausted, Unauthenticated
from meshgrpc.identity.private_files import read_private, write_private

ADMIN, READ, JOIN = "admin", "read", "join"
ROLES = (ADMIN, READ, JOIN)
PREFIX = "mg1"
MAX_TOKENS = 10_000


@dataclasses.dataclass(frozen=True)
class TokenRecord:
    """What is stored of one token. `expires` 0: never."""

    id: str
    role: str
    service: str
    created: float
    expires: float
    revoked: bool
    digest: str

    def expired(self, now: float) -> bool:
        return bool(self.expires) and now >= self.expires


class TokenStore:
    """The tokens of one control plane, kept in `path` (0600). Not thread-safe:
    used from the control plane's event loop only."""

    FILENAME = "tokens.json"

    def __init__(self, path: str, clock: Callable[[], float] = time.time) -> None:
        self.path, self._clock = path, clock
        self._records: dict[str, TokenRecord] = {}
        if os.path.exists(path):
            for item in json.loads(read_private(path)):
                record = TokenRecord(**item)
                self._records[record.id] = record

    def create(self, role: str, service: str = "", ttl: float = 0.0) -> tuple[TokenRecord, str]:
        """A new token and its text (the only time the text exists outside the caller)."""
        if role not in ROLES or (role == JOIN) != bool(service):
            raise ValueError(f"role {role!r} with service {service!r}")
        if len(self._records) >= MAX_TOKENS:
            raise ResourceExhausted(f"{MAX_TOKENS} tokens exist; revoke some before making more")
        token_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
        now = self._clock()
        record = TokenRecord(token_id, role, service, now, now + ttl if ttl else 0.0, False, _digest(secret))
        self._records[token_id] = record
        self._save()
        return record, f"{PREFIX}.{token_id}.{secret}"

    def authenticate(self, text: str) -> TokenRecord:
        """The live token `text` is; raises Unauthenticated saying why not."""
        prefix, _, rest = text.strip().partition(".")
        token_id, _, secret = rest.partition(".")
        record = self._records.get(token_id) if prefix == PREFIX else None
        if record is None or not hmac.compare_digest(record.digest, _digest(secret)):
            raise Unauthenticated("the bearer token is not one this control plane issued")
        if record.revoked:
            raise Unauthenticated(f"token {token_id} was revoked")
        if record.expired(self._clock()):
            raise Unauthenticated(f"token {token_id} expired")
        return record

    def standing(self, token_id: str) -> bool:
        """True when certificates issued on `token_id` may still be used (it is not revoked)."""
        record = self._records.get(token_id)
        return record is not None and not record.revoked

    def revoke(self, token_id: str) -> TokenRecord:
        record = self._records.get(token_id)
        if record is None:
            raise NotFound(f"no token with id {token_id!r}")
        record = self._records[token_id] = dataclasses.replace(record, revoked=True)
        self._save()
        return record

    def records(self) -> list[TokenRecord]:
        return sorted(self._records.values(), key=lambda r: r.created)

    def has_role(self, role: str) -> bool:
        return any(r.role == role for r in self._records.values())

    def _save(self) -> None:
        data = [dataclasses.asdict(r) for r in self.records()]
        write_private(self.path, json.dumps(data, indent=1).encode())

    def __repr__(self) -> str:
        live = sum(1 for r in self._records.values() if not r.revoked)
        return f"TokenStore({self.path!r}, tokens={len(self._records)}, live={live})"


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()
