"""GPU telemetry: the sampler's logic against a fake NVML (no GPU here), and with no NVML at all."""

from __future__ import annotations

import logging
import sys
import time
from types import SimpleNamespace

import pytest

from include.modelops.training.telemetry import GpuSampler


class NVMLError(Exception):
    pass


class FakeNVML:
    """The slice of pynvml the sampler uses; readings are set by the test per GPU."""

    NVML_TEMPERATURE_GPU = 0
    NVMLError = NVMLError

    def __init__(
        self, names=("NVIDIA H100 80GB HBM3", "NVIDIA H100 80GB HBM3"), *, init_error=None, no_power=False
    ):
        self.names = list(names)
        self.init_error = init_error
        self.no_power = no_power
        self.readings = {i: dict(util=0, mem_mb=0, power_w=0.0, temp=30) for i in range(len(names))}
        self.shutdowns = 0

    def set(self, index, **values):
        self.readings[index].update(values)

    def nvmlInit(self):
        if self.init_error:
            raise NVMLError(self.init_error)

    def nvmlShutdown(self):
        self.shutdowns += 1

    def nvmlDeviceGetCount(self):
        return len(self.names)

    def nvmlDeviceGetHandleByIndex(self, i):
        return i

    def nvmlDeviceGetHandleByUUID(self, uuid):
        return int(uuid.rsplit("-", 1)[1])

    def nvmlDeviceGetName(self, h):
        return self.names[h].encode()  # older pynvml returns bytes

    def nvmlDeviceGetUtilizationRates(self, h):
        return SimpleNamespace(gpu=self.readings[h]["util"], memory=0)

    def nvmlDeviceGetMemoryInfo(self, h):
        return SimpleNamespace(used=int(self.readings[h]["mem_mb"] * 2**20), total=80 * 2**30)

    def nvmlDeviceGetPowerUsage(self, h):
        if self.no_power:
            raise NVMLError("Not Supported")
        return int(self.readings[h]["power_w"] * 1000)  # milliwatts

    def nvmlDeviceGetTemperature(self, h, sensor):
        return self.readings[h]["temp"]


class FakeClock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


@pytest.fixture(autouse=True)
def _all_gpus_visible(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)


@pytest.fixture
def mlflow_run(tmp_path, monkeypatch):
    import mlflow

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    mlflow.set_tracking_uri(uri)
    exp = mlflow.create_experiment("telemetry", artifact_location=(tmp_path / "artifacts").as_uri())
    with mlflow.start_run(experiment_id=exp) as run:
        yield run.info.run_id


def run_two_samples_an_hour(nvml: FakeNVML, **kwargs) -> GpuSampler:
    """Samples at t = 0 s, 1800 s and 3600 s; the thread's interval is too long to add any."""
    clock = FakeClock()
    sampler = GpuSampler(interval_s=10_000, nvml=nvml, clock=clock, **kwargs)
    nvml.set(0, util=20, mem_mb=1000, power_w=100.0, temp=40)
    nvml.set(1, util=0, mem_mb=500, power_w=50.0, temp=35)
    sampler.start()
    clock.t = 1800.0
    nvml.set(0, util=80, mem_mb=30_000, power_w=300.0, temp=70)
    nvml.set(1, util=40, mem_mb=2_000, power_w=50.0, temp=45)
    sampler.sample()
    clock.t = 3600.0
    nvml.set(0, util=80, mem_mb=20_000, power_w=300.0, temp=72)
    nvml.set(1, util=100, mem_mb=4_000, power_w=50.0, temp=50)
    sampler.stop()
    return sampler


def test_summary_integrates_power_into_energy_and_counts_gpu_hours():
    nvml = FakeNVML()
    summary = run_two_samples_an_hour(nvml).summary
    assert summary["enabled"] is True
    assert summary["devices"] == ["NVIDIA H100 80GB HBM3", "NVIDIA H100 80GB HBM3"]
    assert summary["samples"] == 3
    assert summary["gpu_hours"] == pytest.approx(2.0)  # one hour on two GPUs
    # gpu0: trapezoids (100+300)/2 W x 0.5 h + 300 W x 0.5 h = 250 Wh; gpu1: 50 W x 1 h = 50 Wh
    assert summary["per_gpu"]["gpu0"]["energy_wh"] == pytest.approx(250.0)
    assert summary["per_gpu"]["gpu1"]["energy_wh"] == pytest.approx(50.0)
    assert summary["energy_wh"] == pytest.approx(300.0)
    assert summary["peak_memory_mb"] == pytest.approx(30_000)
    assert summary["mean_utilization_pct"] == pytest.approx((20 + 80 + 80 + 0 + 40 + 100) / 6, abs=0.01)
    assert summary["per_gpu"]["gpu1"]["max_temperature_c"] == 50
    assert nvml.shutdowns == 1


def test_samples_become_mlflow_metrics_and_the_summary_run_tags(mlflow_run):
    from mlflow import MlflowClient

    run_two_samples_an_hour(FakeNVML())
    client = MlflowClient()
    names = set(client.get_run(mlflow_run).data.metrics)
    assert names == {
        f"gpu{i}_{m}"
        for i in (0, 1)
        for m in ("utilization_pct", "memory_used_mb", "power_w", "temperature_c")
    }
    history = client.get_metric_history(mlflow_run, "gpu0_power_w")
    assert [(m.step, m.value) for m in sorted(history, key=lambda m: m.step)] == [
        (0, 100.0),
        (1, 300.0),
        (2, 300.0),
    ]
    tags = client.get_run(mlflow_run).data.tags
    assert tags["gpu.devices"] == "NVIDIA H100 80GB HBM3,NVIDIA H100 80GB HBM3"
    assert float(tags["gpu.hours"]) == pytest.approx(2.0)
    assert float(tags["gpu.energy_wh"]) == pytest.approx(300.0)
    assert float(tags["gpu.peak_memory_mb"]) == pytest.approx(30_000)
    assert float(tags["gpu.mean_utilization_pct"]) == pytest.approx(320 / 6, rel=1e-3)


def test_background_thread_samples_at_the_interval():
    with GpuSampler(interval_s=0.02, nvml=FakeNVML(names=["NVIDIA L4"])) as sampler:
        time.sleep(0.3)
    assert 5 <= sampler.summary["samples"] <= 20
    assert sampler.summary["gpu_count"] == 1


def test_only_gpus_in_cuda_visible_devices_are_sampled(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-fake-1")
    nvml = FakeNVML(names=["NVIDIA A100", "NVIDIA L4"])
    sampler = GpuSampler(interval_s=10_000, nvml=nvml, clock=FakeClock()).start()
    sampler.stop()
    assert sampler.summary["devices"] == ["NVIDIA L4"]
    assert set(sampler.samples[0]["gpus"]) == {0}  # numbered as CUDA numbers it: gpu0


def test_unreadable_power_is_skipped_and_energy_left_unknown(caplog):
    caplog.set_level(logging.INFO, logger="include.modelops.training.telemetry")
    summary = run_two_samples_an_hour(FakeNVML(no_power=True)).summary
    assert summary["energy_wh"] is None
    assert summary["peak_memory_mb"] == pytest.approx(30_000)
    not_readable = [r for r in caplog.records if "power_w is not readable" in r.getMessage()]
    assert len(not_readable) == 2  # once per GPU, not once per sample


def test_without_nvml_package_it_logs_one_line_and_does_nothing(monkeypatch, caplog):
    caplog.set_level(logging.DEBUG, logger="include.modelops.training.telemetry")
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml -> ImportError
    ran = False
    with GpuSampler(interval_s=0.01) as sampler:
        ran = True
    assert ran
    reason = "the nvidia-ml-py package (pynvml) is not installed"
    assert sampler.summary == {"enabled": False, "reason": reason}
    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["GPU telemetry off: the nvidia-ml-py package (pynvml) is not installed"]


def test_without_a_driver_it_logs_one_line_and_does_nothing(caplog):
    caplog.set_level(logging.DEBUG, logger="include.modelops.training.telemetry")
    with GpuSampler(nvml=FakeNVML(init_error="NVML Shared Library Not Found")) as sampler:
        pass
    assert sampler.summary["enabled"] is False
    assert [r.getMessage() for r in caplog.records] == [
        "GPU telemetry off: NVML is not available (NVML Shared Library Not Found)"
    ]


def test_real_pynvml_on_this_machine_never_raises(caplog):
    caplog.set_level(logging.INFO, logger="include.modelops.training.telemetry")
    with GpuSampler(interval_s=0.05) as sampler:
        time.sleep(0.1)
    assert sampler.summary["enabled"] in (True, False)
    if not sampler.summary["enabled"]:
        assert sum("GPU telemetry off:" in r.getMessage() for r in caplog.records) == 1
