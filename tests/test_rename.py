"""A config key under its old name (``choices.RENAMED``: ``model.init``, now ``model.init_params``) still works.

In a config file and in a ``--set`` (with a warning line, also before the error line of another mistake), where
an override wins over the file's key whichever name either uses; in a model directory and in a checkpoint
written before the rename (the same fit).
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from helpers import make_blobs, write_config, write_parquet

from pipeline import job
from pipeline.checkpoint import META
from pipeline.config import fit_identity, load_config, validate
from pipeline.errors import InputError, RenamedKeyWarning
from pipeline.model import npz_bytes, read_npz
from pipeline.stopping import Stopped

NOW = "model.init is now model.init_params (the estimators' name)"


def test_the_old_key_model_init_still_works_with_a_warning(tmp_path, in_process):
    path = write_config(tmp_path / "c.yaml", data={"path": "d"}, model={"init": "random"})
    with pytest.warns(RenamedKeyWarning, match=r"c\.yaml: model\.init is now model\.init_params"):
        config = load_config(path, ["model.n_init=2"])
    assert config.model.init_params == "random"
    with pytest.raises(InputError, match=r"^c\.yaml: model\.init is the old name of model\.init_params"):
        validate({"data": {"path": "d"}, "model": {"init": "random", "init_params": "kmeans"}}, "c.yaml")
    # a model directory written before the rename records model.init: it is still the same fit
    old, new = ({"data": {"path": "d"}, "model": {key: "random"}} for key in ("init", "init_params"))
    assert fit_identity(validate(old, "model.yaml"), "f") == fit_identity(validate(new, "model.yaml"), "f")
    # the command line: one warning line, then on to the next finding (here: no data)
    run = in_process(tmp_path, "fit", "c.yaml")
    assert run.returncode == 2
    assert run.stderr.splitlines()[0].startswith("warning: c.yaml: model.init is now model.init_params"), run.stderr
    assert run.stderr.splitlines()[-1].startswith("error: data.path 'd'"), run.stderr


def test_the_warning_line_comes_before_the_error_line_of_another_key(tmp_path, in_process):
    write_config(tmp_path / "c.yaml", data={"path": "d"}, model={"init": "random", "n_components": 0})
    run = in_process(tmp_path, "fit", "c.yaml")
    lines = run.stderr.splitlines()
    assert run.returncode == 2 and len(lines) == 2, run.stderr
    assert lines[0].startswith(f"warning: c.yaml: {NOW}"), run.stderr
    assert lines[1].startswith("error: c.yaml: model.n_components: "), run.stderr
    run = in_process(tmp_path, "fit", "c.yaml", "--log-format", "json")
    warning, error = map(json.loads, run.stderr.splitlines())
    assert run.returncode == 2
    assert (warning["event"], warning["category"]) == ("warning", "RenamedKeyWarning"), warning
    assert warning["message"].startswith(f"c.yaml: {NOW}"), warning
    assert error["event"] == "error" and error["message"].startswith("c.yaml: model.n_components: "), error


@pytest.mark.parametrize(
    ("in_file", "in_override", "warned"),
    [
        ("init", "init_params", ["c.yaml"]),
        ("init_params", "init", ["--set model.init"]),
        ("init", "init", ["c.yaml", "--set model.init"]),
    ],
)
def test_an_override_wins_over_the_files_key_whichever_name_either_uses(tmp_path, in_file, in_override, warned):
    path = write_config(tmp_path / "c.yaml", data={"path": "d"}, model={in_file: "kmeans"})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        config = load_config(path, [f"model.{in_override}=random"])
    assert config.model.init_params == "random"
    assert [w.category for w in caught] == [RenamedKeyWarning] * len(warned)
    assert [str(w.message) for w in caught] == [
        f"{path if source == 'c.yaml' else source}: {NOW}; the old name still works but will be removed in a later "
        "release"
        for source in warned
    ]


def test_both_names_in_one_place_are_an_error_naming_both(tmp_path):
    path = write_config(tmp_path / "c.yaml", data={"path": "d"}, model={"init": "random", "init_params": "kmeans"})
    with pytest.raises(InputError, match=r"c\.yaml: model\.init is the old name of model\.init_params: give"):
        load_config(path, ["model.init_params=random"])
    path = write_config(tmp_path / "c.yaml", data={"path": "d"}, model={"init_params": "kmeans"})
    with pytest.raises(InputError, match=r"^--set model: model\.init is the old name of model\.init_params: give"):
        load_config(path, ["model={init: random, init_params: kmeans}"])
    # a whole section given on the command line: its old names are renamed (and warned about) as a file's are
    with pytest.warns(RenamedKeyWarning, match=r"^--set model: model\.init is now model\.init_params"):
        assert load_config(path, ["model={init: random}"]).model.init_params == "random"


def test_a_checkpoint_written_before_the_rename_resumes_to_the_same_bytes(tmp_path, client):
    write_parquet(tmp_path / "data", make_blobs(5), 3)
    model = {"n_components": 3, "init_params": "random", "tol": 0.0, "max_iter": 10, "random_state": 1}
    whole, resumed = (
        load_config(
            write_config(
                tmp_path / f"{name}.yaml",
                data={"path": str(tmp_path / "data")},
                model=model,
                output={"path": str(tmp_path / name)},
            )
        )
        for name in ("whole", "resumed")
    )
    scheduler = client.scheduler.address
    job.fit(whole, scheduler=scheduler)

    def stop_at_iteration_4(event):  # as a SIGTERM stops a fit: the checkpoint of iteration 4 stays
        if event["event"] == "iteration" and event["iteration"] == 4:
            raise Stopped("SIGTERM")

    with pytest.raises(Stopped):
        job.fit(resumed, scheduler=scheduler, emit=stop_at_iteration_4)
    # its identity as gmm-pipeline wrote it before the rename
    checkpoint = tmp_path / "resumed.checkpoint.npz"
    arrays = read_npz(checkpoint.read_bytes(), "checkpoint")
    meta = json.loads(arrays[META].item())
    stored = meta["identity"]["model"]
    assert stored["init_params"] == "random"
    meta["identity"]["model"] = {("init" if key == "init_params" else key): value for key, value in stored.items()}
    arrays[META] = np.array(json.dumps(meta))
    checkpoint.write_bytes(npz_bytes(arrays))
    events: list[dict] = []
    job.fit(resumed, scheduler=scheduler, emit=events.append)
    assert [(e["event"], e.get("iteration")) for e in events if e["event"] in ("resume", "restart")] == [
        ("resume", 4)
    ], events
    assert (tmp_path / "resumed" / "model.npz").read_bytes() == (tmp_path / "whole" / "model.npz").read_bytes()
    assert not checkpoint.exists()
