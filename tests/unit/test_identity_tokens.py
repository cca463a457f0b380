"""Tokens: stored hashed, shown once, refused when unknown, revoked or expired;
the files holding them are private."""

from __future__ import annotations

import json
import os

import pytest

from meshgrpc.errors import NotFound, Unauthenticated
from meshgrpc.identity import tokens
from meshgrpc.identity.private_files import InsecureFiles, ensure_private_dir, read_private, write_private
from meshgrpc.identity.tokens import TokenStore
from tests.support.clock import FakeClock


@pytest.fixture
def store(tmp_path):
    clock = FakeClock(1000.0)
    return TokenStore(str(tmp_path / "tokens.json"), clock), clock


def test_a_join_token_authenticates_as_its_service_until_it_expires(store):
    tokens_, clock = store
    record, text = tokens_.create(tokens.JOIN, "greeter", ttl=60)
    assert text.startswith(f"mg1.{record.id}.")
    assert tokens_.authenticate(text) == record and record.service == "greeter"
    clock.advance(59.9)
    tokens_.authenticate(text)
    clock.advance(0.1)
    with pytest.raises(Unauthenticated, match=f"token {record.id} expired"):
        tokens_.authenticate(text)
    assert tokens_.standing(record.id)   # certificates issued on it still renew


def test_a_revoked_token_authenticates_nothing_and_its_certificates_lose_standing(store):
    tokens_, _ = store
    record, text = tokens_.create(tokens.JOIN, "greeter")
    tokens_.revoke(record.id)
    with pytest.raises(Unauthenticated, match="revoked"):
        tokens_.authenticate(text)
    assert not tokens_.standing(record.id)
    assert not tokens_.standing("unknown")
    with pytest.raises(NotFound):
        tokens_.revoke("nope")


@pytest.mark.parametrize("text", ["", "mg1", "mg1.x.y", "other.abc.def", "mg1..", "Bearer"])
def test_unknown_tokens_are_refused(store, text):
    tokens_, _ = store
    tokens_.create(tokens.READ)
    with pytest.raises(Unauthenticated, match="not one this control plane issued"):
        tokens_.authenticate(text)


def test_a_wrong_secret_for_a_known_id_is_refused(store):
    tokens_, _ = store
    record, text = tokens_.create(tokens.ADMIN)
    with pytest.raises(Unauthenticated):
        tokens_.authenticate(text[:-2] + ("AA" if not text.endswith("AA") else "BB"))


def test_only_hashes_are_stored_and_a_new_store_reads_them(store, tmp_path):
    tokens_, clock = store
    record, text = tokens_.create(tokens.JOIN, "greeter")
    raw = (tmp_path / "tokens.json").read_text()
    assert text.split(".")[2] not in raw and record.digest in raw
    assert os.stat(tmp_path / "tokens.json").st_mode & 0o777 == 0o600
    again = TokenStore(str(tmp_path / "tokens.json"), clock)
    assert again.authenticate(text) == record
    assert json.loads(raw)[0]["role"] == "join"


def test_roles_and_services_go_together(store):
    tokens_, _ = store
    for role, service in ((tokens.JOIN, ""), (tokens.READ, "greeter"), ("root", "")):
        with pytest.raises(ValueError):
            tokens_.create(role, service)


def test_a_data_dir_is_made_private_and_an_open_one_is_refused(tmp_path):
    path = tmp_path / "data"
    ensure_private_dir(str(path))
    assert os.stat(path).st_mode & 0o777 == 0o700
    write_private(str(path / "secret"), b"s")
    assert os.stat(path / "secret").st_mode & 0o777 == 0o600
    ensure_private_dir(str(path))   # as made: accepted
    os.chmod(path / "secret", 0o644)
    with pytest.raises(InsecureFiles, match=r"secret has mode 0644: others can read it \(chmod 600"):
        ensure_private_dir(str(path))
    with pytest.raises(InsecureFiles):
        read_private(str(path / "secret"))
    os.chmod(path / "secret", 0o600)
    os.chmod(path, 0o755)
    with pytest.raises(InsecureFiles, match=r"data has mode 0755.*chmod 700"):
        ensure_private_dir(str(path))
