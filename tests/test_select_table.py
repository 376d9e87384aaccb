"""``gmm select``'s table: another criterion chooses from it without a refit; a falling log-likelihood is flagged."""

import shutil
import subprocess

import numpy as np
import pytest
import yaml
from helpers import tree_digest, write_parquet

from pipeline import fitting, job, selection

K = "1..3"


def invoke(cwd, monkeypatch, *args) -> subprocess.CompletedProcess:
    """The ``gmm`` click command in this process, run in ``cwd``."""
    from click.testing import CliRunner

    from pipeline.cli import main

    monkeypatch.chdir(cwd)
    result = CliRunner().invoke(main, list(map(str, args)))
    return subprocess.CompletedProcess(args, result.exit_code, result.stdout, result.stderr)


def no_pass_over_the_data(monkeypatch):
    """Make starting a cluster or fitting fail, naming what was attempted."""

    def refused(*args, **kwargs):
        raise RuntimeError("a pass over the data was attempted")

    monkeypatch.setattr(job.cluster, "session", refused)
    monkeypatch.setattr(fitting, "fit_candidates", refused)


@pytest.fixture(scope="module")
def selected(tmp_path_factory, client):
    """Two overlapping blobs (BIC chooses K=2, ICL K=1) selected by BIC, and the same data selected by ICL."""
    root = tmp_path_factory.mktemp("select")
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(size=(400, 2)), rng.normal(size=(400, 2)) + [3.0, 0.0]])
    write_parquet(root / "data", X[rng.permutation(len(X))], n_files=2)
    (root / "c.yaml").write_text(
        yaml.safe_dump(
            {
                "data": {"path": str(root / "data")},  # the data stay here: their paths are in the fingerprint
                "model": {"max_iter": 50, "prior": "default"},
                "cluster": {"address": client.scheduler.address},
                "output": {"path": "sel"},
            }
        )
    )
    with pytest.MonkeyPatch.context() as monkeypatch:
        by_bic = invoke(root, monkeypatch, "select", "c.yaml", "--k", K)
        assert by_bic.returncode == 0, by_bic.stderr
        icl = ("--criterion", "icl", "--set", "output.path=icl")
        by_icl = invoke(root, monkeypatch, "select", "c.yaml", "--k", K, *icl)
        assert by_icl.returncode == 0, by_icl.stderr
    assert "best by BIC: K=2 full" in by_bic.stdout and "best by ICL: K=1 full" in by_icl.stdout
    return root


@pytest.fixture
def workdir(selected, tmp_path):
    """A copy of the selection by BIC and its config, to change."""
    for name in ("sel", "icl"):
        shutil.copytree(selected / name, tmp_path / name)
    shutil.copy(selected / "c.yaml", tmp_path / "c.yaml")
    return tmp_path


def model_yaml(path):
    """model.yaml but when it was written and where (and when its data were fitted)."""
    info = yaml.safe_load((path / "model.yaml").read_text())
    del info["created"], info["config"]["output"]["path"]
    for entry in info.get("lineage", []):
        del entry["time"]
    return info


def test_another_criterion_is_chosen_from_the_table_without_a_pass_over_the_data(workdir, monkeypatch):
    table = (workdir / "sel" / "selection.csv").read_bytes()
    no_pass_over_the_data(monkeypatch)
    run = invoke(workdir, monkeypatch, "select", "c.yaml", "--k", K, "--criterion", "icl")
    assert run.returncode == 0, run.stderr
    assert "best by ICL: K=1 full; re-chosen from the table at sel/selection.csv, no refit" in run.stdout
    # The ICL winner, written exactly as a selection by ICL writes it (its arrays, prior, history, criteria)
    assert (workdir / "sel" / "model.npz").read_bytes() == (workdir / "icl" / "model.npz").read_bytes()
    assert model_yaml(workdir / "sel") == model_yaml(workdir / "icl")
    assert model_yaml(workdir / "sel")["selection"]["criterion"] == "icl"
    assert (workdir / "sel" / "selection.csv").read_bytes() == table
    assert (workdir / "sel" / "candidates.npz").read_bytes() == (workdir / "icl" / "candidates.npz").read_bytes()

    before = tree_digest(workdir / "sel")
    again = invoke(workdir, monkeypatch, "select", "c.yaml", "--k", K, "--criterion", "icl")
    assert again.returncode == 0 and "nothing to do" in again.stderr, again.stderr
    assert "best by ICL: K=1 full; already written" in again.stdout
    assert tree_digest(workdir / "sel") == before


@pytest.mark.parametrize(
    "change",
    [("--set", "model.tol=0.01"), ("--set", "model.n_init=2"), ("--k", "1..4"), ("--covariance-types", "diag")],
    ids=["tol", "n_init", "candidates", "covariance type"],
)
def test_any_other_change_refits(workdir, monkeypatch, change):
    no_pass_over_the_data(monkeypatch)
    run = invoke(workdir, monkeypatch, "select", "c.yaml", "--k", K, "--criterion", "aic", *change)  # a last --k wins
    assert run.returncode == 1 and "a pass over the data was attempted" in run.stderr, run.stderr


def test_force_refits_the_same_selection(workdir, monkeypatch):
    no_pass_over_the_data(monkeypatch)
    run = invoke(workdir, monkeypatch, "select", "c.yaml", "--k", K, "--force")
    assert run.returncode == 1 and "a pass over the data was attempted" in run.stderr, run.stderr


@pytest.mark.parametrize("damage", ["absent", "truncated"])
def test_a_selection_without_its_candidates_is_refitted_saying_why(workdir, monkeypatch, damage):
    stored = workdir / "sel" / "candidates.npz"
    if damage == "absent":
        stored.unlink()  # as written before candidates.npz existed
    else:
        stored.write_bytes(stored.read_bytes()[:100])
    no_pass_over_the_data(monkeypatch)
    run = invoke(workdir, monkeypatch, "select", "c.yaml", "--k", K, "--criterion", "icl")
    assert run.returncode == 1 and "a pass over the data was attempted" in run.stderr, run.stderr
    assert "cannot be chosen from again" in run.stderr and "candidates.npz" in run.stderr


# --------------------------------------------------------------------------- a falling log-likelihood
def row(k, covariance_type, log_likelihood):
    return {"n_components": k, "covariance_type": covariance_type, "log_likelihood": log_likelihood}


def test_a_log_likelihood_that_falls_as_k_grows_is_flagged_within_its_covariance_type():
    table = [
        row(1, "full", -100.0),
        row(2, "full", -80.0),
        row(3, "full", -85.0),  # below K=2: a local optimum
        row(4, "full", -79.0),
        row(1, "diag", -120.0),
        row(2, "diag", -90.0),
        row(3, "diag", -90.0 * (1 + 1e-12)),  # round-off, not a fall
        row(4, "diag", -95.0),  # below K=2 (not K=3)
    ]
    assert selection.falling_likelihoods(table) == [(2, 1), (7, 5)]
    assert selection.falling_likelihoods([row(3, "full", -85.0), row(2, "full", -80.0)]) == [(0, 1)]  # any row order
    assert selection.falling_likelihoods([row(2, "full", -80.0), row(2, "diag", -90.0)]) == []

    events = []
    selection.warn_falling(table, 1, events.append)
    (event,) = events
    assert event["event"] == "warning" and event["category"] == "LocalOptimumWarning"
    assert event["candidates"] == ["K=3 full", "K=4 diag"]
    assert "K=3 full (-85) below K=2 full (-80)" in event["message"]
    assert "--set model.n_init=5 (now 1)" in event["message"]
    selection.warn_falling(table[:2], 1, events.append)
    assert len(events) == 1


def test_the_printed_table_marks_a_falling_log_likelihood_and_the_warning_names_it(workdir, monkeypatch):
    path = workdir / "sel" / "selection.csv"
    header, *rows = path.read_text().splitlines()
    cells = rows[2].split(",")  # K=3 full: as if it had ended below K=2
    cells[2] = repr(float(rows[1].split(",")[2]) - 10.0)
    path.write_text("\n".join([header, rows[0], rows[1], ",".join(cells)]) + "\n")
    no_pass_over_the_data(monkeypatch)
    run = invoke(workdir, monkeypatch, "select", "c.yaml", "--k", K, "--criterion", "icl")
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[3].startswith("  3  full") and lines[3].endswith("! log-likelihood below K=2 (local optimum?)")
    assert not any("local optimum" in line for line in lines[1:3])
    warning = next(line for line in run.stderr.splitlines() if line.startswith("warning: log-likelihood falls"))
    assert "K=3 full" in warning and "below K=2 full" in warning and "model.n_init=5" in warning
