"""The jobs as plain functions that a test or an orchestrator can call.

Each takes a validated :class:`~pipeline.config.Config` and an ``emit``
callback that receives progress events as dicts (the CLI prints them as text
or JSON lines).  Everything that can be checked before a cluster starts is:
the config, the data's footers, and the output (:mod:`pipeline.outputs`).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from pipeline import cluster, data, engine, fitting, kernels, outputs, selection, storage
from pipeline.checkpoint import Checkpoint
from pipeline.choices import INIT_METHODS, RENAMED
from pipeline.config import Config, fit_identity, recorded, validate
from pipeline.engine import Candidate, Emit, ignore
from pipeline.errors import InputError
from pipeline.kernels.online import MOMENT_ARRAYS, check_moments, moments_from_arrays
from pipeline.kernels.params import PARAM_ARRAYS
from pipeline.model import (
    SELECTION_FILE,
    Kept,
    ModelInfo,
    SavedModel,
    SelectionRef,
    describe,
    is_model_directory,
    kept_of,
    load_saved_model,
    npz_bytes,
    open_place,
    read_npz,
    save_model,
    what_nan_policy_did,
)
from pipeline.storage import Place

# Beside selection.csv: every candidate's model (arrays, history, prior), so that another criterion can choose
# among them without a pass over the data.  Its arrays are named "<row of the table>.<name>".
CANDIDATES_FILE = "candidates.npz"


@dataclass(frozen=True)
class FitOutcome:
    """What ``fit`` did: where the model is and how the fit ended."""

    path: str
    converged: bool
    n_iter: int
    lower_bound: float
    skipped: bool = False


@dataclass(frozen=True)
class SelectOutcome:
    """The candidates' table (one dict per candidate) and the chosen one."""

    path: str
    table: list[dict[str, Any]]
    best: int
    rechosen_from: str | None = None  # the table the best was chosen from again, without a refit
    skipped: bool = False  # the output already held this selection, chosen by this criterion


def _open(config: Config, naming: data.Naming = data.CONFIG_COLUMNS) -> data.ParquetDataset:
    d = config.data
    place = data.resolve(d.path, d.storage_options)
    return data.open_dataset(place, d.columns, d.weight_column, d.nan_policy, naming=naming)


def _init_directory(config: Config) -> str | None:
    return None if config.model.init_params in INIT_METHODS else config.model.init_params


def _previous_model(output: Place) -> tuple[Config, ModelInfo] | None:
    """The config and model.yaml of a readable model already at ``output``."""
    try:
        info = load_saved_model(output).info
        # through the schema, so that a key added since (at its default) does not make the model look different
        return validate(info.config, output.name), info
    except InputError:  # unreadable, or a config this version cannot read: not the same fit
        return None


def _previous_identity(output: Place) -> tuple[dict[str, Any], ModelInfo] | None:
    """The identity and model.yaml of a readable model already at ``output``."""
    previous = _previous_model(output)
    if previous is None or (previous[1].lineage and previous[1].lineage[-1].kind != "fit"):
        return None  # nothing there, or an update: not a fit of its recorded config
    return fit_identity(previous[0], previous[1].data_fingerprint), previous[1]


def _warm_start(config: Config, dataset: data.ParquetDataset):
    """The parameters of the model directory named by ``model.init_params``, checked against the data and the config."""
    m = config.model
    path = _init_directory(config)
    if path is None:
        return None
    init = Place.of(path, config.data.storage_options)
    if not storage.exists(init):
        raise InputError(
            f"model.init_params {path!r} is neither one of {', '.join(INIT_METHODS)} nor a model directory"
        )
    saved = load_saved_model(init)
    if saved.info.feature_names != dataset.feature_names:
        raise InputError(
            f"model.init_params {path!r}: its features {saved.info.feature_names} do not match the data's "
            f"{dataset.feature_names}"
        )
    p = saved.params
    if (p.n_components, p.covariance_type) != (m.n_components, m.covariance_type):
        raise InputError(
            f"model.init_params {path!r} has n_components={p.n_components}, covariance_type="
            f"{p.covariance_type}; the config asks for {m.n_components}, {m.covariance_type}"
        )
    return p


def fit(config: Config, *, scheduler: str | None = None, force: bool = False, emit: Emit = ignore) -> FitOutcome:
    """Fit a mixture to the configured Parquet data and write the model directory.

    Parameters
    ----------
    config : Config
    scheduler : str, optional
        Address of a Dask scheduler (wins over DASK_SCHEDULER_ADDRESS and cluster.address).
    force : bool
        Refit even if the output already holds this fit.
    emit : callable
        Receives progress events (dicts with an ``event`` key).

    Returns
    -------
    FitOutcome
    """
    return _fit_and_write(config, _Fit(config, force), scheduler, emit)


@dataclass(frozen=True)
class _Opened:
    """What a command has when it looks at its output: the data opened, the output checked and locked."""

    dataset: data.ParquetDataset
    output: Place
    identity: dict[str, Any]
    started: float  # when the command began (time.perf_counter)


@dataclass(frozen=True)
class _Start:
    """How the candidates start: from ``warm`` (``gmm fit``'s ``model.init_params``, ``gmm update``'s model); not
    from a checkpoint if ``fresh``."""

    warm: kernels.Params | None = None
    fresh: bool = False
    learning: engine.Learning | None = None  # gmm update: what the model learnt before


@dataclass(frozen=True)
class _Chosen:
    """The candidate a command writes, what it writes besides its model, and what it tells after.

    ``table`` is a selection's (its falling likelihood is flagged); ``done`` adds keys to the ``done`` event.
    """

    outcome: fitting.Outcome
    info: ModelInfo
    result: FitOutcome | SelectOutcome
    files: dict[str, bytes] | None = None
    table: list[dict[str, Any]] | None = None
    done: dict[str, Any] = field(default_factory=dict)


class _Command(Protocol):
    """What a fitting command adds to :func:`_fit_and_write`: its candidates, the inputs its output must stay apart
    from (and how the user named the output), its identity, what it does with an output that may already hold its
    result, and what it writes."""

    candidates: list[Candidate]
    inputs: dict[str, str | None]
    output_key: str
    naming: data.Naming  # how the user gave the data's columns

    def identity(self, fingerprint: str | None) -> dict[str, Any]: ...

    def before(self, opened: _Opened, emit: Emit) -> FitOutcome | SelectOutcome | _Start: ...

    def choose(self, opened: _Opened, fitted: fitting.Fitted) -> _Chosen: ...


def _fit_and_write(config: Config, command: _Command, scheduler: str | None, emit: Emit) -> FitOutcome | SelectOutcome:
    """What ``gmm fit`` and ``gmm select`` both do, in this order.

    Check the cluster's settings, open the data, check the given priors, take the fit's identity; check the output
    and hold its lock; let the command skip or start (:meth:`_Command.before`); fit every candidate in shared
    passes on the cluster, resuming this fit's checkpoint; write the chosen model, remove the checkpoint; then
    flag a selection's falling likelihood and collapsed components, and emit ``done``.
    """
    started = time.perf_counter()
    cluster.check(config.cluster, scheduler)
    dataset = _open(config, command.naming)
    fitting.check_given_priors(config, command.candidates, dataset.feature_names)
    identity = command.identity(dataset.fingerprint)
    output = outputs.resolve(config.output.path, command.output_key, config.output_storage_options)
    with outputs.writing(output, command.output_key, "model", is_model_directory, command.inputs):
        opened = _Opened(dataset, output, identity, started)
        start = command.before(opened, emit)
        if not isinstance(start, _Start):  # the output holds the result already
            return start
        checkpoint = Checkpoint(output, identity)
        if start.fresh:
            checkpoint.remove()
        with cluster.session(config.cluster, scheduler, emit) as client:
            fitted = fitting.fit_candidates(
                config,
                dataset,
                command.candidates,
                client=client,
                emit=emit,
                checkpoint=checkpoint,
                warm=start.warm,
                learning=start.learning,
            )
        chosen = command.choose(opened, fitted)
        outcome = chosen.outcome
        save_model(output, outcome.run.params, chosen.info, extra_files=chosen.files, extra_arrays=outcome.extra_arrays)
        checkpoint.remove()
    run = outcome.run
    summary = {"converged": run.converged, "n_iter": run.n_iter, "lower_bound": run.lower_bound, "bic": outcome.bic}
    _tell_written(config, opened, outcome.candidate, outcome.collapsed, summary, chosen.table, chosen.done, emit)
    return chosen.result


def _tell_written(
    config: Config,
    opened: _Opened,
    candidate: Candidate,
    collapsed: list[int],
    summary: dict[str, Any],
    table: list[dict[str, Any]] | None,
    more: dict[str, Any],
    emit: Emit,
) -> None:
    """The events after a model is written: a selection's falling likelihood, collapsed components, ``done``."""
    if table is not None:
        selection.warn_falling(table, config.model.n_init, emit)
    fitting.warn_collapsed(config, candidate, collapsed, emit)
    seconds = time.perf_counter() - opened.started
    emit({"event": "done", "model": opened.output.name, **summary, "seconds": seconds, **more})


@dataclass(frozen=True)
class _Fit:
    """``gmm fit``: one candidate; nothing done if the output holds this fit; a warm start from
    ``model.init_params``."""

    config: Config
    force: bool
    output_key: str = "output.path"
    naming: data.Naming = data.CONFIG_COLUMNS

    @property
    def candidates(self) -> list[Candidate]:
        return [Candidate(self.config.model.n_components, self.config.model.covariance_type)]

    @property
    def inputs(self) -> dict[str, str | None]:
        return {"data.path": self.config.data.path, "model.init_params": _init_directory(self.config)}

    def identity(self, fingerprint: str | None) -> dict[str, Any]:
        return fit_identity(self.config, fingerprint)

    def before(self, opened: _Opened, emit: Emit) -> FitOutcome | _Start:
        """The model at the output if it is this fit's (unless forced), else the warm start (afresh if forced)."""
        output = opened.output
        previous = None if self.force else _previous_identity(output)
        if previous is not None and previous[0] == opened.identity:
            info = previous[1]
            emit({"event": "skipped", "model": output.name, "reason": "the model for this config and data exists"})
            return FitOutcome(output.name, bool(info.converged), info.n_iter or 0, info.lower_bound, skipped=True)
        return _Start(warm=_warm_start(self.config, opened.dataset), fresh=self.force)

    def choose(self, opened: _Opened, fitted: fitting.Fitted) -> _Chosen:
        (outcome,) = fitted.outcomes
        run = outcome.run
        info = fitting.model_info(self.config, opened.dataset, fitted, outcome)
        return _Chosen(outcome, info, FitOutcome(opened.output.name, run.converged, run.n_iter, run.lower_bound))


def selection_identity(config: Config, fingerprint: str | None, candidates: list[Candidate]) -> dict[str, Any]:
    """What decides every candidate's fit in ``gmm select``: the data, the model settings but
    ``model.n_components`` and ``model.covariance_type`` (the candidates replace them), and the candidates."""
    identity = fit_identity(config, fingerprint)
    model = {key: value for key, value in identity["model"].items() if key not in ("n_components", "covariance_type")}
    return {**identity, "model": model, "candidates": [c.label for c in candidates]}


def _candidates_npz(outcomes: list[fitting.Outcome]) -> bytes:
    """Every candidate's model as :data:`CANDIDATES_FILE` holds it, named by its row of the table."""
    arrays = {}
    for i, outcome in enumerate(outcomes):
        run = outcome.run
        arrays.update({f"{i}.{name}": getattr(run.params, name) for name in PARAM_ARRAYS})
        arrays[f"{i}.history"] = np.asarray(run.history, dtype=np.float64)
        arrays[f"{i}.lower_bound"] = np.asarray([run.lower_bound], dtype=np.float64)
        arrays[f"{i}.collapsed_components"] = np.asarray(outcome.collapsed, dtype=np.int64)
        arrays.update({f"{i}.{name}": value for name, value in outcome.extra_arrays.items() if name in MOMENT_ARRAYS})
        if outcome.hyperparameters is not None:  # the resolved prior's plain numbers, as model.yaml has them
            arrays[f"{i}.prior"] = np.asarray([json.dumps(outcome.hyperparameters)])
    return npz_bytes(arrays)


@dataclass(frozen=True)
class _StoredSelection:
    """A selection already at the output: its model.yaml, its table and the bytes of its files."""

    info: ModelInfo
    table: list[dict[str, Any]]
    table_bytes: bytes
    candidates_bytes: bytes
    table_path: str
    candidates_path: str


def _stored_selection(output: Place, identity: dict[str, Any], emit: Emit) -> _StoredSelection | None:
    """The selection at ``output`` if it is this one (same data, model settings and candidates), else None.

    Only its files are read, not the data.  One that is this selection but
    cannot be chosen from again (written before :data:`CANDIDATES_FILE`
    existed, or damaged) is refitted, with a warning saying why.
    """
    previous = _previous_model(output)
    if previous is None or previous[1].selection is None:
        return None
    config, info = previous
    if {**selection_identity(config, info.data_fingerprint, []), "candidates": identity["candidates"]} != identity:
        return None
    table_place, candidates_place = output.join(SELECTION_FILE), output.join(CANDIDATES_FILE)
    try:
        table_bytes = storage.read_bytes(table_place)
        table = selection.read(table_bytes, table_place.name, selection.COLUMNS)
        if [selection.label(row) for row in table] != identity["candidates"]:
            raise InputError(f"{table_place.name}: its rows are not the candidates of model.yaml's selection")
        candidates_bytes = storage.read_bytes(candidates_place)
    except InputError as exc:
        _not_reusable(output.name, exc, emit)
        return None
    return _StoredSelection(info, table, table_bytes, candidates_bytes, table_place.name, candidates_place.name)


def _not_reusable(output: str, exc: InputError, emit: Emit) -> None:
    emit(
        {
            "event": "warning",
            "category": "SelectionNotReusable",
            "message": f"the selection at {output} is of this config, data and candidates but cannot be chosen "
            f"from again ({exc}): fitting every candidate again",
        }
    )


def _stored_candidate(
    config: Config, stored: _StoredSelection, row: int, criterion: str
) -> tuple[kernels.Params, ModelInfo, list[int], dict[str, np.ndarray]]:
    """The parameters, model.yaml, collapsed components and what it learnt (model.npz's moments) of the table's
    ``row``, as a fresh selection writes them.

    Raises
    ------
    InputError
        The stored arrays are missing, damaged or disagree with the table.
    """
    where = stored.candidates_path
    arrays = read_npz(stored.candidates_bytes, where)
    entry = stored.table[row]
    candidate = Candidate(entry["n_components"], entry["covariance_type"])
    try:
        params = kernels.Params(
            covariance_type=candidate.covariance_type,
            **{name: np.asarray(arrays[f"{row}.{name}"], dtype=np.float64) for name in PARAM_ARRAYS},
        )
        kernels.check_params(params)
        if params.n_components != candidate.n_components:
            raise ValueError(f"it has {params.n_components} components")
        prior = json.loads(arrays[f"{row}.prior"].item()) if f"{row}.prior" in arrays else None
        history = arrays[f"{row}.history"].tolist()
        lower_bound = float(arrays[f"{row}.lower_bound"].item())
        collapsed = [int(c) for c in arrays[f"{row}.collapsed_components"]]
        learnt = {name: arrays[f"{row}.{name}"] for name in MOMENT_ARRAYS if f"{row}.{name}" in arrays}
        if learnt:
            moments = moments_from_arrays(learnt, candidate.covariance_type)
            check_moments(moments, candidate.n_components, params.n_features)
    except (KeyError, ValueError, TypeError) as exc:  # a JSON error is a ValueError
        raise InputError(f"{where}: {candidate.label} cannot be read back ({str(exc)[:200]})") from None
    chosen = config.model_copy(
        update={
            "model": config.model.model_copy(
                update={"n_components": candidate.n_components, "covariance_type": candidate.covariance_type}
            )
        }
    )
    info = stored.info
    described = describe(
        params,
        info.feature_names,
        converged=entry["converged"],
        n_iter=entry["n_iter"],
        lower_bound=lower_bound,
        history=history,
        n_samples=info.n_samples,
        weight_sum=info.weight_sum,
        bic=entry["bic"],
        aic=entry["aic"],
        icl=entry["icl"],
        config=recorded(chosen),
        data_fingerprint=info.data_fingerprint,
        algorithm=info.algorithm,
        prior=prior,
        missing=info.missing,
        collapsed_components=collapsed,
        parameters=fitting.estimator_parameters(chosen, info.weight_sum, prior),
        selection=SelectionRef(criterion=criterion),
        lineage=info.lineage if learnt else None,  # every candidate learnt from the same data
    )
    return params, described, collapsed, learnt


def _best(table: list[dict[str, Any]], criterion: str) -> int:
    return min(range(len(table)), key=lambda i: table[i][criterion])


def select(
    config: Config,
    ks: list[int],
    covariance_types: list[str],
    criterion: str = "bic",
    *,
    scheduler: str | None = None,
    force: bool = False,
    emit: Emit = ignore,
) -> SelectOutcome:
    """Fit every candidate (K, covariance type) in shared passes and write the best model.

    Every EM iteration is one pass over the data that serves every candidate
    (and every restart) still running.  Each candidate starts as ``gmm fit``
    of it would, so it ends with the same numbers.  The best model's directory
    holds ``selection.csv`` (the table) and ``candidates.npz`` (every
    candidate's model) beside model.yaml and model.npz.  A selection stopped
    midway resumes from its checkpoint.

    If the output already holds this selection (same data, model settings and
    candidates; the criterion may differ), nothing is fitted: the best is
    chosen again from its table by ``criterion``, its model written from
    ``candidates.npz`` (or nothing written if the criterion is the same).

    Parameters
    ----------
    config : Config
    ks, covariance_types : list
        The candidates: every K with every covariance type.
    criterion : {"bic", "aic", "icl"}
    scheduler : str, optional
        Address of a Dask scheduler (wins over DASK_SCHEDULER_ADDRESS and cluster.address).
    force : bool
        Fit every candidate even if the output already holds this selection.
    emit : callable
        Receives progress events (dicts with an ``event`` key).

    Returns
    -------
    SelectOutcome
    """
    if _init_directory(config) is not None:
        raise InputError(
            f"model.init_params {config.model.init_params!r}: gmm select starts every candidate afresh; "
            f"use one of {', '.join(INIT_METHODS)}"
        )
    if config.model.algorithm != "em":
        raise InputError(
            "model.algorithm: variational chooses its number of components itself; gmm select compares EM fits "
            "(use gmm fit with a generous model.n_components)"
        )
    candidates = [Candidate(k, ct) for ct in covariance_types for k in ks]
    return _fit_and_write(config, _Select(config, candidates, criterion, force), scheduler, emit)


@dataclass(frozen=True)
class _Select:
    """``gmm select``: every candidate; the output's selection chosen from again if it is this one; the table and
    every candidate's model written beside the best."""

    config: Config
    candidates: list[Candidate]
    criterion: str
    force: bool
    output_key: str = "output.path"
    naming: data.Naming = data.CONFIG_COLUMNS

    @property
    def inputs(self) -> dict[str, str | None]:
        return {"data.path": self.config.data.path}

    def identity(self, fingerprint: str | None) -> dict[str, Any]:
        return selection_identity(self.config, fingerprint, self.candidates)

    def before(self, opened: _Opened, emit: Emit) -> SelectOutcome | _Start:
        """The best of the output's selection if it is this one (unless forced), else a start (from a checkpoint)."""
        stored = None if self.force else _stored_selection(opened.output, opened.identity, emit)
        if stored is not None:
            again = _choose_again(self.config, stored, self.criterion, opened, emit)
            if again is not None:
                return again
        return _Start()

    def choose(self, opened: _Opened, fitted: fitting.Fitted) -> _Chosen:
        table = [
            {
                "n_components": o.candidate.n_components,
                "covariance_type": o.candidate.covariance_type,
                "log_likelihood": o.fit.log_likelihood,
                "bic": o.bic,
                "aic": o.aic,
                "icl": o.icl,
                "n_iter": o.run.n_iter,
                "converged": o.run.converged,
            }
            for o in fitted.outcomes
        ]
        best = _best(table, self.criterion)
        outcome = fitted.outcomes[best]
        info = fitting.model_info(
            self.config, opened.dataset, fitted, outcome, selection=SelectionRef(criterion=self.criterion)
        )
        files = {SELECTION_FILE: selection.to_csv(table), CANDIDATES_FILE: _candidates_npz(fitted.outcomes)}
        chosen = outcome.candidate
        done = {"n_components": chosen.n_components, "covariance_type": chosen.covariance_type}
        return _Chosen(outcome, info, SelectOutcome(opened.output.name, table, best), files, table, done)


def _choose_again(
    config: Config, stored: _StoredSelection, criterion: str, opened: _Opened, emit: Emit
) -> SelectOutcome | None:
    """Choose the best of a stored selection by ``criterion`` and write its model; None if it cannot be read back."""
    output, table = opened.output, stored.table
    chosen = _best(table, criterion)
    if stored.info.selection.criterion == criterion:
        reason = "the selection for this config, data, candidates and criterion exists"
        emit({"event": "skipped", "model": output.name, "reason": reason})
        selection.warn_falling(table, config.model.n_init, emit)
        return SelectOutcome(output.name, table, chosen, skipped=True)
    try:
        params, info, collapsed, learnt = _stored_candidate(config, stored, chosen, criterion)
    except InputError as exc:
        _not_reusable(output.name, exc, emit)
        return None
    files = {SELECTION_FILE: stored.table_bytes, CANDIDATES_FILE: stored.candidates_bytes}
    save_model(output, params, info, extra_files=files, extra_arrays=learnt)
    row = table[chosen]
    candidate = Candidate(row["n_components"], row["covariance_type"])
    summary = {"converged": info.converged, "n_iter": info.n_iter, "lower_bound": info.lower_bound, "bic": info.bic}
    more = {
        "n_components": candidate.n_components,
        "covariance_type": candidate.covariance_type,
        "rechosen_from": stored.table_path,
    }
    _tell_written(config, opened, candidate, collapsed, summary, table, more, emit)
    return SelectOutcome(output.name, table, chosen, rechosen_from=stored.table_path)


def update(
    model_dir: str,
    input_path: str,
    output_dir: str,
    decay: float = 1.0,
    *,
    settings: Config | None = None,
    scheduler: str | None = None,
    force: bool = False,
    emit: Emit = ignore,
) -> FitOutcome:
    """Learn from new data without the old: write the model of ``model_dir`` updated with ``input_path``.

    EM over the new rows only, in which the rows the model learnt before count through the statistics it kept of
    them (their responsibilities frozen at its last M-step; Neal & Hinton 1998), times ``decay``; it starts from
    the model and runs until converged as ``gmm fit`` does, with the model's settings (``tol``, ``max_iter``,
    ``reg_covar``, its resolved prior, ``nan_policy``), and reads the new data's columns by the model's feature
    names.  Every operating promise of ``gmm fit`` holds: the output rules, its lock, a checkpoint to resume from
    bit for bit, exit codes, events.  If the output already holds this update (of this model, with these data
    and this decay), nothing is done.

    Parameters
    ----------
    model_dir, input_path, output_dir : str
        The model to update (never read again but for its files), the new Parquet data, the directory to write.
    decay : float
        In (0, 1]: the factor of what the model learnt before (1 keeps it all).
    settings : Config, optional
        A config whose cluster section, ``data.storage_options`` and ``output.storage_options`` apply (its other
        sections are not used: the model's own settings are).
    scheduler : str, optional
    force : bool
        Update even if the output already holds this update.
    emit : callable

    Returns
    -------
    FitOutcome
    """
    if not 0 < decay <= 1:
        raise InputError(f"--decay {decay!r}: expected a number in (0, 1] (1 keeps all of the past)")
    place = open_place(model_dir, settings.data.storage_options if settings is not None else None, "--model")
    saved = load_saved_model(place)
    where = place.join("model.yaml").name
    past = kept_of(saved)
    if past is None:
        what = "a variational model" if saved.info.algorithm == "variational" else "written before models kept them"
        raise InputError(
            f"{where}: the model kept no statistics of the data it learnt from ({what}); gmm update needs them: "
            "fit it again with gmm fit"
        )
    config = _update_config(saved, where, input_path, output_dir, settings)
    if config.model.max_iter < 1:
        raise InputError(f"{where}: model.max_iter is {config.model.max_iter}; an update takes at least 1 iteration")
    return _fit_and_write(config, _Update(config, model_dir, saved, past, float(decay), force), scheduler, emit)


def _update_config(saved: SavedModel, where: str, input_path: str, output_dir: str, settings: Config | None) -> Config:
    """The config of an update: the model's settings, the new data read by the model's feature names, the output,
    and the cluster and storage options of ``settings``."""
    info = saved.info
    if not info.named_features:
        raise InputError(
            f"{where}: the model's features have no names (it was fitted on an array): gmm update reads Parquet "
            "columns by name; update it in Python with GaussianMixture.update"
        )
    recorded_config = info.config or {}
    sections = {name: recorded_config.get(name, {}) for name in ("data", "model")}
    for name, section in sections.items():
        if not isinstance(section, dict):
            raise InputError(
                f"{where}: config.{name} is not a mapping of keys to values: not a model gmm-pipeline wrote"
            )
    parameters = info.parameters or {}
    model = {RENAMED.get(key, key): value for key, value in sections["model"].items()} or {
        key: parameters[key] for key in _UPDATE_KEYS if key in parameters
    }
    if model.get("init_params") not in INIT_METHODS:
        model["init_params"] = "kmeans"  # a model directory's warm start: not used, the update starts from the model
    if info.prior is not None and model.get("prior") is None:
        model["prior"] = "default"  # saved from Python: the update takes the prior the model resolved (model.yaml's)
    # the model's shape is its arrays'
    model.update(n_components=saved.params.n_components, covariance_type=saved.params.covariance_type)
    raw = {
        "data": {
            "path": input_path,
            "columns": list(info.feature_names),
            "weight_column": sections["data"].get("weight_column"),
            "nan_policy": info.missing.nan_policy if info.missing is not None else "error",
            "storage_options": settings.data.storage_options if settings is not None else {},
        },
        "model": model,
        "output": {
            "path": output_dir,
            "storage_options": settings.output.storage_options if settings is not None else None,
        },
        "cluster": settings.cluster.model_dump() if settings is not None else {},
    }
    return validate(raw, where)


# The estimator's parameters that are config keys of the model section (a model saved from Python has no config).
_UPDATE_KEYS = ("n_components", "covariance_type", "tol", "reg_covar", "max_iter", "n_init", "random_state", "dtype")


@dataclass(frozen=True)
class _Update:
    """``gmm update``: the model's one candidate, started from the model, going on from what it learnt; nothing done
    if the output holds this update."""

    config: Config
    model_dir: str
    saved: SavedModel
    past: Kept
    decay: float
    force: bool
    output_key: str = "--output"
    naming: data.Naming = data.MODEL_COLUMNS

    @property
    def candidates(self) -> list[Candidate]:
        p = self.saved.params
        return [Candidate(p.n_components, p.covariance_type)]

    @property
    def inputs(self) -> dict[str, str | None]:
        return {"--input": self.config.data.path, "--model": self.model_dir}

    def identity(self, fingerprint: str | None) -> dict[str, Any]:
        # the model updated is known by its arrays' digest (which covers its statistics), not by where it lies
        return {
            **fit_identity(self.config, fingerprint),
            "update_of": self.saved.info.arrays.sha256,
            "decay": self.decay,
        }

    def before(self, opened: _Opened, emit: Emit) -> FitOutcome | _Start:
        """The model at the output if it is this update (unless forced), else the start from the model."""
        previous = None if self.force else _previous_model(opened.output)
        last = previous[1].lineage[-1] if previous is not None and previous[1].lineage else None
        if previous is not None and last is not None and last.kind == "update":
            identity = fit_identity(previous[0], last.data_fingerprint)
            if {**identity, "update_of": last.update_of, "decay": last.decay} == opened.identity:
                info = previous[1]
                emit({"event": "skipped", "model": opened.output.name, "reason": "this update of the model exists"})
                return FitOutcome(opened.output.name, bool(info.converged), info.n_iter or 0, info.lower_bound, True)
        learning = engine.Learning(self.past.moments.scaled(self.decay), prior=self.saved.info.prior)
        return _Start(warm=self.saved.params, fresh=self.force, learning=learning)

    def choose(self, opened: _Opened, fitted: fitting.Fitted) -> _Chosen:
        (outcome,) = fitted.outcomes
        run, summary, info = outcome.run, fitted.summary, self.saved.info
        moments = run.state.moments
        entry = fitting.learnt_from(
            self.config,
            opened.dataset,
            "update",
            fitted.n_rows,
            summary.weight_sum,
            decay=self.decay,
            update_of=info.arrays.sha256,
        )
        dropped = opened.dataset.n_rows - fitted.n_rows
        missing = what_nan_policy_did(opened.dataset.nan_policy, summary, dropped, info.missing)
        described = fitting.model_info(
            self.config,
            opened.dataset,
            fitted,
            outcome,
            n_samples=(info.n_samples or 0) + fitted.n_rows,
            weight_sum=moments.weight_sum,
            missing=missing,
            lineage=[*self.past.lineage, entry],
            **({"parameters": info.parameters} if info.parameters is not None else {}),  # the update changes none
        )
        return _Chosen(outcome, described, FitOutcome(opened.output.name, run.converged, run.n_iter, run.lower_bound))


# A variational model's components with a weight above this are counted as the ones it uses.
EFFECTIVE_WEIGHT = 0.01


def inspect(path: str | Path) -> dict[str, Any]:
    """A fitted model's summary as plain data (what ``gmm inspect --json`` prints).

    A variational model's summary adds ``effective_components``: how many of its
    components have a weight above :data:`EFFECTIVE_WEIGHT`.
    """
    saved = load_saved_model(path)
    summary = {"path": str(path), **saved.info.model_dump(mode="json", exclude={"config", "arrays"})}
    if saved.info.algorithm == "variational":
        summary["effective_components"] = int((saved.params.weights > EFFECTIVE_WEIGHT).sum())
        summary["effective_threshold"] = EFFECTIVE_WEIGHT
    return summary
