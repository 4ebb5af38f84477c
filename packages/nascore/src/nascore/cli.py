"""`nascore` command line: info, check, prepare, search, finetune, evaluate, report, check-metrics.

The DVC pipeline calls these through pipelines/*.py; each validates params before compute.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from nascore.config import ParamsError
from nascore.data.sources import DATASETS, DataError
from nascore.genotype import GenotypeError
from nascore.runtime import CpuIsaError


def _root(args) -> Path:
    return Path(args.root).resolve()


# `nascore info` builds the network to count it: the papers' largest have 20 cells and 48 channels; at these
# caps the largest genotype the loader accepts (nascore.genotype.MAX_NODES...) takes ~2 min and 2 GB on 2 cores
INFO_LAYERS = (3, 50)
INFO_CHANNELS = (2, 96)


def _int_in(bounds: tuple[int, int], what: str, default: str):
    """An argparse type: an integer within `bounds`, else an error naming the range and the default."""
    lo, hi = bounds

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"got {text!r}; allowed: an integer from {lo} to {hi} ({what}); "
                                             f"leave it out for the default ({default})")
        return value
    return parse


def cmd_info(args) -> int:
    """Params (millions, auxiliary head excluded) and MACs (millions) of a derived network."""
    from nascore.evaluate.complexity import count_macs, count_params
    from nascore.genotype import load_genotype
    from nascore.models import create_model
    from nascore.ops import OPS

    genotype = load_genotype(args.genotype, OPS.names())
    imagenet = DATASETS[args.dataset].family == "imagenet"  # imagenette: the ImageNet network, 10 classes
    layers = args.layers if args.layers is not None else (14 if imagenet else 20)
    C = args.channels if args.channels is not None else (48 if imagenet else 36)
    num_classes = {"cifar10": 10, "cifar100": 100, "imagenet": 1000, "imagenette": 10}[args.dataset]
    model = create_model("darts_imagenet" if imagenet else "darts_cifar", genotype=genotype, C=C,
                         layers=layers, num_classes=num_classes, auxiliary=not args.no_auxiliary)
    side = 224 if imagenet else 32
    params = count_params(model)
    aux = sum(p.numel() for n, p in model.named_parameters() if n.startswith("auxiliary_head."))
    print(json.dumps({"genotype": str(args.genotype), "genotype_hash": genotype.canonical_hash(),
                      "dataset": args.dataset, "layers": layers, "channels": C,
                      "auxiliary": not args.no_auxiliary, "input": [3, side, side],
                      "params_m": round(params / 1e6, 4), "auxiliary_params_m": round(aux / 1e6, 4),
                      "macs_m": round(count_macs(model, (3, side, side)) / 1e6, 2),
                      "macs_counted": "conv + linear multiply-accumulates (torch.utils.flop_counter / 2)"},
                     indent=2))
    return 0


def cmd_check(args) -> int:
    """Validate run, data and every method's params under the profile, and each search split against the
    prepared data where prepare has run: no compute, nothing written."""
    from nascore.methods import METHODS
    from nascore.params import load_params

    params = load_params(_root(args), None, args.profile, methods=METHODS.names())
    errors = []
    for name in METHODS.names():
        try:
            method = METHODS[name].from_project(_root(args), args.profile)
            check_data = getattr(method, "check_data", None)  # only methods whose params depend on the data
            if check_data is not None:
                check_data()
        except ParamsError as e:
            errors.append(str(e))
    for e in errors:
        print(f"error: {e}", file=sys.stderr)
    if errors:
        return 2
    print(f"[nascore] params valid under the {params.profile} profile: run, data, {', '.join(METHODS.names())}")
    return 0


def cmd_prepare(args) -> int:
    from nascore.data.prepare import prepare
    from nascore.layout import Layout
    from nascore.methods import METHODS
    from nascore.params import load_params

    params = load_params(_root(args), None, args.profile, methods=METHODS.names())
    out = Layout(_root(args)).prepared(args.dataset)
    manifest = prepare(args.dataset, params.data, _root(args), out)
    if manifest["status"] != "ok":
        print(f"[nascore] {manifest['reason']}")
    else:
        counts = {s: sum(c.values()) for s, c in manifest["counts"].items()}
        print(f"[nascore] {args.dataset}: {manifest['display_name']} from {manifest['source']['path']}: "
              f"{counts} -> {out}")
    return 0


def _method(args):
    from nascore.methods import METHODS

    return METHODS[args.method].from_project(_root(args), args.profile)


def cmd_search(args) -> int:
    print(json.dumps(_method(args).search(args.stage), indent=2, default=str))
    return 0


def cmd_finetune(args) -> int:
    print(json.dumps(_method(args).finetune(args.dataset), indent=2, default=str))
    return 0


def cmd_evaluate(args) -> int:
    print(json.dumps(_method(args).evaluate(args.dataset), indent=2, default=str))
    return 0


def cmd_variance(args) -> int:
    print(json.dumps(_method(args).variance(), indent=2, default=str))
    return 0


def cmd_report(args) -> int:
    path = _method(args).report()
    print(f"[nascore] wrote {path}")
    return 0


def cmd_summary(args) -> int:
    from nascore.methods import METHODS
    from nascore.params import load_params
    from nascore.report.summary import write_summary

    params = load_params(_root(args), None, args.profile, methods=METHODS.names())
    path = write_summary(_root(args), list(METHODS.names()), params.run.seed)
    print(f"[nascore] wrote {path}")
    return 0


def cmd_check_metrics(args) -> int:
    from nascore.regression import check_metrics

    return check_metrics(Path(args.baseline), Path(args.metrics), Path(args.bands))


def build_parser() -> argparse.ArgumentParser:
    from nascore.methods import METHODS
    from nascore.methods.openset_rl import PROTOCOLS

    p = argparse.ArgumentParser(prog="nascore", description=__doc__.splitlines()[0])
    p.add_argument("--root", default=".", help="project root holding params/ (default: .)")
    p.add_argument("--profile", default=None, help="override params/run.yaml's profile")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("info", help="params and MACs of a genotype's evaluation network")
    s.add_argument("genotype", help="a genotype JSON file or a published name (darts_v1, darts_v2)")
    s.add_argument("--dataset", choices=DATASETS.names(), default="cifar10",
                   help="which evaluation network: CIFAR (32 px) or ImageNet family (224 px), and its classes")
    s.add_argument("--layers", type=_int_in(INFO_LAYERS, "cells", "20 CIFAR, 14 ImageNet"), default=None,
                   help=f"cells, {INFO_LAYERS[0]} to {INFO_LAYERS[1]} (default 20 CIFAR, 14 ImageNet)")
    s.add_argument("--channels", type=_int_in(INFO_CHANNELS, "initial channels", "36 CIFAR, 48 ImageNet"),
                   default=None,
                   help=f"initial channels, {INFO_CHANNELS[0]} to {INFO_CHANNELS[1]} (default 36 / 48)")
    s.add_argument("--no-auxiliary", action="store_true", help="build without the auxiliary head")
    s.set_defaults(fn=cmd_info)

    s = sub.add_parser("check", help="validate every method's params (and search splits, once prepared) "
                                     "without computing; exit 2 with the errors")
    s.add_argument("--profile", default=argparse.SUPPRESS, help="as the global --profile")
    s.set_defaults(fn=cmd_check)

    s = sub.add_parser("prepare", help="materialise a dataset's tensors and manifest")
    s.add_argument("--dataset", choices=DATASETS.names(), required=True)
    s.set_defaults(fn=cmd_prepare)

    stages = (("search", cmd_search, False, "a method's architecture search (its genotype under runs/<method>/)"),
              ("finetune", cmd_finetune, True, "train the searched network on a dataset"),
              ("evaluate", cmd_evaluate, True, "test the fine-tuned network (reports/metrics/<method>-<dataset>.json)"),
              ("variance", cmd_variance, False, "seed variance: run.variance's N searches x M trainings "
                                                 "(reports/metrics/<method>-variance.json)"),
              ("report", cmd_report, False, "reports/<method>.md: ours beside the paper's, with figures"))
    for name, fn, needs_ds, what in stages:
        s = sub.add_parser(name, help=what)
        s.add_argument("--method", choices=METHODS.names(), required=True)
        if needs_ds:
            s.add_argument("--dataset", choices=[*DATASETS.names(), *PROTOCOLS], required=True,
                           help="a dataset, or an open-set protocol (openset_rl)")
        if name == "search":
            s.add_argument("--stage", default="search",
                           help="search stage of a multi-stage method (stacnas: stage1, stage2)")
        s.set_defaults(fn=fn)

    s = sub.add_parser("summary", help="reports/summary.md: every method's metrics beside the papers' numbers")
    s.set_defaults(fn=cmd_summary)

    s = sub.add_parser("check-metrics", help="compare metrics against baselines with tolerance bands")
    s.add_argument("--baseline", required=True, help="baseline metrics JSON (committed)")
    s.add_argument("--metrics", required=True, help="folder of fresh metrics JSON files")
    s.add_argument("--bands", default="params/regression.yaml", help="tolerance bands YAML")
    s.set_defaults(fn=cmd_check_metrics)
    return p


def _pin_cpu_kernels(args) -> None:
    """run.cpu_isa, applied before the command computes anything (a stage may touch tensors before
    its setup(): stacnas' stage 2 reads stage 1's result first)."""
    if (_root(args) / "params" / "run.yaml").is_file():
        from nascore.params import load_params
        from nascore.runtime import pin_cpu_isa

        pin_cpu_isa(load_params(_root(args), None, args.profile).run.cpu_isa)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        _pin_cpu_kernels(args)
        return args.fn(args)
    except (ParamsError, DataError, GenotypeError, CpuIsaError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # tracking unavailable, divergence: name it, no traceback wall
        from nascore.lock import StageBusy
        from nascore.tracking import TrackingUnavailable
        from nascore.train import Divergence

        if isinstance(e, (TrackingUnavailable, Divergence, StageBusy)):
            print(f"error: {e}", file=sys.stderr)
            return 3
        raise


if __name__ == "__main__":
    sys.exit(main())
