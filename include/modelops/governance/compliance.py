"""What a model card must evidence: the EU AI Act Annex IV and NIST AI RMF 1.0 items each card
section provides evidence for, what each risk tier requires before promotion, and the check that
refuses a card lacking it (:func:`check_evidence`, naming the spec field or evidence to supply).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from include.modelops.governance.card_schema import SECTIONS, as_mapping, has_evidence, plain_value

if TYPE_CHECKING:
    pass

# EU AI Act (Regulation (EU) 2024/1689), Annex IV: technical documentation referred to in
# Article 11(1). Nine items; items 1 and 2 have sub-points (a)-(h). Titles are paraphrased.
ANNEX_IV_ITEMS: dict[str, str] = {
    "1(a)": "Intended purpose, provider, version and its relation to previous versions",
    "1(b)": "Interaction with hardware or software (incl. other AI systems) outside the system",
    "1(c)": "Versions of relevant software or firmware; version-update requirements",
    "1(d)": "Forms in which the system is placed on the market or put into service",
    "1(e)": "Hardware on which the system is intended to run",
    "1(f)": "Photographs/markings of products the system is a component of",
    "1(g)": "Basic description of the user interface provided to the deployer",
    "1(h)": "Instructions for use for the deployer",
    "2(a)": "Methods and steps performed for the development of the system",
    "2(b)": "Design specifications: general logic, key design choices and assumptions, what the system "
    "optimises for, relevance of parameters, expected output quality, trade-offs",
    "2(c)": "System architecture; computational resources used to develop, train, test and validate",
    "2(d)": "Data requirements: datasheets on training data (provenance, scope, characteristics, "
    "selection, labelling, cleaning)",
    "2(e)": "Assessment of the human oversight measures needed (Article 14)",
    "2(f)": "Pre-determined changes to the system and its performance",
    "2(g)": "Validation and testing procedures, data and metrics (accuracy, robustness, discriminatory "
    "impacts); dated and signed test logs and reports",
    "2(h)": "Cybersecurity measures",
    "3": "Monitoring, functioning and control: capabilities and limitations, accuracy for groups of "
    "persons, foreseeable unintended outcomes and risks, human oversight, input-data specifications",
    "4": "Appropriateness of the performance metrics for the specific system",
    "5": "Risk management system (Article 9)",
    "6": "Relevant changes made by the provider to the system through its lifecycle",
    "7": "Harmonised standards applied (or other solutions adopted)",
    "8": "Copy of the EU declaration of conformity (Article 47)",
    "9": "System to evaluate performance in the post-market phase, incl. the post-market monitoring "
    "plan (Article 72)",
}

# Items a model card cannot evidence: they describe the whole AI system, the provider's
# organisation or the conformity procedure. Listed on the card so an auditor sees the boundary.
ANNEX_IV_NOT_COVERED: tuple[str, ...] = ("1(b)", "1(d)", "1(e)", "1(f)", "1(g)", "2(h)", "5", "7", "8")

# NIST AI RMF 1.0 subcategories referenced below (titles paraphrased). Mostly MEASURE; MAP 1.1
# and MAP 2.2 are added where they, not a MEASURE item, are the exact home of the evidence.
NIST_AI_RMF_ITEMS: dict[str, str] = {
    "MAP 1.1": "Intended purposes, context of use and deployment settings are understood and documented",
    "MAP 2.2": "The system's knowledge limits and how humans use and oversee its output are documented",
    "MEASURE 1.1": "Approaches and metrics for measuring the mapped AI risks are selected and documented",
    "MEASURE 1.3": "Experts who are not front-line developers take part in assessments",
    "MEASURE 2.1": "Test sets, metrics and details of the TEVV tools are documented",
    "MEASURE 2.3": "Performance is measured and demonstrated for conditions similar to deployment",
    "MEASURE 2.4": "Functionality and behaviour are monitored in production",
    "MEASURE 2.5": "The system is demonstrated valid and reliable; limits of generalisability are documented",
    "MEASURE 2.8": "Transparency and accountability risks are examined and documented",
    "MEASURE 2.10": "Privacy risk is examined and documented",
    "MEASURE 2.11": "Fairness and bias are evaluated and the results documented",
    "MEASURE 2.12": "Environmental impact and sustainability of training are assessed and documented",
    "MEASURE 3.1": "Existing, unanticipated and emergent risks are tracked from performance in deployment",
    "MEASURE 4.2": "Results in the deployment context are validated with domain experts and AI actors",
    "MEASURE 4.3": "Measurable performance improvements or declines are identified and documented",
}

# section -> (Annex IV items, NIST AI RMF subcategories) it provides evidence for.
COMPLIANCE_MAP: dict[str, tuple[list[str], list[str]]] = {
    # Name, version, provider/owner and framework version: the general description.
    "model_details": (["1(a)", "1(c)"], ["MEASURE 2.8"]),
    # Intended purpose and out-of-scope uses are what the deployer's instructions must state.
    "intended_use": (["1(a)", "1(h)", "3"], ["MAP 1.1", "MEASURE 2.5"]),
    # The datasheet: location, format, fingerprint, features with constraints, target.
    "data": (["2(d)", "3"], ["MEASURE 2.1"]),
    # Expectation suite results are the data-cleaning/outlier evidence and a dated test log.
    "data_validation": (["2(d)", "2(g)"], ["MEASURE 2.1", "MEASURE 2.5"]),
    # Methods, hyper-parameters (design choices), compute used, energy.
    "training": (["2(a)", "2(b)", "2(c)"], ["MEASURE 2.12"]),
    # Metrics vs champion and a naive baseline, CI, per-slice results (groups of persons).
    "evaluation": (["2(g)", "3", "4"], ["MEASURE 2.1", "MEASURE 2.3", "MEASURE 2.5", "MEASURE 2.11"]),
    # The promotion rules (why these metrics and bounds) and their dated outcome.
    "gate_decision": (["2(g)", "4"], ["MEASURE 1.1", "MEASURE 2.3", "MEASURE 2.5"]),
    "limitations": (["3"], ["MAP 2.2", "MEASURE 2.5"]),
    "ethical_considerations": (["2(b)", "3"], ["MEASURE 2.10", "MEASURE 2.11"]),
    # Who approved, when and why: human oversight, and the signature on the test reports.
    "approvals": (["2(e)", "2(g)"], ["MEASURE 1.3", "MEASURE 4.2"]),
    # Commit, DAG run, MLflow run, data fingerprint, spec hash: how this version was made.
    "lineage": (["1(a)", "2(a)", "6"], ["MEASURE 2.8", "MEASURE 3.1"]),
    # The endpoint contract: the input-data specification and instructions for calling the model.
    "serving": (["1(h)", "3"], ["MAP 1.1", "MEASURE 2.4"]),
    "deployment_history": (["6", "9"], ["MEASURE 2.4", "MEASURE 3.1", "MEASURE 4.3"]),
    # Drift checks and retraining policy: pre-determined changes and post-market monitoring.
    "monitoring": (["2(f)", "3", "9"], ["MEASURE 2.4", "MEASURE 3.1"]),
}

# What each risk tier must show before promotion. Entries are card sections, or
# "section.part" where one part of a section is what matters.
#   low:    a gate decision backed by evaluation results, and what was evaluated.
#   medium: a reviewer must also know what the model is for, on which data it was trained, that
#           the data passed validation, and how to reproduce it (lineage) -- Annex IV 1(a), 2(d),
#           2(g) and the traceability every promotion relies on.
#   high:   Annex IV 3 asks for limitations, foreseeable misuse and risks to fundamental rights,
#           and 2(g)/3 for accuracy on groups of persons, so out-of-scope uses, limitations,
#           ethical considerations and per-slice metrics must be filled in.
# Approvals are never required here: the card is built before the approval step and is the
# evidence the approver reads; the approval record is attached to the version afterwards.
REQUIRED_SECTIONS: dict[str, list[str]] = {
    "low": ["model_details", "evaluation", "gate_decision"],
    "medium": [
        "model_details",
        "evaluation",
        "gate_decision",
        "intended_use",
        "data",
        "data_validation",
        "lineage",
    ],
    "high": [
        "model_details",
        "evaluation",
        "gate_decision",
        "intended_use",
        "data",
        "data_validation",
        "lineage",
        "intended_use.out_of_scope_uses",
        "limitations",
        "ethical_considerations",
        "evaluation.slices",
    ],
}


class MissingEvidenceError(Exception):
    """A model card lacks evidence its risk tier requires; the message lists each gap and the fix."""

    def __init__(self, message: str, missing: list[str]):
        super().__init__(message)
        self.missing = missing


# --------------------------------------------------------------------------------------------
# Evidence: compliance status and what each risk tier requires
# --------------------------------------------------------------------------------------------


# Sections that always carry spec-derived fields count as present only when the run-time
# evidence is there; the rest are present when they hold anything at all.
_STATUS_PREDICATES: dict[str, Callable[[Any], bool]] = {
    "model_details": lambda s: has_evidence(as_mapping(s).get("description")),
    "intended_use": lambda s: has_evidence(as_mapping(s).get("intended_use")),
    "data": lambda s: has_evidence(as_mapping(s).get("features")),
    "data_validation": lambda s: as_mapping(s).get("success") is not None,
    "training": lambda s: has_evidence(as_mapping(s).get("params"))
    or has_evidence(as_mapping(s).get("mlflow_run_id")),
    "evaluation": lambda s: has_evidence(
        as_mapping(as_mapping(as_mapping(s).get("models")).get("candidate")).get("metrics")
    ),
    "gate_decision": lambda s: as_mapping(s).get("passed") is not None,
    "lineage": lambda s: any(
        has_evidence(as_mapping(s).get(k))
        for k in ("git_commit", "dag_run_id", "mlflow_run_id", "data_fingerprint")
    ),
}


def section_status(card: Mapping, section: str) -> str:
    """``"present"`` when the card's ``section`` carries evidence, else ``"empty"``."""
    predicate = _STATUS_PREDICATES.get(section, has_evidence)
    return "present" if predicate(card.get(section)) else "empty"


def compliance_entries(card: Mapping) -> list[dict]:
    """One entry per section: the Annex IV items and NIST AI RMF subcategories it evidences."""
    return [
        {
            "section": section,
            "eu_ai_act_annex_iv": list(COMPLIANCE_MAP[section][0]),
            "nist_ai_rmf": list(COMPLIANCE_MAP[section][1]),
            "status": section_status(card, section),
        }
        for section in SECTIONS
    ]


def _section(card: Mapping, name: str) -> dict:
    return as_mapping(card.get(name))


# Requirements met by one piece of evidence: (is it present?, what to provide when it is not).
_SIMPLE_REQUIREMENTS: dict[str, tuple[Callable[[Mapping], bool], str]] = {
    "model_details": (
        lambda c: has_evidence(_section(c, "model_details").get("description")),
        "model_details: spec field 'description' is empty; say what the model predicts and why",
    ),
    "intended_use": (
        lambda c: has_evidence(_section(c, "intended_use").get("intended_use")),
        "intended_use: spec field 'intended_use' is empty; say who uses the predictions "
        "and for what decision",
    ),
    "intended_use.out_of_scope_uses": (
        lambda c: has_evidence(_section(c, "intended_use").get("out_of_scope_uses")),
        "intended_use.out_of_scope_uses: spec field 'out_of_scope_uses' is empty; list the uses the model is "
        "not fit for",
    ),
    "limitations": (
        lambda c: has_evidence(c.get("limitations")),
        "limitations: spec field 'limitations' is empty; list the model's known weaknesses",
    ),
    "ethical_considerations": (
        lambda c: has_evidence(c.get("ethical_considerations")),
        "ethical_considerations: spec field 'ethical_considerations' is empty; record the fairness, privacy "
        "and harm considerations",
    ),
    "data_validation": (
        lambda c: _section(c, "data_validation").get("success") is not None,
        "data_validation: no data-validation result; run validate_dataset and pass its result as validation=",
    ),
    "evaluation": (
        lambda c: section_status(c, "evaluation") != "empty",
        "evaluation: no candidate metrics; run the evaluation and pass its report as evaluation=",
    ),
    "evaluation.slices": (
        lambda c: has_evidence(_section(c, "evaluation").get("slices")),
        "evaluation.slices: no per-slice metrics; set spec field 'segment_columns' and pass the evaluation "
        "report's slices",
    ),
    "gate_decision": (
        lambda c: _section(c, "gate_decision").get("passed") is not None,
        "gate_decision: no gate decision; run the quality gate and pass its result as decision=",
    ),
}


def _gaps(card: Mapping, requirement: str) -> list[str]:
    """What is missing for one requirement, each naming the spec field or evidence to provide."""
    if requirement in _SIMPLE_REQUIREMENTS:
        present, message = _SIMPLE_REQUIREMENTS[requirement]
        return [] if present(card) else [message]

    if requirement == "data":
        data = _section(card, "data")
        if not has_evidence(data.get("features")):
            return ["data: no features documented; fill spec field 'features'"]
        undocumented = [
            f.get("name") for f in data["features"] if not has_evidence(as_mapping(f).get("description"))
        ]
        if undocumented:
            return [
                f"data: features without a description: {', '.join(map(str, undocumented))}; "
                "fill spec field 'features[].description'"
            ]
        return []
    if requirement == "lineage":
        lin = _section(card, "lineage")
        out = []
        if not has_evidence(lin.get("mlflow_run_id")):
            out.append("lineage: MLflow run id is missing; pass run['run_id'] or lineage['mlflow_run_id']")
        if not has_evidence(lin.get("data_fingerprint")):
            out.append(
                "lineage: data fingerprint is missing; pass lineage['data_fingerprint'] "
                "(from validation) or tag the run with 'data_fingerprint'"
            )
        return out
    # A section without a dedicated rule: required means non-empty.
    if section_status(card, requirement) == "empty":
        return [f"{requirement}: section is empty; provide it to build_card"]
    return []


def missing_evidence(card: Mapping, risk_tier: str) -> list[str]:
    """The evidence ``risk_tier`` requires that the card lacks, one readable line per gap.

    Raises:
        ValueError: ``risk_tier`` is not one of ``REQUIRED_SECTIONS``.
    """
    tier = plain_value(risk_tier)
    if tier not in REQUIRED_SECTIONS:
        raise ValueError(f"unknown risk tier {risk_tier!r}; use one of {sorted(REQUIRED_SECTIONS)}")
    missing: list[str] = []
    for requirement in REQUIRED_SECTIONS[tier]:
        missing += _gaps(card, requirement)
    return missing


def check_evidence(card: Mapping, risk_tier: str) -> None:
    """Raise unless the card has every piece of evidence ``risk_tier`` requires.

    Raises:
        MissingEvidenceError: listing every missing section and what to fill in.
    """
    missing = missing_evidence(card, risk_tier)
    if not missing:
        return
    name = card.get("model_name") or "model"
    version = f" version {card['version']}" if card.get("version") else ""
    lines = [
        f"Model card for {name}{version} lacks evidence required for risk tier {plain_value(risk_tier)!r}:",
        *(f"  - {m}" for m in missing),
        f"Fill in the spec fields in include/models/{name}.yaml (documented in docs/model-spec.md) "
        "or pass the missing evidence to build_card, then rerun the task.",
    ]
    raise MissingEvidenceError("\n".join(lines), missing)
