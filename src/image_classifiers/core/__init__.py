"""The ML core: data, models, training, evaluation and inspection, without Kedro or MLflow
(a notebook can use it alone). See docs/architecture.md."""
