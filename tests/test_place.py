"""A Place is resolved once per path for a whole job (fit and select to a URL), and shows or sends no credential."""

import os
import pickle

import cloudpickle
import fsspec
import pytest
import yaml
from helpers import make_blobs, write_parquet

from pipeline import job, load_model
from pipeline.config import validate
from pipeline.storage import Place

SECRET = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY"
SKIPPED = "the model for this config and data exists"


def test_a_fit_to_a_url_resolves_its_data_and_its_output_once(tmp_path, client, monkeypatch):
    """The output's checks, the "already done" check, every checkpoint and the model's files share one resolution."""
    write_parquet(tmp_path / "data", make_blobs(5), 3)
    root = f"/gmm-place-test/{tmp_path.name}"
    output = f"memory:/{root}/m"
    config = validate(
        {
            "data": {"path": str(tmp_path / "data")},
            "model": {"n_components": 3, "max_iter": 8, "tol": 0.0},
            "output": {"path": output},
        },
        "c.yaml",
    )
    resolved, url_to_fs, events = [], fsspec.core.url_to_fs, []

    def counted(url, **options):
        resolved.append(url)
        return url_to_fs(url, **options)

    memory = fsspec.filesystem("memory")
    try:
        with monkeypatch.context() as patched:
            patched.setattr(fsspec.core, "url_to_fs", counted)
            first = job.fit(config, scheduler=client.scheduler.address, emit=events.append)
            again = job.fit(config, scheduler=client.scheduler.address, emit=events.append)
        assert resolved == [str(tmp_path / "data"), output] * 2
        assert first.n_iter == 8 and again.skipped
        done = next(e for e in events if e["event"] == "done")
        assert list(done) == ["event", "model", "converged", "n_iter", "lower_bound", "bic", "seconds"]
        assert done["model"] == output and events[-1] == {"event": "skipped", "model": output, "reason": SKIPPED}
        assert memory.exists(f"{root}/m/model.npz") and not memory.exists(f"{root}/m.checkpoint.npz")
        assert load_model(output).n_iter_ == 8
    finally:
        if memory.exists(root):
            memory.rm(root, recursive=True)


def test_a_selection_to_a_url_writes_its_table_beside_the_best_and_chooses_from_it_again(tmp_path, client):
    write_parquet(tmp_path / "data", make_blobs(6), 2)
    root = f"/gmm-place-test/{tmp_path.name}"
    output = f"memory:/{root}/sel"
    config = validate(
        {"data": {"path": str(tmp_path / "data")}, "model": {"max_iter": 20}, "output": {"path": output}}, "c.yaml"
    )
    memory, events = fsspec.filesystem("memory"), []
    try:
        best = job.select(config, [2, 3], ["full"], scheduler=client.scheduler.address, emit=events.append)
        assert [row["n_components"] for row in best.table] == [2, 3] and best.best == 1
        assert sorted(memory.ls(f"{root}/sel", detail=False)) == [
            f"{root}/sel/{name}" for name in ("candidates.npz", "model.npz", "model.yaml", "selection.csv")
        ]
        assert not memory.exists(f"{root}/sel.checkpoint.npz")
        (done,) = (e for e in events if e["event"] == "done")
        assert list(done)[6:] == ["seconds", "n_components", "covariance_type"] and done["n_components"] == 3
        events.clear()
        again = job.select(config, [2, 3], ["full"], "aic", scheduler=client.scheduler.address, emit=events.append)
        assert again.rechosen_from == f"{output}/selection.csv" and events[-1]["rechosen_from"] == again.rechosen_from
        assert list(events[-1])[6:] == ["seconds", "n_components", "covariance_type", "rechosen_from"]
        assert not any(e["event"] == "iteration" for e in events)
    finally:
        if memory.exists(root):
            memory.rm(root, recursive=True)


def test_a_place_shows_no_credential_and_is_never_pickled():
    place = Place.of("s3://bucket/models/m/", {"key": "AKIDEXAMPLE42", "secret": SECRET})
    child = place.join("model.yaml")
    assert (child.name, child.path) == ("s3://bucket/models/m/model.yaml", "bucket/models/m/model.yaml")
    assert child.fs is place.fs and place.local is None
    for where in (place, child, place.beside(".checkpoint.npz")):
        assert SECRET not in repr(where) and "AKIDEXAMPLE42" not in repr(where)
        for dumps in (pickle.dumps, cloudpickle.dumps):  # what Dask would send a worker
            with pytest.raises(TypeError, match="is not pickled"):
                dumps(where)
        with pytest.raises(yaml.representer.RepresenterError):  # nor written into a YAML file
            yaml.safe_dump({"output": where})
    with_password = Place(fsspec.filesystem("memory"), "/m", f"ftp://user:{SECRET}@host/m")
    assert repr(with_password) == "Place('ftp://user:***@host/m')"


def test_a_local_place_keeps_the_path_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    place = Place.of("out/m/")
    assert place.local == place.join("model.yaml").local.parent and str(place.local) == "out/m"
    assert place.join("model.yaml").name == "out/m/model.yaml" and place.beside(".lock").name == "out/m.lock"
    assert place.path == f"{os.getcwd()}/out/m"  # fsspec's form, for listing
