"""Profiles of the paper's experiments: where their TOML files are, how they are read and checked,
and the datasets they name (built once, kept by a hash of their settings).

A *profile* is a folder of three TOML files, one per experiment (``model1.toml``, ``ablations.toml``,
``model2.toml``); ``paper``, ``cpu`` and ``smoke`` ship in ``configs/``, and a lab copies one and
points its ``[data]`` at its own labelled image folders.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tomllib
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from slideiqa.errors import SlideIQAError

from .catalogue import CatalogueError, load_catalogue
from .datasets import BuildConfig, build_dataset
from .sources import find_sources

CONFIG_ROOT = Path(__file__).resolve().parent / "configs"
PROFILES = ("paper", "cpu", "smoke")
EXPERIMENTS = ("model1", "ablations", "model2")
INITS = ("imagenet", "random")


class ReproductionError(SlideIQAError):
    """A profile cannot be run as configured; the message names the file and the setting."""


# ---------------------------------------------------------------------------------------------- config


def profile_dir(profile: str | Path) -> Path:
    """A profile name (``paper``, ``cpu``, ``smoke``) or a folder holding the three TOML files."""
    path = Path(profile)
    if not path.is_dir():
        path = CONFIG_ROOT / str(profile)
    missing = [f"{name}.toml" for name in EXPERIMENTS if not (path / f"{name}.toml").exists()]
    if missing:
        raise ReproductionError(
            f"{path}: not a profile folder (missing {', '.join(missing)}); known profiles: {', '.join(PROFILES)}"
        )
    return path


def load_profile(profile: str | Path, data_root: Path | None = None) -> dict[str, dict]:
    """The three experiment configs; relative paths in them are taken from the file's folder.

    ``data_root`` is the folder holding the catalogued sources (``sources.toml``) that a ``[data]
    groups`` list names; the bundled sample files need none.
    """
    folder = profile_dir(profile)
    configs = {}
    for name in EXPERIMENTS:
        path = folder / f"{name}.toml"
        try:
            config = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as error:
            raise ReproductionError(f"{path}: {error}") from None
        config["_file"] = path
        config["_data_root"] = data_root
        configs[name] = config
    return configs


def _resolve(path: str, config: dict) -> Path:
    candidate = Path(path).expanduser()
    return candidate if candidate.is_absolute() else (config["_file"].parent / candidate).resolve()


def short_hash(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:8]


def _sources_by_lab(config: dict) -> dict[str, list[Path]]:
    """The ``[data]`` sources, keyed by lab: a catalogued group (``groups``) is one lab, a folder in
    ``sources`` is one lab, and a single file in ``sources`` is its own."""
    data = config["data"]
    labs: dict[str, list[Path]] = {}
    if data.get("groups"):
        root = config.get("_data_root")
        if root is None:
            raise ReproductionError(
                f"{config['_file']}: [data] groups name catalogued sources; give the folder "
                "that holds them (--data, e.g. the shared data folder)"
            )
        catalogue = {group.name: group for group in load_catalogue()}
        for name in data["groups"]:
            if name not in catalogue:
                raise ReproductionError(
                    f"{config['_file']}: unknown source group {name!r}; catalogued: {', '.join(catalogue)}"
                )
            try:
                labs[name] = catalogue[name].paths(Path(root))
            except CatalogueError as error:
                raise ReproductionError(f"{config['_file']}: {error}") from None
    for entry in data.get("sources", []):
        path = _resolve(entry, config)
        labs[path.name if path.is_dir() else path.stem] = find_sources([path])
    return labs


def _mpp_by_stem(config: dict, by_lab: dict[str, list[Path]]) -> dict[str, float]:
    """µm/px of every source file, by file stem (as the builder looks them up): a catalogued group's
    own figure, then ``source_mpp`` given for a whole lab (folder or group), then for single files."""
    catalogue = {group.name: group.mpp for group in load_catalogue()} if config["data"].get("groups") else {}
    given = {key: float(value) for key, value in config["data"].get("source_mpp", {}).items()}
    mpp = {}
    for lab, paths in by_lab.items():
        for path in paths:
            figure = given.get(path.stem, given.get(lab, catalogue.get(lab)))
            if figure is not None:
                mpp[path.stem] = figure
    return mpp


def prepare_dataset(config: dict, out: Path, log: Callable[[str], None]) -> Path:
    """The experiment's image folder: a lab's own (``folder``) or one built from sharp sources.

    A built dataset is keyed by its build settings, so experiments that ask for the same data share
    it, and it is built under a temporary name first: an interrupted build is never mistaken for a
    finished one.
    """
    data = config.get("data", {})
    if "folder" in data:
        folder = _resolve(data["folder"], config)
        if not folder.is_dir():
            raise ReproductionError(f"{config['_file']}: data folder {folder} does not exist")
        return folder
    if "kind" not in data or not (data.get("sources") or data.get("groups")):
        raise ReproductionError(f"{config['_file']}: [data] needs either folder, or kind and sources or groups")
    by_lab = _sources_by_lab(config)
    sources = [path for paths in by_lab.values() for path in paths]
    shares = data.get("class_shares")
    build = BuildConfig(
        crops_per_source=int(data.get("crops_per_source", 100)),
        crop_size=int(data.get("crop_size", 224)),
        mpp=float(data.get("mpp", 0.5)),
        min_tissue=float(data.get("min_tissue", 0.3)),
        seed=int(data.get("seed", 0)),
        source_mpp=_mpp_by_stem(config, by_lab),
        source_lab={path.stem: lab for lab, paths in by_lab.items() for path in paths},
        class_shares=tuple(shares) if shares else None,
    )
    key = short_hash({"kind": data["kind"], "sources": [s.name for s in sources], "build": asdict(build)})
    folder = out / "data" / f"{data['kind']}-{key}"
    if (folder / "classes.json").exists():
        return folder
    partial = folder.with_name(folder.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    log(f"building the {data['kind']} dataset in {folder}")
    build_dataset(data["kind"], sources, partial, build)
    partial.rename(folder)
    return folder


def protocol_of(config: dict) -> dict:
    """The [protocol] table with its defaults (five folds, every fold a grid fold, folds grouped by
    reference crop; ``group_by = "field"`` keeps every crop of one field or slide in one fold;
    ``every_lab_in_every_fold`` cuts each lab into folds on its own)."""
    protocol = {
        "folds": 5,
        "seed": 0,
        "selection_metric": "accuracy",
        "group_by": "reference",
        "every_lab_in_every_fold": False,
        **config.get("protocol", {}),
    }
    if protocol["group_by"] not in ("reference", "field"):
        raise ReproductionError(
            f"{config['_file']}: [protocol] group_by must be reference or field, not {protocol['group_by']!r}"
        )
    protocol.setdefault("grid_folds", list(range(protocol["folds"])))
    return protocol


def training_of(config: dict) -> dict:
    """The [training] table with the paper profile's defaults."""
    return {
        "epochs": 30,
        "input_size": 224,
        "normalisation": "unit",
        "augment": "paper",
        "init": "imagenet",
        "fallback_init": None,
        **config.get("training", {}),
    }
