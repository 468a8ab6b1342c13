"""Run a benchmark's steps in dependency order: inline, in a pool of local workers, or as Ray tasks.

* local (default): ``workers`` subprocess steps at a time (1: one after the other); each gets
  ``OMP_NUM_THREADS = cores // workers`` so parallel torch processes do not oversubscribe the CPU;
* Ray (``ray_address``: ``auto``, ``ray://host:port``, ``local`` for a one-machine cluster started here):
  every subprocess step is a Ray task declaring its CPUs and GPUs (a training step of a GPU
  method: ``gpus`` of its spec), retried once if it fails; the head node gathers the results and
  writes every record (the output folder must be on a filesystem every node sees).

Scoring steps run in the head process. A failed step is recorded with its log's tail; the steps
that depend on it are skipped, the others go on.
"""

from __future__ import annotations

import os
import sys
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

from rich.console import Console

from nerfloc_plugins.benchmark.steps import (
    Step,
    error_line,
    finished,
    log_tail,
    remove_partial,
    run_command_step,
    write_failure,
    write_record,
)

CONSOLE = Console()


@dataclass
class RunSummary:
    done: List[str] = field(default_factory=list)
    """Steps finished by this run."""
    kept: List[str] = field(default_factory=list)
    """Steps finished by an earlier run (not redone)."""
    failed: Dict[str, str] = field(default_factory=dict)
    """Step id -> error (the log's tail)."""
    skipped: Dict[str, str] = field(default_factory=dict)
    """Step id -> the failed step it depends on."""


def ray_task(step: Step, out: Path, threads: Optional[int]) -> dict:
    """Ray's task body: run the step's command; raise on failure so Ray retries it once."""
    record = run_command_step(step, out, threads)
    if record["returncode"] != 0:
        raise RuntimeError(f"{step.id}: exit status {record['returncode']}\n{log_tail(record['log'])}")
    return record


class Runner:
    """Runs steps whose dependencies finished; see the module docstring."""

    def __init__(self, out: Path, workers: int = 1, ray_address: Optional[str] = None) -> None:
        self.out = out
        self.workers = max(1, workers)
        self.ray_address = ray_address
        self.threads = max(1, (os.cpu_count() or 1) // self.workers)

    def run(self, steps: Dict[str, Step]) -> RunSummary:
        summary = RunSummary()
        pending = dict(steps)
        for step_id in list(pending):
            if finished(self.out, step_id) is not None:
                summary.kept.append(step_id)
                del pending[step_id]
        done = set(summary.kept)
        submit = self.ray_submitter() if self.ray_address else self.local_submitter()
        running: Dict[Future, Step] = {}
        try:
            while pending or running:
                for step_id, step in list(pending.items()):
                    blocked = [d for d in step.deps if d in summary.failed or d in summary.skipped]
                    if blocked:
                        summary.skipped[step_id] = blocked[0]
                        del pending[step_id]
                    elif all(d in done for d in step.deps):
                        del pending[step_id]
                        if step.action is not None:  # in-process (scoring): now, in the head
                            self.finish(step, self.run_action(step), summary, done)
                        else:
                            if step.kind in ("train", "scene"):
                                remove_partial(step.output)
                            running[submit(step)] = step
                if not running:
                    if pending and not any(all(d in done for d in s.deps) for s in pending.values()):
                        for step_id in pending:  # dependencies not in the spec's steps
                            summary.skipped[step_id] = "missing dependency"
                        pending.clear()
                    continue
                completed, _ = wait(list(running), return_when=FIRST_COMPLETED)
                for future in completed:
                    step = running.pop(future)
                    self.finish(step, self.outcome(future), summary, done)
        except KeyboardInterrupt:
            for future in running:
                future.cancel()
            print(
                f"interrupted: {len(summary.kept) + len(summary.done)} finished steps are kept in "
                f"{self.out / 'steps'}; rerun the same command to resume",
                file=sys.stderr,
            )
            raise SystemExit(130) from None
        return summary

    def run_action(self, step: Step) -> dict:
        try:
            return {"returncode": 0, **step.action()}
        except Exception as err:  # a cell whose files cannot be scored is reported, not fatal
            return {"returncode": 1, "error": f"{type(err).__name__}: {err}"}

    def finish(self, step: Step, record: dict, summary: RunSummary, done: set) -> None:
        if record.get("returncode") == 0:
            write_record(self.out, step, record)
            summary.done.append(step.id)
            done.add(step.id)
            seconds = record.get("seconds")
            CONSOLE.print(f"[green]done[/green]  {step.id}" + (f" ({seconds:.0f} s)" if seconds is not None else ""))
        else:
            error = record.get("error") or log_tail(record.get("log", ""))
            write_failure(self.out, step, {**record, "error": error})
            summary.failed[step.id] = error
            CONSOLE.print(f"[red]failed[/red] {step.id}: {error_line(error)}")

    @staticmethod
    def outcome(future: Future) -> dict:
        try:
            return future.result()
        except Exception as err:  # Ray: the task failed twice (its error holds the log's tail)
            return {"returncode": 1, "error": str(err)}

    def local_submitter(self):
        pool = ThreadPoolExecutor(max_workers=self.workers)
        threads = self.threads if self.workers > 1 else None

        def task(step: Step) -> dict:
            CONSOLE.print(f"[bold]start[/bold] {step.id}")
            return run_command_step(step, self.out, threads)

        return lambda step: pool.submit(task, step)

    def ray_submitter(self):
        try:
            import ray
        except ImportError:
            raise ImportError("--ray-address needs Ray: pip install 'nerfloc[ray]' (or ray>=2.40)") from None
        if not ray.is_initialized():
            if self.ray_address == "local":
                ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
            else:
                ray.init(address=self.ray_address, include_dashboard=False, log_to_driver=False)
        remote = ray.remote(max_retries=1, retry_exceptions=True)(ray_task)

        def submit(step: Step) -> Future:
            CONSOLE.print(f"[bold]submitted[/bold] {step.id} ({step.cpus:g} CPU, {step.gpus:g} GPU)")
            task = remote.options(num_cpus=step.cpus, num_gpus=step.gpus).remote(step, self.out, None)
            return task.future()

        return submit
