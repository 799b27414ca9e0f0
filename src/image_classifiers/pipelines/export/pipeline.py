"""The export pipeline: export and verify every format -> report; fail if none verified."""

from kedro.pipeline import Node, Pipeline

from .nodes import check_exports, export_model


def create_pipeline(**kwargs) -> Pipeline:
    """``export.model`` -> ``export.formats``, each re-scored on ``test_set`` by its runtime.

    The report is saved (and logged) before ``check_exports`` ends the run with an error when
    no format verified, so the reasons are on disk either way.
    """
    return Pipeline(
        [
            Node(
                export_model,
                {
                    "train_set": "train_set",
                    "test_set": "test_set",
                    "decode": "params:decode",
                    "evaluation": "params:evaluation",
                    "export": "params:export",
                },
                ["export_report", "export_metrics", "export_result"],
                name="export_model",
            ),
            Node(check_exports, "export_result", None, name="check_exports"),
        ]
    )
