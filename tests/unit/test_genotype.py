"""Genotype schema, validation and canonical hash."""
import json

import pytest

from nascore.genotype import CellGenotype, Genotype, GenotypeError, known_genotypes, load_genotype
from nascore.spaces import PRIMITIVES


def test_published_genotypes_load():
    assert {"darts_v1", "darts_v2"} <= set(known_genotypes())
    g = load_genotype("darts_v2", PRIMITIVES)
    assert g.cells["normal"].edges[-1] == ("dil_conv_3x3", 2)
    assert len(g.cells["reduce"].nodes) == 4


def test_hash_ignores_edge_order_within_a_node_but_not_the_architecture():
    g = load_genotype("darts_v2")
    normal = g.cells["normal"]
    swapped = [e for node in normal.nodes for e in reversed(node)]
    g2 = Genotype({**g.cells, "normal": CellGenotype(tuple(swapped), normal.concat)})
    assert g2.canonical_hash() == g.canonical_hash()
    assert load_genotype("darts_v1").canonical_hash() != g.canonical_hash()
    changed = list(normal.edges)
    changed[0] = ("sep_conv_5x5", changed[0][1])
    g3 = Genotype({**g.cells, "normal": CellGenotype(tuple(changed), normal.concat)})
    assert g3.canonical_hash() != g.canonical_hash()


def test_json_round_trip(tmp_path):
    g = load_genotype("darts_v1")
    g.save(tmp_path / "g.json")
    back = load_genotype(tmp_path / "g.json", PRIMITIVES)
    assert back == g and back.canonical_hash() == g.canonical_hash()


def test_unknown_op_is_named(tmp_path):
    data = load_genotype("darts_v2").to_json()
    data["cells"]["normal"]["edges"][3] = ["sep_conv_9x9", 1]
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(GenotypeError, match=r"cell 'normal': edge 3 uses unknown op 'sep_conv_9x9'; allowed ops: .*dil_conv_3x3"):
        load_genotype(path, PRIMITIVES)


def test_bad_input_index_and_schema(tmp_path):
    data = load_genotype("darts_v2").to_json()
    data["cells"]["reduce"]["edges"][0] = ["max_pool_3x3", 2]
    with pytest.raises(GenotypeError, match=r"edge 0 \(node 2\) reads state 2; allowed 0..1"):
        Genotype.from_json(data, PRIMITIVES)
    with pytest.raises(GenotypeError, match=r"schema is 'v0'"):
        Genotype.from_json({**load_genotype("darts_v2").to_json(), "schema": "v0"})


def test_unknown_name_lists_known():
    with pytest.raises(GenotypeError, match=r"known: darts_v1, darts_v2"):
        load_genotype("darts_v3")


def test_multilevel_cell_lookup():
    g = load_genotype("darts_v2")
    other = load_genotype("darts_v1").cells["normal"]
    ml = Genotype({"normal_low": g.cells["normal"], "normal_mid": other, "normal_high": other,
                   "reduce": g.cells["reduce"]})
    assert ml.cell_for(False, level=0) is g.cells["normal"]
    assert ml.cell_for(False, level=1) is other
    assert ml.cell_for(True, reduction_index=1) is g.cells["reduce"]


def _cell(**change):
    cell = load_genotype("darts_v2").to_json()["cells"]["normal"]
    return {**cell, **change}


@pytest.mark.parametrize("cell, expected", [
    (_cell(edges_per_node=0), r"edges_per_node must be an integer from 1 to 4 .*got 0; leave it out for DARTS' 2"),
    (_cell(edges_per_node="x"), r"edges_per_node must be an integer from 1 to 4 .*got 'x'"),
    (_cell(edges_per_node=True), r"edges_per_node must be an integer .*got True"),
    (_cell(edges_per_node=2.0), r"edges_per_node must be an integer .*got 2.0"),
    (_cell(edges=[]), r"'edges' must be a non-empty list of \[op_name, input_index\], got \[\]"),
    (_cell(edges=[["sep_conv_3x3", True]] * 8), r"edge 0 must be \[op_name, input_index\], got \['sep_conv_3x3', True\]"),
    (_cell(concat=[]), r"concat must be a non-empty list of the cell's nodes 2..5, got \[\]"),
    (_cell(concat=[0, 2]), r"concat must be a non-empty list of the cell's nodes 2..5, got \[0, 2\]"),
    (_cell(concat="2345"), r"concat must be a non-empty list of the cell's nodes 2..5, got '2345'"),
    (_cell(edges=[["skip_connect", 0]] * 18), r"18 edges make 9 nodes of 2 edges; a cell has at most 8 nodes"),
])
def test_malformed_cells_are_named(tmp_path, cell, expected):
    data = load_genotype("darts_v2").to_json()
    data["cells"]["normal"] = cell
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(GenotypeError, match=rf"^{path}: cell 'normal': {expected}"):
        load_genotype(path, PRIMITIVES)


def test_top_level_fields_and_the_cell_cap(tmp_path):
    good = load_genotype("darts_v2").to_json()
    with pytest.raises(GenotypeError, match=r"'space' must be a search space's name \(e.g. \"darts\"\), got 5"):
        Genotype.from_json({**good, "space": 5})
    with pytest.raises(GenotypeError, match=r"'meta' must be an object \(or null\), got list"):
        Genotype.from_json({**good, "meta": [1]})
    many = {"reduce": good["cells"]["reduce"], **{f"normal_{i}": good["cells"]["normal"] for i in range(20)}}
    with pytest.raises(GenotypeError, match=r"21 cells; at most 16 \(nascore.genotype.MAX_CELLS\)"):
        Genotype.from_json({**good, "cells": many})


def test_oversized_and_deeply_nested_files_are_refused_before_parsing(tmp_path):
    big = tmp_path / "big.json"
    big.write_text(json.dumps(load_genotype("darts_v2").to_json()) + " " * 1_000_000)
    with pytest.raises(GenotypeError, match=r"big.json is larger than 1000000 bytes \(nascore.genotype.MAX_FILE_BYTES"):
        load_genotype(big)
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 500_000 + "]" * 500_000)  # under the size cap, past Python's recursion limit
    with pytest.raises(GenotypeError, match=r"deep.json: JSON nested too deeply to be a genotype"):
        load_genotype(deep)


def test_a_path_that_is_not_a_regular_file_is_named(tmp_path):
    with pytest.raises(GenotypeError, match=r"genotype file .* is a directory; give a genotype JSON file or a "
                                            r"published name \(darts_v1, darts_v2\)"):
        load_genotype(tmp_path)
    with pytest.raises(GenotypeError, match=r"genotype file /dev/zero is not a regular file \(a device"):
        load_genotype("/dev/zero")
    with pytest.raises(GenotypeError, match=r"genotype file .*missing.json does not exist"):
        load_genotype(tmp_path / "missing.json")
