"""Finding designs by name: the seed library first, then a run directory's archive.

Seeds are recorded in the archive the first time it is opened through here, so a
run's archive holds every design its commands can name.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

from designs.archive import Archive, ArchiveError, UnknownDesign
from designs.genesys_format import from_genesys
from designs.seeds import load_seed, seed_names
from designs.tree import TREE_FORMAT, TreeError, UnitTree

DEFAULT_RUN_DIR = "runs/default"


def run_dir_default() -> Path:
    return Path(os.environ.get("GENESYS_RUN_DIR", DEFAULT_RUN_DIR))


def recorded_archive_url(run_dir: str | os.PathLike) -> str | None:
    """The database a run keeps its archive in (`run --archive URL`, recorded in RUN_DIR/run.json), if any."""
    path = Path(run_dir) / "run.json"
    if "://" in str(run_dir) or not path.is_file():
        return None
    try:
        return json.loads(path.read_text()).get("archive") or None
    except (OSError, ValueError, AttributeError):
        return None  # the run commands report a damaged run.json themselves


def open_archive(run_dir: str | os.PathLike, url: str | None = None) -> Archive:
    """The archive of a run directory (created if new), with the seed library recorded in it.

    A run whose archive is a database (`url`, else the one its run.json records) keeps its
    records there and its artifacts (trees, code, reports) in RUN_DIR/artifacts, so every
    command given the run directory reads the same archive the run wrote."""
    url = url or recorded_archive_url(run_dir)
    archive = Archive.open(url, artifacts_dir=Path(run_dir) / "artifacts") if url else Archive.open(run_dir)
    for name in seed_names():
        tree = load_seed(name)
        try:
            archive.record_design(name, tree.to_dict(), tree.fingerprint(), mode="seed", status="seed",
                                  family=tree.meta.get("family"), meta={"paper": tree.meta.get("paper")})
        except ArchiveError as e:  # the seed library changed since this run recorded it
            warnings.warn(f"seed {name}: {e}; commands use the current seed library", stacklevel=2)
    return archive


@dataclass
class Entry:
    name: str
    tree: UnitTree
    mode: str
    status: str
    family: str | None


def resolve(name: str, archive: Archive) -> UnitTree:
    """The tree of a design by name; UnknownDesign (with close names) when there is none."""
    if name in seed_names():
        return load_seed(name)
    return UnitTree.from_dict(archive.load_tree_json(name))


def load_design_file(path: str | os.PathLike) -> UnitTree:
    """A complete design from a file: this project's tree JSON or the Genesys paper's layout."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise TreeError(f"{path}: not valid JSON: line {e.lineno} column {e.colno}: {e.msg}") from None
    if isinstance(data, dict) and data.get("format") == TREE_FORMAT:
        return UnitTree.from_dict(data, where=str(path)).validate()
    return from_genesys(data, where=str(path))


def entries(archive: Archive) -> list[Entry]:
    """Every design the archive holds, seeds first."""
    records = sorted(archive.list_designs(), key=lambda r: (r.mode != "seed", r.name))
    return [Entry(r.name, resolve(r.name, archive), r.mode, r.status, r.family) for r in records]


__all__ = ["Entry", "UnknownDesign", "entries", "load_design_file", "open_archive", "resolve", "run_dir_default"]
