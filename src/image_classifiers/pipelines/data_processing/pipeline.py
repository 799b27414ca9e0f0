"""The data_processing pipeline: raw data -> split -> decoded image sets, for any source."""

from kedro.pipeline import Node, Pipeline

from image_classifiers.core.data.split import SUBSETS

from .nodes import download_data, extract_data, make_split_decoder, report_data_quality, split_data

#: The data pipeline's outputs that other pipelines read (within the same namespace).
OUTPUTS = tuple(f"{subset}_set" for subset in SUBSETS)


def create_pipeline(namespace: str | None = None, **kwargs) -> Pipeline:
    """Download -> extract -> split -> decode each subset -> data-quality report.

    A ``namespace`` (``"mnist"``) prefixes every parameter, dataset and node; the catalog's
    ``{namespace}.*`` factories put its data under ``data/*/<namespace>/``.
    """
    return Pipeline(
        [
            Node(
                download_data,
                ["params:download", "params:source"],
                "raw_archive",
                name="download_archive",
            ),
            Node(
                extract_data,
                ["raw_archive", "params:extract", "params:source"],
                "extracted_images",
                name="extract_images",
            ),
            Node(
                split_data,
                ["extracted_images", "params:split", "params:source"],
                ["split_manifest", "class_names"],
                name="split_images",
            ),
            *(
                Node(
                    make_split_decoder(subset),
                    inputs=["split_manifest", "params:decode", "class_names"],
                    outputs=[f"{subset}_set", f"{subset}_data_quality"],
                    name=f"decode_{subset}_images",
                )
                for subset in SUBSETS
            ),
            Node(
                report_data_quality,
                [
                    "params:decode",
                    "extracted_images",
                    *(f"{subset}_data_quality" for subset in SUBSETS),
                ],
                "data_quality_report",
                name="report_data_quality",
            ),
        ],
        namespace=namespace,
    )
