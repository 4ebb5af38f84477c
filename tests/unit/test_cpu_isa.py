"""run.cpu_isa: the CPU kernels pinned before a process computes, or a clear error when too late."""
import platform
import subprocess
import sys

import pytest

from conftest import REPO

X86 = platform.machine().lower() in ("x86_64", "amd64")
SRC = str(REPO / "packages" / "nascore" / "src")


def _python(code: str) -> subprocess.CompletedProcess:
    env = {"PYTHONPATH": SRC, "PATH": "/usr/bin:/bin"}  # no pin inherited from this process
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.skipif(not X86, reason="the ISA pins are x86 settings")
def test_a_stage_computes_with_avx2_kernels_on_any_x86_cpu():
    """setup() pins ATen, oneDNN and MKL before the first computation: a conv's weight gradient is
    then the same as with the three variables exported before Python started."""
    body = ("import torch, hashlib;"
            "torch.manual_seed(0); x = torch.randn(8, 16, 12, 12); w = torch.randn(32, 16, 3, 3, requires_grad=True);"
            "l = torch.nn.functional.linear(torch.nn.functional.conv2d(x, w).flatten(1), torch.randn(10, 3200));"
            "l.square().sum().backward();"
            "print(torch.backends.cpu.get_cpu_capability(), hashlib.sha1(w.grad.numpy().tobytes()).hexdigest())")
    pinned = _python("from nascore.runtime import RunParams, setup; setup(RunParams(cpu_isa='avx2'));" + body)
    assert pinned.returncode == 0, pinned.stderr[-2000:]
    exported = subprocess.run([sys.executable, "-c", body], capture_output=True, text=True, timeout=300,
                              env={"PATH": "/usr/bin:/bin", "ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2",
                                   "MKL_CBWR": "AVX2"})
    assert pinned.stdout.split()[0] == "AVX2" and pinned.stdout == exported.stdout


@pytest.mark.skipif(not X86, reason="the ISA pins are x86 settings")
def test_a_pin_after_the_first_computation_is_refused():
    late = _python("import torch; torch.ones(3).add(1);"
                   "cap = torch.backends.cpu.get_cpu_capability();"
                   "from nascore.runtime import pin_cpu_isa\n"
                   "try:\n    pin_cpu_isa('avx2')\nexcept RuntimeError as e:\n    print('refused:', e)\n"
                   "else:\n    print('pinned' if cap == 'AVX2' else 'silently unpinned')")
    assert late.returncode == 0, late.stderr[-2000:]
    # a CPU whose best is AVX2 is already right; any other refuses with the fix named
    assert late.stdout.startswith("pinned") or (
        "refused: run.cpu_isa is 'avx2' but torch's CPU kernels already run" in late.stdout
        and "ATEN_CPU_CAPABILITY=avx2" in late.stdout)


def test_native_and_unknown_values():
    from nascore.config import ParamsError, from_dict
    from nascore.runtime import RunParams

    assert from_dict(RunParams, {"cpu_isa": "native"}, "run").cpu_isa == "native"
    with pytest.raises(ParamsError, match="cpu_isa"):
        from_dict(RunParams, {"cpu_isa": "avx512"}, "run")


@pytest.mark.skipif(not X86, reason="the ISA pins are x86 settings")
def test_every_cli_command_computes_pinned(tmp_path):
    """The CLI pins before the command runs: `info` never calls setup(), and a stage may touch tensors
    before its setup() (stacnas' stage 2 reads stage 1's result first)."""
    (tmp_path / "params").mkdir()
    for f in ("run.yaml", "data.yaml", "profiles.yaml"):
        (tmp_path / "params" / f).write_text((REPO / "params" / f).read_text())
    out = _python("import contextlib, io, torch\nfrom nascore.cli import main\n"
                  f"with contextlib.redirect_stdout(io.StringIO()):\n    rc = main(['--root', {str(tmp_path)!r}, 'info', 'darts_v2'])\n"
                  "print(rc, torch.backends.cpu.get_cpu_capability())")
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["0", "AVX2"]
