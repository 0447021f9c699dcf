from __future__ import annotations

from pathlib import Path

import pytest

from guardrail.config import Settings
from guardrail.errors import BadRequest


def test_flags_win_over_env_over_toml(tmp_path: Path) -> None:
    toml = tmp_path / "guardrail.toml"
    toml.write_text('[guardrail]\nport = 7000\nmax_attempts = 5\nupstream = "http://toml/v1"\n')
    env = {"GUARDRAIL_PORT": "7100", "GUARDRAIL_UPSTREAM": "http://env/v1"}
    settings = Settings.load({"port": 7200}, env=env, config_file=toml)
    assert (settings.port, settings.upstream, settings.max_attempts) == (7200, "http://env/v1", 5)
    assert Settings.load(env=env, config_file=toml).port == 7100
    assert Settings.load(env={}, config_file=toml).port == 7000
    assert Settings.load(env={}, config_file=tmp_path / "absent.toml").port == 8080


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"GUARDRAIL_PORT": "eighty"}, "port"),
        ({"GUARDRAIL_MAX_ATTEMPTS": "0"}, "max_attempts"),
        ({"GUARDRAIL_UPSTREAM_DIALECT": "smoke-signals"}, "upstream_dialect"),
    ],
)
def test_bad_settings_are_named(env: dict[str, str], message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        Settings.load(env=env, config_file=Path("/nonexistent"))


def test_bad_toml_is_a_clear_error(tmp_path: Path) -> None:
    toml = tmp_path / "guardrail.toml"
    toml.write_text("[guardrail\n")
    with pytest.raises(BadRequest, match="not valid TOML"):
        Settings.load(env={}, config_file=toml)
