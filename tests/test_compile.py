"""What the solver compiles (issue 12: no compile wait a user feels).

numba compiles a function once per distinct argument type list, and a
literal argument (``False``, ``0``, a module constant), an omitted default
or a read-only array is a type of its own: each such call compiles the
callee, and everything it calls, again (a literal ``False`` once cost a
second copy of ``pdas_one`` and its interior point, ~10 s of a cold
compile)."""

import ast
import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

from numba.core.registry import CPUDispatcher

from napari_catune import _numba_affine as na
from napari_catune import _numba_local as nl
from napari_catune import _numba_solvers as ns

_SRC = Path(__file__).resolve().parents[1] / "src"


def _dispatchers():
    return {name: v for mod in (ns, nl, na) for name, v in vars(mod).items()
            if isinstance(v, CPUDispatcher)}


def _literal_args(mod, disp, source=None):
    """Compiled functions (not inlined) that ``mod``'s compiled functions call
    with differing argument kinds at some position: a bool/int constant (or
    a module-level Python bool/int), each value its own kind, a variable,
    or a default left out.  Each kind is a separate compile of the callee."""
    consts = {name for name, v in vars(mod).items()
              if isinstance(v, (bool, int)) and not name.startswith("__")}
    calls = {}
    for fn in ast.parse(source or inspect.getsource(mod)).body:
        if not (isinstance(fn, ast.FunctionDef) and fn.name in disp):
            continue
        for node in ast.walk(fn):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                    and node.func.id in disp):
                continue
            callee = disp[node.func.id]
            if callee.targetoptions.get("inline") == "always":
                continue  # typed again inside the caller: no separate compile
            params = list(inspect.signature(callee.py_func).parameters)
            kinds = {}
            for name, a in zip(params, node.args):
                kinds[name] = a
            for k in node.keywords:
                kinds[k.arg] = k.value
            pattern = []
            for name in params:
                a = kinds.get(name)
                if isinstance(a, ast.UnaryOp):
                    a = a.operand
                if a is None:
                    pattern.append("default left out")
                elif isinstance(a, ast.Constant) and isinstance(a.value, (bool, int)):
                    pattern.append(f"literal {a.value!r}")
                elif isinstance(a, ast.Name) and a.id in consts:
                    pattern.append(f"literal {a.id}")
                else:
                    pattern.append("variable")
            calls.setdefault(node.func.id, {}).setdefault(
                tuple(pattern), f"{fn.name} line {node.lineno}")
    found = []
    for callee, pats in calls.items():
        if len(pats) > 1:
            params = list(inspect.signature(disp[callee].py_func).parameters)
            diff = [params[i] for i in range(len(params))
                    if len({p[i] for p in pats}) > 1]
            found.append(f"{mod.__name__}.{callee}: {len(pats)} kinds of call, differing in "
                         f"{diff}: " + "; ".join(f"{w}: {[p[params.index(d)] for d in diff]}"
                                                  for p, w in pats.items()))
    return found


def test_compiled_functions_call_each_other_without_literal_arguments():
    disp = _dispatchers()
    found = _literal_args(ns, disp) + _literal_args(nl, disp) + _literal_args(na, disp)
    assert not found, ("pass _NO/_YES/_ZERO or an np.int64 constant instead (each kind "
                       "compiles the callee and all it calls again):\n" + "\n".join(found))


def test_the_checker_sees_a_literal_argument():
    src = ("from numba import njit\n"
           "_K = 3\n"
           "@njit\n"
           "def f(a, flag=False):\n    return a\n"
           "@njit\n"
           "def g(a):\n    return f(a, False) + f(a, _K) + f(a) + f(a, a > 0)\n"
           "@njit\n"
           "def e(a, flag):\n    return a\n"
           "@njit\n"
           "def h(a):\n    return e(a, True) + e(a, True)\n")
    mod = type(sys)("catune_literal_probe")
    exec(compile(src, "<probe>", "exec"), mod.__dict__)
    disp = {k: v for k, v in vars(mod).items() if isinstance(v, CPUDispatcher)}
    found = _literal_args(mod, disp, src)
    # f: four kinds of call (False, _K, left out, a variable); e's calls are
    # all of one kind (one compile)
    assert len(found) == 1 and "4 kinds" in found[0], found


def test_warm_up_leaves_one_signature_per_entry_point():
    """In a fresh process (numba's cache as the suite left it, or compiling):
    after warm_up every compiled entry point the solver calls from Python
    holds exactly one compiled signature, so no user-facing call compiles a
    second copy (a read-only baseline once made kkt_rows compile twice)."""
    code = ("import json\n"
            "from napari_catune import solver, _numba_solvers as ns\n"
            "solver.warm_up()\n"
            "names = ['pdas_rows', 'fista_rows', 'kkt_rows', 'objective_rows', 'conv_rows',\n"
            "         'fit_stats_rows', 'rolling_quantile_rows']\n"
            "print(json.dumps({n: len(getattr(ns, n).signatures) for n in names}))\n")
    env = dict(os.environ, PYTHONPATH=str(_SRC) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-2000:]
    counts = json.loads(out.stdout.strip().splitlines()[-1])
    assert counts == {n: 1 for n in counts}, counts
