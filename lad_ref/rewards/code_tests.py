"""Test layouts of the code datasets, the drivers that run them, and output comparison (pure Python).

:func:`parse_tests` turns each dataset's own test layout into a list of :class:`Case`, with no conversion by
the user. Accepted layouts (a JSON string of any of them is accepted too):

1. **stdin/stdout list** -- ``[{"input": str, "output": str}, ...]`` (DeepCoder's codeforces / primeintellect
   rows, the original lad_ref format). An entry may carry LiveCodeBench's ``"testtype"``: ``"stdin"`` or
   ``"functional"``; a functional entry needs the function name in ``entry["metadata"]["func_name"]``
   (``metadata`` may be a JSON string), its ``input`` is one JSON value per line (the arguments) and its
   ``output`` one JSON value (DeepCoder's ``lcbv5`` / LeetCode rows).
2. **APPS / TACO dict of lists** -- ``{"inputs": [...], "outputs": [...], "fn_name": optional}``. Without
   ``fn_name``: stdin/stdout (a list of lines is joined with newlines). With ``fn_name``: call-based, as
   in APPS' ``testing_util``: ``inputs[i]`` is the argument list, ``outputs[i]`` the return value or the
   return value wrapped in a one-element list.
3. **LiveCodeBench row** -- a dict with ``"public_test_cases"`` and/or ``"private_test_cases"`` (lists of
   entries as in 1, a JSON string of one, or LiveCodeBench's compressed form: base64 of zlib of a pickled
   JSON string, decoded with an unpickler that refuses every class) and ``"metadata"`` (``func_name``). The
   row's other fields (``question_content``, ``starter_code``, ...) are ignored.
4. **Test code** (HumanEval, HumanEval+, MBPP-style) -- ``{"test": str, "entry_point": str}`` with
   HumanEval's field names; ``test`` defines ``check(candidate)`` or is bare asserts naming the function
   (MBPP). HumanEval's ``prompt`` is used when present (its helpers, e.g. HumanEval/32's ``poly``, are then
   the dataset's); ``task_id`` and ``canonical_solution`` are ignored.

Call-based cases run the program (as a module named ``solution``, so its ``if __name__ == "__main__"`` block
does not run; after LiveCodeBench's import header, so ``List``, ``deque``, ``inf`` need no import) and call the top-level function ``fn_name``, or ``Solution().fn_name`` (LeetCode), with the
arguments; the result goes through a JSON round trip (tuples become lists) and is compared with the
expected value (:func:`values_match`: floats within :data:`FLOAT_TOLERANCE`, as APPS/verl's ``prime_code``
allow). Test-code cases run in two sandboxes (:func:`server_driver_source`, :func:`checker_driver_source`,
``lad_ref.rewards.code._run_code_case``): the program answers calls, the test code runs in a process the
program cannot reach, and values cross as plain data (``_PLAIN_CODEC``).

**Early exit does not pass.** A driver reads a random nonce from stdin before the program runs (stdin is
then replaced by ``/dev/null``), and prints it only after the call / ``check`` returned; the parent
requires it. ``os._exit(0)``, ``sys.exit(0)``, or printing a fake result at import time therefore fail. For
call-based cases the nonce is in the program's process, but forging it only delivers a result of the
program's choosing, which the parent compares -- the same as returning it. For test-code cases the nonce
lives only in the test's process.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import math
import pickle
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["Case", "FLOAT_TOLERANCE", "LAYOUTS", "parse_tests", "outputs_match", "values_match"]

#: Relative and absolute tolerance for floats in stdout tokens and call-based results.
FLOAT_TOLERANCE = 1e-6

#: One line per accepted layout, for error messages.
LAYOUTS = (
    '[{"input": str, "output": str}, ...] (stdin/stdout; entries may have LiveCodeBench\'s "testtype" and '
    '"metadata"), {"inputs": [...], "outputs": [...], "fn_name"?: str} (APPS/TACO/DeepCoder), a LiveCodeBench '
    'row with "public_test_cases"/"private_test_cases" and "metadata", or {"test": str, "entry_point": str} '
    "(HumanEval/MBPP test code); or a JSON string of one"
)

_ENTRY_KEYS = {"input", "output", "testtype", "metadata"}
_TACO_KEYS = {"inputs", "outputs", "fn_name"}
_HUMANEVAL_KEYS = {"test", "entry_point", "task_id", "prompt", "canonical_solution"}


@dataclasses.dataclass(frozen=True)
class Case:
    """One test. ``kind``: ``"stdin"`` (``stdin`` -> ``expected`` text), ``"call"`` (``fn_name(*args)`` ->
    ``expected`` value) or ``"code"`` (``test`` code with ``check(entry_point)``)."""

    kind: str
    stdin: str = ""
    expected: Any = None
    fn_name: str = ""
    args: tuple = ()
    test: str = ""
    entry_point: str = ""
    prompt: str = ""

    @property
    def size(self) -> int:
        """How big the test is (the cap on tests per problem keeps the largest, as rLLM's DeepCoder reward)."""
        if self.kind == "stdin":
            return len(self.stdin)
        if self.kind == "call":
            return len(json.dumps(list(self.args)))
        return len(self.test)


class _NoClasses(pickle.Unpickler):
    def find_class(self, module, name):  # LiveCodeBench pickles a plain str: nothing else is allowed
        raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name} from a test field")


def _maybe_json(value, what: str):
    if isinstance(value, (bytes, bytearray)):
        value = value.decode("utf-8")
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError:
        pass
    try:  # LiveCodeBench's private tests: base64(zlib(pickle(json string)))
        raw = _NoClasses(io.BytesIO(zlib.decompress(base64.b64decode(value, validate=True)))).load()
        return json.loads(raw)
    except Exception:
        raise ValueError(f"{what} is a string that is neither JSON nor LiveCodeBench's compressed tests: "
                         f"{value[:80]!r}") from None


def _func_name(metadata, where: str) -> str:
    metadata = _maybe_json(metadata, f"{where} metadata") if metadata is not None else {}
    name = metadata.get("func_name") if isinstance(metadata, Mapping) else None
    if not isinstance(name, str) or not name:
        raise ValueError(f"{where} is a functional test but its metadata has no 'func_name': {metadata!r:.200}")
    return name


def _text(value, where: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, Sequence) and all(isinstance(v, str) for v in value):
        return "\n".join(value)  # TACO stores some stdin inputs/outputs as lists of lines
    raise ValueError(f"{where} must be a str (or a list of lines) for a stdin/stdout test, got {type(value).__name__}")


def _entries(entries, where: str, metadata=None) -> list[Case]:
    if isinstance(entries, (str, bytes, Mapping)) or not isinstance(entries, Sequence):
        raise ValueError(f"{where} must be a list of test entries, got {type(entries).__name__}")
    cases = []
    for i, entry in enumerate(entries):
        at = f"{where}[{i}]"
        if not isinstance(entry, Mapping) or not {"input", "output"} <= set(entry):
            raise ValueError(f"{at} must be a dict with 'input' and 'output' keys, got {entry!r:.200}")
        unknown = set(entry) - _ENTRY_KEYS
        if unknown:
            raise ValueError(f"{at} has unknown key(s) {sorted(unknown)}; a test entry has {sorted(_ENTRY_KEYS)}")
        testtype = entry.get("testtype", "stdin")
        if testtype == "stdin":
            if not isinstance(entry["input"], str) or not isinstance(entry["output"], str):
                raise ValueError(
                    f"{at}['input'] and ['output'] must be str, got "
                    f"{type(entry['input']).__name__} and {type(entry['output']).__name__}"
                )
            cases.append(Case("stdin", stdin=entry["input"], expected=entry["output"]))
        elif testtype == "functional":
            name = _func_name(entry.get("metadata", metadata), at)
            try:
                args = tuple(json.loads(line) for line in _text(entry["input"], at).split("\n") if line.strip())
                expected = json.loads(_text(entry["output"], at))
            except ValueError as exc:
                raise ValueError(f"{at} is a functional test whose input/output is not JSON per line: {exc}") from None
            cases.append(Case("call", fn_name=name, args=args, expected=expected))
        else:
            raise ValueError(f"{at} has testtype {testtype!r}; valid: 'stdin', 'functional'")
    return cases


def parse_tests(tests) -> list[Case]:
    """The tests of one problem as :class:`Case` objects, from any layout in the module docstring.

    Raises:
        ValueError: an unknown layout or key, or a malformed value; the message names what was given and
            what is accepted.
    """
    tests = _maybe_json(tests, "tests")
    if isinstance(tests, Mapping):
        keys = set(tests)
        if {"test", "entry_point"} <= keys:
            unknown = keys - _HUMANEVAL_KEYS
            if unknown:
                raise ValueError(f"test-code tests have unknown key(s) {sorted(unknown)}; accepted: {sorted(_HUMANEVAL_KEYS)}")
            if not isinstance(tests["test"], str) or not isinstance(tests["entry_point"], str) or not tests["entry_point"]:
                raise ValueError("test-code tests need 'test' (str, defining check(candidate)) and 'entry_point' (str)")
            prompt = tests.get("prompt") or ""
            if not isinstance(prompt, str):
                raise ValueError(f"test-code tests' 'prompt' must be a str, got {type(prompt).__name__}")
            return [Case("code", test=tests["test"], entry_point=tests["entry_point"], prompt=prompt)]
        if {"inputs", "outputs"} <= keys:
            unknown = keys - _TACO_KEYS
            if unknown:
                raise ValueError(f"APPS/TACO tests have unknown key(s) {sorted(unknown)}; accepted: {sorted(_TACO_KEYS)}")
            inputs, outputs = tests["inputs"], tests["outputs"]
            if not isinstance(inputs, list) or not isinstance(outputs, list) or len(inputs) != len(outputs):
                raise ValueError(
                    f"APPS/TACO tests need 'inputs' and 'outputs' lists of equal length, got "
                    f"{type(inputs).__name__} of {len(inputs) if isinstance(inputs, list) else '?'} and "
                    f"{type(outputs).__name__} of {len(outputs) if isinstance(outputs, list) else '?'}"
                )
            fn_name = tests.get("fn_name")
            if fn_name in (None, ""):
                cases = [Case("stdin", stdin=_text(i, f"inputs[{k}]"), expected=_text(o, f"outputs[{k}]"))
                         for k, (i, o) in enumerate(zip(inputs, outputs))]
            elif isinstance(fn_name, str):
                cases = [Case("call", fn_name=fn_name, args=tuple(i) if isinstance(i, list) else (i,), expected=o)
                         for i, o in zip(inputs, outputs)]
            else:
                raise ValueError(f"fn_name must be a str, got {fn_name!r:.100}")
            if not cases:
                raise ValueError("tests is empty: there is nothing to check the program against")
            return cases
        if keys & {"public_test_cases", "private_test_cases"}:
            cases = []
            for field in ("public_test_cases", "private_test_cases"):
                if tests.get(field) not in (None, "", []):
                    cases += _entries(_maybe_json(tests[field], field), field, tests.get("metadata"))
            if not cases:
                raise ValueError("the LiveCodeBench row has no test cases")
            return cases
        raise ValueError(f"unknown tests layout: a dict with keys {sorted(keys)[:10]}; accepted: {LAYOUTS}")
    if isinstance(tests, (str, bytes)) or not isinstance(tests, Sequence):
        raise ValueError(f"unknown tests layout: {type(tests).__name__}; accepted: {LAYOUTS}")
    if not tests:
        raise ValueError("tests is empty: there is nothing to check the program against")
    return _entries(tests, "tests")


# ----------------------------------------------------------------------------------------------------
# Comparison
# ----------------------------------------------------------------------------------------------------


def _is_float_token(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return any(c in token for c in ".eE") and token.lower() not in ("nan", "inf", "-inf", "+inf")


def _tokens_match(got: str, want: str) -> bool:
    if got == want:
        return True
    # Integers are compared exactly ("1000001" is not "1000000"); a float on either side allows a tolerance.
    if not (_is_float_token(got) or _is_float_token(want)):
        return False
    try:
        g, w = float(got), float(want)
    except ValueError:
        return False
    return math.isclose(g, w, rel_tol=FLOAT_TOLERANCE, abs_tol=FLOAT_TOLERANCE)


def normalise_output(text: str) -> list[list[str]]:
    """Lines of whitespace-separated tokens; leading/trailing blank lines dropped."""
    return [line.split() for line in text.strip().splitlines()]


def outputs_match(got: str, want: str) -> tuple[bool, str]:
    """(match, where it first differs). Whitespace layout within a line and trailing blank lines do not
    matter; lines and tokens do; float tokens within :data:`FLOAT_TOLERANCE` are equal (``1.0`` = ``1``,
    ``0.30000000000000004`` = ``0.3``)."""
    g, w = normalise_output(got), normalise_output(want)
    for i, (gl, wl) in enumerate(zip(g, w)):
        if len(gl) != len(wl) or not all(_tokens_match(a, b) for a, b in zip(gl, wl)):
            return False, f"line {i + 1}: expected {' '.join(wl)[:80]!r}, got {' '.join(gl)[:80]!r}"
    if len(g) != len(w):
        return False, f"expected {len(w)} lines, got {len(g)}"
    return True, ""


def values_match(got, want) -> bool:
    """Call-based comparison: equal after a JSON round trip, floats within :data:`FLOAT_TOLERANCE`."""
    if isinstance(got, bool) or isinstance(want, bool):
        return got is want if isinstance(got, bool) and isinstance(want, bool) else False
    if isinstance(got, (int, float)) and isinstance(want, (int, float)):
        if isinstance(got, int) and isinstance(want, int):
            return got == want
        return math.isclose(got, want, rel_tol=FLOAT_TOLERANCE, abs_tol=FLOAT_TOLERANCE)
    if isinstance(got, list) and isinstance(want, list):
        return len(got) == len(want) and all(values_match(a, b) for a, b in zip(got, want))
    if isinstance(got, dict) and isinstance(want, dict):
        return got.keys() == want.keys() and all(values_match(got[k], want[k]) for k in got)
    return got == want


def result_matches(got, want) -> bool:
    """APPS' rule: the result equals the expected value, or the expected value wrapped in a 1-element list."""
    want = json.loads(json.dumps(want))
    return values_match(got, want) or (isinstance(want, list) and len(want) == 1 and values_match(got, want[0]))


# ----------------------------------------------------------------------------------------------------
# Drivers: the file the sandbox runs for call-based and test-code cases
# ----------------------------------------------------------------------------------------------------

# The program's source and the test code are embedded as string literals; the nonce and the arguments come
# on stdin, which is then replaced by /dev/null (see the module docstring).
_DRIVER = r'''
import json as _json, os as _os, sys as _sys
_payload = _sys.stdin.read()
_nonce, _, _args = _payload.partition("\n")
_null = _os.open(_os.devnull, _os.O_RDONLY)
_os.dup2(_null, 0)
_os.close(_null)
_write, _flush = _os.write, _sys.stdout.flush
_ns = {"__name__": "solution", "__builtins__": __builtins__}
exec(CALL_HEADER, _ns)
exec(compile(SOURCE, "solution.py", "exec"), _ns)
if True:
    if callable(_ns.get(FN_NAME)):
        _fn = _ns[FN_NAME]
    elif isinstance(_ns.get("Solution"), type):
        _fn = getattr(_ns["Solution"](), FN_NAME)
    else:
        raise NameError("the program defines neither a function nor a Solution method named " + repr(FN_NAME))
    _result = _json.dumps(_fn(*_json.loads(_args)))
_flush()
_write(1, ("\n" + _nonce + _result + "\n").encode())
'''


# What LiveCodeBench's harness puts in front of a call-based (LeetCode-style) solution: such solutions use
# ``List[int]``, ``deque``, ``inf``... without importing them, as LeetCode's own judge allows.
CALL_HEADER = (
    "from string import *\nfrom re import *\nfrom datetime import *\nfrom collections import *\n"
    "from heapq import *\nfrom bisect import *\nfrom copy import *\nfrom math import *\nfrom random import *\n"
    "from statistics import *\nfrom itertools import *\nfrom functools import *\nfrom operator import *\n"
    "from io import *\nfrom json import *\nfrom typing import *\nimport string, re, datetime, collections, heapq\n"
    "import bisect, copy, math, random, statistics, itertools, functools, operator, io, sys, json\n"
    "sys.setrecursionlimit(50000)\n"
)


# ----------------------------------------------------------------------------------------------------
# Test code in its own process: the candidate serves calls, the test process holds the test and the verdict
# ----------------------------------------------------------------------------------------------------

# Plain data across the boundary: JSON, with tagged objects for what JSON lacks. Exact type checks on
# encoding (a subclass of int/str/list with its own __eq__ is refused); decoding builds only builtin
# containers and scalars, so nothing of the sender's survives the trip.
_PLAIN_CODEC = r"""
import base64 as _b64, json as _json, math as _math

def _enc(value, depth=0):
    if depth > 200:
        raise ValueError("nested deeper than 200 levels")
    t = type(value)
    if value is None or t is bool or t is int or t is str:
        return value
    if t is float:
        return value if _math.isfinite(value) else {"f": repr(value)}
    if t is list:
        return [_enc(v, depth + 1) for v in value]
    if t is tuple:
        return {"t": [_enc(v, depth + 1) for v in value]}
    if t is set or t is frozenset:
        return {"s" if t is set else "fs": [_enc(v, depth + 1) for v in value]}
    if t is dict:
        return {"d": [[_enc(k, depth + 1), _enc(v, depth + 1)] for k, v in value.items()]}
    if t is bytes:
        return {"b": _b64.b64encode(value).decode()}
    if t is complex:
        return {"c": [_enc(value.real), _enc(value.imag)]}
    raise TypeError("not plain data (None, bool, int, float, str, bytes, complex, list, tuple, set, dict): "
                    + t.__name__)

def _dec(value):
    t = type(value)
    if value is None or t in (bool, int, float, str):
        return value
    if t is list:
        return [_dec(v) for v in value]
    if t is dict and len(value) == 1:
        (tag, body), = value.items()
        if tag == "f" and body in ("nan", "inf", "-inf"):
            return float(body)
        if tag == "t" and type(body) is list:
            return tuple(_dec(v) for v in body)
        if tag == "s" and type(body) is list:
            return {_dec(v) for v in body}
        if tag == "fs" and type(body) is list:
            return frozenset(_dec(v) for v in body)
        if tag == "d" and type(body) is list:
            return {_dec(k): _dec(v) for k, v in body}
        if tag == "b" and type(body) is str:
            return _b64.b64decode(body)
        if tag == "c" and type(body) is list and len(body) == 2:
            return complex(_dec(body[0]), _dec(body[1]))
    raise ValueError("malformed plain-data message")
"""

# The candidate's process: runs the program, then answers calls (one JSON line each way) on two inherited
# pipe ends. It holds no test code and no verdict channel, so whatever it patches stays in here.
_SERVER_DRIVER = r"""
import os as _os, sys as _sys
_cfg = _json.loads(_sys.stdin.read())
_null = _os.open(_os.devnull, _os.O_RDONLY)
_os.dup2(_null, 0)
_os.close(_null)
_requests = _os.fdopen(_cfg["req"], "rb")
_reply_fd = _cfg["resp"]

def _send(message):
    data = (_json.dumps(message) + "\n").encode()
    while data:
        data = data[_os.write(_reply_fd, data):]

def _raised(exc):
    return {"raise": type(exc).__name__, "message": str(exc)[:500]}

_ns = {"__name__": "solution", "__builtins__": __builtins__}
try:
    exec(compile(SOURCE, "solution.py", "exec"), _ns)
    _send({"names": sorted(k for k, v in _ns.items() if callable(v) and not k.startswith("__"))})
except BaseException as _exc:
    _send(_raised(_exc))
    raise
for _line in _requests:
    try:
        _msg = _json.loads(_line)
        _fn = _ns[_msg["call"]]
        _reply = {"ok": _enc(_fn(*_dec(_msg["args"]), **_dec(_msg["kwargs"])))}
    except BaseException as _exc:
        _reply = _raised(_exc)
    _send(_reply)
"""

# The test's process: the dataset's prompt helpers and test code, with each function of the candidate that
# the test names replaced by a stub that calls across the pipes; the nonce (stdin) is printed last.
_TEST_DRIVER = r"""
import builtins as _builtins, os as _os, sys as _sys
_nonce, _, _cfg = _sys.stdin.read().partition("\n")
_cfg = _json.loads(_cfg)
_null = _os.open(_os.devnull, _os.O_RDONLY)
_os.dup2(_null, 0)
_os.close(_null)
_replies = _os.fdopen(_cfg["resp"], "rb")
_request_fd, _limit = _cfg["req"], _cfg["limit"]
_write, _flush = _os.write, _sys.stdout.flush

class CandidateError(Exception):
    "The program raised, exited or answered with something that is not plain data."

def _receive():
    line = _replies.readline(_limit + 1)
    if not line.endswith(b"\n"):
        raise CandidateError("the program exited (or its answer exceeded the output limit)")
    reply = _json.loads(line)
    if type(reply) is not dict:
        raise CandidateError("malformed answer from the program")
    if "raise" in reply:
        name, message = str(reply.get("raise")), str(reply.get("message", ""))
        cls = getattr(_builtins, name, None)
        if isinstance(cls, type) and issubclass(cls, Exception) and cls.__module__ == "builtins":
            raise cls(message)
        raise CandidateError(name + ": " + message)
    return reply

def _stub(name):
    def call(*args, **kwargs):
        data = (_json.dumps({"call": name, "args": _enc(list(args)), "kwargs": _enc(dict(kwargs))}) + "\n").encode()
        try:
            while data:
                data = data[_os.write(_request_fd, data):]
        except BrokenPipeError:
            raise CandidateError("the program exited") from None
        return _dec(_receive()["ok"])
    call.__name__ = call.__qualname__ = name
    return call

def _names(code):
    out = set(code.co_names)
    for const in code.co_consts:
        if hasattr(const, "co_names"):
            out |= _names(const)
    return out

_offered = set(_receive()["names"])
_ns = {"__name__": "__main__", "__builtins__": _builtins}
if PROMPT:
    exec(compile(PROMPT, "prompt.py", "exec"), _ns)
_test = compile(TEST, "test.py", "exec")
for _name in _names(_test) & _offered:
    if _name not in _ns or _name == ENTRY_POINT:
        _ns[_name] = _stub(_name)
if ENTRY_POINT not in _offered:
    raise NameError("the program does not define " + repr(ENTRY_POINT))
_ns[ENTRY_POINT] = _stub(ENTRY_POINT)
exec(_test, _ns)
if callable(_ns.get("check")):
    _ns["check"](_ns[ENTRY_POINT])
_flush()
_write(1, ("\n" + _nonce + "null\n").encode())
"""


def server_driver_source(program: str) -> str:
    """The file the candidate's sandbox runs for a ``"code"`` case: the program, then a call server."""
    return f"SOURCE = {program!r}\n" + _PLAIN_CODEC + _SERVER_DRIVER


def checker_driver_source(case: Case) -> str:
    """The file the test's sandbox runs for a ``"code"`` case (never shown to the candidate's process)."""
    header = f"TEST = {case.test!r}\nENTRY_POINT = {case.entry_point!r}\nPROMPT = {case.prompt!r}\n"
    return header + _PLAIN_CODEC + _TEST_DRIVER


def checker_driver_stdin(nonce: str, request_fd: int, reply_fd: int, limit: int) -> str:
    return nonce + "\n" + json.dumps({"req": request_fd, "resp": reply_fd, "limit": limit})


def server_driver_stdin(request_fd: int, reply_fd: int) -> str:
    return json.dumps({"req": request_fd, "resp": reply_fd})


def driver_source(case: Case, program: str) -> str:
    """The Python file the sandbox runs for a ``"call"`` case."""
    header = (
        f"SOURCE = {program!r}\nFN_NAME = {case.fn_name!r}\nCALL_HEADER = {CALL_HEADER!r}\n"
    )
    return header + _DRIVER


def driver_stdin(case: Case, nonce: str) -> str:
    return nonce + "\n" + (json.dumps(list(case.args)) if case.kind == "call" else "")


def driver_verdict(case: Case, stdout: str, nonce: str) -> tuple[str, str]:
    """(status, message) from a driver run that exited with status 0."""
    lines = stdout.rstrip("\n").split("\n")
    last = lines[-1] if lines else ""
    if not last.startswith(nonce):
        return "wrong_answer", "the program exited before the test finished (early exit)"
    if case.kind == "code":
        return "ok", ""
    try:
        got = json.loads(last[len(nonce):])
    except ValueError:
        return "wrong_answer", "the result is not JSON-serialisable"
    if result_matches(got, case.expected):
        return "ok", ""
    return "wrong_answer", f"expected {json.dumps(case.expected)[:80]}, got {json.dumps(got)[:80]}"
