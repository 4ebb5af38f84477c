"""torch.compile of the long trainings (run.compile): in place (checkpoints keep their keys), the
per-epoch drop-path ramp never recompiles, compiled training follows eager training, and bad
settings are refused before any compute."""
import pytest
import torch
import torch._dynamo
from timm.scheduler import CosineLRScheduler
from torch._dynamo.utils import counters

from nascore.config import ParamsError, from_dict
from nascore.genotype import load_genotype
from nascore.models import create_model
from nascore.runtime import RunParams, compile_network
from nascore.train.tasks import SupervisedTask

CPU = torch.device("cpu")


def _net(seed=0):
    torch.manual_seed(seed)
    return create_model("darts_cifar", genotype=load_genotype("darts_v2"), C=4, num_classes=3, layers=3,
                        auxiliary=True)


def _task(net, epochs, drop_path_prob):
    opt = torch.optim.SGD(net.parameters(), 0.05, momentum=0.9, weight_decay=3e-4)
    sched = CosineLRScheduler(opt, t_initial=epochs, lr_min=0.0, t_in_epochs=True)  # as the fine-tuning
    return SupervisedTask(net, opt, sched, epochs=epochs, aux_weight=0.4, grad_clip=5.0,
                          drop_path_prob=drop_path_prob)


def _batches(n, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(4, 3, 16, 16, generator=g), torch.randint(0, 3, (4,), generator=g)) for _ in range(n)]


def test_auto_compiles_on_cuda_only_and_off_never():
    net = _net()
    assert compile_network(net, RunParams(compile="auto"), CPU) is False
    assert compile_network(net, RunParams(compile="off"), torch.device("cuda")) is False
    assert net._compiled_call_impl is None  # still the eager forward
    assert compile_network(net, RunParams(compile="on", compile_backend="aot_eager"), CPU) is True
    assert net._compiled_call_impl is not None


def test_inductor_mode_with_another_backend_is_refused_before_compute():
    with pytest.raises(ParamsError, match=r"run\.compile_mode: 'reduce-overhead' is an inductor mode.*aot_eager"):
        from_dict(RunParams, {"compile": "on", "compile_mode": "reduce-overhead", "compile_backend": "aot_eager"},
                  "run")
    with pytest.raises(ParamsError, match=r"run\.compile: got 'yes'"):
        from_dict(RunParams, {"compile": "yes"}, "run")


def test_drop_path_ramp_does_not_recompile():
    """The trainer sets a new drop-path probability every epoch; a float in the graph would be a
    new graph each epoch (and past torch's cache limit, eager again)."""
    torch._dynamo.reset()
    counters.clear()
    net = _net()
    compile_network(net, RunParams(compile="on", compile_backend="aot_eager"), CPU)
    task = _task(net, epochs=5, drop_path_prob=0.3)
    for epoch in range(5):
        task.new_epoch(epoch)
        for batch in _batches(2, seed=epoch):
            task.step(batch)
    assert net.drop_path_prob == pytest.approx(0.3 * 4 / 5)
    # one graph with drop-path off (epoch 0), one with it on (every later epoch, any probability)
    assert counters["stats"]["unique_graphs"] == 2


def test_compiled_training_follows_eager_and_keeps_state_dict_keys():
    eager, compiled = _net(), _net()
    compile_network(compiled, RunParams(compile="on", compile_backend="aot_eager"), CPU)
    assert list(compiled.state_dict()) == list(eager.state_dict())
    losses = {}
    for name, net in (("eager", eager), ("compiled", compiled)):
        task = _task(net, epochs=2, drop_path_prob=0.2)
        torch.manual_seed(5)
        out = []
        for epoch in range(2):
            task.new_epoch(epoch)
            for batch in _batches(3, seed=epoch):
                out.append(float(task.step(batch)["loss"]))
        losses[name] = out
    assert losses["compiled"] == pytest.approx(losses["eager"], rel=1e-4, abs=1e-5)
    for (key, a), b in zip(eager.state_dict().items(), compiled.state_dict().values()):  # BN stats included
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5, msg=key)
    fresh = _net(seed=9)
    fresh.load_state_dict(compiled.state_dict())  # a compiled run's checkpoint loads into an eager net
