"""ferkit: train, evaluate, explain and ensemble facial-expression classifiers on FER2013."""

import contextlib
import importlib
import importlib.util
import json
import os
import signal
import sys
import threading

# On a 2-core CPU, TensorFlow's default of running independent ops in parallel on top of
# 2 intra-op threads oversubscribes the cores: one inter-op thread trained the CNN 1.6x faster
# (bench/RESULTS.md). Set before TensorFlow is imported; a user's own setting wins.
# A value ferkit set is marked, so that a script started by another ferkit process (tests,
# bench scripts) still chooses its own rather than taking its parent's for the user's.
_MARK = "FERKIT_SET_INTEROP_THREADS"
_USER_INTEROP_THREADS = os.environ.get("TF_NUM_INTEROP_THREADS")
if os.environ.get(_MARK) == _USER_INTEROP_THREADS:  # ferkit's own, from a parent process
    _USER_INTEROP_THREADS = None
if _USER_INTEROP_THREADS is None:
    os.environ["TF_NUM_INTEROP_THREADS"] = os.environ[_MARK] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"


def use_interop_threads(count):
    """TensorFlow's inter-op threads for this process, unless the user set them or
    TensorFlow has already started (it reads them once)."""
    if _USER_INTEROP_THREADS is None and "tensorflow" not in sys.modules:
        os.environ["TF_NUM_INTEROP_THREADS"] = os.environ[_MARK] = str(count)


__all__ = ["backend"]

# The Python package each Keras backend needs.
KERAS_BACKEND_PACKAGES = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}


def keras_backend_choice():
    """(the backend Keras will start, where that is set), read as Keras reads it, without
    importing Keras (seconds)."""
    name, source = os.environ.get("KERAS_BACKEND"), "KERAS_BACKEND"
    if not name:  # then Keras reads its keras.json, as here
        home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
        source = os.path.join(home, "keras.json")
        try:
            with open(source, encoding="utf-8") as file:
                name = json.load(file).get("backend")
        except (OSError, ValueError, AttributeError):
            name = None
    return name or "tensorflow", source


def keras_backend_problem():
    """Why Keras cannot start its backend here, in one line, or None; found without
    importing Keras (whose own failure is a traceback, after a run folder may exist)."""
    name, source = keras_backend_choice()
    if name not in KERAS_BACKEND_PACKAGES:
        choices = ", ".join(KERAS_BACKEND_PACKAGES)
        return f"{source}: backend {name!r} is not one ferkit runs on ({choices})"
    if importlib.util.find_spec(KERAS_BACKEND_PACKAGES[name]) is None:
        return (
            f"{source}: backend {name!r} needs the {KERAS_BACKEND_PACKAGES[name]} package, "
            "which is not installed (install it, or choose another backend)"
        )
    return None


def check_keras_backend():
    from ferkit.errors import FerError

    problem = keras_backend_problem()
    if problem:
        raise FerError(problem)


class _QuietKerasImport:
    """Make the first ``import keras``, from whichever module, go through ferkit.backend.

    Keras is not imported here any more: importing TensorFlow takes about 5 s, and a script
    that refuses a bad option or a bad data file should say so before paying for it. Keras
    is still always started quietly (see ferkit/backend.py): this finder wraps the real
    loader of ``keras`` so that its first import silences stderr and starts the backend.
    """

    def find_spec(self, name, path=None, target=None):
        if name != "keras":
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                spec.loader = _QuietLoader(spec.loader)
                return spec
        return None


class _QuietLoader:
    def __init__(self, loader):
        self._loader = loader

    def __getattr__(self, name):
        return getattr(self._loader, name)

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        if _HOOK in sys.meta_path:
            sys.meta_path.remove(_HOOK)
        # One Keras starts but ferkit does not run on (numpy: predict.py wrote a submission,
        # saliency.py failed after loading the model) is named before it starts.
        check_keras_backend()
        with _interrupts_after():
            saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 2)
            try:
                self._loader.exec_module(module)
            except (ImportError, ValueError):
                check_keras_backend()  # a missing or unknown backend, said in one line
                raise
            finally:
                os.dup2(saved, 2)
                os.close(saved)
                os.close(devnull)
            importlib.import_module("ferkit.backend")  # starts the backend, also quietly


@contextlib.contextmanager
def _interrupts_after():
    """Hold back a Ctrl-C (or a SIGTERM that cli.run stops on) until the block has run, then
    deliver it. TensorFlow imports JAX where it is installed, and JAX's garbage-collection
    callback swallows a KeyboardInterrupt raised inside it ("Exception ignored"): a Ctrl-C
    during those seconds was lost and the run trained to its end."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread receives signals
        return
    # Python's own handlers only: the default ones (numbers) stop the process themselves.
    handlers = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
    held = {number: handler for number, handler in handlers.items() if callable(handler)}
    received = []
    for number in held:
        signal.signal(number, lambda number, frame: received.append(number))
    try:
        yield
    finally:
        for number, handler in held.items():
            signal.signal(number, handler)
    if received:
        held[received[0]](received[0], None)


def __getattr__(name):
    # ``ferkit.backend`` without importing it first, as when it was imported here eagerly.
    if name == "backend":
        return importlib.import_module("ferkit.backend")
    raise AttributeError(f"module 'ferkit' has no attribute {name!r}")


_HOOK = _QuietKerasImport()
if "keras" not in sys.modules:
    sys.meta_path.insert(0, _HOOK)
