"""MLflow helpers: resolve the store, fail fast when it cannot be reached, one experiment per
method, genotypes as JSON artifacts plus a `genotype_hash` tag."""
from __future__ import annotations

import json
import os
import socket
import urllib.error
import urllib.request
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, Iterator

from nascore.config import flatten
from nascore.genotype import Genotype
from nascore.lock import alive
from nascore.tracking.schema import default_tags
from nascore.train.loop import Hook, Trainer

DEFAULT_URI = "sqlite:///mlflow/mlflow.db"
# MLflow's own HTTP settings, bounded: its defaults (7 retries, backoff factor 2, 120 s timeout) hang a
# stage ~12 minutes when a team server dies, then again in the error handler. An exported value wins.
HTTP_BOUNDS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
               "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}


class TrackingUnavailable(RuntimeError):
    """The tracking server cannot be reached; raised before any compute starts."""


def resolve_uri(from_params: str | None) -> str:
    """$MLFLOW_TRACKING_URI, else params' run.tracking_uri, else the embedded sqlite store."""
    return os.environ.get("MLFLOW_TRACKING_URI") or from_params or DEFAULT_URI


def check_reachable(uri: str, timeout: float = 5.0) -> None:
    """HTTP servers must answer /health; sqlite stores must have a writable folder."""
    if uri.startswith(("http://", "https://")):
        url = uri.rstrip("/") + "/health"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp:
                if resp.status >= 400:
                    raise TrackingUnavailable(f"MLflow server {uri} answered {resp.status} on /health")
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as e:
            raise TrackingUnavailable(
                f"MLflow server {uri} cannot be reached ({e}); start it, fix MLFLOW_TRACKING_URI, "
                f"or unset it to use the embedded store {DEFAULT_URI}") from None
    elif uri.startswith("sqlite:///"):
        db = Path(uri[len("sqlite:///"):])
        try:
            db.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise TrackingUnavailable(f"cannot create the MLflow store folder {db.parent}: {e}") from None


def configure(from_params: str | None = None) -> str:
    """Point MLflow at the resolved store after checking it answers; returns the URI."""
    import mlflow

    uri = resolve_uri(from_params)
    for name, value in HTTP_BOUNDS.items():
        os.environ.setdefault(name, value)
    check_reachable(uri)
    mlflow.set_tracking_uri(uri)
    return uri


def lost_server(error: BaseException, what: str) -> TrackingUnavailable | None:
    """`error` turned into one clear error when it came from a team server that stopped answering
    (None when the server still answers, or the store is not a server)."""
    import mlflow

    uri = mlflow.get_tracking_uri()
    if isinstance(error, TrackingUnavailable) or not uri.startswith(("http://", "https://")):
        return None
    try:
        check_reachable(uri, timeout=3.0)
    except TrackingUnavailable:
        return TrackingUnavailable(
            f"MLflow server {uri} stopped answering during {what} ({type(error).__name__}). The stage's work "
            "is kept (its checkpoint under runs/<method>/checkpoints/): restart the server and rerun the stage "
            "to resume it")
    return None


def end_abandoned_runs(experiment: str, run_name: str | None = None) -> list[str]:
    """Mark KILLED the RUNNING runs of `experiment` (named `run_name`, when given) that a process of this
    host started and that is gone (killed before it could end its run); returns their ids. Runs of
    other hosts, or of live processes, are left alone: they may still be running."""
    import mlflow

    exp = mlflow.get_experiment_by_name(experiment)
    if exp is None:
        return []
    query = "attributes.status = 'RUNNING'" + (f" and attributes.run_name = '{run_name}'" if run_name else "")
    client = mlflow.MlflowClient()
    ended = []
    for run in client.search_runs([exp.experiment_id], filter_string=query, max_results=1000):
        tags = run.data.tags
        if tags.get("nascore.host") != socket.gethostname() or not tags.get("nascore.pid", "").isdigit():
            continue
        if alive(int(tags["nascore.pid"])):
            continue
        client.set_tag(run.info.run_id, "ended_by", "a later start: the process that ran it was gone")
        client.set_terminated(run.info.run_id, "KILLED")
        ended.append(run.info.run_id)
    return ended


def experiment_id(name: str) -> str:
    """Get or create the method's experiment; local stores keep artifacts under mlflow/artifacts."""
    import mlflow

    exp = mlflow.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    uri = mlflow.get_tracking_uri()
    location = None
    if uri.startswith("sqlite:///"):
        db = Path(uri[len("sqlite:///"):]).resolve()
        location = (db.parent / "artifacts" / name).as_uri()
    return mlflow.create_experiment(name, artifact_location=location)


def run_name(experiment: str, stage: str) -> str:
    """A run's name says its method: `darts/search`, `darts/finetune-cifar10`."""
    return f"{experiment}/{stage}"


@contextmanager
def start_run(experiment: str, stage: str, *, tags: dict[str, str] | None = None,
              params: dict[str, Any] | None = None, run_id: str | None = None,
              nested: bool = False, parent_run_id: str | None = None) -> Iterator[Any]:
    """A run named `<experiment>/<stage>` in the method's experiment; resumes `run_id` when given (after
    a kill). `parent_run_id` nests it under a run that has ended (an evaluate under its finetune) without
    reopening that run. Ends FAILED with the error as a tag when the body raises."""
    import mlflow

    exp = experiment_id(experiment)
    name = run_name(experiment, stage)
    if not run_id:  # starting over: an earlier run of this stage whose process was killed is ended KILLED
        end_abandoned_runs(experiment, name)
    kwargs = ({"run_id": run_id} if run_id else
              {"run_name": name, "experiment_id": exp, "parent_run_id": parent_run_id})
    run = mlflow.start_run(nested=nested, **kwargs)
    try:
        mlflow.set_tags({**default_tags(experiment), **(tags or {}),
                         "nascore.host": socket.gethostname(), "nascore.pid": str(os.getpid())})
        if params and not run_id:
            flat = {k: (v if v is not None else "null") for k, v in flatten(params).items()}
            items = list(flat.items())
            for i in range(0, len(items), 90):
                mlflow.log_params(dict(items[i:i + 90]))
        yield run
    except BaseException as e:
        try:
            mlflow.set_tag("error", f"{type(e).__name__}: {e}"[:4000])
            mlflow.end_run(status="FAILED" if not isinstance(e, KeyboardInterrupt) else "KILLED")
        except Exception:  # the server itself is gone: the stage's error says so, the rerun ends the run
            if mlflow.active_run() is not None:
                with suppress(Exception):
                    mlflow.end_run(status="FAILED")  # forgets the run here even when the server cannot record it
        raise
    else:
        mlflow.end_run()


def log_genotype(genotype: Genotype, artifact: str = "genotype.json") -> str:
    """The genotype as a JSON artifact and its canonical hash as a tag; returns the hash."""
    import mlflow

    h = genotype.canonical_hash()
    mlflow.log_dict(genotype.to_json(), artifact)
    mlflow.set_tag("genotype_hash", h)
    return h


def log_prepared_input(manifest: dict[str, Any], context: str, tags: dict[str, str] | None = None) -> None:
    """The prepared dataset a run read, as an MLflow dataset input of the active run: named as prepared
    (`cifar10`), digest from the manifest's checksum of its tensors, source the manifest's (relative) source,
    `context` training / validation / test."""
    import mlflow
    from mlflow.data.dataset_source_registry import get_dataset_source_from_json
    from mlflow.data.meta_dataset import MetaDataset

    # a "local" source holds a plain string: no network, no file read; the path is as the manifest names it
    # (data/raw/..., ../shared/data/..., $NASREPRO_DATA/...), never a machine's absolute path
    source = get_dataset_source_from_json(json.dumps({"uri": manifest["source"]["path"]}), source_type="local")
    dataset = MetaDataset(source, name=manifest["dataset"], digest=manifest["sha256"][:16])
    split = "test" if context == "test" else "train"
    images = sum(manifest.get("counts", {}).get(split, {}).values())
    mlflow.log_input(dataset, context=context, tags={"source_kind": str(manifest["source"].get("kind")),
                                                     "images": str(images), "classes": str(len(manifest["classes"])),
                                                     **(tags or {})})


def log_to_run(run_id: str, metrics: dict[str, float]) -> None:
    """Metrics into a run that has ended, without reopening it (reopening moves its end time, so its
    duration would cover work that is not its own)."""
    import time

    import mlflow
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    mlflow.MlflowClient().log_batch(run_id, metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()])


class MLflowHook(Hook):
    """Logs each epoch's metrics at step = epoch number."""

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix

    def after_epoch(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        import mlflow

        numbers = {f"{self.prefix}{k}": float(v) for k, v in metrics.items()
                   if k != "epoch" and isinstance(v, (int, float))}
        mlflow.log_metrics(numbers, step=int(metrics["epoch"]))
