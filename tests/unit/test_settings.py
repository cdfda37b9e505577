"""settings.py: each knob once (pydantic-settings), its docs generated from it, bad values named."""

from __future__ import annotations

from pathlib import Path

import pytest

from include.modelops import spec_docs
from include.modelops.settings import (
    PROJECT_ROOT,
    KubernetesSettingsError,
    PodSettings,
    ServingClusterSettings,
    Settings,
    get_settings,
)


def test_docs_settings_md_is_generated_from_the_fields():
    committed = (PROJECT_ROOT / "docs" / "settings.md").read_text()
    assert committed == spec_docs.render_settings(), "docs/settings.md is stale: run `make spec-docs`"
    documented = {line.split("`")[1] for line in committed.splitlines() if line.startswith("| `")}
    for cls in (Settings, PodSettings, ServingClusterSettings):
        assert {v for v, _, _ in cls.variables()} <= documented
    assert "MODELOPS_INFERENCE_LOG_SPOOL" in documented and "MODELOPS_K8S_TOLERATIONS" in documented


def test_computed_defaults_follow_the_state_folder(monkeypatch, tmp_path):
    for var in (
        "MODELOPS_RUNS_DIR",
        "BENTOML_HOME",
        "MODELOPS_INFERENCE_LOG_URL",
        "MODELOPS_INFERENCE_LOG_SPOOL",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("MODELOPS_STATE_DIR", str(tmp_path / "st"))
    s = get_settings()
    assert s.state_dir == (tmp_path / "st").resolve()
    assert s.runs_dir == s.state_dir / "runs" and s.bentoml_home == s.state_dir / "bentoml"
    assert s.inference_log_url == str(s.state_dir / "inference_log")
    assert s.inference_log_spool == s.state_dir / "inference_log_spool"
    monkeypatch.setenv("MODELOPS_STATE_DIR", str(tmp_path / "other"))  # read again when a variable changes
    assert get_settings().runs_dir == (tmp_path / "other").resolve() / "runs"


def test_an_empty_variable_is_unset(monkeypatch):
    monkeypatch.setenv("MODELOPS_SERVE_TIMEOUT_S", "")
    monkeypatch.setenv("MODELOPS_BIND_HOST", "  ")
    monkeypatch.setenv("MODELOPS_ROLLOUT_PORT", "")
    s = get_settings()
    assert (s.serve_timeout_s, s.bind_host, s.rollout_port) == (120.0, "127.0.0.1", None)


def test_values_are_parsed_as_documented(monkeypatch, tmp_path):
    monkeypatch.setenv("MODELOPS_SERVE_WORKERS", "0")
    monkeypatch.setenv("MODELOPS_INFERENCE_LOG", "Off")
    monkeypatch.setenv("MODELOPS_INFERENCE_LOG_SPOOL", "off")
    monkeypatch.setenv("MODELOPS_DATA_ROOTS", f"{tmp_path / 'a'}:{tmp_path / 'b'}")
    monkeypatch.setenv("MODELOPS_AIRFLOW_UI_URL", "http://airflow.example/")
    s = get_settings()
    assert s.serve_workers == 1  # at least one worker
    assert s.inference_log_enabled is False and s.inference_log_spool is None
    assert s.data_roots == ((tmp_path / "a").resolve(), (tmp_path / "b").resolve())
    assert s.airflow_ui_url == "http://airflow.example"
    monkeypatch.setenv("MODELOPS_SERVE_WORKERS", "cpu_count")
    assert get_settings().serve_workers == "cpu_count"


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("MODELOPS_SERVE_WORKERS", "many"),
        ("MODELOPS_SERVE_TIMEOUT_S", "soon"),
        ("MODELOPS_ROLLOUT_PORT", "x"),
    ],
)
def test_a_value_that_cannot_be_used_is_refused_with_its_name(monkeypatch, var, value):
    monkeypatch.setenv(var, value)
    with pytest.raises(ValueError, match=var):
        get_settings()


def test_pod_settings_an_empty_checkpoint_claim_means_no_claim(monkeypatch):
    monkeypatch.setenv("MODELOPS_CHECKPOINT_PVC", "")
    monkeypatch.setenv("MODELOPS_K8S_NODE_SELECTOR", '{"pool": "gpu"}')
    s = PodSettings.from_env()
    assert s.checkpoint_pvc is None and s.node_selector == {"pool": "gpu"}
    assert s.data_mount_path == str(get_settings().runs_dir)
    monkeypatch.delenv("MODELOPS_CHECKPOINT_PVC")
    assert PodSettings.from_env().checkpoint_pvc == "modelops-checkpoints"


@pytest.mark.parametrize("value", ['{"key": "gpu"}', "not json"])
def test_pod_settings_json_that_cannot_be_used_names_its_variable(monkeypatch, value):
    monkeypatch.setenv("MODELOPS_K8S_TOLERATIONS", value)
    with pytest.raises(KubernetesSettingsError, match="MODELOPS_K8S_TOLERATIONS"):
        PodSettings.from_env()


def test_serving_cluster_settings_trim_urls(monkeypatch, tmp_path):
    monkeypatch.setenv("MODELOPS_PROMETHEUS_URL", "http://prom:9090/")
    monkeypatch.setenv("MODELOPS_IMAGE_REGISTRY", "registry.example/ml/")
    monkeypatch.setenv("MODELOPS_INFERENCE_LOG_URL", "s3://bucket/log")
    s = ServingClusterSettings.from_env()
    assert (s.prometheus_url, s.image_registry, s.inference_log_url) == (
        "http://prom:9090",
        "registry.example/ml",
        "s3://bucket/log",
    )
    assert s.endpoint_base == "http://modelops.default.svc.cluster.local"


def test_settings_paths_are_absolute(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MODELOPS_SPECS_DIR", "specs")
    assert get_settings().specs_dir == Path(tmp_path / "specs").resolve()
