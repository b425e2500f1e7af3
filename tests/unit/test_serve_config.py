"""`raylane build`: the Serve config of a raylane config, valid by Ray Serve's own schema,
and the application builder it names (no Ray cluster here)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest
import yaml

from raylane.cluster.cli import main
from raylane.cluster.config import load_config
from raylane.cluster.serve_config import IMPORT_PATH, app_from_args, config_from_arg
from raylane.cluster.yamlpos import ConfigError

DEPLOY = Path(__file__).parents[2] / "deploy"
CONFIG = """\
redis: {url: "redis://10.1.2.3:6379/0"}
router: {host: 0.0.0.0, port: 8100}
models:
  - name: echo
    pools:
      - {backend: sim, slots: 4, resources: {CPU: 0.1}}
"""


def serve_deploy_schema() -> Any:
    with warnings.catch_warnings():  # Ray Serve's pydantic models warn on import
        warnings.simplefilter("ignore", DeprecationWarning)
        from ray.serve.schema import ServeDeploySchema
    return ServeDeploySchema


@pytest.fixture
def config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("REDIS_URL", raising=False)
    path = tmp_path / "raylane.yaml"
    path.write_text(CONFIG)
    return path


def build(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, Any, str]:
    rc = main(["build", *args])
    out, err = capsys.readouterr()
    return rc, yaml.safe_load(out) if out else None, err


def test_build_writes_a_serve_config_serve_accepts(
        config_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, built, _ = build([str(config_file)], capsys)
    assert rc == 0
    schema = serve_deploy_schema().model_validate(built)
    (app,) = schema.applications
    assert (app.name, app.route_prefix, app.import_path) == ("raylane", "/", IMPORT_PATH)
    assert (schema.http_options.host, schema.http_options.port) == ("0.0.0.0", 8100)
    assert app.args == {"config": yaml.safe_load(CONFIG), "redis_url": "redis://10.1.2.3:6379/0"}
    # The inline config is the same raylane config the file is.
    assert config_from_arg(app.args["config"]) == load_config(config_file)


def test_build_to_a_file(config_file: Path, tmp_path: Path,
                         capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "serve.yaml"
    assert main(["build", str(config_file), "-o", str(out)]) == 0
    assert capsys.readouterr().out == ""
    serve_deploy_schema().model_validate(yaml.safe_load(out.read_text()))


def test_redis_url_overrides(config_file: Path, capsys: pytest.CaptureFixture[str],
                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://env:6379/0")
    _, built, _ = build([str(config_file)], capsys)
    assert built["applications"][0]["args"]["redis_url"] == "redis://env:6379/0"
    _, built, _ = build([str(config_file), "--redis-url", "redis://flag:1/0"], capsys)
    assert built["applications"][0]["args"]["redis_url"] == "redis://flag:1/0"


def test_build_and_deploy_refuse_an_embedded_redis(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """redis.url: null starts a Redis only `raylane serve` on one machine can use."""
    monkeypatch.delenv("REDIS_URL", raising=False)
    config = str(DEPLOY / "raylane.yaml")
    for command in (["build", config], ["deploy", config, "--address", "http://127.0.0.1:1"]):
        assert main(command) == 2
        err = capsys.readouterr().err
        assert "a deployed application needs a Redis every node reaches" in err


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (("slots: 4", "slotz: 4"), ":6: models[0].pools[0].slotz: unknown key"),
        # A cluster's Serve serves the port from the proxy on every node.
        (("port: 8100}", "port: 8100, ingress: direct}"),
         ":2: router.ingress: direct is for `raylane serve`"),
    ],
)
def test_build_reports_a_bad_config_with_its_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], edit: tuple[str, str],
        expected: str) -> None:
    bad = tmp_path / "raylane.yaml"
    bad.write_text(CONFIG.replace(*edit))
    rc, _, err = build([str(bad)], capsys)
    assert rc == 2
    assert f"{bad}{expected}" in err


def test_deploy_reports_an_unreachable_dashboard(
        config_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        rc = main(["deploy", str(config_file), "--address", "http://127.0.0.1:9"])
    assert rc == 1
    assert "cannot deploy to http://127.0.0.1:9" in capsys.readouterr().err


def test_builder_takes_the_config_inline_or_as_a_path(config_file: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from ray.serve import Application

        inline = app_from_args({"config": yaml.safe_load(CONFIG), "redis_url": "redis://x:1/0"})
        by_path = app_from_args({"config": str(config_file)})  # redis.url from the file
    assert isinstance(inline, Application) and isinstance(by_path, Application)


def test_builder_errors_name_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    bad = yaml.safe_load(CONFIG)
    bad["models"][0]["pools"][0]["slots"] = 0
    with pytest.raises(ConfigError, match=r"models\[0\]\.pools\[0\]\.slots: must be at least 1"):
        app_from_args({"config": bad})
    embedded = yaml.safe_load(CONFIG.replace('"redis://10.1.2.3:6379/0"', "null"))
    with pytest.raises(ConfigError, match="needs a Redis every node reaches"):
        app_from_args({"config": embedded})
