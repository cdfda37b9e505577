# syntax=docker/dockerfile:1
#
# Two images from one file:
#
#   docker build --target airflow -t modelops-airflow:<tag> .   # scheduler, workers, triggerer, API server
#   docker build --target trainer -t modelops-trainer:<tag> .   # training pods (MODELOPS_TRAINING_IMAGE)
#
# Pass --build-arg MODELOPS_GIT_COMMIT=$(git rev-parse HEAD) so model versions record the commit
# (the images carry no .git folder).

ARG AIRFLOW_IMAGE=apache/airflow:3.3.2-python3.11
ARG TRAINER_BASE_IMAGE=python:3.11-slim-bookworm

# --- airflow: the official image plus this project's pinned dependencies ----------------------
FROM ${AIRFLOW_IMAGE} AS airflow

ARG MODELOPS_GIT_COMMIT=unknown
ENV MODELOPS_GIT_COMMIT=${MODELOPS_GIT_COMMIT} \
    # `include` is imported as a package from the project root (Astro CLI layout).
    PYTHONPATH=/opt/airflow

USER airflow
COPY --chown=airflow:0 requirements.txt constraints.txt /opt/airflow/
# The CPU build of torch: a worker trains locally on CPU (training.backend: local); GPU training
# runs in the `trainer` image. Pinning apache-airflow keeps pip from touching the image's Airflow.
RUN pip install --no-cache-dir \
        --extra-index-url https://download.pytorch.org/whl/cpu \
        "apache-airflow==${AIRFLOW_VERSION}" \
        -r /opt/airflow/requirements.txt \
        -c /opt/airflow/constraints.txt

COPY --chown=airflow:0 dags/ /opt/airflow/dags/
COPY --chown=airflow:0 plugins/ /opt/airflow/plugins/
COPY --chown=airflow:0 include/ /opt/airflow/include/
COPY --chown=airflow:0 bentos/ /opt/airflow/bentos/

# --- trainer: CUDA PyTorch and only what the training entrypoint imports ----------------------
FROM ${TRAINER_BASE_IMAGE} AS trainer

# The PyTorch wheel index of the CUDA build to install. The wheels bundle the CUDA runtime and
# cuDNN, so the base needs no CUDA: the node's NVIDIA driver is all the GPU side needs.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128
ARG MODELOPS_GIT_COMMIT=unknown

ENV MODELOPS_GIT_COMMIT=${MODELOPS_GIT_COMMIT} \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    # The NVIDIA container runtime mounts the driver's CUDA libraries (compute) and NVML
    # (utility, for GPU telemetry) into the container.
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    # The pod's root filesystem is read-only: caches go to the /tmp emptyDir.
    HOME=/tmp \
    XDG_CACHE_HOME=/tmp/.cache

COPY constraints.txt /tmp/constraints.txt
# torch first and alone from the CUDA index; the rest from PyPI at the project's pinned versions
# (constraints.txt also pins torch==2.13.0, which the +cuXXX build satisfies).
RUN pip install --index-url "${TORCH_INDEX_URL}" "torch==2.13.0" \
 && pip install -c /tmp/constraints.txt \
        mlflow-skinny pandas pyarrow numpy pydantic PyYAML scikit-learn nvidia-ml-py \
 && rm /tmp/constraints.txt

# uid 50000, as in the Airflow image; group 0 so an arbitrary-uid platform (OpenShift) still works.
RUN useradd --uid 50000 --gid 0 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin trainer

WORKDIR /opt/modelops
# Only the library and the specs: no DAGs, no plugins, no BentoML service.
COPY --chown=50000:0 include/ /opt/modelops/include/

USER 50000
ENTRYPOINT ["python", "-m", "include.modelops.training.entrypoint"]
