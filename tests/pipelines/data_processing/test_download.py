"""The download node: gdown against a local HTTP server, local archives, and every failure."""

from __future__ import annotations

import hashlib
import socket
from pathlib import Path

import gdown
import numpy as np
import pytest
from gdown.exceptions import FileURLRetrievalError
from pydantic import ValidationError

from image_classifiers.core.data.download import (
    ArchiveDownloadError,
    download_archive,
)
from image_classifiers.core.params import DownloadParams


@pytest.fixture
def archive_bytes(make_archive) -> bytes:
    return make_archive(indices=range(4)).read_bytes()


@pytest.fixture
def big_archive_bytes(make_archive) -> bytes:
    """Larger than gdown's 512 KiB chunk, so a cut-off transfer leaves bytes to resume."""
    noise = np.random.default_rng(0).bytes(1_500_000)
    return make_archive(indices=range(2), extra_members={"train/noise.bin": noise}).read_bytes()


def _params(tmp_path: Path, **overrides) -> DownloadParams:
    params = {
        "gdrive_id": None,
        "url": None,
        "local_path": None,
        "sha256": None,
        "archive_path": str(tmp_path / "raw" / "dogs-vs-cats.zip"),
        "retries": 0,  # a retry waits up to a second; the failure paths are what is tested
        "timeout": 10,
        "resume": True,
    }
    return DownloadParams(**{**params, **overrides})


def _leftovers(tmp_path: Path) -> list[str]:
    return sorted(p.name for p in (tmp_path / "raw").iterdir() if p.name != "dogs-vs-cats.zip")


def test_downloads_url_verifies_and_records(tmp_path, file_server, archive_bytes):
    file_server.payload = archive_bytes
    digest = hashlib.sha256(archive_bytes).hexdigest()
    record = download_archive(_params(tmp_path, url=file_server.url, sha256=digest.upper()))

    archive = tmp_path / "raw" / "dogs-vs-cats.zip"
    assert archive.read_bytes() == archive_bytes
    assert record == {
        "path": str(archive),
        "sha256": digest,
        "size": len(archive_bytes),
        "source": file_server.url,
    }
    assert _leftovers(tmp_path) == []


def test_valid_archive_is_not_fetched_again(tmp_path, file_server, archive_bytes):
    file_server.payload = archive_bytes
    params = _params(tmp_path, url=file_server.url)
    download_archive(params)
    record = download_archive(params)
    assert len(file_server.requests) == 1
    assert record["source"] == "cached"


def test_existing_partial_archive_is_fetched_again(tmp_path, file_server, archive_bytes):
    archive = tmp_path / "raw" / "dogs-vs-cats.zip"
    archive.parent.mkdir()
    archive.write_bytes(archive_bytes[: len(archive_bytes) // 2])  # an old interrupted copy
    file_server.payload = archive_bytes
    record = download_archive(_params(tmp_path, url=file_server.url))
    assert archive.read_bytes() == archive_bytes
    assert record["size"] == len(archive_bytes)


def test_archive_with_wrong_checksum_is_fetched_again(tmp_path, file_server, archive_bytes):
    archive = tmp_path / "raw" / "dogs-vs-cats.zip"
    archive.parent.mkdir()
    archive.write_bytes(archive_bytes)
    file_server.payload = archive_bytes
    other = hashlib.sha256(b"another version").hexdigest()
    with pytest.raises(ArchiveDownloadError, match="wrong checksum"):
        download_archive(_params(tmp_path, url=file_server.url, sha256=other))
    assert len(file_server.requests) == 1  # it did try a fresh copy


def test_interrupted_transfer_is_kept_apart_and_resumed(tmp_path, file_server, big_archive_bytes):
    archive_bytes = big_archive_bytes
    file_server.payload, file_server.mode = archive_bytes, "cut"
    params = _params(tmp_path, url=file_server.url)
    with pytest.raises(ArchiveDownloadError, match="interrupted") as error:
        download_archive(params)
    assert "next run resumes" in str(error.value)
    assert "download.local_path" in str(error.value)
    archive = tmp_path / "raw" / "dogs-vs-cats.zip"
    assert not archive.exists()  # never masquerades as complete
    (partial,) = _leftovers(tmp_path)
    assert partial.endswith(".part")
    received = (tmp_path / "raw" / partial).stat().st_size
    assert 0 < received < len(archive_bytes)

    file_server.mode = "ok"
    record = download_archive(params)
    assert archive.read_bytes() == archive_bytes
    assert file_server.requests[-1]["Range"] == f"bytes={received}-"
    assert record["sha256"] == hashlib.sha256(archive_bytes).hexdigest()
    assert _leftovers(tmp_path) == []


def test_partial_file_restarts_when_server_cannot_resume(
    tmp_path, file_server, big_archive_bytes, caplog
):
    archive_bytes = big_archive_bytes
    file_server.payload, file_server.mode = archive_bytes, "cut"
    params = _params(tmp_path, url=file_server.url)
    with pytest.raises(ArchiveDownloadError):
        download_archive(params)
    assert _leftovers(tmp_path)  # the partial file that a resume would continue
    file_server.mode, file_server.ranges = "ok", False
    download_archive(params)
    assert "Could not resume" in caplog.text
    assert (tmp_path / "raw" / "dogs-vs-cats.zip").read_bytes() == archive_bytes
    assert _leftovers(tmp_path) == []


def test_several_stale_partial_files_are_dropped(tmp_path, file_server, archive_bytes):
    raw = tmp_path / "raw"
    raw.mkdir()
    for tag in ("abcd1234", "efgh5678"):  # gdown would refuse to choose between them
        (raw / f"dogs-vs-cats.zip.unverified{tag}.part").write_bytes(b"PK old bytes")
    file_server.payload = archive_bytes
    download_archive(_params(tmp_path, url=file_server.url))
    assert (raw / "dogs-vs-cats.zip").read_bytes() == archive_bytes
    assert _leftovers(tmp_path) == []
    assert "Range" not in file_server.requests[-1]


def test_without_resume_interrupted_transfer_leaves_nothing(tmp_path, file_server, archive_bytes):
    file_server.payload, file_server.mode = archive_bytes, "cut"
    with pytest.raises(ArchiveDownloadError, match="interrupted"):
        download_archive(_params(tmp_path, url=file_server.url, resume=False))
    assert _leftovers(tmp_path) == []
    assert not (tmp_path / "raw" / "dogs-vs-cats.zip").exists()


def test_short_content_length_fails_verification(tmp_path, file_server, archive_bytes):
    # The server announces (and sends) only half the file: the transfer looks complete.
    file_server.payload, file_server.mode = archive_bytes, "short"
    with pytest.raises(ArchiveDownloadError, match="not a zip archive or is truncated"):
        download_archive(_params(tmp_path, url=file_server.url))
    assert not (tmp_path / "raw" / "dogs-vs-cats.zip").exists()
    assert _leftovers(tmp_path) == []


def test_checksum_mismatch_says_expected_and_actual(tmp_path, file_server, archive_bytes):
    file_server.payload = archive_bytes
    expected = hashlib.sha256(b"something else").hexdigest()
    actual = hashlib.sha256(archive_bytes).hexdigest()
    with pytest.raises(ArchiveDownloadError) as error:
        download_archive(_params(tmp_path, url=file_server.url, sha256=expected))
    assert f"expected sha256 {expected}" in str(error.value)
    assert f"got {actual}" in str(error.value)
    assert not (tmp_path / "raw" / "dogs-vs-cats.zip").exists()
    assert _leftovers(tmp_path) == []


def test_html_page_instead_of_archive(tmp_path, file_server):
    file_server.mode = "html"
    with pytest.raises(ArchiveDownloadError, match="HTML page"):
        download_archive(_params(tmp_path, url=file_server.url))


def test_http_error_status(tmp_path, file_server):
    file_server.mode = "missing"
    with pytest.raises(ArchiveDownloadError, match="answered HTTP 404"):
        download_archive(_params(tmp_path, url=file_server.url))


def test_network_unreachable(tmp_path):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(ArchiveDownloadError, match="Cannot reach") as error:
        download_archive(_params(tmp_path, url=f"http://127.0.0.1:{port}/a.zip"))
    assert "download.local_path" in str(error.value)


def test_google_drive_quota_says_what_to_do(tmp_path, monkeypatch):
    def refuse(**kwargs):
        assert kwargs["id"] == "abc123"
        raise FileURLRetrievalError(
            "Too many users have viewed or downloaded this file recently. Please try "
            "accessing the file again later."
        )

    monkeypatch.setattr(gdown, "download", refuse)
    with pytest.raises(ArchiveDownloadError) as error:
        download_archive(_params(tmp_path, gdrive_id="abc123"))
    message = str(error.value)
    assert "quota" in message
    assert "Too many users" in message
    assert "download.local_path" in message
    assert "https://drive.google.com/uc?id=abc123" in message


def test_disk_full_says_what_to_do(tmp_path, monkeypatch):
    def disk_full(**kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(gdown, "download", disk_full)
    with pytest.raises(ArchiveDownloadError, match="Free some disk space"):
        download_archive(_params(tmp_path, gdrive_id="abc123"))


def test_local_path_is_used_in_place(tmp_path, make_archive, file_server):
    local = make_archive(indices=range(2))
    record = download_archive(_params(tmp_path, url=file_server.url, local_path=str(local)))
    assert record["path"] == str(local.resolve())
    assert record["source"] == "local_path"
    assert record["sha256"] == hashlib.sha256(local.read_bytes()).hexdigest()
    assert file_server.requests == []
    assert not (tmp_path / "raw").exists()


def test_missing_local_path(tmp_path):
    with pytest.raises(ArchiveDownloadError, match="does not exist"):
        download_archive(_params(tmp_path, local_path=str(tmp_path / "nope.zip")))


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "empty"),
        (b"not a zip at all", "not a zip archive"),
        ("truncated", "incomplete download"),
    ],
)
def test_local_path_that_is_not_a_valid_zip(tmp_path, make_archive, content, reason):
    local = tmp_path / "given.zip"
    if content == "truncated":
        data = make_archive(indices=range(4)).read_bytes()
        content = data[: len(data) - 100]  # the central directory is gone
    local.write_bytes(content)
    with pytest.raises(ArchiveDownloadError, match=reason) as error:
        download_archive(_params(tmp_path, local_path=str(local)))
    assert "download.local_path" in str(error.value)


def test_local_path_checksum_mismatch(tmp_path, make_archive):
    local = make_archive(indices=range(2))
    with pytest.raises(ArchiveDownloadError, match="wrong checksum"):
        download_archive(_params(tmp_path, local_path=str(local), sha256="0" * 64))


def test_bad_download_parameters(tmp_path):
    with pytest.raises(ValidationError, match="sha256"):
        _params(tmp_path, sha256="abc")
    with pytest.raises(ArchiveDownloadError, match="Nothing to download"):
        download_archive(_params(tmp_path))
