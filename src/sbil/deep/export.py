"""Policies that leave sbil: one learner as a TorchScript or ONNX file with a JSON sidecar.

:func:`export_learner` writes a learner's policy twice, as files any runtime loads without
sbil, and a sidecar that says what they are::

    FOLDER/policy.{pt,onnx}   observations [n, obs_dim] float32 -> actions [n] int64
                              (greedy: argmax of the logits, ties to the lowest action)
    FOLDER/logits.{pt,onnx}   observations [n, obs_dim] float32 -> logits [n, n_actions]
                              float32, pi(a|s) = softmax(logits)[a]
    FOLDER/policy.json        spaces, normalisation, temperature, training provenance

Both networks take *raw* observations: the learner's observation normalisation and its policy
temperature (IQ-Learn's ``Q / tau``) are inside them, so they compute exactly
:meth:`Learner.logits <sbil.deep.learner.Learner.logits>` and
:meth:`Learner.__call__ <sbil.deep.learner.Learner.__call__>`. The sidecar is also embedded in
each model file (TorchScript: the extra file ``policy.json``; ONNX: the metadata property
``sbil.policy``). Every file is written atomically, the sidecar last, so a folder with
``policy.json`` is complete. ``docs/export.md`` describes the files and the sidecar's schema.

Example:
    >>> from sbil.deep.checkpoint import load_learner
    >>> from sbil.deep.export import export_learner
    >>> export_learner(load_learner("runs/bc/seed-0"), "bc-onnx", "onnx")  # doctest: +SKIP
    >>> import onnxruntime  # doctest: +SKIP
    >>> session = onnxruntime.InferenceSession("bc-onnx/policy.onnx")  # doctest: +SKIP
    >>> (actions,) = session.run(None, {"observations": obs})  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import logging
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from sbil.deep.learner import Learner
from sbil.files import provenance, write_bytes_atomic, write_json_atomic

#: The export formats, as ``sbil export --format`` names them.
FORMATS: tuple[str, ...] = ("torchscript", "onnx")
SIDECAR_FORMAT = "sbil-policy"
SIDECAR_VERSION = 1
SIDECAR_FILE = "policy.json"
#: The metadata key of the sidecar inside an ONNX file.
ONNX_METADATA_KEY = "sbil.policy"
#: The names of the networks' input and outputs (ONNX graph names, sidecar keys).
INPUT, ACTIONS, LOGITS = "observations", "actions", "logits"
_SUFFIX = {"torchscript": ".pt", "onnx": ".onnx"}
_ONNX_PACKAGES = ("onnx", "onnxscript")


class ExportError(ValueError):
    """A policy that cannot be exported as asked (format, packages, source, destination)."""


def check_format(format: str) -> str:
    """Return ``format`` if it is one of :data:`FORMATS`, else raise :class:`ExportError`."""
    if format not in FORMATS:
        raise ExportError(f"The export format must be torchscript or onnx, got {format!r}.")
    return format


def require_onnx() -> None:
    """Raise :class:`ExportError`, naming the extra to install, if ONNX export cannot run."""
    missing = []
    for name in _ONNX_PACKAGES:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise ExportError(
            f"Exporting to ONNX needs {' and '.join(missing)} (sbil's 'export' extra); install "
            'it with `pip install "sbil[export]"` (torchscript needs only torch).'
        )


# --- the networks: raw observations in, logits or greedy actions out ----------------------------


class LogitsNetwork(nn.Module):
    """``logits = f((obs - obs_mean) / obs_std) / temperature``: a learner's policy network as
    plain ``Linear``/``ELU`` layers, ``obs[n, obs_dim] -> [n, n_actions]`` float32."""

    def __init__(self, learner: Learner) -> None:
        super().__init__()
        state = learner.policy_state
        n_layers = len(learner.config.hidden_sizes) + 1
        layers: list[nn.Module] = []
        for layer in range(n_layers):
            weight = state[f"weight{layer}"][0]  # [in, out]: StackedMLP computes x @ W + b
            bias = state[f"bias{layer}"][0, 0]
            linear = nn.Linear(*weight.shape)
            with torch.no_grad():
                linear.weight.copy_(weight.T)
                linear.bias.copy_(bias)
            layers.append(linear)
            if layer < n_layers - 1:
                layers.append(nn.ELU())
        self.layers = nn.Sequential(*layers)
        self.register_buffer("obs_mean", torch.from_numpy(learner.obs_mean.copy()))
        self.register_buffer("obs_std", torch.from_numpy(learner.obs_std.copy()))
        self.temperature = float(learner.config.policy_temperature)
        self.eval().requires_grad_(False)

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        return self.layers((observations - self.obs_mean) / self.obs_std) / self.temperature


class GreedyPolicy(nn.Module):
    """``actions = argmax_a logits[:, a]`` (ties to the lowest action), ``[n]`` int64."""

    def __init__(self, network: LogitsNetwork) -> None:
        super().__init__()
        self.network = network
        self.eval()

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        return self.network(observations).argmax(dim=1)


class _LogitsAndActions(nn.Module):
    """Both outputs in one graph: ONNX is exported once and split into two models."""

    def __init__(self, network: LogitsNetwork) -> None:
        super().__init__()
        self.network = network
        self.eval()

    def forward(self, observations: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.network(observations)
        return logits, logits.argmax(dim=1)


# --- the sidecar ---------------------------------------------------------------------------------


def sidecar(learner: Learner, format: str, *, training: dict | None = None) -> dict:
    """The JSON-ready description of an export of ``learner`` (schema: ``docs/export.md``).

    Args:
        learner: the exported learner.
        format: ``"torchscript"`` or ``"onnx"``.
        training: extra provenance for the ``training`` block (the run, its commit and
            config, the checkpoint), merged over what the learner itself records.
    """
    from sbil.deep.policy import observation_space, space_to_dict

    check_format(format)
    suffix = _SUFFIX[format]
    n, d, k = None, learner.obs_dim, learner.n_actions  # None: the batch size is free
    config = learner.config
    onnx_packages = _ONNX_PACKAGES if format == "onnx" else ()
    versions = ("gymnasium", "numpy", "sbil", "torch", *onnx_packages)
    return {
        "format": SIDECAR_FORMAT,
        "version": SIDECAR_VERSION,
        "export_format": format,
        "files": {ACTIONS: f"policy{suffix}", LOGITS: f"logits{suffix}"},
        "input": {"name": INPUT, "shape": [n, d], "dtype": "float32"},
        "outputs": {
            ACTIONS: {"name": ACTIONS, "shape": [n], "dtype": "int64"},
            LOGITS: {"name": LOGITS, "shape": [n, k], "dtype": "float32"},
        },
        "observation_space": space_to_dict(observation_space(learner.env_id, d)),
        "action_space": {"type": "Discrete", "n": k, "start": 0},
        "normalization": (
            {
                "inside_model": True,
                "obs_mean": learner.obs_mean.tolist(),
                "obs_std": learner.obs_std.tolist(),
            }
            if config.normalize_observations
            else None
        ),
        "temperature": float(config.policy_temperature),
        "action_rule": "argmax of the logits, ties to the lowest action",
        "training": {
            "algo": config.algo,
            "env_id": learner.env_id,
            "seed": learner.seed,
            "learner_config": config.to_dict(),
            **(training or {}),
        },
        "exported_by": provenance(versions),
    }


# --- writing -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LearnerExport:
    """What :func:`export_learner` wrote.

    Attributes:
        folder: the export folder.
        format: ``"torchscript"`` or ``"onnx"``.
        policy: the greedy-action file.
        logits: the logits file.
        sidecar: ``policy.json``.
    """

    folder: Path
    format: str
    policy: Path
    logits: Path
    sidecar: Path


def export_learner(
    learner: Learner,
    folder: str | os.PathLike,
    format: str,
    *,
    training: dict | None = None,
) -> LearnerExport:
    """Write ``learner``'s policy as ``format`` files with their sidecar into ``folder``.

    Args:
        learner: a trained :class:`~sbil.deep.learner.Learner`.
        folder: created if needed; earlier export files in it are replaced.
        format: ``"torchscript"`` (needs only torch) or ``"onnx"`` (the ``export`` extra).
        training: provenance for the sidecar's ``training`` block (see :func:`sidecar`).

    Raises:
        ExportError: for an unknown format, a missing ONNX package, or not a learner.
    """
    if not isinstance(learner, Learner):
        raise ExportError(f"export_learner needs a Learner, got {type(learner).__name__}.")
    check_format(format)
    if format == "onnx":
        require_onnx()
    folder = Path(folder)
    doc = sidecar(learner, format, training=training)
    text = json.dumps(doc, indent=2) + "\n"
    network = LogitsNetwork(learner)
    if format == "torchscript":
        models = {
            ACTIONS: _torchscript_bytes(GreedyPolicy(network), text),
            LOGITS: _torchscript_bytes(network, text),
        }
    else:
        models = _onnx_bytes(network, text)
    paths = {}
    for output, data in models.items():
        paths[output] = write_bytes_atomic(folder / doc["files"][output], data)
    sidecar_path = write_json_atomic(folder / SIDECAR_FILE, doc)
    return LearnerExport(folder, format, paths[ACTIONS], paths[LOGITS], sidecar_path)


@contextlib.contextmanager
def _quiet_exporters() -> Iterator[None]:
    """Silence the exporters' deprecation notices and progress logs (sbil prints one line)."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def _torchscript_bytes(module: nn.Module, sidecar_text: str) -> bytes:
    with _quiet_exporters():
        scripted = torch.jit.script(module)
        buffer = io.BytesIO()
        torch.jit.save(scripted, buffer, _extra_files={SIDECAR_FILE: sidecar_text})
    return buffer.getvalue()


def _onnx_bytes(network: LogitsNetwork, sidecar_text: str) -> dict[str, bytes]:
    """``{"actions": policy model, "logits": logits model}``, serialised ONNX.

    One ``torch.onnx.export`` (the ``torch.export``-based exporter) of a graph with both
    outputs, split by ``onnx.utils.Extractor`` into the two models, each checked by
    ``onnx.checker``; the batch dimension stays free (``batch``).
    """
    import onnx
    from onnx.utils import Extractor

    example = torch.zeros(2, network.obs_mean.shape[0])
    with _quiet_exporters(), contextlib.redirect_stdout(io.StringIO()):
        program = torch.onnx.export(
            _LogitsAndActions(network),
            (example,),
            dynamo=True,
            verbose=False,
            input_names=[INPUT],
            output_names=[LOGITS, ACTIONS],
            dynamic_shapes=({0: torch.export.Dim("batch")},),
        )
    combined = program.model_proto
    out = {}
    for output in (ACTIONS, LOGITS):
        model = Extractor(combined).extract_model([INPUT], [output])
        model.producer_name, model.producer_version = "sbil", _sbil_version()
        model.doc_string = f"sbil policy: {INPUT} -> {output}; see metadata {ONNX_METADATA_KEY}"
        del model.metadata_props[:]
        entry = model.metadata_props.add()
        entry.key, entry.value = ONNX_METADATA_KEY, sidecar_text
        onnx.checker.check_model(model, full_check=True)
        out[output] = model.SerializeToString()
    return out


def _sbil_version() -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version("sbil")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"
