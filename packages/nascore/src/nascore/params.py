"""Loading params/: run.yaml (profile + run), data.yaml, <method>.yaml, profiles.yaml.

The active profile's overrides are merged over the base files, then every section is
validated into its dataclass. Errors name the file, the key and what is allowed.
"""
from __future__ import annotations

import functools
import hashlib
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import yaml

from nascore.config import ParamsError, deep_merge, flatten, from_dict, load_yaml, read_yaml, to_dict
from nascore.data.params import DataParams
from nascore.runtime import RunParams


@functools.cache
def source_hash(package: Path = Path(__file__).resolve().parent) -> str:
    """sha256 of the package's Python source, file names included (compiled caches are not source)."""
    h = hashlib.sha256()
    for f in sorted(package.rglob("*.py")):
        h.update(f.relative_to(package).as_posix().encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class Params:
    """Everything a stage needs, typed."""

    profile: str
    run: RunParams
    data: DataParams
    method: Any
    method_name: str

    def fingerprint(self, *sections: str) -> str:
        """A hash of what shapes a stage's result, for checkpoint compatibility: the params and the code
        (a checkpoint written by other code resumes nothing: its weights could be stale)."""
        blob = {"run": {k: v for k, v in to_dict(self.run).items() if k not in ("tracking_uri", "threads", "variance")},
                "data": to_dict(self.data),
                "method": {s: to_dict(getattr(self.method, s)) for s in sections},
                "code": source_hash()}
        return hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()[:16]


def load_params(root: Path, method: str | None = None, profile: str | None = None, *,
                params_cls: type | None = None, methods: Iterable[str] | None = None) -> Params:
    """Read, merge the profile, validate. `method=None` loads only run and data; a method's section
    is validated into `params_cls` (its caller knows the class: `Method.from_project` passes it).
    `methods`: the section names a profile may hold besides run and data (None: not checked)."""
    if method is not None and params_cls is None:
        raise TypeError(f"load_params: method {method!r} needs its params class (params_cls=); "
                        f"Method.from_project(root, profile) passes it")
    pdir = root / "params"
    run_file = read_yaml(pdir / "run.yaml")
    unknown = sorted(set(run_file) - {"profile", "run"})
    if unknown:
        raise ParamsError(f"params/run.yaml: unknown key '{unknown[0]}'; allowed keys: profile, run")
    profile = profile or run_file.get("profile") or "paper"
    profiles = read_yaml(pdir / "profiles.yaml")
    if profile not in profiles:
        raise ParamsError(f"params/run.yaml: profile: got {profile!r}; defined in params/profiles.yaml: "
                          f"{', '.join(sorted(profiles))}")
    over = _mapping(profiles[profile], profile, "a mapping of the sections this profile overrides (run, data, "
                                                "a method's name), or {} for none")
    sections = {"run", "data", *(methods or ()), *([method] if method else [])}
    bad = sorted(set(over) - sections) if methods is not None else []
    if bad:
        raise ParamsError(f"params/profiles.yaml: {profile}.{bad[0]}: unknown section; allowed: "
                          f"{', '.join(sorted(sections))}")
    data_file = read_yaml(pdir / "data.yaml")
    run = _validated(RunParams, run_file.get("run"), over.get("run"), "params/run.yaml", "run", profile, root)
    data = _validated(DataParams, data_file.get("data"), over.get("data"), "params/data.yaml", "data",
                      profile, root)
    method_params = None
    if method is not None:
        method_params = _validated(params_cls, read_yaml(pdir / f"{method}.yaml"),
                                   over.get(method), f"params/{method}.yaml", "", profile, root)
    return Params(profile, run, data, method_params, method or "")


def _mapping(value: Any, key: str, expected: str) -> dict:
    """A params/profiles.yaml entry as a mapping (null: empty); anything else is a ParamsError naming it."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ParamsError(f"params/profiles.yaml: {key}: got {value!r}; expected {expected}")
    return value


def _validated(cls, base: Any, override: Any, file: str, section: str, profile: str,
               root: Path | None = None):
    """Validate the base file on its own (a bad value must not hide behind a profile that
    overrides it), then the merged result; errors then point at the profile's key."""
    base = {} if base is None else base
    obj = from_dict(cls, base, f"{file}: {section}" if section else f"{file}: ")
    top = section or Path(file).stem
    override = _mapping(override, f"{profile}.{top}", f"a mapping of the {file} keys this profile overrides "
                                                      "(nested as in that file), or leave it out")
    if not override:
        return obj
    if root is not None:  # run.yaml and data.yaml hold a section; a method's file is all its section
        wrap = (lambda d: {section: d}) if section else (lambda d: d)
        for line in shadowed(root, file, wrap(base), wrap(override), f"{profile}." if section else f"{profile}.{top}."):
            print(f"[nascore] warning: {line}", file=sys.stderr)
    return from_dict(cls, deep_merge(base, override), f"params/profiles.yaml: {profile}.{top}")


def shadowed(root: Path, file: str, base: dict, override: dict, prefix: str) -> list[str]:
    """Base-file values changed in the workspace (e.g. by `dvc exp run -S params/darts.yaml:...`) that the
    active profile overrides, so the change has no effect: one line each, naming both keys and the fix.
    Compared with the committed file (git HEAD); without git, nothing is reported. `prefix`: where the
    override sits in params/profiles.yaml (e.g. "quick.darts." for params/darts.yaml)."""
    try:
        shown = subprocess.run(["git", "show", f"HEAD:{file}"], cwd=root, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return []
    if shown.returncode != 0:
        return []
    try:
        committed = flatten(load_yaml(shown.stdout) or {})
    except (ParamsError, yaml.YAMLError):  # the committed file is not the one validated: nothing to compare
        return []
    now, over = flatten(base), flatten(override)
    return [f"{file}: {k} = {now[k]!r} (committed: {committed[k]!r}) has no effect: params/profiles.yaml: "
            f"{prefix}{k} = {over[k]!r} overrides it; change that key instead "
            f"(dvc exp run -S params/profiles.yaml:{prefix}{k}=...)"
            for k in sorted(over) if k in now and k in committed and now[k] != committed[k]]
