"""The compose file as an operator runs it: the settings it gives the services are ones that
`chopmark serve` accepts, with the files the operations notes ask for."""

from __future__ import annotations

import json
import os
from pathlib import Path

import yaml

from tests.service.test_cli import chopmark

COMPOSE = Path(__file__).resolve().parents[2] / "deploy" / "compose.yaml"
SECRETS = "/run/secrets/"


def _compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def test_every_secret_a_setting_names_is_given_to_every_service_that_reads_the_settings():
    doc = _compose()
    env = doc["x-chopmark-env"]
    named = {
        part.strip('"[] ').removeprefix(SECRETS)
        for value in env.values()
        for part in str(value).split(",")
        if SECRETS in part
    }
    assert named == {"c2pa_chain", "c2pa_key", "c2pa_root"}
    assert named <= set(doc["secrets"])
    for service in ("migrate", "api"):
        assert named <= set(doc["services"][service].get("secrets", [])), service


def test_the_compose_settings_with_the_operators_files_let_serve_start(tmp_path: Path):
    """With the chain, key and root the notes ask for in the secrets folder, the start gets past
    the signing checks (here it stops at the database, which this test does not run)."""
    from provenance.credentials import ensure_dev_credentials
    from provenance.dev_ca import dev_paths

    ensure_dev_credentials(tmp_path / "ca")
    files = dev_paths(tmp_path / "ca")
    doc = _compose()
    by_file = {"c2pa-chain.pem": files["chain"], "c2pa-key.pem": files["key"]}
    by_file["c2pa-root.pem"] = files["root"]
    secret_paths = {
        name: str(by_file[Path(spec["file"]).name]) for name, spec in doc["secrets"].items()
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHOPMARK_")}
    for key, value in doc["x-chopmark-env"].items():
        text = str(value)
        for name, path in secret_paths.items():
            text = text.replace(SECRETS + name, path)
        env[key] = text
    env["CHOPMARK_DATA_DIR"] = str(tmp_path / "data")
    env["CHOPMARK_DATABASE_URL"] = "postgresql://nobody@127.0.0.1:1/none"
    assert json.loads(env["CHOPMARK_TRUST_ANCHORS"]) == [str(files["root"])]
    proc = chopmark("serve", env=env)
    assert proc.returncode == 2 and "the database cannot be used" in proc.stderr, proc.stderr
