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
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

from slideiqa.errors import SlideIQAError

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
        raise ReproductionError(f"{path}: not a profile folder (missing {', '.join(missing)}); "
                                f"known profiles: {', '.join(PROFILES)}")
    return path


def load_profile(profile: str | Path) -> dict[str, dict]:
    """The three experiment configs; relative paths in them are taken from the file's folder."""
    folder = profile_dir(profile)
    configs = {}
    for name in EXPERIMENTS:
        path = folder / f"{name}.toml"
        try:
            config = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as error:
            raise ReproductionError(f"{path}: {error}") from None
        config["_file"] = path
        configs[name] = config
    return configs


def _resolve(path: str, config: dict) -> Path:
    candidate = Path(path).expanduser()
    return candidate if candidate.is_absolute() else (config["_file"].parent / candidate).resolve()


def short_hash(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:8]


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
    if "kind" not in data or "sources" not in data:
        raise ReproductionError(f"{config['_file']}: [data] needs either folder, or kind and sources")
    sources = [str(_resolve(s, config)) for s in data["sources"]]
    shares = data.get("class_shares")
    build = BuildConfig(crops_per_source=int(data.get("crops_per_source", 100)),
                        crop_size=int(data.get("crop_size", 224)), mpp=float(data.get("mpp", 0.5)),
                        min_tissue=float(data.get("min_tissue", 0.3)), seed=int(data.get("seed", 0)),
                        source_mpp={k: float(v) for k, v in data.get("source_mpp", {}).items()},
                        class_shares=tuple(shares) if shares else None)
    key = short_hash({"kind": data["kind"], "sources": [Path(s).name for s in sources], "build": asdict(build)})
    folder = out / "data" / f"{data['kind']}-{key}"
    if (folder / "classes.json").exists():
        return folder
    partial = folder.with_name(folder.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    log(f"building the {data['kind']} dataset in {folder}")
    build_dataset(data["kind"], find_sources(sources), partial, build)
    partial.rename(folder)
    return folder


def protocol_of(config: dict) -> dict:
    """The [protocol] table with its defaults (five folds, every fold a grid fold)."""
    protocol = {"folds": 5, "seed": 0, "selection_metric": "accuracy", **config.get("protocol", {})}
    protocol.setdefault("grid_folds", list(range(protocol["folds"])))
    return protocol


def training_of(config: dict) -> dict:
    """The [training] table with the paper profile's defaults."""
    return {"epochs": 30, "input_size": 224, "normalisation": "unit", "augment": "paper", "init": "imagenet",
            "fallback_init": None, **config.get("training", {})}
