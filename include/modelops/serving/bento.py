"""Package a registered model as a bento: import the MLflow model into BentoML's store, write the
build context (the library, the service, ``bento_model.json``) and build
``<model>_service:v<version>`` with the options of ``bentos/bentofile.yaml``.

bentoml and mlflow are imported inside the functions that use them, after ``BENTOML_HOME`` is
set (BentoML reads it once per process, on first use).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from include.modelops.settings import PROJECT_ROOT, get_settings, git_commit
from include.modelops.spec import ModelSpec, TaskType

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)

SERVICE_IMPORT = "service:ModelService"
BENTO_MODEL_FILE = "bento_model.json"
# The library is copied into every bento so that `include.modelops...` resolves inside it
# without the project on sys.path. All of it, not only what service.py imports: a pickled
# model (e.g. a torch trainer's PythonModel) refers to its class by module path.
SERVICE_PACKAGE_GLOB = "include/**/*.py"
# Label left out of the build hash: it records where a build came from, not what is in it.
_UNHASHED_LABELS = ("git_commit", "build_hash")


# --------------------------------------------------------------------------------------
# BentoML store: models and bentos
# --------------------------------------------------------------------------------------


def bentoml_model_tag(model_name: str, version: str) -> str:
    """The BentoML model tag of an MLflow model version, e.g. ``fraud_detection:v3``."""
    return f"{model_name}:v{version}"


def bento_tag(model_name: str, version: str) -> str:
    """The tag of the bento serving an MLflow model version, e.g. ``fraud_detection_service:v3``."""
    name = f"{model_name}_service"
    if len(name) > 63:  # BentoML's limit for a tag's name
        raise ValueError(f"model name {model_name!r} is too long for a bento tag; use at most 55 characters")
    return f"{name}:v{version}"


def _bentoml() -> Any:
    """Import bentoml with this project's store.

    BentoML reads ``BENTOML_HOME`` once per process, on first use, so it is set here
    before the import; if bentoml was already used with another home, store and build
    would go to the wrong place, so that is an error rather than a surprise.
    """
    home = get_settings().bentoml_home
    os.environ["BENTOML_HOME"] = str(home)
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")
    import bentoml
    from bentoml._internal.configuration.containers import BentoMLContainer

    active = Path(BentoMLContainer.bentoml_home.get()).resolve()
    if active != home:
        raise RuntimeError(
            f"BentoML in this process already uses the store {active}, but BENTOML_HOME is now {home}. "
            "Set BENTOML_HOME before bentoml is first imported (one store per process)."
        )
    return bentoml


@contextlib.contextmanager
def _temp_files_under(folder: Path) -> Iterator[None]:
    """Keep BentoML's and MLflow's temporary files inside the project while packaging."""
    folder.mkdir(parents=True, exist_ok=True)
    previous = tempfile.tempdir
    tempfile.tempdir = str(folder)
    try:
        yield
    finally:
        tempfile.tempdir = previous


def import_model(model_name: str, version: str, model_uri: str) -> str:
    """Copy an MLflow model into the BentoML store as ``<model_name>:v<version>``.

    Idempotent: an existing tag that holds the same MLflow model (same ``model_uuid``) is
    reused. A tag holding a different model (the MLflow registry was reset while the
    BentoML store was kept) is replaced, so a version number never serves stale weights.

    Args:
        model_name: Registered model name (the spec's name).
        version: MLflow model-version number.
        model_uri: Where MLflow finds the model, e.g. ``models:/fraud_detection/3``.

    Returns:
        The BentoML model tag.
    """
    bentoml = _bentoml()
    import mlflow
    from bentoml.exceptions import NotFound

    from include.modelops.platform import tracking

    settings = get_settings()
    tracking.client()  # sets the tracking URI, or says clearly that none is configured
    tag = bentoml_model_tag(model_name, version)
    with _temp_files_under(settings.bentoml_home / "tmp"):
        model_uuid = mlflow.models.get_model_info(model_uri).model_uuid or ""
        try:
            existing = bentoml.models.get(tag)
        except NotFound:
            existing = None
        if existing is not None:
            if existing.info.labels.get("mlflow_model_uuid") == model_uuid:
                log.info("BentoML model %s already holds %s; reusing it", tag, model_uri)
                return str(existing.tag)
            log.warning(
                "BentoML model %s holds MLflow model %s, not %s from %s; replacing it",
                tag,
                existing.info.labels.get("mlflow_model_uuid"),
                model_uuid,
                model_uri,
            )
            bentoml.models.delete(tag)
        log.info("Importing %s into the BentoML store at %s as %s", model_uri, settings.bentoml_home, tag)
        started = time.perf_counter()
        model = bentoml.mlflow.import_model(
            tag,
            model_uri,
            labels={"model": model_name, "model_version": str(version), "mlflow_model_uuid": model_uuid},
            metadata={"mlflow_model_uri": model_uri},
        )
    log.info("Imported %s in %.1f s", model.tag, time.perf_counter() - started)
    return str(model.tag)


def _canonical(requirement: str) -> str:
    name = re.split(r"[\s\[<>=!~;@]", requirement.strip(), maxsplit=1)[0]
    return re.sub(r"[-_.]+", "-", name).lower()


# The packages each MLflow flavour loads its models with. MLflow *infers* such a model's
# requirements.txt from every package imported while it loaded the model in the logging process,
# so a scikit-learn model logged next to torch (or under pytest) pins torch and pytest too.
_FLAVOR_PACKAGES: dict[str, tuple[str, ...]] = {
    "sklearn": ("scikit-learn",),
    "xgboost": ("xgboost",),
    "lightgbm": ("lightgbm",),
    "catboost": ("catboost",),
    "pytorch": ("torch",),
}
_SERIALIZATION_PACKAGES = {"skops": "skops", "cloudpickle": "cloudpickle"}


def _dependency_closure(names: Sequence[str]) -> set[str]:
    """``names`` and everything they require when installed (no extras), as canonical names."""
    from packaging.requirements import Requirement

    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = _canonical(todo.pop())
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        for line in requires:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return seen


def _model_needs(model_dir: Path) -> set[str] | None:
    """The canonical names a model's flavour needs to load it, or None when only its own pins can say.

    A model of a library flavour (``sklearn`` and the like) needs that library, the package it
    was serialised with, and their dependencies; a plain ``python_function`` model (the PyTorch
    trainer's, which logs explicit pins) keeps its requirements as logged.
    """
    import yaml

    mlmodel = model_dir / "MLmodel"
    if not mlmodel.exists():
        return None
    flavors = (yaml.safe_load(mlmodel.read_text()) or {}).get("flavors") or {}
    packages = [pkg for flavor in flavors for pkg in _FLAVOR_PACKAGES.get(flavor, ())]
    if not packages:
        return None
    for conf in flavors.values():
        fmt = (conf or {}).get("serialization_format") if isinstance(conf, dict) else None
        if fmt in _SERIALIZATION_PACKAGES:
            packages.append(_SERIALIZATION_PACKAGES[fmt])
    return _dependency_closure(packages)


def _python_packages(base: Sequence[str], model_dir: Path) -> list[str]:
    """Pinned requirements: ``base`` at the installed versions, then what the model needs of its MLflow pins.

    Of a library-flavoured model's pins only those its flavour needs are kept (see
    ``_model_needs``): the bento of a scikit-learn model carries no torch or pytest.
    """
    pins: dict[str, str] = {}
    for name in base:
        pins[_canonical(name)] = f"{name}=={importlib.metadata.version(name)}"
    needs = _model_needs(model_dir)
    dropped: list[str] = []
    requirements = model_dir / "requirements.txt"
    if requirements.exists():
        for line in requirements.read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if not line or line.startswith("-") or _canonical(line) in pins:
                continue
            if needs is not None and _canonical(line) not in needs:
                dropped.append(line)
                continue
            pins[_canonical(line)] = line
    if dropped:
        log.info(
            "Left out of the bento (MLflow inferred them from the logging process; the model's flavour "
            "does not load them): %s",
            ", ".join(dropped),
        )
    return sorted(pins.values(), key=str.lower)


def _load_template() -> dict[str, Any]:
    import yaml

    path = get_settings().bentos_dir / "bentofile.yaml"
    return yaml.safe_load(path.read_text())


def _write_build_context(ctx: Path, bento_model: dict[str, Any]) -> None:
    """A fresh build context: service.py, bento_model.json and the ``include`` package."""
    if ctx.exists():
        shutil.rmtree(ctx)
    ctx.mkdir(parents=True)
    shutil.copy2(get_settings().bentos_dir / "service.py", ctx / "service.py")
    for source in sorted(PROJECT_ROOT.glob(SERVICE_PACKAGE_GLOB)):
        target = ctx / source.relative_to(PROJECT_ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
    (ctx / BENTO_MODEL_FILE).write_text(json.dumps(bento_model, indent=2, sort_keys=True) + "\n")


def _build_hash(ctx: Path, config: dict[str, Any]) -> str:
    """What a bento is made of: every file in its context and the build options."""
    digest = hashlib.sha256()
    for path in sorted(p for p in ctx.rglob("*") if p.is_file() and p.name != "bentofile.yaml"):
        digest.update(path.relative_to(ctx).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    hashed = {**config, "labels": {k: v for k, v in config["labels"].items() if k not in _UNHASHED_LABELS}}
    digest.update(json.dumps(hashed, sort_keys=True).encode())
    return digest.hexdigest()[:16]


def build_bento(
    spec: ModelSpec,
    version: str,
    model_uri: str,
    *,
    build_root: Path | None = None,
    threshold: Mapping[str, Any] | None = None,
) -> str:
    """Build the bento that serves one MLflow model version.

    Imports the model into the BentoML store, writes a build context (``service.py``,
    ``bento_model.json`` and the project's ``include`` package) and builds
    ``<spec.name>_service:v<version>`` with the options of ``bentos/bentofile.yaml``.

    Idempotent: the bento's ``build_hash`` label hashes everything that goes into it.
    An existing bento with the same hash is reused, so a retried task changes nothing
    and a running server keeps its files. One with another hash (service code, spec or
    model changed under the same version) is deleted and rebuilt, because a tag must
    name exactly one content.

    Args:
        spec: The model's spec.
        version: MLflow model-version number.
        model_uri: Where MLflow finds the model, e.g. ``models:/fraud_detection/3``.
        build_root: Build-context folder; default
            ``$MODELOPS_STATE_DIR/bento_build/<name>-v<version>``.
        threshold: Binary: the version's decision threshold (``decision_threshold.threshold_info``),
            written to ``bento_model.json`` for the service to label with; default: read from the
            version's tags (``evaluation.threshold.registered_threshold``).

    Returns:
        The bento tag.
    """
    import yaml

    settings = get_settings()
    model_tag = import_model(spec.name, version, model_uri)
    bentoml = _bentoml()
    from bentoml.exceptions import NotFound

    tag = bento_tag(spec.name, version)
    ctx = Path(build_root) if build_root else settings.state_dir / "bento_build" / f"{spec.name}-v{version}"
    stored_model = bentoml.models.get(model_tag)
    model_uuid = stored_model.info.labels.get("mlflow_model_uuid", "")
    bento_model = {
        "model_name": spec.name,
        "model_version": str(version),
        "bentoml_model_tag": model_tag,
        "mlflow_model_uri": model_uri,
        "mlflow_model_uuid": model_uuid,
        "spec_hash": spec.spec_hash(),
        "spec": spec.model_dump(mode="json"),
    }
    if spec.task == TaskType.binary_classification:
        # The version's own threshold (chosen when it was trained), not the spec's: the service labels with it.
        if threshold is None:
            from include.modelops.evaluation.threshold import registered_threshold

            threshold = registered_threshold(spec, str(version))
        bento_model["decision_threshold"] = float(threshold["value"])
        bento_model["threshold"] = dict(threshold)
        log.info("Bento %s labels rows positive at score >= %s", tag, bento_model["decision_threshold"])
    log.info("Writing build context for %s to %s", tag, ctx)
    _write_build_context(ctx, bento_model)

    template = _load_template()
    python = dict(template.get("python") or {})
    python["packages"] = _python_packages(
        python.get("packages") or [], Path(stored_model.path_of("mlflow_model"))
    )
    config: dict[str, Any] = {
        "service": template.get("service", SERVICE_IMPORT),
        "name": tag.split(":")[0],
        "version": tag.split(":")[1],
        "description": (
            f"# {spec.name} v{version}\n\n{spec.description}\n\n"
            f"MLflow model `{model_uri}` (BentoML model `{model_tag}`). Built by airflow-modelops."
        ),
        "labels": {
            **(template.get("labels") or {}),
            "model": spec.name,
            "model_version": str(version),
            "spec_hash": spec.spec_hash(),
            "mlflow_model_uri": model_uri,
            "mlflow_model_uuid": model_uuid,
            "bentoml_model": model_tag,
            "git_commit": git_commit(),
        },
        "include": template.get("include"),
        "exclude": template.get("exclude"),
        "python": python,
    }
    build_hash = _build_hash(ctx, config)
    config["labels"]["build_hash"] = build_hash
    (ctx / "bentofile.yaml").write_text(yaml.safe_dump(config, sort_keys=False))

    try:
        existing = bentoml.bentos.get(tag)
    except NotFound:
        existing = None
    if existing is not None:
        if existing.info.labels.get("build_hash") == build_hash:
            log.info("Bento %s already built from these inputs (build_hash %s); reusing it", tag, build_hash)
            return str(existing.tag)
        log.warning(
            "Bento %s exists but was built from other inputs (build_hash %s, now %s); rebuilding it",
            tag,
            existing.info.labels.get("build_hash"),
            build_hash,
        )
        bentoml.bentos.delete(tag)

    # BentoML imports the service as the top-level module "service"; a previous build in
    # this process would otherwise hand back that build's module and its bento_model.json.
    previous = sys.modules.get("service")
    if previous is not None and Path(getattr(previous, "__file__", "") or "").name == "service.py":
        del sys.modules["service"]
    log.info("Building bento %s (packages: %s)", tag, ", ".join(python["packages"]))
    started = time.perf_counter()
    with _temp_files_under(settings.bentoml_home / "tmp"):
        bento = bentoml.bentos.build(
            config["service"],
            name=config["name"],
            version=config["version"],
            description=config["description"],
            labels=config["labels"],
            include=config["include"],
            exclude=config["exclude"],
            python=config["python"],
            build_ctx=str(ctx),
        )
    sys.modules.pop("service", None)
    log.info("Built bento %s in %.1f s at %s", bento.tag, time.perf_counter() - started, bento.path)
    return str(bento.tag)
