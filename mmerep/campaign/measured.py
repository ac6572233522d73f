"""The work measured from a queue through the ``condor`` door: how many jobs wait or run,
and what an idle job asks for (its mean CPUs and memory). The mean CPU time per job is
not in a queue (jobs that finished have left it), so it stays typed in."""

from __future__ import annotations

import math

from mmerep.campaign.plan import Work
from mmerep.condor import Pool
from mmerep.errors import UsageError


def work_from_queue(pool: Pool, cpu_seconds: float, memory: int | None = None) -> Work:
    """Jobs = idle + running; CPUs and memory per job = the idle jobs' means (``memory``,
    typed in, when no job is idle to measure)."""
    queue = pool.queue()
    jobs = queue.idle_jobs + queue.running
    if jobs == 0:
        raise UsageError("the queue is empty: there is no work to plan",
                         hint="type it in with --jobs and --memory")
    if queue.idle:
        job_cpus = queue.idle_cpus / queue.idle_jobs
        memory = math.ceil(queue.idle_memory_mb / queue.idle_jobs * 2**20)
    elif memory is None:
        raise UsageError("no idle job in the queue to measure the memory per job from",
                         hint="give --memory")
    else:
        job_cpus = 1.0
    return Work(jobs, cpu_seconds, memory, job_cpus)
