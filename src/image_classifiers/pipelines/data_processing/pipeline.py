"""The data_processing pipeline: raw archive -> split folders -> decoded image sets."""

from kedro.pipeline import Node, Pipeline

from .nodes import (
    download_archive,
    extract_images,
    make_split_decoder,
    report_data_quality,
    split_images,
)

#: The subsets decoded into the catalog's ``<subset>_set`` datasets.
SUBSETS = ("train", "validation", "test")


def create_pipeline(**kwargs) -> Pipeline:
    """Download -> extract -> split -> decode each subset -> data-quality report."""
    decode_nodes = [
        Node(
            make_split_decoder(subset),
            inputs=["split_manifest", "params:decode", "params:split.classes"],
            outputs=[f"{subset}_set", f"{subset}_data_quality"],
            name=f"decode_{subset}_images",
        )
        for subset in SUBSETS
    ]
    return Pipeline(
        [
            Node(download_archive, "params:download", "raw_archive", name="download_archive"),
            Node(
                extract_images,
                ["raw_archive", "params:extract"],
                "extracted_images",
                name="extract_images",
            ),
            Node(
                split_images,
                ["extracted_images", "params:split"],
                "split_manifest",
                name="split_images",
            ),
            *decode_nodes,
            Node(
                report_data_quality,
                ["params:decode", *(f"{subset}_data_quality" for subset in SUBSETS)],
                "data_quality_report",
                name="report_data_quality",
            ),
        ]
    )
