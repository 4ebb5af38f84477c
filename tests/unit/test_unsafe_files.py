"""No code runs from a file (issue 13, item 1): checkpoints and model files are loaded with
weights_only=True and CIFAR pickles with a restricted unpickler; a crafted file is refused with
an error naming it, and its payload (here: creating a marker file) never runs."""
import pickle

import pytest
import torch

from nascore.data.sources import DataError, Located, read
from nascore.layout import UnsafeFile, load_checkpoint
from nascore.train.loop import CheckpointHook

from conftest import write_cifar_pickles


class _Payload:
    """Unpickling this creates `marker`: what a malicious file would do instead."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_a_crafted_checkpoint_is_refused_before_anything_runs(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "search.pt"
    torch.save({"fingerprint": "x", "trainer": {"epoch": 1, "evil": _Payload(marker)}}, path)
    with pytest.raises(UnsafeFile, match=r"search\.pt holds more than tensors and plain data \(io\.open\).*Delete"):
        load_checkpoint(path)
    hook = CheckpointHook(path, fingerprint="x")
    with pytest.raises(UnsafeFile, match="nothing in it ran"):
        hook.peek_extra()
    assert not marker.exists()
    # what nascore writes loads: tensors, numbers, strings, nested containers
    good = {"fingerprint": "x", "trainer": {"epoch": 1, "sums": {"loss": torch.tensor(2.0)}, "history": [{"a": 1.5}]},
            "extra": {"mlflow_run_id": "abc"}}
    torch.save(good, path)
    assert load_checkpoint(path)["trainer"]["history"] == [{"a": 1.5}]
    path.write_bytes(b"\x80\x02garbage, not a checkpoint")  # corrupt, not crafted: said so
    with pytest.raises(UnsafeFile, match=r"search\.pt is not a readable checkpoint \(corrupt or truncated"):
        load_checkpoint(path)


def test_a_crafted_cifar_pickle_is_refused_before_anything_runs(tmp_path):
    folder = write_cifar_pickles(tmp_path / "cifar-10-batches-py", train_per_class=2, test_per_class=1)
    marker = tmp_path / "pwned"
    meta = pickle.loads((folder / "batches.meta").read_bytes())
    meta["extra"] = _Payload(marker)
    (folder / "batches.meta").write_bytes(pickle.dumps(meta))
    with pytest.raises(DataError, match=r"batches\.meta is corrupt or not a CIFAR pickle.*io\.open, which a CIFAR batch never holds.*nothing in it was run"):
        read("cifar10", Located("pickle", folder, "CIFAR-10"), (None, None))
    assert not marker.exists()
