"""The extract node: nested archive, skipped metadata, zip-slip, corrupt archives, idempotence."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import pytest

from image_classifiers.core.data.extract import (
    STAMP_FILE,
    ArchiveExtractError,
    extract_images,
)
from image_classifiers.core.params import ExtractParams


def _record(archive: Path, source: str = "cached") -> dict:
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    return {"path": str(archive), "sha256": digest, "size": 0, "source": source}


def _params(tmp_path: Path, **overrides) -> ExtractParams:
    params = {
        "inner_archive": "train.zip",
        "extensions": [".jpg", ".png"],
        "target_dir": str(tmp_path / "raw" / "images"),
    }
    return ExtractParams(**{**params, **overrides})


def _files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def _outer_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as outer:
        for name, data in members.items():
            outer.writestr(name, data)
    return path


def test_extracts_only_the_images_of_the_inner_archive(tmp_path, make_archive):
    archive = make_archive(
        indices=range(3),
        extra_members={
            "__MACOSX/train/._cat.0.jpg": b"resource fork",
            "train/.DS_Store": b"finder",
            "train/README.txt": b"not an image",
        },
    )
    with zipfile.ZipFile(archive, "a") as outer:  # the real archive has these too
        outer.writestr("test1.zip", b"unlabelled images")
        outer.writestr("sampleSubmission.csv", b"id,label")
    record = extract_images(_record(archive), _params(tmp_path))

    target = tmp_path / "raw" / "images"
    expected = [f"train/{c}.{n}.jpg" for c in ("cat", "dog") for n in range(3)]
    assert _files(target) == sorted([STAMP_FILE, *expected])
    assert record["files"] == 6
    assert record["path"] == str(target)
    with zipfile.ZipFile(archive) as outer:
        inner = zipfile.ZipFile(io.BytesIO(outer.read("train.zip")))
        assert (target / "train/dog.2.jpg").read_bytes() == inner.read("train/dog.2.jpg")
    assert not [p for p in target.parent.iterdir() if p.name.startswith(".")]  # no temp left


def test_second_run_skips_a_complete_extraction(tmp_path, make_archive):
    archive = make_archive(indices=range(2))
    record = _record(archive)
    extract_images(record, _params(tmp_path))
    archive.unlink()  # proves the archive is not opened again
    assert extract_images(record, _params(tmp_path))["files"] == 4


def test_incomplete_or_outdated_extraction_is_redone(tmp_path, make_archive):
    archive = make_archive(indices=range(2))
    params = _params(tmp_path)
    extract_images(_record(archive), params)
    target = tmp_path / "raw" / "images"
    (target / "train/cat.1.jpg").unlink()
    extract_images(_record(archive), params)
    assert (target / "train/cat.1.jpg").is_file()

    newer = make_archive("newer.zip", indices=range(3))
    assert extract_images(_record(newer), params)["files"] == 6
    assert (target / "train/dog.2.jpg").is_file()


def test_images_directly_in_the_archive(tmp_path):
    archive = _outer_zip(tmp_path / "flat.zip", {"pics/cat.0.jpg": b"x", "pics/dog.0.png": b"y"})
    record = extract_images(_record(archive), _params(tmp_path, inner_archive=None))
    assert record["files"] == 2
    assert (tmp_path / "raw/images/pics/dog.0.png").read_bytes() == b"y"


@pytest.mark.parametrize("entry", ["../evil.jpg", "train/../../evil.jpg", "/tmp/evil.jpg"])
def test_zip_slip_entry_is_rejected(tmp_path, make_archive, entry):
    good = make_archive(indices=range(2))
    params = _params(tmp_path)
    extract_images(_record(good), params)  # an earlier good extraction
    bad = make_archive("bad.zip", indices=range(2), extra_members={entry: b"payload"})

    with pytest.raises(ArchiveExtractError, match="zip-slip") as error:
        extract_images(_record(bad), params)
    assert entry in str(error.value)
    assert not (tmp_path / "evil.jpg").exists()
    assert not (tmp_path / "raw" / "evil.jpg").exists()
    assert len(_files(tmp_path / "raw" / "images")) == 5  # the good output is untouched


def test_truncated_outer_archive_names_it_and_says_what_to_do(tmp_path, make_archive):
    archive = make_archive(indices=range(2))
    data = archive.read_bytes()
    archive.write_bytes(data[: len(data) // 2])
    with pytest.raises(ArchiveExtractError, match="truncated or corrupt") as error:
        extract_images(_record(archive), _params(tmp_path))
    assert str(archive) in str(error.value)
    assert "Delete" in str(error.value)
    assert not (tmp_path / "raw" / "images").exists()


def test_truncated_inner_archive(tmp_path, make_archive):
    with zipfile.ZipFile(make_archive(indices=range(2))) as outer:
        inner = outer.read("train.zip")
    archive = _outer_zip(tmp_path / "cut.zip", {"train.zip": inner[: len(inner) - 40]})
    with pytest.raises(ArchiveExtractError, match=r"'train\.zip' inside") as error:
        extract_images(_record(archive, source="local_path"), _params(tmp_path))
    assert "download.local_path" in str(error.value)


def test_corrupt_member_fails_without_half_written_output(tmp_path, make_archive):
    with zipfile.ZipFile(make_archive(indices=range(2))) as outer:
        inner = bytearray(outer.read("train.zip"))
    at = inner.find(b"JFIF") + 200  # inside the first JPEG's stored bytes
    inner[at : at + 8] = b"\x00" * 8  # the CRC no longer matches
    archive = _outer_zip(tmp_path / "bad-crc.zip", {"train.zip": bytes(inner)})
    with pytest.raises(ArchiveExtractError, match="Bad CRC-32"):
        extract_images(_record(archive), _params(tmp_path))
    assert not (tmp_path / "raw" / "images").exists()
    assert list((tmp_path / "raw").iterdir()) == []


def test_missing_inner_archive_lists_what_is_there(tmp_path):
    archive = _outer_zip(tmp_path / "other.zip", {"images.zip": b"", "notes.txt": b""})
    with pytest.raises(ArchiveExtractError, match=r"no member 'train\.zip'") as error:
        extract_images(_record(archive), _params(tmp_path))
    assert "images.zip" in str(error.value)


def test_archive_without_images(tmp_path):
    archive = _outer_zip(tmp_path / "docs.zip", {"readme.txt": b"hello"})
    with pytest.raises(ArchiveExtractError, match="no image files"):
        extract_images(_record(archive), _params(tmp_path, inner_archive=None))


def test_zips_inside_are_unpacked_in_place_up_to_a_nesting_limit(tmp_path):
    def nest(levels: int) -> bytes:
        data = {"pics/cat.0.jpg": b"x"}
        for level in range(levels):
            buffer = io.BytesIO()
            with zipfile.ZipFile(buffer, "w") as archive:
                for name, member in data.items():
                    archive.writestr(name, member)
            data = {f"level{level}/inner.zip": buffer.getvalue()}
        return data["level" + str(levels - 1) + "/inner.zip"]

    # Three zips inside the archive: a/inner.zip > level1/inner.zip > level0/inner.zip.
    archive = _outer_zip(tmp_path / "nested.zip", {"a/inner.zip": nest(3)})
    record = extract_images(_record(archive), _params(tmp_path, inner_archive=None))
    assert record["files"] == 1
    extracted = tmp_path / "raw/images/a/level1/level0/pics/cat.0.jpg"
    assert extracted.read_bytes() == b"x"

    too_deep = _outer_zip(tmp_path / "deep.zip", {"a/inner.zip": nest(4)})
    with pytest.raises(ArchiveExtractError, match="zips nested over 3 deep"):
        extract_images(_record(too_deep), _params(tmp_path, inner_archive=None))
    assert extracted.is_file()  # the earlier output is untouched


def _deflated(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def test_a_member_over_the_size_limit_is_skipped_and_reported_unread(tmp_path):
    # 3 MB of zeros deflate to a few KB: a small zip bomb.
    archive = _deflated(tmp_path / "a.zip", {"cat/ok.jpg": b"x", "cat/bomb.jpg": bytes(3 << 20)})
    limits = {"max_member_mb": 1}
    params = _params(tmp_path, inner_archive=None, archive_limits=limits)

    record = extract_images(_record(archive), params)

    assert record["files"] == 1 and _files(Path(params.target_dir))[1:] == ["cat/ok.jpg"]
    [skipped] = record["skipped"]
    assert skipped["file"] == "cat/bomb.jpg"
    assert "3 MB uncompressed" in skipped["reason"]
    assert "extract.archive_limits.max_member_mb" in skipped["reason"]
    assert extract_images(_record(archive), params)["skipped"] == [skipped]  # from the stamp


@pytest.mark.parametrize(
    ("limits", "message"),
    [
        ({"max_total_mb": 1}, r"pass 1 MB uncompressed .*max_total_mb"),
        ({"max_members": 2}, r"over 2 members .*max_members"),
    ],
)
def test_an_archive_over_its_total_or_count_limit_is_not_extracted(tmp_path, limits, message):
    members = {f"cat/{n}.jpg": bytes(600 << 10) for n in range(3)}
    archive = _deflated(tmp_path / "a.zip", members)
    params = _params(tmp_path, inner_archive=None, archive_limits=limits)
    with pytest.raises(ArchiveExtractError, match=message):
        extract_images(_record(archive), params)
    assert not Path(params.target_dir).exists()
