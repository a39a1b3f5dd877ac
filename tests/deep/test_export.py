"""Exported policies: the TorchScript file (plain ``torch.jit.load``) and the ONNX file
(``onnxruntime``) act as sbil's learner does, within float32 rounding, and say what they are."""

from __future__ import annotations

import importlib.metadata
import json
import sys

import numpy as np
import pytest
import torch

from sbil.deep.export import ExportError, export_learner
from sbil.deep.learners import Learner, LearnerConfig
from sbil.deep.networks import StackedMLP

# torch.jit.load warns that TorchScript is deprecated: the file is plain TorchScript all the same.
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")

U32 = float(np.finfo(np.float32).eps) / 2  # float32 unit roundoff, 2**-24


def _learner(algo="bc", *, seed=0, obs_dim=4, n_actions=3, hidden=(64, 64), normalised=True):
    """A learner with seeded random weights (export needs no training)."""
    net = StackedMLP.initialized(
        [torch.Generator().manual_seed(seed)],
        in_dim=obs_dim,
        hidden_sizes=hidden,
        out_dim=n_actions,
    )
    rng = np.random.default_rng(seed)
    config = LearnerConfig(algo=algo, hidden_sizes=hidden, normalize_observations=normalised)
    return Learner(
        config=config,
        seed=seed,
        obs_dim=obs_dim,
        n_actions=n_actions,
        obs_mean=rng.normal(size=obs_dim) if normalised else np.zeros(obs_dim),
        obs_std=rng.uniform(0.5, 3, size=obs_dim) if normalised else np.ones(obs_dim),
        policy_state=net.model_state(0),
        env_id="CartPole-v1" if (obs_dim, n_actions) == (4, 2) else None,
    )


def reference_logits(learner: Learner, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The learner's logits in float64, and a bound on the error of any float32 evaluation.

    The bound runs through the network with the standard dot-product bound (Higham, Accuracy
    and Stability of Numerical Algorithms, eq. 3.5): a sum of ``n`` float32 products is off by
    at most ``gamma_n * sum |w_i h_i|`` with ``gamma_n = n u / (1 - n u)``, whatever the order
    of the summation; errors of a layer's input pass through ``|W|`` (ELU is 1-Lipschitz);
    ``exp(z) - 1`` adds ``4 u (1 + |elu(z)|)`` for ``z < 0``; normalising and dividing by the
    temperature add a few ``u`` relative. The bound returned is twice that first-order sum.
    """
    state = {k: v[0].double().numpy() for k, v in learner.policy_state.items()}
    x = obs.astype(np.float64)
    h = (x - learner.obs_mean.astype(np.float64)) / learner.obs_std.astype(np.float64)
    err = 3 * U32 * np.abs(h)
    n_layers = len(learner.config.hidden_sizes) + 1
    for layer in range(n_layers):
        weight, bias = state[f"weight{layer}"], state[f"bias{layer}"][0]
        n = weight.shape[0] + 1
        gamma = n * U32 / (1 - n * U32)
        z = h @ weight + bias
        err = err @ np.abs(weight) + gamma * ((np.abs(h) + err) @ np.abs(weight) + np.abs(bias))
        if layer < n_layers - 1:
            h = np.where(z > 0, z, np.expm1(np.minimum(z, 0)))
            err = err + np.where(z < 0, 4 * U32 * (1 + np.abs(h)), 0.0)
        else:
            h = z
    temperature = learner.config.policy_temperature
    return h / temperature, 2 * (err / temperature + 2 * U32 * np.abs(h / temperature))


def _decided_observations(learner, n=1000, *, scale=2.0, seed=0) -> np.ndarray:
    """``n`` observations whose best action beats the second by more than any float32 evaluation
    can be off (where two actions tie within rounding, which one wins is not sbil's to fix)."""
    rng = np.random.default_rng(seed)
    candidates = (rng.normal(size=(2 * n, learner.obs_dim)) * scale).astype(np.float32)
    logits, bound = reference_logits(learner, candidates)
    top = np.sort(logits, axis=1)
    decided = top[:, -1] - top[:, -2] > 2 * bound.max(axis=1)
    assert decided.sum() >= n, "too many near-ties among the candidate observations"
    return candidates[decided][:n]


def _run_onnx(path, obs):
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (name,) = [i.name for i in session.get_inputs()]
    (out,) = session.run(None, {name: obs})
    return out


CASES = [
    pytest.param(dict(algo="bc", normalised=True), id="bc-normalised"),
    pytest.param(dict(algo="edm", normalised=False, n_actions=2), id="edm-raw-observations"),
    pytest.param(dict(algo="iqlearn", normalised=False, hidden=(32,)), id="iqlearn-temperature"),
]


@pytest.mark.parametrize("kwargs", CASES)
def test_torchscript_files_act_as_sbil_on_1000_observations(tmp_path, kwargs):
    learner = _learner(**kwargs)
    written = export_learner(learner, tmp_path / "ts", "torchscript")
    obs = _decided_observations(learner)
    reference, bound = reference_logits(learner, obs)
    policy = torch.jit.load(str(written.policy))
    logits_net = torch.jit.load(str(written.logits))
    with torch.no_grad():
        actions = policy(torch.from_numpy(obs)).numpy()
        logits = logits_net(torch.from_numpy(obs)).numpy()
        one = policy(torch.from_numpy(obs[:1])).numpy()
    assert actions.dtype == np.int64 and actions.shape == (1000,)
    np.testing.assert_array_equal(actions, learner(obs))
    np.testing.assert_array_equal(one, learner(obs[:1]))
    assert logits.dtype == np.float32 and logits.shape == (1000, learner.n_actions)
    assert (np.abs(logits - reference) <= bound).all()
    # sbil's own float32 logits meet the bound too, and it is far below the logits' scale.
    assert (np.abs(learner.logits(obs) - reference) <= bound).all()
    assert bound.max() < 1e-3 * max(1.0, np.abs(reference).max())


@pytest.mark.parametrize("kwargs", CASES)
def test_onnx_files_act_as_sbil_on_1000_observations_in_onnxruntime(tmp_path, kwargs):
    pytest.importorskip("onnxruntime")
    learner = _learner(**kwargs)
    written = export_learner(learner, tmp_path / "onnx", "onnx")
    obs = _decided_observations(learner)
    reference, bound = reference_logits(learner, obs)
    actions = _run_onnx(written.policy, obs)
    logits = _run_onnx(written.logits, obs)
    assert actions.dtype == np.int64 and actions.shape == (1000,)
    np.testing.assert_array_equal(actions, learner(obs))
    np.testing.assert_array_equal(_run_onnx(written.policy, obs[:1]), learner(obs[:1]))
    assert logits.dtype == np.float32 and logits.shape == (1000, learner.n_actions)
    assert (np.abs(logits - reference) <= bound).all()


@pytest.mark.parametrize("format", ["torchscript", "onnx"])
def test_ties_go_to_the_lowest_action_as_in_sbil(tmp_path, format):
    if format == "onnx":
        pytest.importorskip("onnxruntime")
    learner = _learner(n_actions=3)
    state = dict(learner.policy_state)
    state["weight2"] = torch.zeros_like(state["weight2"])
    state["bias2"] = torch.tensor([[[0.5, 0.5, 0.5]]])  # every action ties
    tied = Learner(
        config=learner.config,
        seed=0,
        obs_dim=4,
        n_actions=3,
        obs_mean=learner.obs_mean,
        obs_std=learner.obs_std,
        policy_state=state,
    )
    written = export_learner(tied, tmp_path / format, format)
    obs = np.random.default_rng(0).normal(size=(50, 4)).astype(np.float32)
    if format == "onnx":
        actions = _run_onnx(written.policy, obs)
    else:
        actions = torch.jit.load(str(written.policy))(torch.from_numpy(obs)).numpy()
    np.testing.assert_array_equal(actions, np.zeros(50))
    np.testing.assert_array_equal(tied(obs), np.zeros(50))


@pytest.mark.parametrize("format", ["torchscript", "onnx"])
def test_the_sidecar_describes_the_files_spaces_and_provenance(tmp_path, format):
    if format == "onnx":
        onnx = pytest.importorskip("onnx")
    learner = _learner(n_actions=2, normalised=True)
    training = {"git_commit": "abc123", "run": "/runs/bc", "run_config": {"spec": {"x": 1}}}
    written = export_learner(learner, tmp_path / "out", format, training=training)
    doc = json.loads(written.sidecar.read_text())
    suffix = ".pt" if format == "torchscript" else ".onnx"
    assert doc["format"] == "sbil-policy" and doc["version"] == 1
    assert doc["export_format"] == format
    assert doc["files"] == {"actions": f"policy{suffix}", "logits": f"logits{suffix}"}
    assert sorted(p.name for p in written.folder.iterdir()) == sorted(
        ["policy.json", f"policy{suffix}", f"logits{suffix}"]
    )
    assert doc["input"] == {"name": "observations", "shape": [None, 4], "dtype": "float32"}
    assert doc["outputs"]["actions"] == {"name": "actions", "shape": [None], "dtype": "int64"}
    assert doc["outputs"]["logits"]["shape"] == [None, 2]
    assert doc["action_space"] == {"type": "Discrete", "n": 2, "start": 0}
    space = doc["observation_space"]
    assert space["type"] == "Box" and space["shape"] == [4] and space["dtype"] == "float32"
    assert space["low"][0] == pytest.approx(-4.8) and space["low"][1] is None  # -inf: null
    assert doc["normalization"]["inside_model"] is True
    np.testing.assert_array_equal(np.float32(doc["normalization"]["obs_mean"]), learner.obs_mean)
    np.testing.assert_array_equal(np.float32(doc["normalization"]["obs_std"]), learner.obs_std)
    assert doc["temperature"] == 1.0
    assert doc["training"]["algo"] == "bc" and doc["training"]["seed"] == 0
    assert doc["training"]["env_id"] == "CartPole-v1"
    assert doc["training"]["learner_config"] == learner.config.to_dict()
    assert doc["training"]["git_commit"] == "abc123"
    assert doc["training"]["run_config"] == {"spec": {"x": 1}}
    assert doc["exported_by"]["versions"]["torch"] == importlib.metadata.version("torch")
    json.loads(written.sidecar.read_text(), parse_constant=_refuse)  # strict JSON
    # The model files carry the same sidecar.
    if format == "torchscript":
        extra = {"policy.json": ""}
        torch.jit.load(str(written.policy), _extra_files=extra)
        assert json.loads(extra["policy.json"]) == doc
    else:
        props = {p.key: p.value for p in onnx.load(str(written.policy)).metadata_props}
        assert json.loads(props["sbil.policy"]) == doc


def _refuse(constant):
    raise AssertionError(f"the sidecar holds {constant}, which is not JSON")


def test_unnormalised_learners_record_no_normalisation_and_iqlearn_its_temperature(tmp_path):
    learner = _learner("iqlearn", normalised=False)
    doc = json.loads(export_learner(learner, tmp_path, "torchscript").sidecar.read_text())
    assert doc["normalization"] is None
    assert doc["temperature"] == learner.config.soft_q_temperature == 0.01
    unregistered = doc["observation_space"]
    assert unregistered["low"] == [None] * 4 and unregistered["high"] == [None] * 4


def test_export_errors_are_clear(tmp_path, monkeypatch):
    learner = _learner()
    with pytest.raises(ExportError, match="must be torchscript or onnx, got 'tflite'"):
        export_learner(learner, tmp_path, "tflite")
    with pytest.raises(ExportError, match="needs a Learner"):
        export_learner("not a learner", tmp_path, "torchscript")
    monkeypatch.setitem(sys.modules, "onnx", None)  # as if not installed
    with pytest.raises(ExportError, match=r'needs onnx.*`pip install "sbil\[export\]"`'):
        export_learner(learner, tmp_path / "o", "onnx")
    assert not (tmp_path / "o").exists()
    export_learner(learner, tmp_path / "ts", "torchscript")  # torchscript needs only torch
