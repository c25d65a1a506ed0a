"""Issue #13.5: two torchrun "nodes" (``--nnodes 2``, ``--node_rank 0/1``, master 127.0.0.1, one CPU process each,
gloo), launched the way users launch them on two machines (each node in its own working folder), train the tiny
tokenizer to the same weights as the 2-process single-node run of test_ddp.py, and only global rank 0 writes an
MLflow run (node 1's folder gets no run, no artifacts and no checkpoints).

Found here: Lightning's MLFlowLogger opens an ``MlflowClient`` on every rank, and a ``sqlite:///`` URI makes that
client create the (empty) database file, so node 1 got an ``mlflow.db`` without any run in it; rvar's logger now
opens no store on non-zero ranks (tests/unit/test_tracking_ranks.py), so node 1 has no ``mlflow.db`` at all."""
from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from fit_runs import command, environment, last_checkpoint, mlflow_runs, shared_run
from test_ddp import COMMON, DDP, relative_difference

NODES = ["--trainer.accelerator=cpu", "--trainer.devices=1", "--trainer.num_nodes=2", "--trainer.strategy=ddp",
         "--data.init_args.batch_size=1"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
@pytest.mark.ddp
@pytest.mark.timeout(1800)  # three CPU DDP fits; minutes on an idle machine, much longer on a shared one
def test_two_torchrun_nodes_match_a_two_process_run(tmp_path_factory, rvar_data_home):
    port = free_port()
    folders, nodes = [], []
    for node_rank in (0, 1):
        folder = tmp_path_factory.mktemp(f"node{node_rank}")
        fit_command = command(folder, COMMON + NODES)  # [python, -m, rvar, fit, ...]
        launcher = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--node_rank", str(node_rank),
                    "--nproc_per_node", "1", "--master_addr", "127.0.0.1", "--master_port", str(port),
                    "-m", *fit_command[2:]]
        log = open(folder / "node.log", "w")
        nodes.append(subprocess.Popen(launcher, cwd=folder, env=environment(rvar_data_home), stdout=log,
                                      stderr=subprocess.STDOUT))
        folders.append(folder)
    # the single-node reference (test_ddp.py's, made once per session) runs while the nodes train
    single_node = shared_run("ddp_two", tmp_path_factory, rvar_data_home, COMMON + DDP, timeout=900)
    for node, folder in zip(nodes, folders):
        try:
            code = node.wait(timeout=900)
        except subprocess.TimeoutExpired:
            for other in nodes:
                other.kill()
            raise
        assert code == 0, (folder / "node.log").read_text()[-4000:]
    multi = last_checkpoint(folders[0])
    assert multi["global_step"] == 3
    difference = relative_difference(multi, last_checkpoint(single_node))
    assert difference < 1e-6, f"two nodes differ from one node with two processes by {difference:.2e} (relative)"
    runs = mlflow_runs(folders[0])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    assert runs[0].data.params["trainer.num_nodes"] == "2"
    written = sorted(p.name for p in folders[1].iterdir())
    assert not {"mlflow.db", "mlruns", "mlartifacts", "outputs"} & set(written), f"node 1 wrote {written}"
