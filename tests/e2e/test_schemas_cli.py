"""``pik schemas list | check | register`` as a user runs them, on a copy of a registry folder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from pik.cli import app
from tests.e2e.conftest import base_env, run_pik

SAMPLE = Path(__file__).parents[2] / "pik" / "demo_registry"
SUBJECT = "orders-service/order_placed"

pytestmark = pytest.mark.skipif(
    not any(group.name == "schemas" for group in app.registered_groups),
    reason="pik/cli.py does not call cli_schemas.register(app) yet",
)


@pytest.fixture
def registry(tmp_path: Path) -> Path:
    folder = tmp_path / "registry"
    shutil.copytree(SAMPLE, folder)
    return folder


def v2_with(*fields: dict[str, Any]) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads((SAMPLE / SUBJECT / "v2.avsc").read_text())
    schema["fields"] += list(fields)
    return schema


def schemas(registry: Path, *args: str) -> tuple[int, str, str]:
    done = run_pik("schemas", *args, "--registry", str(registry), env=base_env())
    return done.returncode, done.stdout.decode(), done.stderr.decode()


def test_list_and_check_the_shipped_chain(registry: Path) -> None:
    code, stdout, _ = schemas(registry, "list", "--json")
    assert code == 0
    [subject] = json.loads(stdout)["subjects"]
    assert subject["subject"] == SUBJECT
    assert subject["mode"] == "BACKWARD"
    assert [v["version"] for v in subject["versions"]] == [1, 2]
    assert all(len(v["fingerprint"]) == 16 for v in subject["versions"])

    code, stdout, _ = schemas(registry, "check")
    assert code == 0
    assert f"ok  {SUBJECT}" in stdout


def test_register_compatible_then_identical_then_incompatible(
    registry: Path, tmp_path: Path
) -> None:
    good = tmp_path / "good.avsc"
    good.write_text(json.dumps(v2_with({"name": "channel", "type": "string", "default": "web"})))
    bad = tmp_path / "bad.avsc"
    bad.write_text(json.dumps(v2_with({"name": "region", "type": "string"})))

    code, stdout, _ = schemas(registry, "register", str(good), "--subject", SUBJECT, "--json")
    assert code == 0, stdout
    done = json.loads(stdout)
    assert (done["version"], done["schema_id"], done["created"]) == (3, 3, True)
    assert (registry / SUBJECT / "v3.avsc").is_file()
    assert json.loads((registry / "ids.json").read_text())[f"{SUBJECT}/v3"] == 3

    code, stdout, _ = schemas(registry, "register", str(good), "--subject", SUBJECT)
    assert code == 0
    assert "already registered" in stdout and "v3" in stdout

    code, _, stderr = schemas(registry, "check", str(bad), "--subject", SUBJECT)
    assert code == 1
    [line] = stderr.strip().splitlines()
    assert "candidate cannot read v3 data: region:" in line
    assert "READER_FIELD_MISSING_DEFAULT_VALUE" in line
    code, stdout, _ = schemas(registry, "check", str(bad), "--subject", SUBJECT, "--json")
    verdict = json.loads(stdout)
    assert code == 1 and verdict["subject"] == SUBJECT and verdict["compatible"] is False
    assert verdict["problems"] and verdict["mode"] == "BACKWARD"
    code, stdout, _ = schemas(registry, "check", "--subject", SUBJECT, "--json")
    assert code == 0 and json.loads(stdout)["compatible"] is True

    code, _, stderr = schemas(registry, "register", str(bad), "--subject", SUBJECT)
    assert code == 1
    assert "READER_FIELD_MISSING_DEFAULT_VALUE" in stderr
    assert not (registry / SUBJECT / "v4.avsc").exists()


def test_usage_errors_exit_2(registry: Path, tmp_path: Path) -> None:
    candidate = tmp_path / "x.avsc"
    candidate.write_text('{"type": "nope"}')
    code, _, stderr = schemas(registry, "check", str(candidate), "--subject", SUBJECT)
    assert code == 2
    assert "not an Avro schema" in stderr
    code, _, stderr = schemas(registry, "check", str(SAMPLE / SUBJECT / "v1.avsc"))
    assert code == 2
    assert "--subject" in stderr
