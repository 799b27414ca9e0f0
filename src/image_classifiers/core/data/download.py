"""Fetch the raw archive once, verify it, and never let a partial file pass for the real one.

Precedence: ``download.local_path`` (verified and used in place: the real archive is 852 MB)
> ``url`` > ``gdrive_id``. gdown fetches into ``<archive_path>.unverified`` (it handles Drive's
confirmation pages, retries and resuming its ``*.part`` file); that file becomes
``archive_path`` by an atomic rename only once it opened as a zip and matched ``sha256``.
"""

import hashlib
import logging
import os
import zipfile
from pathlib import Path
from typing import Any

import gdown
import requests
from gdown.exceptions import DownloadError, FileURLRetrievalError

from image_classifiers.core.params import DownloadParams

logger = logging.getLogger(__name__)


class ArchiveDownloadError(RuntimeError):
    """The archive could not be fetched or verified; the message says what to do."""


class InvalidArchiveError(ValueError):
    """A file that is not the expected zip archive; the message says why."""


def download_archive(download: DownloadParams) -> dict[str, Any]:
    """Make sure a verified copy of the raw archive is on disk and describe it: ``source`` is
    ``"local_path"``, ``"cached"`` (downloaded by an earlier run) or the URL / Drive id."""
    if download.local_path:
        path = Path(download.local_path).expanduser()
        if not path.exists():
            raise ArchiveDownloadError(
                f"download.local_path points at '{path}', which does not exist. Give the "
                "absolute path of the archive you downloaded, or set download.local_path=null "
                "to download it."
            )
        try:
            record = _verify_archive(path, download.sha256)
        except InvalidArchiveError as problem:
            raise ArchiveDownloadError(
                f"download.local_path: {problem}. Download the archive again and point "
                "download.local_path at it (or fix download.sha256 if the archive is right)."
            ) from None
        logger.info("Using the archive at %s in place (download.local_path).", path)
        return {**record, "path": str(path.resolve()), "source": "local_path"}

    archive = Path(download.archive_path)
    if archive.exists():
        try:
            record = _verify_archive(archive, download.sha256)
        except InvalidArchiveError as problem:
            logger.warning("%s is not usable (%s); fetching it again.", archive, problem)
        else:
            logger.info("Archive %s is already downloaded and valid; not fetching it.", archive)
            return {**record, "source": "cached"}
    return _fetch(download, archive)


def _verify_archive(path: Path, expected_sha256: str | None = None) -> dict[str, Any]:
    """``{"path", "sha256", "size"}`` of a zip that opens (a truncated file lacks the central
    directory at its end) and has the expected checksum, or InvalidArchiveError saying why."""
    if not path.is_file():
        raise InvalidArchiveError(f"'{path}' does not exist or is not a file")
    size = path.stat().st_size
    try:
        zipfile.ZipFile(path).close()
    except (zipfile.BadZipFile, OSError) as exc:
        raise InvalidArchiveError(
            f"'{path}' ({size:,} bytes) is not a zip archive or is truncated ({exc}); "
            f"{_sniff(path)}"
        ) from None
    with open(path, "rb") as stream:
        digest = hashlib.file_digest(stream, "sha256").hexdigest()
    if expected_sha256 and digest != expected_sha256:
        raise InvalidArchiveError(
            f"'{path}' has the wrong checksum: expected sha256 {expected_sha256}, got {digest}"
        )
    return {"path": str(path), "sha256": digest, "size": size}


def _fetch(download: DownloadParams, archive: Path) -> dict[str, Any]:
    url, gdrive_id, resume = download.url, download.gdrive_id, download.resume
    if not url and not gdrive_id:
        raise ArchiveDownloadError(
            "Nothing to download: set download.url, download.gdrive_id or download.local_path."
        )
    source = url or f"Google Drive file {gdrive_id}"
    hint = (
        "Or download the archive by hand (in a browser) and run again with "
        f'--params="download.local_path=/absolute/path/to/{archive.name}".'
    )
    if not url:
        hint += f" The file is at https://drive.google.com/uc?id={gdrive_id}"
    unverified = archive.with_name(archive.name + ".unverified")
    archive.parent.mkdir(parents=True, exist_ok=True)
    unverified.unlink(missing_ok=True)
    leftovers = _partial_files(unverified)
    if not resume or len(leftovers) > 1:  # gdown refuses to choose one of several
        _remove(leftovers)
        leftovers = []

    logger.info("Downloading %s to %s", source, archive)
    options = {
        "url": url,
        "id": None if url else gdrive_id,
        "output": str(unverified),
        "quiet": False,  # gdown's progress bar
        "use_cookies": not url,  # Drive may want its cookies; a plain URL does not
        "retries": download.retries,
        "timeout": download.timeout,
    }
    try:
        try:
            gdown.download(**options, resume=resume)
        except (DownloadError, requests.RequestException) as exc:
            if not (leftovers and _partial_files(unverified)):
                raise
            # The server would not continue the earlier partial file (no byte ranges, or
            # the file changed): start from scratch once rather than give up.
            logger.warning("Could not resume the earlier partial download (%s); restarting.", exc)
            _remove(_partial_files(unverified))
            gdown.download(**options, resume=False)
    except FileURLRetrievalError as exc:
        raise ArchiveDownloadError(
            f"Google Drive refused to serve {source}. This usually means its download quota "
            "is used up ('Too many users have viewed or downloaded this file recently'): "
            f"try again in a few hours. {hint}\nGoogle Drive said: {exc}"
        ) from exc
    except (DownloadError, requests.RequestException) as exc:
        if not resume:
            _remove(_partial_files(unverified))
        raise ArchiveDownloadError(_transfer_failure(exc, source, unverified, hint)) from exc
    except OSError as exc:  # after RequestException, which is an OSError too
        _remove(_partial_files(unverified))
        raise ArchiveDownloadError(
            f"Could not write the download next to '{archive}': {exc}. Free some disk space "
            "(the archive is 852 MB) or set download.archive_path to another folder."
        ) from exc

    try:
        record = _verify_archive(unverified, download.sha256)
    except InvalidArchiveError as problem:
        unverified.unlink(missing_ok=True)
        raise ArchiveDownloadError(
            f"The file downloaded from {source} is not the expected archive: {problem}. "
            f"Check download.url / download.gdrive_id / download.sha256. {hint}"
        ) from None
    os.replace(unverified, archive)
    logger.info("Downloaded and verified %s (%s bytes).", archive, f"{record['size']:,}")
    return {**record, "path": str(archive), "source": url or gdrive_id}


def _transfer_failure(exc: Exception, source: str, unverified: Path, hint: str) -> str:
    cause = exc.__cause__ if isinstance(exc, DownloadError) and exc.__cause__ else exc
    if isinstance(cause, requests.HTTPError) and cause.response is not None:
        return f"{source} answered HTTP {cause.response.status_code}. Check the address. {hint}"
    if isinstance(cause, requests.ConnectionError | requests.Timeout) and not isinstance(
        cause, requests.exceptions.ChunkedEncodingError
    ):
        return (
            f"Cannot reach {source}: {cause}. Check the network connection (and proxy "
            f"settings: HTTPS_PROXY), then run again. {hint}"
        )
    kept = ""
    if partial := _partial_files(unverified):  # only left when resuming
        kept = (
            f" The {partial[0].stat().st_size:,} bytes received are kept in '{partial[0]}' "
            "and the next run resumes from there."
        )
    return (
        f"The download from {source} was interrupted before the whole file arrived ({exc})."
        f"{kept} Run again to retry. {hint}"
    )


def _partial_files(unverified: Path) -> list[Path]:
    """gdown's partial files for ``unverified``: ``<name><8 random chars>.part``."""
    pattern = f"{unverified.name}{'?' * 8}.part"
    return sorted(unverified.parent.glob(pattern)) if unverified.parent.is_dir() else []


def _remove(paths: list[Path]) -> None:
    for path in paths:
        path.unlink(missing_ok=True)


def _sniff(path: Path) -> str:
    with open(path, "rb") as stream:
        head = stream.read(64)
    if not head:
        return "the file is empty"
    if head.lstrip()[:1] == b"<":
        return "it is an HTML page (a login, quota or error page), not the archive"
    if head[:2] == b"PK":
        return "it starts like a zip, so it is most likely an incomplete download"
    return f"it starts with {head[:8]!r}"
