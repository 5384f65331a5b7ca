"""The README's Python example gives what ``napari-catune deconvolve`` gives
for the same parameter file (the audit of the thirty-fourth round found the
example dropping the file's drift baseline: activity off by 8 % of its
maximum)."""
import re
from pathlib import Path

import numpy as np

import napari_catune as nc
from napari_catune.cli import main
from napari_catune.simulation import regime_traces

README = Path(__file__).resolve().parents[1] / "README.md"


def _example() -> str:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    hits = [b for b in blocks if "nc.load_params(" in b and "run_deconvolution_full" in b]
    assert len(hits) == 1, "the README's load_params example is missing or repeated"
    # its last line only names the result fields
    return hits[0]


def test_readme_example_matches_the_cli(tmp_path, monkeypatch):
    traces = regime_traces("GCaMP6f-30Hz", 3, 3000, seed=2)
    traces = traces + np.linspace(0.0, 2.0, traces.shape[1])  # a slow drift
    src = tmp_path / "traces.npy"
    np.save(src, traces)
    p = nc.TuningParams(tau_rise=0.05, tau_decay=0.5, fs=30.0, lam=0.05, baseline="drift",
                        drift_scale=12.0)
    nc.save_params(p, tmp_path / "params.json")
    out = tmp_path / "act.npy"
    assert main(["deconvolve", str(src), "--params", str(tmp_path / "params.json"),
                 "-o", str(out), "--quiet"]) == 0
    monkeypatch.chdir(tmp_path)
    ns = {"traces": traces}
    exec(compile(_example(), "README.md", "exec"), ns)
    cli = np.load(out)
    np.testing.assert_allclose(ns["res"].activity, cli, rtol=0, atol=1e-9 * np.abs(cli).max())
    # and the fields it names are there
    assert ns["res"].baseline.shape == traces.shape
