"""Exporting a fitted mixture as an ONNX graph that scores rows as ``gmm score`` does: ``gmm export``, ``to_onnx``.

The graph is built here with ``onnx.helper`` from the mixture's parameters, not
converted by skl2onnx from the scikit-learn form: skl2onnx's diag and spherical
graphs expand ``|x - mu|^2`` into ``|x|^2 - 2 x.mu + |mu|^2``, which loses the
digits that ``x``'s distance from the origin takes (measured against our scores
on blobs moved 1e3 from the origin: 1.5e-9 off in float64 and 0.8 in float32; at
1e4, 2.6e-7 and 130).  Here every row's whitened difference from each
component's own mean is taken first, ``y_k = U_k^T (x - mu_k)``, so the graph's
scores stay within 1e-12 of ours wherever the data lie (float64).

The graph, for a model of K components on D features (opset 13, IR 7):

- input ``X``: (N, D), float64 or float32, the features in the model's order
  (``feature_names`` in the graph's metadata);
- ``label``: (N,) int64, the most likely component, as ``predict``; -1 for a row
  with NaN or infinity (the graph does not marginalise missing values);
- ``probabilities``: (N, K), each component's responsibility, as ``predict_proba``;
- ``log_likelihood``: (N,), the log density of each row, as ``score_samples``.

A row with NaN or infinity gets NaN probabilities and log-likelihood.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from pipeline import kernels, storage
from pipeline.choices import DTYPES, NanPolicy, covariance_in_words
from pipeline.errors import InputError
from pipeline.kernels.covtypes import layout_of
from pipeline.kernels.estep import log_det_cholesky
from pipeline.model import load_saved_model, package_versions
from pipeline.outputs import resolve, writing
from pipeline.storage import Place

OUTPUTS = ("label", "probabilities", "log_likelihood")
INPUT = "X"
PRODUCER = "gmm-pipeline"
OPSET = 13  # ONNX 1.8's (2020): the lowest with every operator as used here (ReduceSum's, Squeeze's axes as inputs)
INSTALL = "pip install 'gmm-pipeline[onnx]'"
# A serialized ModelProto starts with field 1 (ir_version, a varint) and then field 2 (producer_name): the graphs
# this module writes carry this within their first bytes, which is how an earlier export is told from other files.
_MARK = b"\x12" + bytes([len(PRODUCER)]) + PRODUCER.encode()


class MissingExtraError(InputError, ImportError):
    """The ``onnx`` extra is not installed: an ImportError for the Python API, a user's mistake (exit 2) for
    ``gmm export``."""


def _onnx():
    """The ``onnx`` package, or MissingExtraError saying which extra to install."""
    try:
        import onnx
    except ImportError:
        raise MissingExtraError(f"exporting to ONNX needs the onnx extra, which is not installed: {INSTALL}") from None
    return onnx


def check_outputs(outputs: Sequence[str] | None, what: str) -> list[str]:
    """The outputs asked for, in the graph's order (None: all of :data:`OUTPUTS`).

    ``what`` names the setting in the message (``--outputs``, ``outputs``).

    Raises
    ------
    InputError
        A name that is not one of :data:`OUTPUTS`, or none given.
    """
    if outputs is None:
        return list(OUTPUTS)
    if isinstance(outputs, str):
        outputs = [outputs]
    unknown = [name for name in outputs if name not in OUTPUTS]
    if unknown or not outputs:
        shown = repr(unknown[0]) if unknown else "(nothing)"
        raise InputError(f"{what} {shown}: not one of {', '.join(OUTPUTS)}; give one or more of them")
    return [name for name in OUTPUTS if name in outputs]


def _check_dtype(dtype: Any) -> np.dtype:
    try:
        name = np.dtype(dtype).name
    except TypeError:
        name = None
    if name not in DTYPES:
        raise InputError(f"dtype {dtype!r}: the graph's arithmetic is one of {', '.join(DTYPES)}")
    return np.dtype(name)


def to_onnx(
    params: kernels.Params,
    log_weights: np.ndarray | None,
    feature_names: Sequence[str],
    *,
    nan_policy: str = "error",
    outputs: Sequence[str] | None = None,
    dtype: Any = "float64",
    source: str = "the model",
):
    """The ONNX graph of a mixture: rows ``X`` in, ``label``, ``probabilities``, ``log_likelihood`` out.

    Parameters
    ----------
    params : Params
        The mixture (any covariance type: mclust's models are in the full layout).
    log_weights : ndarray of shape (n_components,) or None
        What the scores add to each component's Gaussian log density in place of ``log(params.weights)`` (a
        variational mixture's expectations), or None.
    feature_names : sequence of str of length n_features
        The columns of ``X``, in order; recorded in the graph's metadata.
    nan_policy : {"error", "drop", "marginalize"}, default="error"
        The model's; ``"marginalize"`` is refused (the graph cannot score a row by its observed values).
    outputs : sequence of str, optional
        Some of :data:`OUTPUTS`; None: all three.
    dtype : {"float64", "float32"} or numpy dtype, default="float64"
        The graph's input and arithmetic.
    source : str
        The model as messages name it.

    Returns
    -------
    onnx.ModelProto
        Checked by ``onnx.checker``.

    Raises
    ------
    MissingExtraError
        The ``onnx`` package is not installed (an ImportError).
    InputError
        An unknown output or dtype, or a model fitted with ``nan_policy="marginalize"`` (a ValueError).
    """
    onnx = _onnx()
    from onnx import TensorProto, helper, numpy_helper

    chosen = check_outputs(outputs, "outputs")
    dtype = _check_dtype(dtype)
    if NanPolicy(nan_policy).marginalizes:
        raise InputError(
            f"{source} was fitted with nan_policy marginalize, which an ONNX graph cannot honour (it would score "
            "rows with missing values wrongly): score those rows with gmm score or the estimator, or export a "
            "model fitted with nan_policy drop or error"
        )
    k, d, covariance_type = params.n_components, params.n_features, params.covariance_type
    layout = layout_of(covariance_type).name
    u = params.precisions_cholesky
    log_w = np.log(params.weights) if log_weights is None else np.asarray(log_weights)
    log_det = np.broadcast_to(log_det_cholesky(u, covariance_type, d), (k,))
    # Each component's log density is offset_k - |y_k|^2 / 2, with y_k = U_k^T (x - mu_k): (K, N, D) at once.
    offset = (log_w + log_det - 0.5 * d * math.log(2.0 * math.pi))[:, None]
    match layout:
        case "full" | "tied":  # (K, N, D) @ (K, D, D) or (D, D)
            whiten, scale = "MatMul", u
        case "diag":  # (K, N, D) * (K, 1, D)
            whiten, scale = "Mul", u[:, None, :]
        case _:  # spherical: (K, N, D) * (K, 1, 1)
            whiten, scale = "Mul", u[:, None, None]
    means = params.means[:, None, :]
    # float32: each mean as a float32 head and the float32 rest.  x - head is exact where x lies within a factor 2
    # of the mean (Sterbenz) and off by float32's epsilon of |x - head| elsewhere; taking the rest away then gives
    # back the mean's digits that float32 drops, which a mean far from the origin in its component's units needs
    head = means.astype(dtype)
    rest = (means - head).astype(dtype) if dtype != np.float64 else None
    constants = {
        "means": head,
        **({} if rest is None else {"means_rest": rest}),
        "scale": scale,
        "minus_half": np.array(-0.5),
        "offset": offset,
        "axis_1": np.array([1], dtype=np.int64),
        "no_label": np.array(-1, dtype=np.int64),
    }
    initializers = [
        numpy_helper.from_array(np.asarray(value, dtype=value.dtype if value.dtype.kind == "i" else dtype), name)
        for name, value in constants.items()
    ]
    node = helper.make_node
    nodes = [
        node("Sub", [INPUT, "means"], ["difference" if rest is None else "difference_head"]),  # (K, N, D)
        *([] if rest is None else [node("Sub", ["difference_head", "means_rest"], ["difference"])]),
        node(whiten, ["difference", "scale"], ["whitened"]),
        node("ReduceSumSquare", ["whitened"], ["distance"], axes=[2], keepdims=0),  # (K, N)
        node("Mul", ["distance", "minus_half"], ["half_distance"]),
        node("Add", ["half_distance", "offset"], ["weighted_kn"]),
        node("Transpose", ["weighted_kn"], ["weighted"], perm=[1, 0]),  # (N, K)
        # log-sum-exp over the components, about each row's largest term
        node("ReduceMax", ["weighted"], ["largest"], axes=[1], keepdims=1),
        node("Sub", ["weighted", "largest"], ["below_largest"]),
        node("Exp", ["below_largest"], ["terms"]),
        node("ReduceSum", ["terms", "axis_1"], ["sum_terms"], keepdims=1),
        node("Log", ["sum_terms"], ["log_sum_terms"]),
        node("Add", ["log_sum_terms", "largest"], ["norm"]),  # (N, 1)
        node("Squeeze", ["norm", "axis_1"], ["log_likelihood"]),  # (N,): NaN for a row with NaN or infinity
    ]
    if "label" in chosen or "probabilities" in chosen:
        nodes.append(node("Sub", ["weighted", "norm"], ["log_resp"]))
    if "label" in chosen:
        nodes += [
            node("ArgMax", ["log_resp"], ["most_likely"], axis=1, keepdims=0),
            node("IsNaN", ["log_likelihood"], ["unscored"]),
            node("Where", ["unscored", "no_label", "most_likely"], ["label"]),
        ]
    if "probabilities" in chosen:
        nodes.append(node("Exp", ["log_resp"], ["probabilities"]))
    element = helper.np_dtype_to_tensor_dtype(dtype)
    shapes = {
        "label": (TensorProto.INT64, ["N"]),
        "probabilities": (element, ["N", k]),
        "log_likelihood": (element, ["N"]),
    }
    names = list(feature_names)
    graph = helper.make_graph(
        nodes,
        "gaussian_mixture",
        [helper.make_tensor_value_info(INPUT, element, ["N", d], f"rows of the features {names}, in this order")],
        [helper.make_tensor_value_info(name, *shapes[name]) for name in chosen],
        initializers,
    )
    version = package_versions()["gmm-pipeline"] or "unknown"
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        ir_version=helper.find_min_ir_version_for([helper.make_opsetid("", OPSET)]),
        producer_name=PRODUCER,
        producer_version=version,
        doc_string=(
            f"Gaussian mixture of {k} components ({covariance_in_words(covariance_type)}) on {d} features, "
            f"exported by gmm-pipeline {version}: input {INPUT} (N, {d}) {dtype.name}, the features in the order "
            f"of feature_names; outputs {', '.join(chosen)}"
        ),
    )
    helper.set_model_props(
        model,
        {
            "feature_names": json.dumps(names),
            "n_components": str(k),
            "covariance_type": covariance_type,
            "dtype": dtype.name,
        },
    )
    onnx.checker.check_model(model, full_check=True)
    return model


def is_export(place: Place) -> bool:
    """Whether ``place`` is a file an earlier ``gmm export`` wrote (its producer within the first bytes)."""
    try:
        with place.fs.open(place.path, "rb") as f:
            head = f.read(64)
    except OSError:
        return False
    return head[:1] == b"\x08" and _MARK in head


def export(
    model_path: str,
    output_path: str,
    outputs: Sequence[str] | None = None,
    dtype: str = "float64",
) -> list[str]:
    """``gmm export``: write the model directory's scoring graph as an ONNX file.

    The file appears complete or not at all; an existing one is replaced only if an earlier export wrote it,
    never over or inside the model directory.

    Parameters
    ----------
    model_path : str
        A model directory (local path or fsspec URL).
    output_path : str
        The ONNX file to write.
    outputs : sequence of str, optional
        Some of :data:`OUTPUTS`; None: all three.
    dtype : {"float64", "float32"}, default="float64"
        The graph's input and arithmetic.

    Returns
    -------
    list of str
        The graph's outputs.

    Raises
    ------
    InputError
        The extra is missing, ``--outputs`` names an unknown output, the model cannot be read or was fitted with
        ``nan_policy: marginalize``, or the output is the model's directory, lies inside it, or is a file or
        directory of another kind.
    """
    _onnx()  # without the extra nothing else is worth checking
    chosen = check_outputs(outputs, "--outputs")
    saved = load_saved_model(model_path)
    info = saved.info
    model = to_onnx(
        saved.params,
        saved.log_weights(),
        info.feature_names,
        nan_policy=info.missing.nan_policy if info.missing is not None else "error",
        outputs=chosen,
        dtype=dtype,
        source=f"the model {str(model_path)!r}",
    )
    place = resolve(output_path, "--output")
    # one file, as a report is: replaced only when is_export proves it an earlier export
    with writing(place, "--output", "report", is_export, {"the model": str(model_path)}):
        storage.write_bytes(place, model.SerializeToString())
    return chosen
