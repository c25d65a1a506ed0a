"""Running a sweep: the Optuna study, one ``rvar fit`` subprocess per trial, the MLflow sweep run above them.

* The study lives in an Optuna storage (SQLite ``optuna.db`` beside the MLflow store by default) under a name
  derived from the sweep file, so running the same command again resumes it, and several processes (or
  machines sharing a database) can work on it at once. Trials are asked and told one at a time
  (``study.ask`` / ``study.tell``); the trial budget counts the study's finished (complete or pruned) trials, checked
  before each new trial, so processes running side by side may overshoot it by one trial each.
* Each trial is ``python -m rvar fit --config ... <fit_args> --KEY=VALUE ...`` in its own process (a fresh
  interpreter: no state leaks from one trial into the next) with its log, checkpoints and
  ``trainer.default_root_dir`` in ``<out>/trial-NNNN``. :class:`rvar.sweep.trial.ReportToTrial`, appended to its
  callbacks, reports the metric and prunes.
* MLflow: the process that creates the study creates one sweep run (its id is kept in the study); every trial's
  run is nested under it (MLflow's ``mlflow.parentRunId`` tag). The sweep run gets each trial's value as the
  metric ``trial/<metric>`` (step: trial number) and, whenever a process stops, the summary artifacts
  (:mod:`rvar.sweep.report`).
* Ctrl-C / SIGTERM: the running trial's ``rvar fit`` gets SIGTERM (Lightning finishes the batch and stops), the
  trial is told FAIL (a failed trial does not count towards the budget) and its values are enqueued, so the
  resumed sweep runs them first; the summary is written, the sweep run is marked KILLED, and the exception goes on to
  :func:`rvar.cli.main` (exit 130 / 143). A sweep killed outright (SIGKILL) leaves its trial RUNNING until its
  heartbeat is ``GRACE_SECONDS`` old; the next sweep process on the study then marks it FAIL and runs a copy.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

from rvar.errors import UserError
from rvar.sweep.space import SweepSpec, grid_size, make_pruner, make_sampler, trial_arguments
from rvar.sweep.trial import LOGGED_ATTR, PRUNED_ATTR, STORAGE_ENV

PARENT_TAG = "mlflow.parentRunId"  # MLflow's own tag: the UI nests a run under its parent
STUDY_TAG, TRIAL_TAG = "rvar.sweep.study", "rvar.sweep.trial"
RUN_ATTR = "rvar.mlflow_run_id"  # study user attribute: the sweep's MLflow run
HEARTBEAT_SECONDS, GRACE_SECONDS = 20, 120
STOP_SECONDS = 120  # how long an interrupted trial may take to stop before it is killed
MAX_FAILURES_IN_A_ROW = 3


@dataclass
class SweepOptions:
    """Where and how much: everything ``rvar sweep`` takes besides the sweep file."""

    study_name: str
    storage: str
    tracking_uri: str
    experiment: str
    out: Path
    trials: Optional[int] = None
    timeout: Optional[float] = None
    extra_fit_args: tuple = ()


def default_storage(tracking_uri: str) -> str:
    """``optuna.db`` in the folder of a local SQLite MLflow store, else in the working directory."""
    if tracking_uri.startswith("sqlite:///"):
        return "sqlite:///" + str(Path(tracking_uri[len("sqlite:///"):]).parent / "optuna.db")
    return "sqlite:///" + str(Path("optuna.db").resolve())


def absolute_storage(url: str) -> str:
    """A relative SQLite path made absolute (the trials and later resumptions then agree)."""
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        return "sqlite:///" + str(Path(url[len("sqlite:///"):]).expanduser().resolve())
    return url


def shown_url(url: str) -> str:
    """``url`` without a password (``postgresql://user:secret@host/db`` -> ``postgresql://user:***@host/db``)."""
    return re.sub(r"(//[^/:@]*):[^/@]*@", r"\1:***@", url)


@contextlib.contextmanager
def first_use_lock(urls: List[str]):
    """Hold a file lock beside each local SQLite database while opening it: Optuna and MLflow both create their
    tables on first use, and two processes doing it at once fail ("table alembic_version already exists")."""
    with contextlib.ExitStack() as stack:
        for url in sorted({u for u in urls if u.startswith("sqlite:///")}):
            path = Path(absolute_storage(url)[len("sqlite:///"):])
            try:
                import fcntl
            except ImportError:  # Windows: no flock; start the processes one after the other there
                break
            path.parent.mkdir(parents=True, exist_ok=True)
            handle = stack.enter_context(open(path.with_name(path.name + ".lock"), "w"))
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def open_storage(url: str):
    import optuna

    # SQLite: several processes wait for each other's writes instead of failing with "database is locked"
    kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else None
    try:
        # a trial whose sweep died without a word (SIGKILL) is failed once its heartbeat is stale, and run again
        retry = optuna.storages.RetryFailedTrialCallback(max_retry=2)
        return optuna.storages.RDBStorage(url, engine_kwargs=kwargs, heartbeat_interval=HEARTBEAT_SECONDS,
                                          grace_period=GRACE_SECONDS, failed_trial_callback=retry)
    except Exception as exc:  # noqa: BLE001 - SQLAlchemy's many errors: a wrong URL, a missing driver
        raise UserError(f"--storage {url}: cannot open the Optuna storage ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0][:200]})") from None


class Sweep:
    """One process's part of a sweep: call :meth:`run`."""

    def __init__(self, spec: SweepSpec, options: SweepOptions) -> None:
        import optuna
        from mlflow.tracking import MlflowClient

        from rvar.lit.tracking import ensure_experiment

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        # heartbeats and stale-trial checks are marked experimental, and Optuna expects them with optimize(); the
        # sweep drives them itself (ask / tell), so the warnings say nothing to its user
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
        self.spec, self.options = spec, options
        self.storage_url = absolute_storage(options.storage)
        with first_use_lock([self.storage_url, options.tracking_uri]):
            self.storage = open_storage(self.storage_url)
            self.study, created = self._open_study()
            self.client = MlflowClient(options.tracking_uri)
            self.experiment_id = ensure_experiment(self.client, options.experiment)
            self.run_id = self._sweep_run(created)
        self.budget = self._budget()

    # 1. the study and its MLflow run ----------------------------------------------------------------------------
    def _open_study(self):
        import optuna

        sampler, pruner = make_sampler(self.spec), make_pruner(self.spec.pruner)
        try:
            study = optuna.create_study(storage=self.storage, study_name=self.options.study_name, sampler=sampler,
                                        pruner=pruner, direction=self.spec.direction)
            return study, True
        except optuna.exceptions.DuplicatedStudyError:
            if self.spec.seed is not None and self.spec.sampler == "grid":
                # a grid point's id must mean the same values in every process (the seed shuffles the grid):
                # keep the seed, and only the choice among the unvisited points differs between processes
                sampler.reseed_rng()
            elif self.spec.seed is not None:  # another process with the same seed would suggest the same values
                self.spec.seed = (self.spec.seed + os.getpid()) % 2**31
                sampler = make_sampler(self.spec)
            study = optuna.load_study(study_name=self.options.study_name, storage=self.storage, sampler=sampler,
                                      pruner=pruner)
        if study.direction.name.lower() != self.spec.direction:
            raise UserError(f"study {self.options.study_name!r} exists and maximises/minimises the other way "
                            f"({study.direction.name.lower()}); give --study a new name")
        return study, False

    def _sweep_run(self, created: bool) -> str:
        """The sweep's MLflow run: made by the process that created the study (one creator: the storage's unique
        study name decides), found in the study by every other process and every resumption."""
        from rvar.lit.tracking import run_tags

        if created:
            tags = {**run_tags(), STUDY_TAG: self.options.study_name, "rvar.sweep.file": str(self.spec.path)}
            run = self.client.create_run(self.experiment_id, run_name=_sweep_run_name(self.options.study_name), tags=tags)
            run_id = run.info.run_id
            self.study.set_user_attr(RUN_ATTR, run_id)
            params = {"metric": self.spec.metric, "direction": self.spec.direction, "sampler": self.spec.sampler,
                      "pruner": json.dumps(self.spec.pruner), "config": ",".join(map(str, self.spec.config)),
                      "storage": shown_url(self.storage_url)}
            params.update({f"space/{p.key}": p.describe()[:250] for p in self.spec.parameters})
            for key, value in params.items():
                self.client.log_param(run_id, key, value)
            return run_id
        deadline = time.monotonic() + 60
        while RUN_ATTR not in self.study.user_attrs:  # the creating process is between its two writes
            if time.monotonic() > deadline:
                raise UserError(f"study {self.options.study_name!r} has no MLflow sweep run; give --study a new name")
            time.sleep(0.5)
        run_id = self.study.user_attrs[RUN_ATTR]
        self.client.update_run(run_id, status="RUNNING")
        return run_id

    def _budget(self) -> Optional[int]:
        trials = self.options.trials or self.spec.trials
        grid = grid_size(self.spec)
        if grid is not None:
            trials = min(trials or grid, grid)
        return None if trials is None else int(trials)

    # 2. the loop --------------------------------------------------------------------------------------------------
    def finished_count(self) -> int:
        from optuna.trial import TrialState

        return len(self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))

    def run(self) -> int:
        """Run trials until the budget is met (trials or seconds); returns the number this process ran."""
        import optuna

        timeout = self.options.timeout or self.spec.timeout
        start, ran, failures = time.monotonic(), 0, 0
        status = "FINISHED"
        print(f"sweep {self.options.study_name}: storage {shown_url(self.storage_url)}, MLflow run {self.run_id} "
              f"(experiment {self.options.experiment}); {self.finished_count()} trial(s) done before", file=sys.stderr)
        try:
            while True:
                optuna.storages.fail_stale_trials(self.study)
                if self.budget is not None and self.finished_count() >= self.budget:
                    break
                if timeout is not None and time.monotonic() - start >= timeout:
                    print(f"sweep: time budget of {timeout:g} s reached", file=sys.stderr)
                    break
                state = self.run_trial()
                ran += 1
                failures = failures + 1 if state == "FAIL" else 0
                if failures >= MAX_FAILURES_IN_A_ROW:
                    raise UserError(f"sweep: {failures} trials failed in a row; see the fit.log of the last one in "
                                    f"{self.options.out}")
        except KeyboardInterrupt:
            status = "KILLED"
            raise
        except BaseException:
            status = "FAILED"
            raise
        finally:
            self.finish(status)
        return ran

    def trial_folder(self, number: int) -> Path:
        return self.options.out / f"trial-{number:04d}"

    def command(self, trial_id: int, number: int, values: Dict[str, Any]) -> List[str]:
        folder = self.trial_folder(number)
        tags = {PARENT_TAG: self.run_id, STUDY_TAG: self.options.study_name, TRIAL_TAG: str(number)}
        callback = {"class_path": "rvar.sweep.trial.ReportToTrial",
                    "init_args": {"study_name": self.options.study_name, "trial_id": trial_id,
                                  "metric": self.spec.metric, "pruner": self.spec.pruner}}
        logger = "--trainer.logger.init_args."
        return [sys.executable, "-m", "rvar", "fit", *[a for c in self.spec.config for a in ("--config", str(c))],
                *self.spec.fit_args, *self.options.extra_fit_args, *trial_arguments(self.spec.parameters, values),
                f"--trainer.default_root_dir={folder}", f"--trainer.callbacks+={json.dumps(callback)}",
                f"{logger}tracking_uri={self.options.tracking_uri}", f"{logger}experiment_name={self.options.experiment}",
                f"{logger}run_name=trial-{number:04d}", f"{logger}tags={json.dumps(tags)}"]

    def run_trial(self) -> str:
        """Ask for a trial, run its ``rvar fit``, tell the outcome; returns the trial's state name."""
        from optuna.trial import TrialState

        trial = self.study.ask()
        values = {p.key: p.suggest(trial) for p in self.spec.parameters}
        trial.set_user_attr("rvar.host", f"{socket.gethostname()}:{os.getpid()}")
        folder = self.trial_folder(trial.number)
        folder.mkdir(parents=True, exist_ok=True)
        trial_id = trial._trial_id  # the storage's key, which the fit's callback reopens the trial with
        command = self.command(trial_id, trial.number, values)
        (folder / "command.json").write_text(json.dumps(command[1:], indent=1))
        shown = ", ".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in values.items())
        print(f"trial {trial.number}: {shown}", file=sys.stderr)
        started = time.monotonic()
        try:
            code = self._wait(command, folder, trial_id)
        except KeyboardInterrupt:
            _tell(self.study, trial, state=TrialState.FAIL)
            # the same values first when the sweep resumes (the grid sampler counts a failed point as visited)
            self.study.enqueue_trial(trial.params, user_attrs={"rvar.retry_of": trial.number})
            self._mark_trial_run(trial.number, "FAIL", status="KILLED")
            print(f"trial {trial.number}: stopped; it will be run again when the sweep resumes", file=sys.stderr)
            raise
        seconds = time.monotonic() - started
        frozen = self.storage.get_trial(trial_id)
        intermediate = frozen.intermediate_values
        if code == 2:  # a user error in the config: every trial would fail alike
            _tell(self.study, trial, state=TrialState.FAIL)
            raise UserError(f"trial {trial.number}: rvar fit: {_last_error(folder / 'fit.log')}")
        if code != 0 or not intermediate:
            _tell(self.study, trial, state=TrialState.FAIL)
            why = (f"rvar fit exited with {code}: {_last_error(folder / 'fit.log')}" if code != 0 else
                   f"no {self.spec.metric} was logged (logged: "
                   f"{', '.join(frozen.user_attrs.get(LOGGED_ATTR, [])) or 'nothing'})")
            print(f"trial {trial.number}: failed after {seconds:.0f} s: {why}", file=sys.stderr)
            self._mark_trial_run(trial.number, "FAIL")
            return "FAIL"
        last = intermediate[max(intermediate)]
        if PRUNED_ATTR in frozen.user_attrs:
            _tell(self.study, trial, state=TrialState.PRUNED)
            state = "PRUNED"
            print(f"trial {trial.number}: pruned at step {frozen.user_attrs[PRUNED_ATTR]} "
                  f"({self.spec.metric} {last:.4g}, {seconds:.0f} s)", file=sys.stderr)
        else:
            _tell(self.study, trial, last)
            state = "COMPLETE"
            print(f"trial {trial.number}: {self.spec.metric} {last:.4g} ({seconds:.0f} s)", file=sys.stderr)
        self.client.log_metric(self.run_id, f"trial/{self.spec.metric}", float(last), step=trial.number)
        if state == "COMPLETE" and self.study.best_trial.number == trial.number:
            self.client.log_metric(self.run_id, f"best/{self.spec.metric}", float(last), step=trial.number)
        self._mark_trial_run(trial.number, state)
        return state

    def _wait(self, command: List[str], folder: Path, trial_id: int) -> int:
        """Run one ``rvar fit`` to its end, beating the trial's heartbeat; on Ctrl-C / SIGTERM stop it first."""
        env = {**os.environ, STORAGE_ENV: self.storage_url}
        with open(folder / "fit.log", "w") as log:
            # its own session: a Ctrl-C in the terminal reaches the sweep, which stops the trial in order
            proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
            try:
                while True:
                    try:
                        return proc.wait(timeout=1.0)
                    except subprocess.TimeoutExpired:
                        self.storage.record_heartbeat(trial_id)
            except KeyboardInterrupt:
                self._stop(proc)
                raise

    @staticmethod
    def _stop(proc: subprocess.Popen) -> None:
        previous = None
        if hasattr(signal, "SIGTERM"):
            try:  # a second signal must not cut the clean-up short
                previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)
            except ValueError:  # not the main thread
                previous = None
        try:
            proc.send_signal(signal.SIGTERM)  # Lightning finishes the batch, saves, and ends the run
            proc.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)

    def _trial_run(self, number: int) -> Optional[str]:
        runs = self.client.search_runs([self.experiment_id], max_results=1,
                                       filter_string=f"tags.`{PARENT_TAG}` = '{self.run_id}' and "
                                                     f"tags.`{TRIAL_TAG}` = '{number}'")
        return runs[0].info.run_id if runs else None

    def _mark_trial_run(self, number: int, state: str, status: Optional[str] = None) -> None:
        run_id = self._trial_run(number)
        if run_id is None:
            return
        self.client.set_tag(run_id, "rvar.sweep.state", state)
        if status is not None and self.client.get_run(run_id).info.status == "RUNNING":
            self.client.set_terminated(run_id, status)

    def best_line(self) -> str:
        """One line for the terminal: the best trial so far and where the summary is."""
        from optuna.trial import TrialState

        done = self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
        pruned = sum(t.state == TrialState.PRUNED for t in done)
        best = _best(self.study)
        if best is None:
            return f"sweep {self.options.study_name}: {len(done)} trial(s), {pruned} pruned, none complete"
        params = ", ".join(f"{k}={v}" for k, v in best.params.items())
        return (f"sweep {self.options.study_name}: {len(done)} trial(s), {pruned} pruned; best trial {best.number}: "
                f"{self.spec.metric} {best.value:.4g} with {params} (summary in {self.options.out})")

    # 3. the end ---------------------------------------------------------------------------------------------------
    def finish(self, status: str) -> None:
        """Summary artifacts on the sweep run (the last process to stop leaves the final ones), then its status."""
        from rvar.sweep.report import write_summary

        try:
            files = write_summary(self.study, self.spec, self.options.out, self.client, self._trial_run)
            for path in files:
                self.client.log_artifact(self.run_id, str(path))
            best = _best(self.study)
            if best is not None:
                self.client.set_tag(self.run_id, "rvar.sweep.best_trial", str(best.number))
            self.client.set_terminated(self.run_id, status)
        except Exception as exc:  # noqa: BLE001 - reporting must not hide why the sweep stopped
            print(f"rvar: warning: sweep summary not written: {type(exc).__name__}: {exc}", file=sys.stderr)


def _tell(study, trial, *args, **kwargs) -> None:
    """``study.tell``, where the grid sampler's "grid exhausted" (``study.stop()``, which Optuna allows only inside
    ``optimize``) is not an error: the trial's state is stored before it, and the budget stops the sweep."""
    try:
        study.tell(trial, *args, **kwargs)
    except RuntimeError as exc:
        if "Study.stop" not in str(exc):
            raise


def _sweep_run_name(study_name: str) -> str:
    return study_name if study_name.startswith("sweep") else f"sweep-{study_name}"


def _best(study):
    try:
        return study.best_trial
    except ValueError:  # no complete trial yet
        return None


def _last_error(log: Path) -> str:
    """The ``rvar: error: ...`` line of a trial's log, else its last non-empty line."""
    try:
        lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "no log"
    errors = [line for line in lines if line.startswith("rvar: error:")]
    text = (errors or lines or ["no output"])[-1]
    return text.removeprefix("rvar: error: ")[:300]
