"""A sweep of hostile and tired-operator cases: every one ends in one ``error:`` line, the right exit code, and
nothing the user had changed (the working directory is hashed before and after).

Each case is (setup, command, exit code, pattern): ``setup`` prepares the working directory (which already
holds ``data/`` and ``c.yaml``, and a fitted model ``m/``); the command's arguments may use ``{scheduler}``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from helpers import assert_user_error, gmm, make_blobs, tree_digest, write_config, write_parquet

from pipeline import GaussianMixture


def _text(name, content):
    def setup(d):
        (d / name).write_bytes(content if isinstance(content, bytes) else content.encode())

    return setup


def _config(**sections):
    def setup(d):
        base = yaml.safe_load((d / "c.yaml").read_text())
        for section, values in sections.items():
            if values is None:
                base.pop(section, None)
            else:
                base.setdefault(section, {}).update(values)
        write_config(d / "h.yaml", **base)

    return setup


def _table(name, **columns):
    def setup(d):
        (d / "t").mkdir(exist_ok=True)
        pq.write_table(pa.table(columns), d / "t" / name)

    return setup


def _model_yaml(change):
    def setup(d):
        info = yaml.safe_load((d / "m" / "model.yaml").read_text())
        change(info)
        (d / "m" / "model.yaml").write_text(yaml.safe_dump(info))

    return setup


def _symlink(name, target):
    def setup(d):
        os.symlink(d / target, d / name)

    return setup


def _alias_bomb(d):
    lines = ['a: &a ["x","x","x","x","x","x","x","x","x","x"]']
    for i, name in enumerate("bcdefghij"):
        prev = "abcdefghij"[i]
        lines.append(f"{name}: &{name} [{', '.join([f'*{prev}'] * 10)}]")
    (d / "h.yaml").write_text("\n".join(lines) + "\ndata: {path: data}\n")


def _npz_with_pickle(d):
    import io
    import zipfile

    with np.load(d / "m" / "model.npz") as npz:
        arrays = dict(npz)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        for name, value in arrays.items():
            member = io.BytesIO()
            pickled = name == "weights"  # an object array: loading it would unpickle
            np.lib.format.write_array(
                member, np.array([{"evil": 1}], dtype=object) if pickled else value, allow_pickle=pickled
            )
            z.writestr(f"{name}.npy", member.getvalue())
    (d / "m" / "model.npz").write_bytes(buffer.getvalue())
    info = yaml.safe_load((d / "m" / "model.yaml").read_text())
    info["arrays"]["sha256"] = hashlib.sha256(buffer.getvalue()).hexdigest()
    (d / "m" / "model.yaml").write_text(yaml.safe_dump(info))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


NOTHING = None
FIT = ("fit", "h.yaml")
CASES = {
    # --------------------------------------------------------------- config files
    "config is a directory": (lambda d: (d / "h.yaml").mkdir(), FIT, 2, r"config file 'h\.yaml': Is a directory"),
    "config is empty": (_text("h.yaml", ""), FIT, 2, r"missing required key 'data'"),
    "config is one string": (_text("h.yaml", "hello\n"), FIT, 2, r"expected a mapping of sections"),
    "config over 1 MiB": (_text("h.yaml", "data: {path: data}\n#" + "x" * (1 << 20)), FIT, 2, r"larger than 1 MiB"),
    "YAML alias bomb": (_alias_bomb, FIT, 2, r"expands to more than 100000 values"),
    "YAML python tag": (
        _text("h.yaml", "data: !!python/object/apply:os.system ['true']\n"),
        FIT,
        2,
        r"invalid YAML: .*constructor",
    ),
    "YAML nested 100000 deep": (
        _text("h.yaml", "data: " + "[" * 100_000 + "]" * 100_000 + "\n"),
        FIT,
        2,
        r"h\.yaml.*invalid YAML",
    ),
    "config not UTF-8": (_text("h.yaml", b"data: {path: \xff\xfe}\n"), FIT, 2, r"is not UTF-8 text"),
    "empty data.path": (_config(data={"path": ""}), FIT, 2, r"data\.path: String should have at least 1 character"),
    "empty data.columns": (_config(data={"columns": []}), FIT, 2, r"data\.columns: List should have at least 1 item"),
    "a column twice in data.columns": (
        _config(data={"columns": ["x0", "x0"]}),
        FIT,
        2,
        r"data\.columns names 'x0' more than once",
    ),
    "weights also a feature": (
        _config(data={"columns": ["x0", "x1"], "weight_column": "x1"}),
        FIT,
        2,
        r"data\.weight_column 'x1' is also in data\.columns",
    ),
    "n_components a float": (
        _config(model={"n_components": 3.5}),
        FIT,
        2,
        r"model\.n_components: Input should be a "
        r"valid integer",
    ),
    "n_components a bool": (
        _config(model={"n_components": True}),
        FIT,
        2,
        r"model\.n_components: Input should be a "
        r"valid integer",
    ),
    "tol infinite": (_config(model={"tol": float("inf")}), FIT, 2, r"model\.tol: Input should be a finite number"),
    "negative random_state": (
        _config(model={"random_state": -1}),
        FIT,
        2,
        r"model\.random_state: Input should be "
        r"greater than or equal to 0",
    ),
    "memory_limit banana": (
        _config(cluster={"memory_limit": "banana"}),
        FIT,
        2,
        r"cluster\.memory_limit: expected 'auto', bytes >= 0 or a size such as 4GiB",
    ),
    "100000 workers": (_config(cluster={"n_workers": 100_000}), FIT, 2, r"cluster\.n_workers: Input should be less"),
    "dashboard nonsense": (_config(cluster={"dashboard": "here"}), FIT, 2, r"cluster\.dashboard: expected true, false"),
    "variational key with EM": (
        _config(model={"mean_precision_prior": 2.0}),
        FIT,
        2,
        r"model\.mean_precision_prior applies only with model\.algorithm: variational",
    ),
    "prior with a stray key": (_config(model={"prior": {"shrink": 1}}), FIT, 2, r"unknown key 'model\.prior\.shrink'"),
    "prior scale ragged": (
        _config(model={"prior": {"scale": [[1.0, 0.0, 0.0], [0.0, 1.0]]}}),
        FIT,
        2,
        r"model\.prior\.scale: expected a square matrix .*, got 2 rows of 2 and 3 numbers",
    ),
    "prior scale of another width": (
        _config(model={"prior": {"scale": [[1.0, 0.0], [0.0, 1.0]]}}),
        FIT,
        2,
        r"model\.prior: prior scale must be a 3 x 3 matrix for covariance_type 'full', got shape \(2, 2\)",
    ),
    "prior mean of another width": (
        _config(model={"prior": {"mean": [0.0, 0.0]}}),
        FIT,
        2,
        r"model\.prior: prior mean must be 3 numbers \(one per feature\), got shape \(2,\)",
    ),
    "select with a prior of another width": (
        _config(model={"prior": {"mean": [0.0, 0.0]}}),
        ("select", "h.yaml", "--k", "2..3"),
        2,
        r"model\.prior: prior mean must be 3 numbers",
    ),
    "variational covariance_prior ragged": (
        _config(model={"algorithm": "variational", "covariance_prior": [[1.0], [0.0, 1.0]]}),
        FIT,
        2,
        r"model\.covariance_prior: expected a square matrix",
    ),
    "variational mean_prior of another width": (
        _config(model={"algorithm": "variational", "mean_prior": [0.0]}),
        FIT,
        2,
        r"mean_prior must be 3 numbers \(one per feature\), got shape \(1,\)",
    ),
    "prior scale not symmetric": (
        _config(model={"prior": {"scale": [[1.0, 0.5, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]}}),
        FIT,
        2,
        r"model\.prior: prior scale must be symmetric",
    ),
    "variational from a model directory": (
        _config(model={"algorithm": "variational", "init_params": "m"}),
        FIT,
        2,
        r"model\.init_params: a model directory starts EM only",
    ),
    "a column never observed": (
        lambda d: (
            _table("p.parquet", x0=[float("nan")] * 9, x1=[float(i) for i in range(9)])(d),
            _config(data={"path": "t", "nan_policy": "marginalize"}, model={"n_components": 2})(d),
        ),
        FIT,
        2,
        r"column 'x0' has no value in any row that counts \(all missing\)",
    ),
    "a lock file that is not ours": (
        lambda d: (_text("out.lock", "my notes")(d), _config()(d)),
        FIT,
        2,
        r"'out\.lock' exists and is not a lock of this tool; remove it",
    ),
    "a lock that is a symlink": (
        lambda d: (_symlink("out.lock", "c.yaml")(d), _config()(d)),
        FIT,
        2,
        r"'out\.lock' exists and is not a lock of this tool \(.*\)",
    ),
    "empty output.path": (_config(output={"path": ""}), FIT, 2, r"output\.path: String should have at least 1"),
    # --------------------------------------------------------------- the command line
    "unknown command": (NOTHING, ("fitt",), 2, r"No such command 'fitt'"),
    "missing argument": (NOTHING, ("fit",), 2, r"gmm fit: Missing argument 'CONFIG'"),
    "unknown option": (NOTHING, ("fit", "c.yaml", "--frobnicate"), 2, r"No such option '--frobnicate'"),
    "bad --set key": (NOTHING, ("fit", "c.yaml", "--set", "model..k=3"), 2, r"unknown key 'model\.'"),
    "bad --criterion": (NOTHING, ("select", "c.yaml", "--k", "2", "--criterion", "xyz"), 2, r"'xyz' is not one of"),
    "--k too many": (NOTHING, ("select", "c.yaml", "--k", "1..5000"), 2, r"5000 candidates; at most 1000"),
    "--k astronomically wide": (
        NOTHING,
        ("select", "c.yaml", "--k", "1..1000000000000"),
        2,
        r"1000000000000 candidates; at most 1000",
    ),
    "--k zero": (NOTHING, ("select", "c.yaml", "--k", "0..3"), 2, r"needs at least one K, each >= 1"),
    "empty --covariance-types": (
        NOTHING,
        ("select", "c.yaml", "--k", "2", "--covariance-types", ","),
        2,
        r"--covariance-types: ',' is not one of",
    ),
    "malformed --scheduler": (
        NOTHING,
        ("fit", "c.yaml", "--scheduler", "tcp://host:port"),
        2,
        r"scheduler address 'tcp://host:port' is malformed",
    ),
    "tls:// without cluster.security": (
        NOTHING,
        ("fit", "c.yaml", "--scheduler", "tls://127.0.0.1:8786"),
        2,
        r"uses TLS: set cluster\.security",
    ),
    "TLS files missing": (
        _config(cluster={"security": {"ca_file": "ca.pem", "cert_file": "c.pem", "key_file": "k.pem"}}),
        ("fit", "h.yaml", "--scheduler", "tls://127.0.0.1:8786"),
        2,
        r"cluster\.security\.ca_file 'ca\.pem' is not a readable file",
    ),
    "nothing listens at --scheduler": (
        _config(cluster={"connect_timeout": 1}),
        ("fit", "h.yaml", "--scheduler", f"tcp://127.0.0.1:{_free_port()}"),
        1,
        r"cannot reach the Dask scheduler at 'tcp://127\.0\.0\.1:\d+'",
    ),
    "generate 0 features": (
        NOTHING,
        ("generate", "--output", "g", "--n-samples", "10", "--n-features", "0", "--n-components", "2"),
        2,
        r"Invalid value for '--n-features': 0 is not in the range 1<=x<=10000",
    ),
    "generate more files than rows": (
        NOTHING,
        (
            "generate",
            "--output",
            "g",
            "--n-samples",
            "3",
            "--n-features",
            "2",
            "--n-components",
            "2",
            "--partitions",
            "9",
        ),
        2,
        r"--partitions 9 is more than --n-samples 3",
    ),
    # --------------------------------------------------------------- data
    "glob matching nothing": (_config(data={"path": "data/*.csv"}), FIT, 2, r"holds no Parquet files"),
    "symlink loop as data": (
        lambda d: os.symlink(d / "loop", d / "loop"),
        ("fit", "c.yaml", "--set", "data.path=loop"),
        2,
        r"data\.path 'loop'",
    ),
    "a bool column chosen": (
        _table("p.parquet", a=[1.0, 2.0, 3.0], b=[True, False, True]),
        ("fit", "c.yaml", "--set", "data.path=t", "--set", "data.columns=[a, b]"),
        2,
        r"column 'b' is bool, not numeric",
    ),
    "timestamp weights": (
        _table("p.parquet", a=[1.0, 2.0, 3.0], w=pa.array([1, 2, 3], pa.timestamp("s"))),
        ("fit", "c.yaml", "--set", "data.path=t", "--set", "data.weight_column=w"),
        2,
        r"data\.weight_column 'w' is timestamp\[m?s\], expected a numeric column of weights",
    ),
    "string weights": (
        _table("p.parquet", a=[1.0, 2.0, 3.0], w=["1", "2", "3"]),
        ("fit", "c.yaml", "--set", "data.path=t", "--set", "data.weight_column=w"),
        2,
        r"data\.weight_column 'w' is string",
    ),
    "an all-null column": (
        _table("p.parquet", a=[1.0, 2.0, 3.0, 4.0], b=pa.array([None] * 4, pa.float64())),
        ("fit", "c.yaml", "--set", "data.path=t", "--scheduler", "{scheduler}"),
        2,
        r"4 rows have NaN or infinite values",
    ),
    # --------------------------------------------------------------- model files
    "model.yaml a list": (_text("m/model.yaml", "- 1\n- 2\n"), ("inspect", "m"), 2, r"not a gmm-pipeline model file"),
    "model.yaml extra key": (
        _model_yaml(lambda i: i.update(evil=1)),
        ("inspect", "m"),
        2,
        r"model\.yaml: evil: Extra inputs are not permitted",
    ),
    "format_version a string": (
        _model_yaml(lambda i: i.update(format_version="1")),
        ("inspect", "m"),
        2,
        r"m/model\.yaml: format_version '1' is not an integer",
    ),
    "arrays file outside the model": (
        _model_yaml(lambda i: i["arrays"].update(file="../data/part-000.parquet")),
        ("inspect", "m"),
        2,
        r"m/part-000\.parquet: not found",
    ),
    "a pickled array": (_npz_with_pickle, ("inspect", "m"), 2, r"not a valid array archive"),
    "model dir is a file": (_text("mf", "x"), ("inspect", "mf"), 2, r"mf: not a model directory"),
    # --------------------------------------------------------------- outputs
    "output a symlink to the data": (
        _symlink("link", "data"),
        ("fit", "c.yaml", "--set", "output.path=link"),
        2,
        r"output\.path 'link' is data\.path 'data'",
    ),
    "score output a symlink to the model": (
        _symlink("link", "m"),
        ("score", "--model", "m", "--input", "data", "--output", "link"),
        2,
        r"--output 'link' is --model 'm'",
    ),
    "score output a URL": (
        NOTHING,
        ("score", "--model", "m", "--input", "data", "--output", "s3://b/x"),
        2,
        r"writes to a local or shared directory, not a URL",
    ),
    "--keep colliding": (
        NOTHING,
        ("score", "--model", "m", "--input", "data", "--output", "s", "--keep", "uncertainty"),
        2,
        r"--keep 'uncertainty' would collide",
    ),
    "report into an empty directory": (
        lambda d: (d / "r.html").mkdir(),
        ("report", "m", "--output", "r.html"),
        2,
        r"--output 'r\.html' exists and is a directory; this command replaces only its own",
    ),
    "report into the data": (
        NOTHING,
        ("report", "m", "--data", "data", "--output", "data/r.png"),
        2,
        r"--output 'data/r\.png' lies inside --data 'data'",
    ),
    "generate over existing": (
        NOTHING,
        ("generate", "--output", "data", "--n-samples", "10", "--n-features", "2", "--n-components", "2"),
        2,
        r"already exists",
    ),
}
# Cases run by the installed command in a process of its own, with a reason each; every other case is found
# before any work and runs through click's runner in this process.
IN_A_PROCESS = {
    "an all-null column",  # found as the session's cluster reads the data
    "a column never observed",  # found once the data are read, on a LocalCluster of its own
    "nothing listens at --scheduler",  # a real connection that fails: exit 1 from the command
}


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile-model")
    GaussianMixture(3, random_state=0).fit(make_blobs(90)).save(root / "m")
    return root / "m"


@pytest.fixture
def workdir(tmp_path, model_files):
    """``data/``, ``c.yaml`` and a fitted model ``m/``, as every case starts from."""
    write_parquet(tmp_path / "data", make_blobs(91), 2)
    write_config(
        tmp_path / "c.yaml", data={"path": "data"}, model={"n_components": 3, "max_iter": 3}, output={"path": "out"}
    )
    shutil.copytree(model_files, tmp_path / "m")
    return tmp_path


@pytest.mark.parametrize("case", sorted(set(CASES) - IN_A_PROCESS))
def test_hostile_case_found_before_any_work(workdir, in_process, case):
    setup, args, code, pattern = CASES[case]
    if setup is not None:
        setup(workdir)
    before = tree_digest(workdir)
    run = in_process(workdir, *args)
    assert_user_error(run, pattern, code=code)
    assert "workers; dashboard:" not in run.stderr, run.stderr  # no cluster was started
    assert tree_digest(workdir) == before


@pytest.mark.parametrize("case", sorted(IN_A_PROCESS))
def test_hostile_case_in_a_process(workdir, request, case):
    setup, args, code, pattern = CASES[case]
    if setup is not None:
        setup(workdir)
    before = tree_digest(workdir)
    if any("{scheduler}" in a for a in args):
        address = request.getfixturevalue("client").scheduler.address
        args = tuple(a.format(scheduler=address) for a in args)
    assert_user_error(gmm(workdir, *args, timeout=120), pattern, code=code)
    assert tree_digest(workdir) == before
