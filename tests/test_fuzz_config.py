"""Fuzzing the configuration: whatever a TOML file or a SWAPWATCH_* variable holds, loading it
gives a configuration or one `ConfigError`, never another exception (a traceback at start)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from fuzzing import examples
from hypothesis import given, settings
from hypothesis import strategies as st

from swapwatch.errors import ConfigError
from swapwatch.server.config import ServiceConfig
from swapwatch.server.config_sources import (
    LEGACY_KEYS,
    SECRET_KEYS,
    env_name,
    leaf_types,
    load_config,
)

pytestmark = pytest.mark.fuzz

# Dotted keys (TOML dotted keys make the tables), section names and the old flat keys.
KEYS = sorted({*leaf_types(), *{k.rpartition(".")[0] for k in leaf_types()} - {""}, *LEGACY_KEYS})
SECRET_VARIABLES = {env_name(k) for k in SECRET_KEYS} | {"SWAPWATCH_TOKEN", "SWAPWATCH_SINKS"}
# Known keys mostly, and near misses and strangers now and then.
key_names = st.one_of(
    st.sampled_from(KEYS),
    st.sampled_from(KEYS).map(lambda k: k[:-1] or "x"),
    st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,20}", fullmatch=True),
)
scalars = st.one_of(
    st.text(max_size=40),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(),
    st.booleans(),
    st.sampled_from(["127.0.0.1", "0.0.0.0", "::1", "rtmp://h", "kyc", "webhook:http://h/x"]),
)
toml_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(key_names, inner, max_size=3),
    max_leaves=8,
)


def toml_literal(value: object) -> str:
    """`value` as TOML (a subset: what the strategies make)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string, or invalid TOML: both are fair inputs
    if isinstance(value, list):
        return "[" + ", ".join(toml_literal(v) for v in value) + "]"
    assert isinstance(value, dict)
    return "{" + ", ".join(f"{k} = {toml_literal(v)}" for k, v in value.items()) + "}"


def loads_or_refuses(path: Path | None = None, environ: dict[str, str] | None = None) -> None:
    environ = environ or {}
    secret = {k: k in SECRET_VARIABLES for k in environ}
    shown = {v for k, v in environ.items() if not secret[k]}  # the same text set as a host, say
    secrets = [v for k, v in environ.items() if secret[k] and v not in shown]
    try:
        config = load_config(path, environ=environ)
    except ConfigError as exc:
        message = str(exc)
        assert message and "\n" not in message.strip(), message
        # Credentials never echoed: a sink or token value is shown as <hidden>.
        assert not any("s3cret" in secret and secret in message for secret in secrets), message
    else:
        assert isinstance(config, ServiceConfig)


@settings(max_examples=examples(150, 3000))
@given(st.dictionaries(key_names, toml_values, max_size=4))
def test_any_toml_settings_load_or_give_one_config_error(
    tmp_path_factory: pytest.TempPathFactory, table: dict[str, object]
) -> None:
    path = tmp_path_factory.mktemp("toml") / "swapwatch.toml"
    path.write_text("".join(f"{k} = {toml_literal(v)}\n" for k, v in table.items()), "utf-8")
    loads_or_refuses(path)


@settings(max_examples=examples(60, 1500))
@given(st.binary(max_size=200) | st.text(max_size=200))
def test_any_bytes_as_a_config_file_load_or_give_one_config_error(
    tmp_path_factory: pytest.TempPathFactory, content: bytes | str
) -> None:
    path = tmp_path_factory.mktemp("toml") / "swapwatch.toml"
    if isinstance(content, str):
        content = content.encode("utf-8", "surrogatepass")
    path.write_bytes(content)
    loads_or_refuses(path)


env_values = st.one_of(
    st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\0"), max_size=40),
    st.sampled_from(
        ["", "none", "1", "-1", "nan", "inf", "1e999", "true", "[1,2]", '["a"]', "[", "a,b"]
    ),
    st.integers().map(str),
    st.floats().map(str),
    st.just("webhook:http://h/x;secret=s3cret-secret-value"),
)


@settings(max_examples=examples(150, 3000))
@given(st.dictionaries(key_names.map(env_name), env_values, max_size=4))
def test_any_swapwatch_variables_load_or_give_one_config_error(environ: dict[str, str]) -> None:
    loads_or_refuses(environ=environ)
