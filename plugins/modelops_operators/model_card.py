"""ModelCardOperator: builds a version's model card (Markdown, HTML, JSON) and attaches it to MLflow."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator


class ModelCardOperator(BaseOperator):
    """Build the model card of a registered version from its spec, MLflow run and evidence.

    Run it once the version is registered and again whenever its state changes (approval,
    promotion): the card is regenerated from the current tags, so it always tells the
    version's whole story.

    :param model_name: the model (spec name).
    :param validated: ``validate_dataset``'s result (MLflow run id, data path, fingerprint).
    :param split: ``split_dataset``'s result (train/holdout paths and how they were split).
    :param evaluated: ``evaluate_candidate``'s result (paths of evaluation.json, decision.json, report).
    :param registered: ``register_candidate``'s result (version, model URI, MLflow link).
    """

    template_fields: Sequence[str] = ("model_name", "validated", "split", "evaluated", "registered")
    ui_color = "#e8f4ea"

    def __init__(
        self, *, model_name: str, validated: Any, split: Any, evaluated: Any, registered: Any, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.model_name = model_name
        self.validated = validated
        self.split = split
        self.evaluated = evaluated
        self.registered = registered

    def execute(self, context: Any) -> dict:
        from include.modelops.pipelines import training as steps

        return steps.generate_model_card(
            self.model_name,
            self.validated,
            self.split,
            self.evaluated,
            self.registered,
            dag_id=context["dag"].dag_id,
            dag_run_id=context["dag_run"].run_id,
        )
