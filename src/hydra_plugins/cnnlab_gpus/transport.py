"""What a ``hydra/launcher=gpus`` job's process is sent and sends back, both sides in one place:
how it finds the task, the parent's OmegaConf resolvers, and a failed job's exception with its
traceback. cloudpickle, as submitit uses it, carries what exists only in the parent (a resolver
registered in a script's ``__main__`` block, a task defined inside a function)."""

import importlib.util
import inspect
import pickle
import sys
import traceback
from operator import attrgetter

import cloudpickle
from hydra.core.utils import JobReturn, JobStatus
from hydra.types import TaskFunction
from omegaconf.basecontainer import BaseContainer

# The parent's side.


def task_reference(task: TaskFunction) -> tuple[str, str, str | None, bool] | TaskFunction:
    """How the child finds the task: by module and name, so that tracebacks name the user's
    files (cloudpickle files what it sends by value as "<dynamic-code>"). A script's ``__main__``
    is loaded from its file, ``python -m pkg.app``'s imported as ``pkg.app`` (its relative
    imports then work), neither running its ``__main__`` block. The flag: the name holds
    ``@hydra.main``'s wrapper. A task not found by name (a closure, an object) goes by value."""
    module, name = getattr(task, "__module__", None), getattr(task, "__qualname__", "<locals>")
    if "<locals>" in name or module not in sys.modules:
        return task
    found = sys.modules[module]
    for part in name.split("."):
        found = getattr(found, part, None)
    wrapped = found is not task
    if module != "__main__":
        return module, name, None, wrapped
    main = sys.modules["__main__"]
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name:
        return spec.name, name, None, wrapped
    return module, name, getattr(main, "__file__", None), wrapped


def pickled_resolvers() -> dict[str, bytes]:
    """Each OmegaConf resolver of this process that can be sent, pickled on its own: one that
    cannot is left to the job's own imports (and named there, if a config uses it)."""
    pickled = {}
    for name, resolver in BaseContainer._resolvers.items():
        try:
            pickled[name] = cloudpickle.dumps(resolver)
        except Exception:  # noqa: BLE001, S112 - e.g. a resolver holding a lock or a file
            continue
    return pickled


class RemoteTraceback(Exception):
    """The failed job's traceback, from its process: the cause of the error it raised there,
    so that the error printed at the end of the sweep shows the frames of the user's code."""

    def __str__(self) -> str:
        return f'\n"""\n{self.args[0]}"""'


def rebuilt(failure: dict) -> BaseException:
    """The job's exception (else a RuntimeError naming it), caused by its traceback there."""
    error = None
    if failure["error"] is not None:
        try:
            error = pickle.loads(failure["error"])
        except Exception:  # noqa: BLE001 - e.g. an exception class that takes other arguments
            error = None
    if not isinstance(error, BaseException):
        error = RuntimeError(failure["summary"])
    error.__cause__ = RemoteTraceback(failure["traceback"])
    return error


# The job's side.


def task(reference):
    """The task function from what ``task_reference`` sent."""
    if callable(reference):
        return reference
    module, name, path, wrapped = reference
    if path is None:
        found = attrgetter(name)(importlib.import_module(module))
    else:
        spec = importlib.util.spec_from_file_location("cnnlab_gpus_task", path)
        script = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(script)
        found = attrgetter(name)(script)
    return inspect.unwrap(found) if wrapped else found


def resolvers(pickled: dict[str, bytes]) -> dict:
    loaded = {}
    for name, blob in pickled.items():
        try:
            loaded[name] = cloudpickle.loads(blob)
        except Exception as error:  # noqa: BLE001 - a config that uses it names it if needed
            print(f"resolver {name} could not be rebuilt here: {error}", file=sys.stderr)
    return loaded


def failure(ret: JobReturn) -> dict | None:
    """What a failed job sends back; its traceback also goes to launcher.log, as Hydra's would."""
    if ret.status != JobStatus.FAILED:
        return None
    error = ret._return_value
    text = "".join(traceback.format_exception(error))
    print(text, file=sys.stderr, flush=True)
    ret._return_value = None
    try:
        blob = cloudpickle.dumps(error)
    except Exception:  # noqa: BLE001 - the summary and the traceback still go back
        blob = None
    return {"error": blob, "summary": f"{type(error).__name__}: {error}", "traceback": text}
