"""The search itself: trials asked of the study and started as soon as a slot frees (not batch
by batch, as Hydra's sweepers do), each told to the study when its job ends. A stopped search's
RUNNING trials run again first, in their directories, from last.ckpt (docs/search.md)."""

import signal
import threading
import time
from collections import Counter
from pathlib import Path

from cnnlab import processes
from cnnlab.errors import ConfigError, first_line
from cnnlab.files import in_use, write_json
from cnnlab.results.progress import PLAN
from cnnlab.search import trials
from cnnlab.search.slots import Slot
from cnnlab.search.space import Space, override
from cnnlab.search.trials import Outcome, Running, trial_dir

STATES = {"COMPLETE": "finished", "PRUNED": "pruned", "FAIL": "failed"}  # Optuna's, in ours


class Stopped(Exception):
    """Ctrl-C or SIGTERM: the running trials were stopped, and are left for a rerun."""

    def __init__(self, signum: int, directory: Path):
        name = signal.Signals(signum).name
        super().__init__(f"stopped by {name}; go on with: python src/search.py --dir {directory}")
        self.signum = signum


class Search:
    def __init__(self, directory: Path, space: Space, fixed: list[str], slots: list[Slot], study):
        from optuna.trial import TrialState

        self.directory, self.space, self.fixed, self.slots = directory, space, fixed, slots
        self.study = study
        left = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        self.left = [t.number for t in left]  # a stopped search's: to run again first
        self.params = {t.number: t.params for t in left}
        self.busy: set[int] = set()  # of those, the ones whose directory was in use
        self.running: list[Running] = []
        self.signals: list[int] = []
        self.exhausted = False  # the sampler has nothing left to try (a grid, done)
        self.reporter = Reporter(directory)

    def run(self) -> None:
        """Run trials until the study has n_trials that ended (or the sampler is done)."""
        if self.left:
            again = ", ".join(map(str, self.left))
            say(f"{len(self.left)} trial(s) a stopped search left run again: {again}")
        write_json(self.directory / PLAN, {"jobs": self.space.n_trials})  # the report's progress
        with processes.noted() as self.signals:
            try:
                self._loop()
            except BaseException:  # stopped, refused, or a fault: no trial outlives the search
                processes.stop([trial.process for trial in self.running], seconds=30.0)
                self._collect(stopping=True)
                raise
            finally:
                self.reporter.close()

    def _loop(self) -> None:
        while True:
            if self.signals:
                raise Stopped(self.signals[0], self.directory)
            ended = self._collect()
            self._fill()
            if ended:
                self.reporter.ask()
            if not self.running and not self.left and not self._wants_more():
                return
            time.sleep(0.2)

    def _collect(self, stopping: bool = False) -> bool:
        """Tell the study how each trial whose process ended did; whether any ended."""
        ended = [r for r in self.running if r.process.poll() is not None]
        for trial in ended:
            self.running.remove(trial)
            got = trials.outcome(self.directory, trial.number, trial.process.returncode)
            if stopping and got.state in ("interrupted", "unrecorded"):
                say(f"trial {trial.number} interrupted: it runs again when the search is rerun")
                continue
            self._tell(trial.number, got)
            if got.refused and not stopping:  # every trial would be: stop here
                raise ConfigError(
                    f"trial {trial.number} was refused: {got.said.removeprefix('ConfigError: ')}"
                    f" (see {trial_dir(self.directory, trial.number) / 'trial.log'})"
                )
        return bool(ended)

    def _fill(self) -> None:
        taken = {r.slot for r in self.running}
        for slot in (i for i in range(len(self.slots)) if i not in taken):
            number = self._next_left()
            if number is None and self._wants_more():
                trial = self.study.ask(self.space.distributions())
                number, self.params[trial.number] = trial.number, trial.params
            if number is None:
                return
            self._start(number, slot)

    def _next_left(self) -> int | None:
        """The next trial a stopped search left, once its directory is free (a job of the
        stopped search may still be saving there); one that ended meanwhile is told now."""
        for number in list(self.left):
            if in_use(trial_dir(self.directory, number)):
                if number not in self.busy:
                    self.busy.add(number)
                    say(f"trial {number}: another process trains in its directory; waiting")
                continue
            self.left.remove(number)
            got = trials.outcome(self.directory, number, None)
            if got.state not in ("interrupted", "unrecorded"):
                self._tell(number, got)  # it ended before the search could say so
                continue
            return number
        return None

    def _wants_more(self) -> bool:
        return (
            not self.exhausted and len(self.study.get_trials(deepcopy=False)) < self.space.n_trials
        )

    def _start(self, number: int, slot: int) -> None:
        params = {key: self.params[number][key] for key in self.space.params}
        fixed = [*self.fixed, *self.slots[slot].overrides]  # the slot's come last: they win
        argv = trials.command(self.directory, number, fixed, params)
        process = trials.start(self.directory, number, argv, self.slots[slot])
        self.running.append(Running(number, slot, process))
        where = self.slots[slot].env.get("CUDA_VISIBLE_DEVICES")
        on = f" on GPU {where}" if where else ""
        say(f"trial {number} started{on}: {' '.join(override(k, v) for k, v in params.items())}")

    def _tell(self, number: int, got: Outcome) -> None:
        from optuna.trial import TrialState

        state = {"finished": TrialState.COMPLETE, "pruned": TrialState.PRUNED}
        try:
            self.study.tell(number, got.value, state=state.get(got.state, TrialState.FAIL))
        except RuntimeError as err:  # a sampler done with its grid calls study.stop(), which
            if "Study.stop" not in str(err):  # outside study.optimize() Optuna refuses; the
                raise  # trial's result is stored all the same
            self.exhausted = True
        said = f"best val acc {got.value:.4f}" if got.value is not None else got.said
        word = "failed" if got.state == "unrecorded" else got.state
        say(f"trial {number} {word}: {said}; {self._tally()}")

    def _tally(self) -> str:
        every = self.study.get_trials(deepcopy=False)
        ended = Counter(STATES[t.state.name] for t in every if t.state.name in STATES)
        said = ", ".join(f"{n} {s}" for s, n in ended.items())
        return (
            f"{sum(ended.values())} of {self.space.n_trials} trials ended ({said or 'none'}), "
            f"{len(self.running)} running"
        )


class Reporter:
    """Rewrites the report in a thread of its own as trials end: writing it takes seconds
    (Lightning and scipy are imported the first time), and must not hold up the next trial."""

    def __init__(self, directory: Path):
        self.directory, self.wanted, self.closing = directory, threading.Event(), False
        self.thread = threading.Thread(target=self._write, daemon=True)
        self.thread.start()

    def ask(self) -> None:
        self.wanted.set()  # several trials ending meanwhile: one report, after the last

    def close(self) -> None:
        """End once the report being written is: the search's plots must not draw meanwhile."""
        self.closing = True
        self.wanted.set()
        self.thread.join()

    def _write(self) -> None:
        while self.wanted.wait():
            self.wanted.clear()
            if self.closing:
                return
            report(self.directory)


def report(directory: Path, show: bool = False) -> None:
    """The sweep report over every trial (report.md, report.csv, curves.png)."""
    from cnnlab.results.report import write_report  # (Lightning, scipy: once the first trial ended)

    try:
        write_report([directory], show=show)
    except Exception as err:  # the trials' own records matter more than their report
        say(f"the report could not be written: {first_line(err)}")


def say(text: str) -> None:
    print(f"search: {text}", flush=True)
