"""A Ray driver of its own, for the two-node test: joins the cluster at ADDRESS, classifies
the photos named on stdin (a path a line) with `googlenet.ray.Classify` on two actors of two
CPUs, and prints a JSON line per row: its path, predictions and error, and the node it was
classified on. A process of its own, as a cluster's driver is: Ray's state in the pytest
process belongs to the single-node test's instance.

Usage: python cluster_driver.py ADDRESS < paths
"""

import json
import sys

import ray

import googlenet.ray

# Photos per batch, and per block read: a batch for each block.
BATCH = 10


class WhereClassify(googlenet.ray.Classify):
    """`Classify`, with the node each row was classified on."""

    def __call__(self, batch):
        answer = super().__call__(batch)
        answer["node"] = [ray.get_runtime_context().get_node_id()] * len(answer["path"])
        return answer


def main():
    paths = sys.stdin.read().split("\n")[:-1]
    ray.init(address=sys.argv[1], log_to_driver=False)
    # Both actors running before the first batch, and batches handed to the less busy one
    # wherever its files were read: otherwise the first actor up, or the one beside the
    # blocks, may take them all.
    context = ray.data.DataContext.get_current()
    context.wait_for_min_actors_s = 120
    context.execution_options.actor_locality_enabled = False
    # Nodes of 3 (logical) CPUs and actors of 2: two actors cannot share a node, and each node
    # keeps a CPU for the tasks that read the files.
    read = ray.data.read_binary_files(paths, include_paths=True,
                                      override_num_blocks=len(paths) // BATCH)
    classified = read.map_batches(WhereClassify, batch_size=BATCH, concurrency=2, num_cpus=2)
    for row in classified.take_all():
        predictions = [dict(prediction) for prediction in row["predictions"] or []]
        print(json.dumps({"path": row["path"], "node": row["node"], "error": row["error"],
                          "predictions": predictions}))


if __name__ == "__main__":
    main()
