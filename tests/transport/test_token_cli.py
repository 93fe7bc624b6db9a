"""``warden token`` and the keys: configured ones, or the generated local key file that
``warden node`` and ``warden token`` share on one machine."""

from __future__ import annotations

import stat
from typing import TYPE_CHECKING

import jwt
import orjson
import pytest
import requests

from runtime.config import GatewayConfig
from tests.runtime._helpers import cli_env, run_cli
from tests.transport._helpers import node_process
from tests.transport.conftest import KEY_ID, SECRET
from transport import load_keyring

if TYPE_CHECKING:
    from pathlib import Path


def claims_of(token: str, secret: bytes) -> dict[str, object]:
    decoded: dict[str, object] = jwt.decode(token, secret, algorithms=["HS256"])
    return decoded


def test_token_mints_with_a_generated_local_key_shared_by_later_calls(tmp_path: Path) -> None:
    key_file = tmp_path / "keys" / "gateway-key.json"
    env = cli_env(WARDEN_GATEWAY__KEY_FILE=str(key_file))
    result = run_cli("token", "--sub", "alice", "--scope", "runs:write", "--ttl", "1h", env=env)
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    keyring = load_keyring(GatewayConfig(), host="127.0.0.1", key_file=key_file)
    header = jwt.get_unverified_header(token)
    assert header["kid"] == keyring.current
    assert header["kid"].startswith("local-")
    claims = claims_of(token, keyring.keys[keyring.current])
    assert claims["sub"] == "alice"
    assert claims["scope"] == "runs:write"
    assert claims["exp"] - claims["iat"] == 3600  # type: ignore[operator]
    assert isinstance(claims["jti"], str)
    again = run_cli("token", "--sub", "bob", "--scope", "runs:read", "--ttl", "15m", env=env)
    assert jwt.get_unverified_header(again.stdout.strip())["kid"] == keyring.current
    assert claims_of(again.stdout.strip(), keyring.keys[keyring.current])["jti"] != claims["jti"]


def test_token_uses_the_configured_signing_key_and_binds_runs(tmp_path: Path) -> None:
    env = cli_env(
        WARDEN_GATEWAY__KEYS=orjson.dumps({KEY_ID: SECRET, "older": "o" * 40}).decode(),
        WARDEN_GATEWAY__SIGNING_KEY=KEY_ID,
        WARDEN_GATEWAY__KEY_FILE=str(tmp_path / "unused.json"),
    )
    run_id = "0b6b9b8e-3f5c-4b8e-9a57-3c1d5b7e0a11"
    result = run_cli("token", "--sub", "alice", "--scope", "runs:read", "--run-id", run_id, env=env)
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip()
    assert jwt.get_unverified_header(token)["kid"] == KEY_ID
    assert claims_of(token, SECRET.encode())["run_id"] == run_id
    assert not (tmp_path / "unused.json").exists()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"WARDEN_HOST": "0.0.0.0"}, "WARDEN_GATEWAY__KEYS"),
        ({"WARDEN_GATEWAY__KEYS": '{"k": "short"}'}, "shorter than 32"),
        ({"WARDEN_GATEWAY__KEYS": f'{{"a": "{SECRET}", "b": "{SECRET}"}}'}, "signing_key"),
    ],
)
def test_a_missing_or_bad_key_configuration_is_one_line(
    tmp_path: Path, env: dict[str, str], message: str
) -> None:
    full = cli_env(WARDEN_GATEWAY__KEY_FILE=str(tmp_path / "k.json"), **env)
    result = run_cli("token", "--sub", "alice", env=full)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("warden: error:")
    assert message in lines[0]
    assert "Traceback" not in result.stderr


def test_a_key_file_others_can_read_is_refused(tmp_path: Path) -> None:
    key_file = tmp_path / "k.json"
    key_file.write_text('{"kid": "local-x", "secret": "' + "z" * 64 + '"}')
    key_file.chmod(0o644)
    result = run_cli("token", "--sub", "alice", env=cli_env(WARDEN_GATEWAY__KEY_FILE=str(key_file)))
    assert result.returncode == 2
    assert "chmod 600" in result.stderr


def test_node_then_token_then_http_on_one_machine(dsn: str, tmp_path: Path) -> None:
    """The first-run path: no key configured anywhere."""
    env = cli_env(
        WARDEN_DSN=dsn,
        WARDEN_PORT="0",
        WARDEN_LOG_FORMAT="json",
        WARDEN_GATEWAY__KEY_FILE=str(tmp_path / "gateway-key.json"),
    )
    with node_process(env, tmp_path) as (url, log):
        token = run_cli("token", "--sub", "alice", env=env).stdout.strip()
        response = requests.post(
            f"{url}/v1/runs",
            json={"run_type": "echo"},
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
        assert response.status_code == 201, response.text
        assert response.json()["run"]["owner"] == "alice"
    text = log.read_text()
    assert "gateway_local_key_used" in text
    assert token not in text
