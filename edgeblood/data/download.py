"""Download of the official BloodMNIST files with a progress bar and MD5 verification.

torchvision is deliberately not used (its CPU wheels are missing on many machines and
``medmnist``'s own downloader imports it).
"""

from __future__ import annotations

import hashlib
import urllib.error
import urllib.request
from pathlib import Path

from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

from edgeblood.atomic import atomic_path
from edgeblood.errors import EdgebloodError
from edgeblood.info import FILES, SUPPORTED_SIZES


def md5sum(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def download_bloodmnist(size: int, dest_dir: str | Path, timeout: float = 60.0) -> Path:
    """Fetch the official npz for ``size`` into ``dest_dir`` and verify its MD5.

    The file appears only after the checksum matched (atomic rename), so an interrupted or corrupt
    download never leaves a file that later looks valid.
    """
    if size not in FILES:
        raise EdgebloodError(f"BloodMNIST has no {size} px file; choose one of {', '.join(map(str, SUPPORTED_SIZES))}")
    spec = FILES[size]
    dest = Path(dest_dir).expanduser() / spec["name"]
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EdgebloodError(f"cannot create data folder {dest.parent}: {exc.strerror}; pass a writable --data-dir") from None
    try:
        with atomic_path(dest, suffix=".part") as tmp:
            with urllib.request.urlopen(spec["url"], timeout=timeout) as response:  # noqa: S310 (fixed https URL)
                total = int(response.headers.get("Content-Length") or 0) or None
                with Progress(
                    TextColumn(f"downloading {spec['name']}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn()
                ) as progress, open(tmp, "wb") as fh:
                    task = progress.add_task("download", total=total)
                    while block := response.read(1 << 16):
                        fh.write(block)
                        progress.advance(task, len(block))
            got = md5sum(tmp)
            if got != spec["md5"]:
                raise EdgebloodError(
                    f"downloaded {spec['name']} has MD5 {got}, expected {spec['md5']}; the download is corrupt, run again"
                )
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise EdgebloodError(
            f"could not download {spec['url']} ({reason}); check the network, or download the file by hand into {dest.parent}"
        ) from None
    return dest
