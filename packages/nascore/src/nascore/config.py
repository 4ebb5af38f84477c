"""Typed params: YAML is validated once, at the edge, into frozen dataclasses.

An unknown key, a wrong type or an out-of-range value raises ParamsError naming the key,
the value and what is allowed, before any compute starts.
"""
from __future__ import annotations

import copy
import dataclasses
import math
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

T = TypeVar("T")


class ParamsError(ValueError):
    """A params file holds something the schema does not allow."""


def spec(default: Any = dataclasses.MISSING, *, ge: float | None = None, gt: float | None = None,
         le: float | None = None, lt: float | None = None, doc: str = "",
         default_factory: Any = dataclasses.MISSING) -> Any:
    """A dataclass field with bounds that validation enforces."""
    meta = {"ge": ge, "gt": gt, "le": le, "lt": lt, "doc": doc}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin in (list, tuple):
        args = typing.get_args(tp)
        return f"a list of {_type_name(args[0])}" if args else "a list"
    if origin is dict:
        return f"a mapping of {_type_name(typing.get_args(tp)[1])}"
    if dataclasses.is_dataclass(tp):
        return f"a mapping with keys {', '.join(f.name for f in dataclasses.fields(tp))}"
    return {type(None): "null", bool: "true/false", int: "an integer", float: "a number",
            str: "a string"}.get(tp, getattr(tp, "__name__", str(tp)))


def _convert(value: Any, tp: Any, path: str) -> Any:
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if isinstance(value, float) and not math.isfinite(value):
        raise ParamsError(f"{path}: got {value!r}, expected a finite number (.nan, .inf and -.inf are not allowed)")
    if origin in (typing.Union, types.UnionType):
        errors = []
        for arg in typing.get_args(tp):
            try:
                return _convert(value, arg, path)
            except ParamsError as e:
                errors.append(e)
        raise ParamsError(f"{path}: got {value!r}, expected {_type_name(tp)}")
    if origin is Literal:
        if value in typing.get_args(tp) and type(value) in {type(a) for a in typing.get_args(tp)}:
            return value
        hint = ""
        if isinstance(value, bool) and {"on", "off"} & set(typing.get_args(tp)):
            hint = " (YAML reads an unquoted on/off/yes/no as a boolean: quote it, e.g. \"off\")"
        raise ParamsError(f"{path}: got {value!r}, expected {_type_name(tp)}{hint}")
    if tp is type(None):
        if value is None:
            return None
        raise ParamsError(f"{path}: got {value!r}, expected null")
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, path)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ParamsError(f"{path}: got {value!r}, expected {_type_name(tp)}")
        (arg,) = typing.get_args(tp)[:1] or (Any,)
        items = [_convert(v, arg, f"{path}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ParamsError(f"{path}: got {value!r}, expected {_type_name(tp)}")
        _, varg = typing.get_args(tp)
        return {str(k): _convert(v, varg, _join(path, str(k))) for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    raise ParamsError(f"{path}: got {value!r} ({type(value).__name__}), expected {_type_name(tp)}")


def _check_bounds(value: Any, meta: typing.Mapping[str, Any], path: str) -> None:
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    checks = (("ge", lambda v, b: v >= b, ">="), ("gt", lambda v, b: v > b, ">"),
              ("le", lambda v, b: v <= b, "<="), ("lt", lambda v, b: v < b, "<"))
    for key, ok, sign in checks:
        bound = meta.get(key)
        if bound is not None and not ok(value, bound):
            allowed = " and ".join(f"{s} {meta[k]}" for k, _, s in checks if meta.get(k) is not None)
            raise ParamsError(f"{path}: got {value!r}, allowed: {allowed}")


def _join(path: str, key: str) -> str:
    """'file.yaml: ' + 'key' -> 'file.yaml: key'; 'a.b' + 'c' -> 'a.b.c'."""
    return f"{path}{key}" if path.endswith(" ") else f"{path}.{key}"


def from_dict(cls: type[T], data: Any, path: str = "params") -> T:
    """Build dataclass `cls` from a mapping, rejecting unknown keys, wrong types, bad ranges."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ParamsError(f"{path}: got {data!r}, expected {_type_name(cls)}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ParamsError(
            f"{_join(path, unknown[0])}: unknown key; allowed keys: {', '.join(sorted(fields))}")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, f in fields.items():
        key_path = _join(path, name)
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ParamsError(f"{key_path}: missing required key ({_type_name(hints[name])})")
            continue
        value = _convert(data[name], hints[name], key_path)
        _check_bounds(value, f.metadata, key_path)
        kwargs[name] = value
    obj = cls(**kwargs)
    check = getattr(obj, "validate", None)
    if check is not None:
        check(path.rstrip(": ") if path.endswith(" ") else path)
    return obj


def to_dict(obj: Any) -> Any:
    """Plain-data view of a params dataclass (for logging and fingerprints)."""
    return dataclasses.asdict(obj) if dataclasses.is_dataclass(obj) else obj


def flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}, for MLflow params."""
    out: dict[str, Any] = {}
    if isinstance(d, dict):
        for k, v in d.items():
            out.update(flatten(v, f"{prefix}{k}."))
        return out
    out[prefix.rstrip(".")] = d
    return out


def deep_merge(base: dict, override: dict, path: str = "") -> dict:
    """Recursively apply `override` onto a copy of `base`; override keys must exist in base."""
    out = copy.deepcopy(base)
    for k, v in (override or {}).items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v, f"{path}{k}.")
        else:
            out[k] = copy.deepcopy(v)
    return out


class _UniqueKeyLoader(yaml.SafeLoader):
    """safe_load that refuses a key given twice in one mapping (PyYAML keeps the last one silently;
    DVC's parser rejects the file, so the two would disagree about the params), and reads YAML 1.2
    floats such as 1e-3 as numbers, as DVC does (PyYAML's YAML 1.1 wants a dot: 1.0e-3)."""

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise ParamsError(f"key {key!r} appears twice in one mapping (lines {seen[key] + 1} and "
                                  f"{key_node.start_mark.line + 1}); keep one")
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


# YAML 1.2 floats with an exponent and no dot (1e-3, 5E-4, 1e+2); the rest of SafeLoader's float rule as is
_UniqueKeyLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"))


def load_yaml(text: str) -> Any:
    """Parse YAML text as every params read does (duplicate keys refused, YAML 1.2 floats)."""
    return yaml.load(text, Loader=_UniqueKeyLoader)


def read_yaml(path: Path) -> dict:
    """Load a YAML mapping with an error that names the file."""
    if not path.is_file():
        raise ParamsError(f"params file {path} does not exist")
    try:
        data = load_yaml(path.read_text())
    except ParamsError as e:
        raise ParamsError(f"params file {path}: {e}") from None
    except yaml.YAMLError as e:
        raise ParamsError(f"params file {path} is not valid YAML: {e}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ParamsError(f"params file {path} must hold a mapping at top level")
    return data
