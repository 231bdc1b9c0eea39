"""What the tests share: the 1,100 shared labelled photos, the `googlenet` binary built by
`cargo build --release`, its records for the photos, and one loaded classifier."""

import json
import subprocess
from pathlib import Path

import pytest

import googlenet

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared"
BINARY = ROOT / "target" / "release" / "googlenet"
SAMPLES = SHARED / "data" / "imagenet-samples"
FLICKR = SHARED / "data" / "flickr-1000"


def photos():
    """The 1,100 shared photos: the ImageNet samples, then the Flickr photos, sorted."""
    found = sorted(SAMPLES.glob("*.JPEG")) + sorted(FLICKR.glob("*.jpg"))
    assert len(found) == 1100, f"{len(found)} photos in {SAMPLES} and {FLICKR}"
    return found


def googlenet_cli(*args, **kwargs):
    """Runs the `googlenet` binary with `args`; its completed process."""
    assert BINARY.exists(), f"{BINARY} is missing: run `cargo build --release` first"
    return subprocess.run([str(BINARY), *map(str, args)], capture_output=True, check=False, **kwargs)


def cli_records(paths, *args):
    """`googlenet classify --format jsonl` of `paths` (read from stdin), by path."""
    listed = "".join(f"{path}\n" for path in paths).encode()
    done = googlenet_cli("classify", "--quiet", "--format", "jsonl", "--files-from", "-",
                         *args, input=listed)
    assert done.returncode in (0, 2), done.stderr.decode()
    records = [json.loads(line) for line in done.stdout.decode().splitlines()]
    return {record["path"]: record for record in records}


@pytest.fixture(scope="session")
def all_photos():
    return photos()


@pytest.fixture(scope="session")
def cli_answers(all_photos):
    """The command line's records for the 1,100 photos, by path."""
    return cli_records(all_photos)


@pytest.fixture(scope="session")
def classifier():
    return googlenet.Classifier(threads=2)


def assert_same_predictions(ours, theirs, tolerance=1e-6):
    """The same top-5 classes in the same order, each probability within `tolerance`."""
    assert [p["index"] for p in ours] == [p["index"] for p in theirs]
    for a, b in zip(ours, theirs):
        assert (a["rank"], a["synset"], a["name"]) == (b["rank"], b["synset"], b["name"])
        assert abs(a["probability"] - b["probability"]) <= tolerance, (a, b)
