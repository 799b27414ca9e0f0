"""The ML core: data, models, training, evaluation and inspection, with no Kedro or MLflow.

Usable on its own (a notebook, a script); the Kedro layer (pipelines, catalog datasets,
hooks) is built on it. See docs/architecture.md.
"""
