"""The controller search loop: failed children, threshold stop, and population-parallel runs
under torch.distributed (gloo, 2 processes) identical to one process."""
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from nascore.controllers import CONTROLLER_UPDATES, LSTMPolicy, TokenGrammar
from nascore.strategies.rl import ControllerSearch

TARGET = [2, 0, 1, 2, 1]


class Toy(TokenGrammar):
    vocab = ("a", "b", "c")

    @property
    def length(self):
        return 5

    def legal(self, prefix):
        return [0, 1, 2]


def evaluate(tokens, cid):
    """Reward = matches with TARGET; strings starting 'a a' diverge."""
    if tokens[:2] == [0, 0]:
        return {"status": "failed", "reason": "loss is nan"}
    return {"status": "ok", "reward": sum(a == b for a, b in zip(tokens, TARGET)) / 5}


def make(seed=0, iterations=6, **kw):
    torch.manual_seed(seed)
    policy = LSTMPolicy(Toy(), hidden=16)
    upd = CONTROLLER_UPDATES["reinforce"](policy, lr=0.05, baseline_decay=0.8, entropy_weight=1e-3, grad_clip=5.0)
    return ControllerSearch(policy, upd, iterations=iterations, children=4, seed=seed, failed_reward=-1.0, **kw)


def test_failed_children_get_the_failed_reward_and_the_search_goes_on():
    s = make(iterations=10)
    records = s.run(evaluate)
    assert len(records) == 40 and len(s.iteration_log) == 10
    failed = [r for r in records if r["status"] == "failed"]
    assert failed and all(r["reward"] == -1.0 and r["reason"] == "loss is nan" for r in failed)
    assert s.iteration_log[-1]["reward_mean"] > s.iteration_log[0]["reward_mean"]


def test_reward_threshold_stops_early():
    s = make(iterations=50, reward_threshold=0.6)
    records = s.run(evaluate)
    assert s.iteration < 50 and max(r["reward"] for r in records) >= 0.6


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _worker(rank, port, out):
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        s = make()
        records = s.run(evaluate)
        if rank == 0:
            torch.save({"records": records, "policy": s.policy.state_dict(), "log": s.iteration_log}, out)
    finally:
        dist.destroy_process_group()


def test_population_parallel_equals_single_process(tmp_path):
    out = tmp_path / "dist.pt"
    mp.spawn(_worker, args=(_free_port(), str(out)), nprocs=2, join=True)
    got = torch.load(out, weights_only=False)
    s = make()
    records = s.run(evaluate)
    strip = lambda rs: [(r["child"], r["tokens"], r["reward"], r["status"]) for r in rs]  # noqa: E731
    assert strip(got["records"]) == strip(records)
    assert got["log"] == s.iteration_log
    ref = s.policy.state_dict()
    assert all(torch.equal(got["policy"][k], ref[k]) for k in ref)


def test_screening_counts_distinct_architectures():
    from nascore.methods.rl_base import children_summary

    kids = [{"arch_hash": "a", "status": "ok", "reward": 0.5}, {"arch_hash": "a", "status": "screened", "reward": 0.1},
            {"arch_hash": "b", "status": "screened", "reward": 0.2}, {"arch_hash": "b", "status": "screened", "reward": 0.1}]
    s = children_summary(kids)
    assert (s["distinct_architectures"], s["screening_passed"], s["screening_pass_rate"]) == (2, 1, 0.5)
    assert (s["children"], s["children_passed"], s["best_arch_hash"]) == (4, 1, "a")
