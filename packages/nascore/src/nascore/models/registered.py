"""The trained network as an MLflow model that can be registered: a pyfunc model whose loader is this
module. Its files are data only: network.json (which builder of NETWORKS, its arguments, the architecture:
the genotype for DARTS-family networks) and state_dict.pt, read back with torch.load(weights_only=True).
Loading rebuilds the network with the installed nascore; nothing in the model's folder is unpickled or
run as code (mlflow.pytorch pickles the whole module, and a pyfunc PythonModel is cloudpickled)."""
from __future__ import annotations

import json
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from nascore.registry import Registry

SCHEMA = "nascore.network/1"
SPEC_FILE, WEIGHTS_FILE = "network.json", "state_dict.pt"

# builder name -> (architecture JSON, **kwargs) -> nn.Module; a method whose network is built another way
# registers its builder here, next to the ones below
NETWORKS: Registry[Callable[..., nn.Module]] = Registry("network builder")


@NETWORKS.register("darts")
def _darts(architecture: dict[str, Any], *, model: str, **kwargs: Any) -> nn.Module:
    """A DARTS-family evaluation network (nascore.models) from its genotype."""
    from nascore.genotype import Genotype
    from nascore.models import create_model

    return create_model(model, genotype=Genotype.from_json(architecture), **kwargs)


@NETWORKS.register("chain")
def _chain(architecture: dict[str, Any], **kwargs: Any) -> nn.Module:
    """A vgg_rl chain network."""
    from nascore.spaces.chain import ChainArchitecture, ChainNet

    return ChainNet(ChainArchitecture.from_json(architecture), **kwargs)


@NETWORKS.register("block")
def _block(architecture: dict[str, Any], **kwargs: Any) -> nn.Module:
    """An openset_rl block-unit network."""
    from nascore.spaces.block import BlockArchitecture, BlockNet

    return BlockNet(BlockArchitecture.from_json(architecture), **kwargs)


@dataclass(frozen=True)
class NetworkSpec:
    """How to build a network, as data: a NETWORKS builder, the architecture's JSON and the builder's arguments."""

    builder: str
    architecture: dict[str, Any]
    kwargs: dict[str, Any] = field(default_factory=dict)

    def build(self) -> nn.Module:
        return NETWORKS[self.builder](self.architecture, **self.kwargs)

    def to_json(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "builder": self.builder, "architecture": self.architecture, "kwargs": self.kwargs}

    @staticmethod
    def from_json(data: dict[str, Any]) -> "NetworkSpec":
        if data.get("schema") != SCHEMA:
            raise ValueError(f"{SPEC_FILE}: schema {data.get('schema')!r}, expected {SCHEMA!r}")
        return NetworkSpec(data["builder"], data["architecture"], data.get("kwargs", {}))


class LoadedNetwork:
    """What mlflow.pyfunc.load_model wraps: `network` in eval mode on the CPU (get_raw_model() returns it);
    predict takes uint8 images N x 3 x H x W (as the prepared tensors hold them), normalises them with the
    training mean and std, and returns the logits."""

    def __init__(self, network: nn.Module, spec: NetworkSpec, inputs: dict[str, Any]) -> None:
        self.network, self.spec, self.inputs = network.eval(), spec, inputs

    def get_raw_model(self) -> nn.Module:
        return self.network

    def predict(self, model_input: Any, params: dict[str, Any] | None = None) -> np.ndarray:
        from nascore.data.augment import normalize

        x = torch.as_tensor(np.asarray(model_input))
        with torch.no_grad():
            return self.network(normalize(x, self.inputs["mean"], self.inputs["std"])).numpy()


def _load_pyfunc(data_path: str) -> LoadedNetwork:
    """MLflow's entry point for a pyfunc model with loader_module=nascore.models.registered."""
    folder = Path(data_path)
    meta = json.loads((folder / SPEC_FILE).read_text())
    spec = NetworkSpec.from_json(meta["network"])
    network = spec.build()
    network.load_state_dict(torch.load(folder / WEIGHTS_FILE, map_location="cpu", weights_only=True))
    return LoadedNetwork(network, spec, meta["inputs"])


def pip_requirements() -> list[str]:
    """Pinned explicitly, so log_model does not infer them (inference loads the model in a subprocess)."""
    from importlib.metadata import version

    return [f"torch=={torch.__version__.split('+')[0]}", f"numpy=={np.__version__}", f"nascore=={version('nascore')}"]


def log_network(network: nn.Module | dict[str, torch.Tensor], spec: NetworkSpec, *, image_shape: tuple[int, int, int], num_classes: int,
                mean: list[float], std: list[float], name: str = "model",
                tags: dict[str, str] | None = None) -> Any:
    """Log `network` (built as `spec` says, or its state dict) into the active run as the MLflow model
    `name`; returns its ModelInfo (model_uri, for mlflow.register_model)."""
    import mlflow
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    signature = ModelSignature(inputs=Schema([TensorSpec(np.dtype(np.uint8), (-1, *image_shape))]),
                               outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, num_classes))]))
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        # an input example would make MLflow load the model and predict with it, at every log: the signature says it
        warnings.filterwarnings("ignore", message=".*input example was not provided")
        folder = Path(tmp) / "network"
        folder.mkdir()
        (folder / SPEC_FILE).write_text(json.dumps({
            "network": spec.to_json(), "num_classes": num_classes,
            "inputs": {"shape": list(image_shape), "dtype": "uint8", "mean": list(mean), "std": list(std)}}, indent=1))
        weights = network.state_dict() if isinstance(network, nn.Module) else network
        torch.save({k: v.detach().to("cpu", memory_format=torch.contiguous_format) for k, v in weights.items()},
                   folder / WEIGHTS_FILE)
        return mlflow.pyfunc.log_model(name=name, loader_module=__name__, data_path=str(folder),
                                       pip_requirements=pip_requirements(), signature=signature,
                                       tags=tags, metadata={"nascore_network": spec.builder})
