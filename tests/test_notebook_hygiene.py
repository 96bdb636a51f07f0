"""Executed notebooks read cleanly: no stderr floods or progress-bar refreshes, no noise warnings, no absolute machine
paths or temporary names, the parameters shown once (`musecl.notebooks.hygiene_problems`); and the runner makes them
so: the same notebook with the same parameters gives the same bytes apart from timing fields, while the terminal sees
live progress."""
from __future__ import annotations

import json
import re
import shutil
import subprocess

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from musecl.config import repo_root
from musecl.notebooks import clean_notebook, hygiene_problems, run_notebook

ROOT = repo_root()


def _committed_executed() -> list[str]:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        return []
    listed = subprocess.run(["git", "ls-files", "*.ipynb"], cwd=ROOT, capture_output=True, text=True, check=True)
    executed = []
    for rel in listed.stdout.split():
        path = ROOT / rel
        if path.is_file() and "papermill" in json.loads(path.read_text()).get("metadata", {}):
            executed.append(rel)
    return executed


@pytest.mark.parametrize("rel", _committed_executed())
def test_committed_executed_notebook_is_clean(rel):
    problems = hygiene_problems(nbformat.read(ROOT / rel, as_version=4))
    assert not problems, f"{rel}:\n  " + "\n  ".join(problems)


def _noisy_notebook():
    nb = new_notebook(cells=[
        new_markdown_cell("# noisy"),
        new_code_cell('params_file = "params.yaml"', metadata={"tags": ["parameters"]}),
        new_code_cell('# Parameters\nparams_file = "/tmp/x/params.yaml"\n', metadata={"tags": ["injected-parameters"]}),
        new_code_cell("work()", outputs=[
            new_output("stream", name="stderr", text="\rbar:  10%|#  | 1/10\rbar: 100%|###| 10/10\n"),
            new_output("stream", name="stderr", text=f"{ROOT}/.venv/lib/python3.11/site-packages/tqdm/auto.py:21: "
                                                      "TqdmWarning: IProgress not found.\n"),
            new_output("stream", name="stdout", text=f"bundle at {ROOT}/data/city\n"),
            new_output("execute_result", data={"text/plain": f"PosixPath('{ROOT}/reports/metrics.json')"},
                       execution_count=4),
        ]),
        new_code_cell("loop()", outputs=[new_output("stream", name="stderr", text="line\n" * 30)]),
    ])
    nb.metadata["papermill"] = {"input_path": str(ROOT / "notebooks" / "noisy.ipynb"),
                                "output_path": str(ROOT / "reports" / ".noisy.ipynb.g5pljy3g.tmp.ipynb"),
                                "environment_variables": {"HOME": "/root"}, "parameters": {}}
    return nb


def test_hygiene_names_every_problem_and_its_cell():
    problems = "\n".join(hygiene_problems(_noisy_notebook()))
    assert "parameters shown 2 times" in problems
    assert "cell 3" in problems and "carriage returns" in problems
    assert "TqdmWarning" in problems and "IProgress not found" in problems
    assert "cell 4 (id" in problems and "30 stderr lines" in problems
    assert "temporary file name in papermill.output_path" in problems
    assert "absolute path" in problems and "environment_variables" in problems


def test_clean_notebook_removes_paths_temp_names_and_the_second_parameters_cell():
    nb = _noisy_notebook()
    nb.cells[3].outputs = nb.cells[3].outputs[2:]  # the streams nbclient collapses / the warning its source removes
    nb.cells[4].outputs = []
    clean_notebook(nb, ROOT, ROOT / "notebooks" / "noisy.ipynb", ROOT / "reports" / "notebooks" / "noisy.ipynb")
    assert nb.metadata.papermill.input_path == "notebooks/noisy.ipynb"
    assert nb.metadata.papermill.output_path == "reports/notebooks/noisy.ipynb"
    assert [c.metadata.get("tags") for c in nb.cells if c.cell_type == "code"][0] == ["parameters"]
    assert "/tmp/x/params.yaml" in nb.cells[1].source  # the injected value, shown once
    assert nb.cells[2].outputs[0].text == "bundle at data/city\n"
    assert nb.cells[2].outputs[1].data["text/plain"] == "PosixPath('reports/metrics.json')"
    assert hygiene_problems(nb, allowed_paths=["/tmp/x"]) == []


def _tiny_source(path):
    nb = new_notebook(cells=[
        new_markdown_cell("# tiny"),
        new_code_cell('params_file = "params.yaml"\noverrides = {}', metadata={"tags": ["parameters"]}),
        new_code_cell("from musecl.config import load_params, repo_root\n"
                      "params = load_params(params_file, overrides)\n"
                      "print('seed', params['seed'], 'root', repo_root())\nrepo_root() / 'params.yaml'"),
        new_code_cell("import time\nfrom musecl.encoders.tracking import progress_iter\n"
                      "for _ in progress_iter(range(12), True, 'tiny loop', 'step'):\n    time.sleep(0.3)"),
    ])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    for i, cell in enumerate(nb.cells):
        cell.id = f"tiny-{i}"
    nbformat.write(nb, path)


TIMING_KEYS = {"start_time", "end_time", "duration", "execution"}


def _without_timings(value):
    """The notebook with its timing fields dropped and tqdm's [elapsed<remaining, rate] masked."""
    if isinstance(value, dict):
        return {k: _without_timings(v) for k, v in value.items() if k not in TIMING_KEYS}
    if isinstance(value, list):
        return [_without_timings(v) for v in value]
    if isinstance(value, str):
        return re.sub(r"\[\d\d:\d\d<[^\]]*\]", "[timing]", value)
    return value


def test_same_params_give_the_same_notebook_and_the_terminal_sees_progress(tmp_path, capfd):
    source = tmp_path / "tiny.ipynb"
    _tiny_source(source)
    overrides = {"seed": 5, "paths": {"work": str(tmp_path / "work")}}
    first = run_notebook(source, "params.yaml", overrides, output=tmp_path / "a" / "tiny.ipynb", progress=True)
    terminal = capfd.readouterr().err
    second = run_notebook(source, "params.yaml", overrides, output=tmp_path / "b" / "tiny.ipynb", progress=False)

    assert "[tiny] cell 4: import time" in terminal  # one line per code cell as it starts
    assert "\rtiny loop:" in terminal  # the kernel's bar, live
    assert "Kernel is running over" not in terminal  # the kernel connection is encrypted
    a, b = (json.loads(p.read_text()) for p in (first, second))
    assert json.dumps(_without_timings(a)) == json.dumps(_without_timings(b))

    nb = nbformat.read(first, as_version=4)
    assert hygiene_problems(nb, allowed_paths=[tmp_path]) == []
    outputs = {o.name: o.text for o in nb.cells[3].outputs if o.output_type == "stream"}
    assert outputs["stderr"].count("\n") == 1 and outputs["stderr"].startswith("tiny loop: 100%")
    assert nb.cells[2].outputs[0].text == "seed 5 root .\n"
    assert nb.metadata.papermill.input_path == "tiny.ipynb" and nb.metadata.papermill.output_path == "tiny.ipynb"
    assert '"seed": 5' in nb.cells[1].source and len(nb.cells) == 4
