"""Genotypes: the derived architecture as versioned JSON, with a canonical hash.

Schema `nascore.genotype/1`:
    {"schema": "nascore.genotype/1", "space": "darts",
     "cells": {"normal": {"edges": [[op, input], ...], "concat": [2, 3, 4, 5]},
               "reduce": {...}},
     "meta": {...}}                      # free-form provenance (method, run id, ...)
Edges are listed node by node, `edges_per_node` per node (DARTS: 2). A multi-level
genotype names its normal cells per level (normal_low / normal_mid / normal_high) and may
name each reduction (reduce_1 / reduce_2); `cell_for` picks the cell for a position.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Iterable

SCHEMA = "nascore.genotype/1"
LEVELS = ("low", "mid", "high")
# Caps on what a genotype file may hold, far above any published cell (DARTS: 2 cells of 4 nodes of 2 edges,
# a file of ~1 KB); a file past them is refused before it is parsed or built into a network.
MAX_FILE_BYTES = 1_000_000
MAX_CELLS = 16
MAX_NODES = 8
MAX_EDGES_PER_NODE = 4


class GenotypeError(ValueError):
    """A genotype file or object is malformed."""


@dataclass(frozen=True)
class CellGenotype:
    """One cell: (op, input index) edges grouped per intermediate node, and the concat list."""

    edges: tuple[tuple[str, int], ...]
    concat: tuple[int, ...]
    edges_per_node: int = 2

    @property
    def nodes(self) -> list[tuple[tuple[str, int], ...]]:
        k = self.edges_per_node
        return [self.edges[i:i + k] for i in range(0, len(self.edges), k)]

    def canonical(self) -> dict[str, Any]:
        # Edges into one node are summed, so their order carries no meaning.
        nodes = [sorted([list(e) for e in node]) for node in self.nodes]
        return {"nodes": nodes, "concat": sorted(self.concat)}

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"edges": [list(e) for e in self.edges], "concat": list(self.concat)}
        if self.edges_per_node != 2:
            out["edges_per_node"] = self.edges_per_node
        return out


@dataclass(frozen=True)
class Genotype:
    """A derived architecture: named cells of one search space."""

    cells: dict[str, CellGenotype]
    space: str = "darts"
    meta: dict[str, Any] = field(default_factory=dict, compare=False)

    def cell_for(self, reduction: bool, level: int = 0, reduction_index: int = 0) -> CellGenotype:
        """The cell used at a position: by kind, level (0..2) and reduction number (0..1)."""
        name = f"reduce_{reduction_index + 1}" if reduction else f"normal_{LEVELS[level]}"
        generic = "reduce" if reduction else "normal"
        cell = self.cells.get(name) or self.cells.get(generic)
        if cell is None:
            raise GenotypeError(f"genotype has no '{name}' (nor '{generic}') cell; it has {sorted(self.cells)}")
        return cell

    def to_json(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "space": self.space,
                "cells": {k: c.to_json() for k, c in sorted(self.cells.items())},
                "meta": self.meta}

    def canonical_hash(self) -> str:
        """Short sha256 of the order-independent form; the same architecture, the same hash."""
        canon = {"space": self.space,
                 "cells": {k: c.canonical() for k, c in sorted(self.cells.items())}}
        blob = json.dumps(canon, sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()[:12]

    def save(self, path: Path) -> None:
        from nascore.layout import write_text

        write_text(path, json.dumps(self.to_json(), indent=2) + "\n")

    @staticmethod
    def from_json(data: Any, allowed_ops: Iterable[str] | None = None,
                  source: str = "genotype") -> "Genotype":
        """Parse and validate; names the cell, edge and op when something is wrong."""
        if not isinstance(data, dict):
            raise GenotypeError(f"{source}: expected a JSON object, got {type(data).__name__}")
        schema = data.get("schema")
        if schema != SCHEMA:
            raise GenotypeError(f"{source}: schema is {schema!r}; this nascore reads {SCHEMA!r}")
        space = data.get("space", "darts")
        if not isinstance(space, str) or not space:
            raise GenotypeError(f"{source}: 'space' must be a search space's name (e.g. \"darts\"), got {space!r}")
        meta = data.get("meta")
        if meta is not None and not isinstance(meta, dict):
            raise GenotypeError(f"{source}: 'meta' must be an object (or null), got {type(meta).__name__}")
        cells_raw = data.get("cells")
        if not isinstance(cells_raw, dict) or not cells_raw:
            raise GenotypeError(f"{source}: 'cells' must be a non-empty object")
        if len(cells_raw) > MAX_CELLS:
            raise GenotypeError(f"{source}: {len(cells_raw)} cells; at most {MAX_CELLS} "
                                f"(nascore.genotype.MAX_CELLS): normal/reduce, or normal_<level> and reduce_<n>")
        allowed = set(allowed_ops) if allowed_ops is not None else None
        cells = {}
        for name, c in cells_raw.items():
            cells[name] = _parse_cell(c, allowed, f"{source}: cell '{name}'")
        if not any(n.startswith("normal") for n in cells) or not any(n.startswith("reduce") for n in cells):
            raise GenotypeError(f"{source}: needs at least one normal and one reduce cell, got {sorted(cells)}")
        return Genotype(cells=cells, space=space, meta=dict(meta or {}))


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _parse_cell(c: Any, allowed: set[str] | None, where: str) -> CellGenotype:
    if not isinstance(c, dict) or "edges" not in c or "concat" not in c:
        raise GenotypeError(f"{where}: expected an object with 'edges' and 'concat'")
    k = c.get("edges_per_node", 2)
    if not _is_int(k) or not 1 <= k <= MAX_EDGES_PER_NODE:
        raise GenotypeError(f"{where}: edges_per_node must be an integer from 1 to {MAX_EDGES_PER_NODE} "
                            f"(nascore.genotype.MAX_EDGES_PER_NODE), got {k!r}; leave it out for DARTS' 2")
    if not isinstance(c["edges"], (list, tuple)) or not c["edges"]:
        raise GenotypeError(f"{where}: 'edges' must be a non-empty list of [op_name, input_index], "
                            f"got {c['edges']!r:.80}")
    if len(c["edges"]) > k * MAX_NODES:
        raise GenotypeError(f"{where}: {len(c['edges'])} edges make {-(-len(c['edges']) // k)} nodes of {k} edges; "
                            f"a cell has at most {MAX_NODES} nodes (nascore.genotype.MAX_NODES; DARTS' have 4)")
    edges = []
    for i, e in enumerate(c["edges"]):
        if not (isinstance(e, (list, tuple)) and len(e) == 2 and isinstance(e[0], str) and e[0]
                and _is_int(e[1])):
            raise GenotypeError(f"{where}: edge {i} must be [op_name, input_index], got {e!r:.80}")
        op, src = e
        if allowed is not None and op not in allowed:
            raise GenotypeError(
                f"{where}: edge {i} uses unknown op '{op}'; allowed ops: {', '.join(sorted(allowed))}")
        node = i // k
        if not 0 <= src < node + 2:
            raise GenotypeError(
                f"{where}: edge {i} (node {node + 2}) reads state {src}; allowed 0..{node + 1}")
        edges.append((op, src))
    if len(edges) % k:
        raise GenotypeError(f"{where}: {len(edges)} edges is not a multiple of edges_per_node={k}")
    n_states = len(edges) // k + 2
    concat = c["concat"]
    if (not isinstance(concat, (list, tuple)) or not concat
            or any(not _is_int(j) or not 2 <= j < n_states for j in concat)):
        # not the inputs 0, 1: a reduction cell's inputs keep the previous resolution, its nodes halve it
        raise GenotypeError(f"{where}: concat must be a non-empty list of the cell's nodes 2..{n_states - 1}, "
                            f"got {concat!r:.80}")
    return CellGenotype(edges=tuple(edges), concat=tuple(concat), edges_per_node=k)


def known_genotypes() -> list[str]:
    """Names of the published genotypes shipped with nascore."""
    return sorted(p.name[:-5] for p in resources.files("nascore.genotypes").iterdir()
                  if p.name.endswith(".json"))


def load_genotype(name_or_path: str | Path, allowed_ops: Iterable[str] | None = None) -> Genotype:
    """A genotype from a JSON file or a published name (darts_v1, darts_v2)."""
    path = Path(name_or_path)
    if path.suffix == ".json" or path.exists():
        text, source = _read_file(path), str(path)
    else:
        name = str(name_or_path)
        if name not in known_genotypes():
            raise GenotypeError(
                f"'{name}' is neither a genotype file nor a known genotype; known: {', '.join(known_genotypes())}")
        text = resources.files("nascore.genotypes").joinpath(f"{name}.json").read_text()
        source = f"nascore.genotypes/{name}.json"
    try:
        data = json.loads(text)
    except RecursionError:
        raise GenotypeError(f"{source}: JSON nested too deeply to be a genotype") from None
    except ValueError as e:  # JSONDecodeError, or an integer of more digits than Python converts
        raise GenotypeError(f"{source}: not valid JSON ({e})") from None
    return Genotype.from_json(data, allowed_ops, source)


def _read_file(path: Path) -> str:
    """A genotype file's text: a regular file of at most MAX_FILE_BYTES, UTF-8."""
    if not path.exists():
        raise GenotypeError(f"genotype file {path} does not exist")
    if not path.is_file():
        kind = "a directory" if path.is_dir() else "not a regular file (a device, pipe or socket)"
        raise GenotypeError(f"genotype file {path} is {kind}; give a genotype JSON file or a published name "
                            f"({', '.join(known_genotypes())})")
    too_big = (f"genotype file {path} is larger than {MAX_FILE_BYTES} bytes (nascore.genotype.MAX_FILE_BYTES; "
               f"a DARTS genotype is ~1 KB): not a genotype")
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise GenotypeError(too_big)
        with path.open("rb") as f:
            blob = f.read(MAX_FILE_BYTES + 1)  # the size on disk may have changed since stat
    except OSError as e:
        raise GenotypeError(f"genotype file {path} cannot be read: {e.strerror}") from None
    if len(blob) > MAX_FILE_BYTES:
        raise GenotypeError(too_big)
    try:
        return blob.decode("utf-8")
    except UnicodeDecodeError:
        raise GenotypeError(f"genotype file {path} is not UTF-8 text: not a genotype JSON file") from None
