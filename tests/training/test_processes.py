"""A run's processes under torchrun on several nodes: the rank (which process is the main one, and
which share of a batch it takes) is the global RANK, the GPU a process takes is its LOCAL_RANK."""

import pytest
import torch

from sashimi import train as train_cmd
from sashimi.training import processes

# torchrun's environment on the second of two nodes with 4 processes each: global ranks 4-7, local 0-3
SECOND_NODE = [(4, 0), (5, 1), (6, 2), (7, 3)]


@pytest.mark.parametrize("rank, local_rank", SECOND_NODE)
def test_the_rank_is_global_on_every_node(rank, local_rank, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "8")
    monkeypatch.setenv("RANK", str(rank))
    monkeypatch.setenv("LOCAL_RANK", str(local_rank))
    procs = processes.Processes.from_environment()
    assert (procs.rank, procs.world) == (rank, 8)
    assert procs.distributed and not procs.is_main  # only global rank 0 writes the run, not each node's first


def test_only_global_rank_zero_is_the_main_process(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "8")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert processes.Processes.from_environment().is_main
    for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(name)
    alone = processes.Processes.from_environment()
    assert (alone.rank, alone.world, alone.distributed, alone.is_main) == (0, 1, False, True)
    assert processes.Processes() == alone  # the default is the single process


@pytest.mark.parametrize("rank, local_rank", SECOND_NODE)
def test_a_cuda_process_takes_the_gpu_of_its_local_rank(rank, local_rank, monkeypatch):
    """Each node has its own GPUs 0-3: global rank 5 takes cuda:1 (there is no cuda:5 on a node)."""
    monkeypatch.setenv("WORLD_SIZE", "8")
    monkeypatch.setenv("RANK", str(rank))
    monkeypatch.setenv("LOCAL_RANK", str(local_rank))
    taken, joined = [], []
    monkeypatch.setattr(torch.cuda, "set_device", taken.append)
    monkeypatch.setattr(processes.dist, "init_process_group", joined.append)
    procs = processes.Processes.from_environment()
    device = processes.start_processes(torch.device("cuda"), procs)
    assert device == torch.device("cuda", local_rank) and taken == [device]
    assert joined == ["nccl"]


def test_a_cpu_process_joins_with_gloo_and_keeps_its_device(monkeypatch):
    monkeypatch.setenv("LOCAL_RANK", "1")
    joined = []
    monkeypatch.setattr(processes.dist, "init_process_group", joined.append)
    assert processes.start_processes(torch.device("cpu"), processes.Processes(5, 8)) == torch.device("cpu")
    assert joined == ["gloo"]


@pytest.mark.parametrize("rank", [0, 1])
def test_a_check_before_the_group_is_said_once_by_rank_zero(rank, monkeypatch, capsys):
    """Every rank fails the batch check with the same flags: only rank 0 prints it, and both exit 2."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", str(rank))
    assert train_cmd.main(["--batch-size", "5", "--max-steps", "1"]) == 2
    err = capsys.readouterr().err
    want = ["error: --batch-size 5 must be divisible by the number of processes 2"] if rank == 0 else []
    assert err.splitlines() == want


def test_a_failure_in_the_group_is_said_by_each_rank_that_meets_it(monkeypatch):
    """Once the group has started a failure may be one rank's own: each says it, naming itself."""
    monkeypatch.setattr(processes.dist, "is_initialized", lambda: True)
    assert processes.error_line("no data", processes.Processes(3, 4)) == "error: rank 3 of 4: no data"
    assert processes.error_line("no data", processes.Processes(0, 4)) == "error: rank 0 of 4: no data"
    monkeypatch.setattr(processes.dist, "is_initialized", lambda: False)
    assert processes.error_line("no data", processes.Processes(3, 4)) is None
    assert processes.error_line("no data", processes.Processes(0, 1)) == "error: no data"
