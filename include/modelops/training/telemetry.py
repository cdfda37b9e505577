"""GPU telemetry for training runs: NVML samples as MLflow metrics, a summary as run tags.

    with GpuSampler(interval_s=5) as sampler:
        model = trainer.fit(...)
    sampler.summary  # {"enabled": True, "devices": [...], "gpu_hours": ..., "energy_wh": ..., ...}

A background thread reads, for every visible GPU, utilisation (%), memory used (MB), power
(W) and temperature (C) every ``interval_s`` seconds. They go to the MLflow run as metrics
``gpu<i>_utilization_pct``, ``gpu<i>_memory_used_mb``, ``gpu<i>_power_w`` and
``gpu<i>_temperature_c`` (step = sample index), in batches. On exit the sampler sets run tags
the model card quotes: ``gpu.devices``, ``gpu.count``, ``gpu.hours``, ``gpu.energy_wh``
(power integrated over time), ``gpu.peak_memory_mb`` and ``gpu.mean_utilization_pct``.

Without a GPU, NVML or the ``nvidia-ml-py`` package it logs one line
(``GPU telemetry off: <reason>``) and does nothing else: telemetry never fails a training run.

Visible GPUs: those listed in ``CUDA_VISIBLE_DEVICES`` (indices or ``GPU-`` UUIDs) when it is
set, else every GPU NVML reports (in a Kubernetes pod, the GPUs allocated to the container).
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

log = logging.getLogger(__name__)

METRICS = ("utilization_pct", "memory_used_mb", "power_w", "temperature_c")
_MLFLOW_BATCH = 1000  # MLflow's limit on metrics per log_batch call


@dataclass
class _Device:
    index: int
    name: str
    handle: Any
    unsupported: set[str] = field(default_factory=set)


class GpuSampler:
    """Samples NVML on a background thread while the ``with`` block runs (see the module docstring).

    Args:
        interval_s: Seconds between samples.
        mlflow_run_id: Run to log into; default: the active MLflow run when the sampler starts
            (none: samples are kept and summarised, nothing is logged).
        flush_interval_s: How often pending metrics are sent to MLflow while sampling.
        nvml: An NVML module to use instead of ``pynvml`` (tests inject a fake).
        clock: Monotonic clock in seconds (tests inject a fake).
    """

    def __init__(
        self,
        interval_s: float = 5.0,
        *,
        mlflow_run_id: str | None = None,
        flush_interval_s: float = 30.0,
        nvml: ModuleType | Any | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s must be positive, got {interval_s}")
        self.interval_s = interval_s
        self.flush_interval_s = flush_interval_s
        self.run_id = mlflow_run_id
        self._nvml_override = nvml
        self._clock = clock
        self._nvml: Any = None
        self._devices: list[_Device] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pending: list[tuple[str, float, int, int]] = []  # (key, value, timestamp ms, step)
        self._last_flush = 0.0
        self._log_failed = False
        self.samples: list[dict[str, Any]] = []  # {"t": seconds, "gpus": {index: {metric: value}}}
        self.started_at: float | None = None
        self.stopped_at: float | None = None
        self.enabled = False
        self.reason: str | None = None
        self.summary: dict[str, Any] = {"enabled": False, "reason": "not started"}

    # -- lifecycle ------------------------------------------------------------------------------

    def __enter__(self) -> GpuSampler:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> GpuSampler:
        """Initialise NVML and start sampling; without a GPU, log why once and do nothing."""
        try:
            self._nvml = self._nvml_override or importlib.import_module("pynvml")
            self._nvml.nvmlInit()
            self._devices = self._visible_devices()
        except ImportError:
            return self._off("the nvidia-ml-py package (pynvml) is not installed")
        except Exception as exc:  # NVMLError: library not found, driver not loaded, no permission...
            return self._off(f"NVML is not available ({exc})")
        if not self._devices:
            self._shutdown_nvml()
            return self._off("no GPU visible to NVML")
        if self.run_id is None:
            self.run_id = _active_run_id()
        self.enabled = True
        self.started_at = self._last_flush = self._clock()
        log.info(
            "GPU telemetry on: %s, a sample every %.1f s%s",
            ", ".join(f"gpu{d.index} {d.name}" for d in self._devices),
            self.interval_s,
            f" into MLflow run {self.run_id}" if self.run_id else " (no MLflow run: summary only)",
        )
        self.sample()
        self._thread = threading.Thread(target=self._loop, name="gpu-telemetry", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> dict[str, Any]:
        """Stop sampling, take a last sample, flush metrics, set the summary tags; returns the summary."""
        if not self.enabled:
            return self.summary
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=max(5.0, 2 * self.interval_s))
        self.sample()
        self.stopped_at = self._clock()
        self.enabled = False
        self._shutdown_nvml()
        self.summary = self._summarise()
        self._flush(force=True)
        self._set_tags()
        log.info(
            "GPU telemetry: %s",
            ", ".join(f"{k} {v}" for k, v in self.summary.items() if k not in ("enabled", "per_gpu")),
        )
        return self.summary

    def _off(self, reason: str) -> GpuSampler:
        self.reason = reason
        self.summary = {"enabled": False, "reason": reason}
        log.info("GPU telemetry off: %s", reason)
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()
            if self._clock() - self._last_flush >= self.flush_interval_s:
                self._flush()

    # -- NVML -----------------------------------------------------------------------------------

    def _visible_devices(self) -> list[_Device]:
        nvml = self._nvml
        count = nvml.nvmlDeviceGetCount()
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        handles: list[tuple[int, Any]] = []
        if visible is not None and visible.strip() not in ("", "all"):
            for pos, item in enumerate(x.strip() for x in visible.split(",") if x.strip()):
                if item.isdigit() and int(item) < count:
                    handles.append((pos, nvml.nvmlDeviceGetHandleByIndex(int(item))))
                elif item.startswith(("GPU-", "MIG-")):
                    handles.append((pos, nvml.nvmlDeviceGetHandleByUUID(item)))
        else:
            handles = [(i, nvml.nvmlDeviceGetHandleByIndex(i)) for i in range(count)]
        devices = []
        for index, handle in handles:
            name = nvml.nvmlDeviceGetName(handle)
            devices.append(_Device(index, name.decode() if isinstance(name, bytes) else str(name), handle))
        return devices

    def _read(self, device: _Device) -> dict[str, float]:
        nvml, out = self._nvml, {}
        readers: dict[str, Callable[[], float]] = {
            "utilization_pct": lambda: float(nvml.nvmlDeviceGetUtilizationRates(device.handle).gpu),
            "memory_used_mb": lambda: nvml.nvmlDeviceGetMemoryInfo(device.handle).used / 2**20,
            "power_w": lambda: nvml.nvmlDeviceGetPowerUsage(device.handle) / 1000.0,  # mW
            "temperature_c": lambda: float(
                nvml.nvmlDeviceGetTemperature(device.handle, getattr(nvml, "NVML_TEMPERATURE_GPU", 0))
            ),
        }
        for metric, read in readers.items():
            if metric in device.unsupported:
                continue
            try:
                out[metric] = read()
            except Exception as exc:  # e.g. power is not readable on some boards / MIG slices
                device.unsupported.add(metric)
                log.info(
                    "GPU telemetry: gpu%d %s is not readable (%s); not sampling it", device.index, metric, exc
                )
        return out

    def sample(self) -> dict[str, Any]:
        """Take one sample of every visible GPU now (the thread calls this every ``interval_s``)."""
        t = self._clock()
        gpus = {d.index: self._read(d) for d in self._devices}
        ts = int(time.time() * 1000)
        with self._lock:
            step = len(self.samples)
            self.samples.append({"t": t, "gpus": gpus})
            for index, values in gpus.items():
                self._pending += [(f"gpu{index}_{m}", v, ts, step) for m, v in values.items()]
        return gpus

    def _shutdown_nvml(self) -> None:
        try:
            self._nvml.nvmlShutdown()
        except Exception:  # already shut down or never fully initialised
            pass

    # -- summary and MLflow ---------------------------------------------------------------------

    def _summarise(self) -> dict[str, Any]:
        """GPU-hours (wall time x GPUs), energy (trapezoid over power samples), peaks and means."""
        duration_s = max((self.stopped_at or 0.0) - (self.started_at or 0.0), 0.0)
        per_gpu = {}
        for d in self._devices:
            series = [(s["t"], s["gpus"].get(d.index, {})) for s in self.samples]
            power = [(t, v["power_w"]) for t, v in series if "power_w" in v]
            energy_wh = sum((t1 - t0) * (p0 + p1) / 2 for (t0, p0), (t1, p1) in zip(power, power[1:])) / 3600
            util = [v["utilization_pct"] for _, v in series if "utilization_pct" in v]
            mem = [v["memory_used_mb"] for _, v in series if "memory_used_mb" in v]
            temp = [v["temperature_c"] for _, v in series if "temperature_c" in v]
            per_gpu[f"gpu{d.index}"] = {
                "name": d.name,
                "energy_wh": round(energy_wh, 4) if len(power) > 1 else None,
                "peak_memory_mb": round(max(mem), 1) if mem else None,
                "mean_utilization_pct": round(sum(util) / len(util), 2) if util else None,
                "max_temperature_c": max(temp) if temp else None,
            }
        energies = [g["energy_wh"] for g in per_gpu.values() if g["energy_wh"] is not None]
        peaks = [g["peak_memory_mb"] for g in per_gpu.values() if g["peak_memory_mb"] is not None]
        utils = [
            v["utilization_pct"] for s in self.samples for v in s["gpus"].values() if "utilization_pct" in v
        ]
        return {
            "enabled": True,
            "devices": [d.name for d in self._devices],
            "gpu_count": len(self._devices),
            "duration_s": round(duration_s, 3),
            "gpu_hours": round(duration_s * len(self._devices) / 3600, 6),
            "energy_wh": round(sum(energies), 4) if energies else None,
            "peak_memory_mb": max(peaks) if peaks else None,
            "mean_utilization_pct": round(sum(utils) / len(utils), 2) if utils else None,
            "samples": len(self.samples),
            "per_gpu": per_gpu,
        }

    def _flush(self, force: bool = False) -> None:
        with self._lock:
            pending, self._pending = self._pending, []
        self._last_flush = self._clock()
        if not pending or self.run_id is None or self._log_failed:
            return
        try:
            from mlflow import MlflowClient
            from mlflow.entities import Metric

            client = MlflowClient()
            metrics = [Metric(k, v, ts, step) for k, v, ts, step in pending]
            for i in range(0, len(metrics), _MLFLOW_BATCH):
                client.log_batch(self.run_id, metrics=metrics[i : i + _MLFLOW_BATCH])
        except Exception as exc:  # telemetry must never fail training; say so once
            self._log_failed = True
            log.warning("GPU telemetry: logging metrics to MLflow failed (%s); keeping the summary only", exc)

    def _set_tags(self) -> None:
        if self.run_id is None:
            return
        s = self.summary
        tags = {
            "gpu.devices": ",".join(s["devices"]),
            "gpu.count": s["gpu_count"],
            "gpu.hours": s["gpu_hours"],
            "gpu.energy_wh": s["energy_wh"],
            "gpu.peak_memory_mb": s["peak_memory_mb"],
            "gpu.mean_utilization_pct": s["mean_utilization_pct"],
        }
        try:
            from mlflow import MlflowClient
            from mlflow.entities import RunTag

            MlflowClient().log_batch(
                self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items() if v is not None]
            )
        except Exception as exc:
            log.warning("GPU telemetry: setting the summary tags failed (%s)", exc)


def _active_run_id() -> str | None:
    try:
        import mlflow
    except ImportError:  # pragma: no cover - mlflow is a dependency
        return None
    run = mlflow.active_run()
    return run.info.run_id if run else None
