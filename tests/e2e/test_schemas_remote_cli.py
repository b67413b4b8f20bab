"""``pik schemas check`` against remote registries' subjects, as a user runs it: a
Confluent-compatible registry over HTTP (tests/integration/confluent_fake.py) with a bearer
token from the environment, and AWS Glue Schema Registry on the embedded backend."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import boto3

from infra.local import EmbeddedAws
from tests.e2e.conftest import base_env, run_pik
from tests.integration.confluent_fake import FakeRegistry, serve

V1 = {"type": "record", "name": "Shipment", "fields": [{"name": "id", "type": "string"}]}
V2_OK = {**V1, "fields": [*V1["fields"], {"name": "carrier", "type": "string", "default": "-"}]}
V2_BAD = {**V1, "fields": [*V1["fields"], {"name": "carrier", "type": "string"}]}  # no default


def pik(*args: str, **env: str) -> tuple[int, str, str]:
    done = run_pik("schemas", "check", *args, env=base_env(**env))
    return done.returncode, done.stdout.decode(), done.stderr.decode()


def test_check_a_confluent_registrys_subjects_and_a_candidate(tmp_path: Path) -> None:
    with serve(FakeRegistry()) as registry:
        for schema in (V1, V2_OK):
            registry.add("good-value", schema)
        for schema in (V1, V2_BAD):
            registry.add("bad-value", schema)

        code, stdout, stderr = pik("--registry-url", registry.url, PIK_REGISTRY_TOKEN="tok-1")
        assert code == 1
        assert "ok  good-value (BACKWARD, 2 versions)" in stdout
        assert "incompatible: bad-value (BACKWARD)" in stderr and "carrier" in stderr
        assert set(registry.authorizations) == {"Bearer tok-1"}

        candidate = tmp_path / "v3.avsc"
        candidate.write_text(json.dumps(V2_OK))
        code, stdout, _ = pik(
            str(candidate), "--subject", "good-value", "--registry-url", registry.url, "--json"
        )
        assert code == 0, stdout
        assert json.loads(stdout)["compatible"] is True

        registry.fail_next = 10**6
        code, _, stderr = pik("--registry-url", registry.url)
        assert code == 3 and registry.url in stderr


def test_credentials_in_the_url_are_refused() -> None:
    code, _, stderr = pik("--registry-url", "https://user:pw@sr.example")
    assert code == 2 and "PIK_REGISTRY_USER" in stderr


def test_check_a_glue_schemas_versions_and_a_candidate(
    aws_server: EmbeddedAws, tmp_path: Path
) -> None:
    glue: Any = boto3.client(
        "glue",
        endpoint_url=aws_server.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    registry = f"shop-{uuid.uuid4().hex[:8]}"
    glue.create_registry(RegistryName=registry)
    for name, later in (("good", V2_OK), ("bad", V2_BAD)):
        glue.create_schema(
            RegistryId={"RegistryName": registry},
            SchemaName=name,
            DataFormat="AVRO",
            Compatibility="BACKWARD",
            SchemaDefinition=json.dumps(V1),
        )
        glue.register_schema_version(
            SchemaId={"RegistryName": registry, "SchemaName": name},
            SchemaDefinition=json.dumps(later),
        )
    env = {"AWS_ENDPOINT_URL": aws_server.endpoint_url, "AWS_REGION": "us-east-1"}

    code, stdout, _ = pik("--glue-registry", registry, "--subject", "good", **env)
    assert code == 0 and "ok  good (BACKWARD, 2 versions)" in stdout
    code, _, stderr = pik("--glue-registry", registry, "--subject", "bad", **env)
    assert code == 1 and "incompatible: bad (BACKWARD)" in stderr

    candidate = tmp_path / "v3.avsc"
    candidate.write_text(json.dumps(V2_BAD))  # v2 of "good" has carrier with a default: fine
    code, stdout, _ = pik(
        str(candidate), "--subject", "good", "--glue-registry", registry, "--json", **env
    )
    assert code == 0 and json.loads(stdout)["mode"] == "BACKWARD"
    code, _, stderr = pik("--glue-registry", registry, "--subject", "nope", **env)
    assert code == 2 and "does not exist" in stderr
