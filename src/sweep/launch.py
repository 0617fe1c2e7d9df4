"""Deciding what each run needs (skip, resume, start) and running it as a src/main.py process."""
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

import config_loader
from sweep.records import export_record
from sweep.run_folder import RunFolder, read_json

REPO_ROOT = os.path.dirname(config_loader.SRC_DIR)
INTERRUPT_GRACE_SECONDS = 60  # time a run gets after SIGTERM to write its INTERRUPTED record before SIGKILL


@dataclass
class Plan:
    action: str  # "skip", "conflict", "resume", "start"
    detail: str = ""
    checkpoint: str | None = None
    t_env: int | None = None


@dataclass
class Outcome:
    name: str
    result: str  # "completed", "skipped", "failed", "interrupted", "planned"
    detail: str = ""
    seconds: float | None = None
    reasons: list = field(default_factory=list)


def config_mismatches(config, updates):
    """The `with` keys whose value in a record's config.json differs from the run's (the folder holds another run)."""
    wrong = []
    for dotted, wanted in updates.items():
        node = config
        for part in dotted.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node != wanted:
            wrong.append(f"{dotted}={node!r} (grid: {wanted!r})")
    return wrong


def plan_run(spec, folder, records_dir):
    """What the run needs, judged from its results folder and the records folder."""
    sources = [(folder.record(folder.completed_id()), "completed")] if folder.completed_id() else []
    if records_dir:
        exported = os.path.join(records_dir, spec.name)
        if (read_json(os.path.join(exported, "run.json")) or {}).get("status") == "COMPLETED":
            sources.append((exported, f"completed, in {records_dir}"))
    for record, why in sources:
        wrong = config_mismatches(read_json(os.path.join(record, "config.json")) or {}, spec.updates)
        if wrong:
            return Plan("conflict", f"{record} holds a different run: {', '.join(wrong)}")
    if sources:
        return Plan("skip", sources[0][1])
    earlier = [folder.status(sacred_id) for sacred_id in folder.sacred_ids()]
    checkpoint = folder.resume_checkpoint() if spec.resumable else None
    if checkpoint:
        return Plan("resume", f"resumed at t_env {checkpoint[1]}", *checkpoint)
    if not earlier:
        return Plan("start")
    if not spec.resumable:
        why = "only MAZero runs resume"
    elif folder.has_checkpoints():
        why = "no checkpoint before its last Sacred heartbeat: its metrics were not on disk yet"
    else:
        why = "no checkpoint"
    return Plan("start", f"restarted after {', '.join(earlier)} attempt(s) ({why})")


class Launcher:
    """Runs RunSpecs as src/main.py processes; stop() interrupts the running ones and starts no more."""

    def __init__(self, sweep_dir, records_dir=None, beat_interval=None, python=sys.executable, echo=print):
        self.sweep_dir = os.path.abspath(sweep_dir)
        self.records_dir = os.path.abspath(records_dir) if records_dir else None
        # Sacred's heartbeat: how often a run's metrics reach disk, so what a kill loses at most
        self.sacred_flags = [f"--beat-interval={beat_interval}"] if beat_interval else []
        self.python = python
        self.echo = echo
        self.stopping = threading.Event()
        self.children = set()
        self.children_lock = threading.Lock()

    def folder(self, spec):
        return RunFolder(os.path.join(self.sweep_dir, spec.name))

    def dry_run(self, spec):
        folder = self.folder(spec)
        plan = plan_run(spec, folder, self.records_dir)
        if plan.action in ("skip", "conflict"):
            return Outcome(spec.name, "skipped" if plan.action == "skip" else "failed", plan.detail)
        command = _shell(spec.command(self.python, folder.path, plan.checkpoint, plan.t_env, self.sacred_flags))
        return Outcome(spec.name, "planned", f"{plan.detail}: {command}" if plan.detail else command)

    def run(self, spec):
        folder = self.folder(spec)
        if self.stopping.is_set():
            return Outcome(spec.name, "interrupted", "not started")
        if not folder.lock():
            holder = folder.lock_holder()
            return Outcome(spec.name, "skipped", f"still running ({holder or 'another sweep process'}); not resumed "
                                                 f"while it runs")
        try:
            plan = plan_run(spec, folder, self.records_dir)
            if plan.action == "conflict":
                return Outcome(spec.name, "failed", plan.detail)
            if plan.action == "skip":
                return self._export_if_missing(spec, folder, Outcome(spec.name, "skipped", plan.detail))
            return self._attempt(spec, folder, plan)
        finally:
            folder.unlock()

    def _attempt(self, spec, folder, plan):
        command = spec.command(self.python, folder.path, plan.checkpoint, plan.t_env, self.sacred_flags)
        resumed_from = {"checkpoint": plan.checkpoint, "t_env": plan.t_env} if plan.checkpoint else None
        ledger = folder.begin_attempt(command, resumed_from)
        offsets = folder.output_offsets()
        self.echo(f"[sweep] start {spec.name}{': ' + plan.detail if plan.detail else ''}")
        start = time.time()
        exit_code = self._wait(command, folder)
        seconds = time.time() - start
        folder.end_attempt(ledger, exit_code)
        new_records = ledger["attempts"][-1]["sacred_ids"]
        completed = exit_code == 0 and any(folder.status(s) == "COMPLETED" for s in new_records)
        if completed:
            outcome = Outcome(spec.name, "completed", plan.detail, seconds)
            return self._export_if_missing(spec, folder, outcome, force=True)
        result = "interrupted" if self.stopping.is_set() else "failed"
        why = f"exit code {exit_code}" if exit_code else "exit code 0 but no COMPLETED Sacred record"
        outcome = Outcome(spec.name, result, why, seconds, folder.stderr_tail(offsets["stderr"]))
        self.echo(f"[sweep] {result} {spec.name}: {why}")
        return outcome

    def _wait(self, command, folder):
        with open(os.path.join(folder.path, "stdout.txt"), "ab") as out, \
                open(os.path.join(folder.path, "stderr.txt"), "ab") as err:
            err.write(f"=== sweep attempt {time.strftime('%Y-%m-%d %H:%M:%S')}: {_shell(command)}\n".encode())
            err.flush()
            # own session: a terminal's Ctrl-C reaches the sweep only, which interrupts each run once (stop());
            # the run inherits the folder's lock, so it stays locked while the run lives, even if the sweep dies
            child = subprocess.Popen(command, cwd=REPO_ROOT, stdout=out, stderr=err, start_new_session=True,
                                     env=dict(os.environ, PYTHONUNBUFFERED="1"), pass_fds=(folder.lock_fd(),))
            folder.note_lock_holder(f"sweep pid {os.getpid()}, run pid {child.pid}")
            with self.children_lock:
                self.children.add(child)
                if self.stopping.is_set():  # stop() came between the check in run() and the start
                    child.send_signal(signal.SIGTERM)
            try:
                return child.wait()
            finally:
                with self.children_lock:
                    self.children.discard(child)

    def _export_if_missing(self, spec, folder, outcome, force=False):
        if not self.records_dir:
            return outcome
        completed_id = folder.completed_id()
        exported = os.path.isfile(os.path.join(self.records_dir, spec.name, "run.json"))
        if completed_id and (force or not exported):
            try:
                path = export_record(folder, completed_id, self.records_dir, spec.name)
            except (OSError, ValueError) as exc:
                return Outcome(spec.name, "failed", f"{outcome.result}, but the records export failed: {exc}",
                               outcome.seconds)
            outcome.detail = ", ".join(filter(None, [outcome.detail, f"record in {path}"]))
        return outcome

    def stop(self):
        """SIGTERM to every running run (main.py stops as on Ctrl-C and Sacred records INTERRUPTED; SIGINT could be
        ignored by a run whose sweep was started in the background by a script), SIGKILL after the grace period."""
        self.stopping.set()
        with self.children_lock:
            children = list(self.children)
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.time() + INTERRUPT_GRACE_SECONDS
        for child in children:
            try:
                child.wait(timeout=max(0.0, deadline - time.time()))
            except subprocess.TimeoutExpired:
                child.kill()


def _shell(command):
    return " ".join(shlex.quote(part) for part in command)
