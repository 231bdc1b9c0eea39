"""`googlenet.ray` on Ray Data: on one node, and on a cluster of two nodes on this machine.
Run inside a network namespace that has only loopback (`scripts/test` does), so that Ray's
traffic stays on 127.0.0.1."""

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

import googlenet.ray  # noqa: E402  (after the skip)

from conftest import SAMPLES, assert_same_predictions  # noqa: E402

RAY = Path(sys.executable).with_name("ray")
# Ray's token authentication would refuse the second node of a local cluster.
ENV = {**os.environ, "RAY_AUTH_MODE": "disabled"}


def rows_of(dataset):
    """Every row of `dataset`, as plain Python values, by path."""
    return {row["path"]: row for row in dataset.take_all()}


def predictions(row):
    """A row's predictions as a list of dicts, whatever Ray made of them."""
    return [dict(prediction) for prediction in row["predictions"]]


@pytest.fixture
def single_node():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_two_actors_on_one_node_answer_what_the_command_line_does(single_node, all_photos,
                                                                   cli_answers, tmp_path):
    # Half a CPU each: two whole ones would starve the tasks that read the files. An actor's
    # last images of a batch may run one at a time where the command line ran them in pairs
    # (F(4x4, 3x3) on the 28x28 layers), which moves a probability by up to 3.2e-6.
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a photo")
    paths = [str(path) for path in all_photos] + [str(broken)]
    dataset = ray.data.read_binary_files(paths, include_paths=True)
    classified = dataset.map_batches(googlenet.ray.Classify, fn_constructor_kwargs={"top_k": 5},
                                     batch_size=32, concurrency=2, num_cpus=0.5)
    rows = rows_of(classified)
    assert len(rows) == 1101
    assert rows[str(broken)]["error"] == "not an image (unrecognised format)"
    for path, answer in cli_answers.items():
        row = rows[path]
        assert row["error"] is None, row
        assert_same_predictions(predictions(row), answer["predictions"], tolerance=1e-5)
    images = ray.data.read_images([str(path) for path in all_photos[:8]], include_paths=True,
                                  mode="RGB")
    embedded = rows_of(images.map_batches(googlenet.ray.Embed, batch_size=4, concurrency=1,
                                          num_cpus=0.5))
    assert len(embedded) == 8
    assert all(len(row["embedding"]) == 1024 and row["error"] is None for row in embedded.values())


def ray_cli(*args):
    """Runs `ray ARGS`, failing the test with its output if it fails."""
    done = subprocess.run([RAY, *args], env=ENV, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"ray {' '.join(args)}: {done.stdout}{done.stderr}"


@pytest.fixture
def two_nodes():
    """The address of a cluster of two nodes of 3 CPUs on this machine, each started by `ray
    start`. `ray stop --force` ends it, and with it any other Ray node it sees: in the PID
    namespace that `scripts/test` runs the tests in, only the tests' own."""
    port = "6390"
    # A short folder: Ray's socket paths under it must fit in 107 bytes.
    with tempfile.TemporaryDirectory(prefix="ray-", dir="/tmp") as folder:
        try:
            ray_cli("start", "--head", f"--port={port}", "--include-dashboard=false",
                    "--num-cpus=3", "--disable-usage-stats", f"--temp-dir={folder}")
            ray_cli("start", f"--address=127.0.0.1:{port}", "--num-cpus=3")
            yield f"127.0.0.1:{port}"
        finally:
            subprocess.run([RAY, "stop", "--force"], env=ENV, capture_output=True, timeout=120)


def test_actors_on_two_nodes_answer_the_same(two_nodes, cli_answers):
    # Four batches of ten for two actors.
    paths = sorted(str(path) for path in SAMPLES.glob("*.JPEG"))[:40]
    driver = Path(__file__).with_name("cluster_driver.py")
    done = subprocess.run([sys.executable, str(driver), two_nodes], env=ENV, text=True,
                          input="".join(f"{path}\n" for path in paths), capture_output=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    rows = {row["path"]: row for row in map(json.loads, done.stdout.splitlines())}
    assert sorted(rows) == paths
    assert len({row["node"] for row in rows.values()}) == 2
    for path, row in rows.items():
        assert row["error"] is None, row
        assert_same_predictions(row["predictions"], cli_answers[path]["predictions"], 1e-5)
