"""``warden token`` and the keys: configured ones, or the generated local key file that
``warden node`` and ``warden token`` share on one machine."""

from __future__ import annotations

import os
import stat
from typing import TYPE_CHECKING

import jwt
import orjson
import pytest
import requests

from runtime.cli import main
from runtime.config import GatewayConfig
from tests.runtime._helpers import cli_env
from tests.transport._helpers import node_process
from tests.transport.conftest import KEY_ID, SECRET
from transport import load_keyring

if TYPE_CHECKING:
    from pathlib import Path


def warden(
    *args: str,
    env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> tuple[int, str, str]:
    """Run the ``warden`` command line in this process (it reads ``env``)."""
    for name in [name for name in os.environ if name.startswith("WARDEN_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def claims_of(token: str, secret: bytes) -> dict[str, object]:
    decoded: dict[str, object] = jwt.decode(token, secret, algorithms=["HS256"])
    return decoded


def test_token_mints_with_a_generated_local_key_shared_by_later_calls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    key_file = tmp_path / "keys" / "gateway-key.json"
    env = {"WARDEN_GATEWAY__KEY_FILE": str(key_file)}
    args = ("token", "--sub", "alice", "--scope", "runs:write", "--ttl", "1h")
    code, out, err = warden(*args, env=env, monkeypatch=monkeypatch, capsys=capsys)
    assert code == 0, err
    token = out.strip()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    # Its directory stays traversable: by default it is the embedded PostgreSQL's parent,
    # which the server's own user must reach (a 0700 one broke `warden node` as root).
    assert key_file.parent.stat().st_mode & stat.S_IXOTH
    keyring = load_keyring(GatewayConfig(), host="127.0.0.1", key_file=key_file)
    header = jwt.get_unverified_header(token)
    assert header["kid"] == keyring.current
    assert header["kid"].startswith("local-")
    claims = claims_of(token, keyring.keys[keyring.current])
    assert claims["sub"] == "alice"
    assert claims["scope"] == "runs:write"
    assert claims["exp"] - claims["iat"] == 3600  # type: ignore[operator]
    assert isinstance(claims["jti"], str)
    args = ("token", "--sub", "bob", "--scope", "runs:read", "--ttl", "15m")
    _, again, _ = warden(*args, env=env, monkeypatch=monkeypatch, capsys=capsys)
    assert jwt.get_unverified_header(again.strip())["kid"] == keyring.current
    assert claims_of(again.strip(), keyring.keys[keyring.current])["jti"] != claims["jti"]


def test_token_uses_the_configured_signing_key_and_binds_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    env = {
        "WARDEN_GATEWAY__KEYS": orjson.dumps({KEY_ID: SECRET, "older": "o" * 40}).decode(),
        "WARDEN_GATEWAY__SIGNING_KEY": KEY_ID,
        "WARDEN_GATEWAY__KEY_FILE": str(tmp_path / "unused.json"),
    }
    run_id = "0b6b9b8e-3f5c-4b8e-9a57-3c1d5b7e0a11"
    args = ("token", "--sub", "alice", "--scope", "runs:read", "--run-id", run_id)
    code, out, err = warden(*args, env=env, monkeypatch=monkeypatch, capsys=capsys)
    assert code == 0, err
    token = out.strip()
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
    tmp_path: Path,
    env: dict[str, str],
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    full = {"WARDEN_GATEWAY__KEY_FILE": str(tmp_path / "k.json"), **env}
    code, out, err = warden(
        "token", "--sub", "alice", env=full, monkeypatch=monkeypatch, capsys=capsys
    )
    assert (code, out) == (2, "")
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("warden: error:")
    assert message in lines[0]
    assert not (tmp_path / "k.json").exists()


def test_a_key_file_others_can_read_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    key_file = tmp_path / "k.json"
    key_file.write_text('{"kid": "local-x", "secret": "' + "z" * 64 + '"}')
    key_file.chmod(0o644)
    env = {"WARDEN_GATEWAY__KEY_FILE": str(key_file)}
    code, _, err = warden(
        "token", "--sub", "alice", env=env, monkeypatch=monkeypatch, capsys=capsys
    )
    assert code == 2
    assert "chmod 600" in err


def test_node_then_token_then_http_on_one_machine(
    dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The first-run path: no key configured anywhere."""
    env = cli_env(
        WARDEN_DSN=dsn,
        WARDEN_PORT="0",
        WARDEN_LOG_FORMAT="json",
        WARDEN_GATEWAY__KEY_FILE=str(tmp_path / "gateway-key.json"),
    )
    with node_process(env, tmp_path) as (url, log):
        key_file = {"WARDEN_GATEWAY__KEY_FILE": env["WARDEN_GATEWAY__KEY_FILE"]}
        _, out, _ = warden(
            "token", "--sub", "alice", env=key_file, monkeypatch=monkeypatch, capsys=capsys
        )
        token = out.strip()
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


@pytest.mark.parametrize("ttl", ["soon", "0", "-1h", "1w"])
def test_a_bad_ttl_is_a_usage_error(ttl: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["token", "--sub", "alice", f"--ttl={ttl}"])
    assert exited.value.code == 2
    assert "is not a duration such as 90s, 15m, 1h, 7d" in capsys.readouterr().err
