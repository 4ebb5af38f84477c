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
