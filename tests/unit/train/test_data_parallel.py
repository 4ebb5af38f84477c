"""Data parallelism: two gloo processes, each with half of every batch, train to the same
weights as one process on whole batches (a model without batch statistics, equal shards)."""
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from nascore.data.loader import TensorBatches
from nascore.train import Trainer
from nascore.train.tasks import SupervisedTask


class _Sched:
    def step(self, epoch):
        pass

    def state_dict(self):
        return {}

    def load_state_dict(self, s):
        pass


def _train(rank=0, world=1):
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 3, 4, 4, generator=g), torch.randint(0, 5, (64,), generator=g)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(48, 16), nn.Tanh(), nn.Linear(16, 5))
    model = nn.parallel.DistributedDataParallel(net) if world > 1 else net
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    task = SupervisedTask(model, opt, _Sched(), epochs=3, aux_weight=0.0, grad_clip=100.0, drop_path_prob=0.0)
    batches = TensorBatches(x, y, 16, lambda b, _: b, shuffle=True, seed=0, drop_last=True, rank=rank, world=world)
    history = Trainer(task, batches, 3, seed=0, data_parallel=world > 1).run()
    return net.state_dict(), history


def _worker(rank, port, out):
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        state, history = _train(rank, 2)
        torch.save({"state": state, "history": history}, f"{out}.{rank}")
    finally:
        dist.destroy_process_group()


def test_two_processes_match_one(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = str(tmp_path / "ddp")
    mp.spawn(_worker, args=(port, out), nprocs=2, join=True)
    r0, r1 = (torch.load(f"{out}.{r}", weights_only=False) for r in (0, 1))
    single, history = _train()
    for k in single:
        assert torch.equal(r0["state"][k], r1["state"][k])  # DDP keeps the replicas identical
        assert torch.allclose(r0["state"][k], single[k], atol=1e-5)  # and equal to one process
    # epoch metrics are reduced over both processes: the same as one process saw
    for a, b in zip(r0["history"], history):
        assert abs(a["train_loss"] - b["train_loss"]) < 1e-5 and a["train_acc"] == b["train_acc"]
