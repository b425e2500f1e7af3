"""Every raylane config shipped in deploy/ is valid."""

from __future__ import annotations

from pathlib import Path

import pytest

from raylane.cluster.cli import main

CONFIGS = sorted((Path(__file__).parents[2] / "deploy").glob("raylane*.yaml"))


def test_deploy_ships_configs() -> None:
    assert CONFIGS


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_shipped_config_passes_check(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(path)]) == 0
    assert capsys.readouterr().out.strip().endswith(": ok")


def test_check_names_the_bad_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "raylane.yaml"
    bad.write_text("models:\n  - name: m\n    pools:\n      - backend: sim\n        slot: 2\n")
    assert main(["check", str(bad)]) == 2
    assert f"{bad}:5: models[0].pools[0].slot: unknown key" in capsys.readouterr().err
