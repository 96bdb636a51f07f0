"""Run the numbered notebooks with papermill: `python -m musecl.notebooks 01_data_preparation`.

Every notebook has one cell tagged `parameters` with two names:

    params_file = "params.yaml"   # the parameters file
    overrides = {}                # a nested dict merged over it (tests use it for the `tiny` configuration)

DVC runs each stage through this module; the executed copy goes to `reports/notebooks/<name>.ipynb` (git-tracked,
so the repository page shows the tutorial with its outputs) and the source notebook in `notebooks/` stays clean.

The executed copy is kept clean (`clean_notebook`, checked by `hygiene_problems` and tests/test_notebook_hygiene.py):

- progress: the kernel's stderr is streamed live to this process's stderr (the terminal of `dvc repro`), together with
  one line per code cell as it starts; in the stored notebook each cell's streams are merged and carriage returns
  applied (nbclient's `coalesce_streams`), so a tqdm text bar is stored as its one final line, as Jupyter shows it;
- the kernel connection is CurveZMQ-encrypted (or IPC where pyzmq lacks Curve), so the kernel has no reason to warn
  about plain-text TCP;
- the repository root is written as a relative path everywhere (outputs, sources, metadata), papermill's metadata
  names the source and the final output (not the temporary file it wrote), and no environment;
- the parameters appear once: the `parameters` cell shows the values papermill injected, the injected cell goes.

The same notebook with the same parameters thus gives the same bytes apart from timings (papermill's timing fields,
and times a cell prints itself, such as a progress bar's elapsed time).

A failed run keeps what it executed: the notebook up to the failing cell (papermill's error cell at the top) goes to
`<output stem>.failed.ipynb` beside the intended output, which is not written (so DVC sees the stage fail); the message
on stderr names the file, and the next successful run removes it. A temporary notebook left by a killed run is removed
at the next run (`musecl.storage.atomic_path`).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any, Iterable, Mapping

from musecl.config import repo_root
from musecl.storage import atomic_path

NOTEBOOK_DIR = "notebooks"
EXECUTED_DIR = "reports/notebooks"
KERNEL_NAME = "python3"
PARAMETERS_TAG = "parameters"
INJECTED_TAG = "injected-parameters"  # papermill's tag for the cell it adds
MAX_STDERR_LINES = 24  # more stderr lines than this in one cell is noise, not a message to the reader (a cell that
# runs several trainings keeps one final progress line per loop: 03b on the tiny city has 15)
LONG_CELL_S = 10.0  # the terminal reports how long a cell took when it took at least this long

# What a reader should never see in an executed notebook (hygiene_problems).
ABSOLUTE_PATH = re.compile(r"(?<![\w.~-])/(?:work|tmp|home|root)/|site-packages|\.venv\b")  # not data/work/
NOISE = re.compile(r"TqdmWarning|IProgress not found|Kernel is running over|autonotebook")
TEMP_NAME = re.compile(r"\.tmp\b|\btmp[a-z0-9_]{6,}\b")


def notebook_path(name: str | Path, root: Path | None = None) -> Path:
    """`notebooks/<name>.ipynb`, or `name` itself when it is an existing `.ipynb` file (tests run their own)."""
    root = root or repo_root()
    if str(name).endswith(".ipynb") and Path(name).is_file():
        return Path(name).resolve()
    name = str(name)
    path = root / NOTEBOOK_DIR / (name if name.endswith(".ipynb") else f"{name}.ipynb")
    if not path.is_file():
        available = sorted(p.stem for p in (root / NOTEBOOK_DIR).glob("*.ipynb"))
        raise FileNotFoundError(f"notebook {path} not found (available: {available})")
    return path


def kernel_config():
    """traitlets config for the kernel manager: CurveZMQ-encrypted transport when pyzmq has Curve, else IPC.

    Either way the kernel does not print "Kernel is running over TCP without encryption" (a warning about the
    transport, not about the notebook): the warning's cause is removed rather than the warning filtered.
    """
    import zmq
    from traitlets.config import Config

    if zmq.has("curve"):
        return Config({"KernelManager": {"transport_encryption": "auto"}})
    return Config({"KernelManager": {"transport": "ipc"}})


class TerminalProgress:
    """nbclient cell hooks that print one line per code cell to stderr as it starts, and the time of long cells.

    Cells are numbered as in the stored notebook (from 1, markdown included; papermill's injected cell, which
    `show_parameters_once` removes, is not counted).
    """

    def __init__(self, label: str, stream=None) -> None:
        self.label, self.stream, self.started, self.skipped = label, stream or sys.stderr, {}, 0

    def start(self, cell, cell_index: int, **_: Any) -> None:
        if INJECTED_TAG in cell.metadata.get("tags", []):
            self.skipped = 1
        if cell.cell_type != "code" or INJECTED_TAG in cell.metadata.get("tags", []):
            return
        first = next((line for line in cell.source.splitlines() if line.strip()), "")
        self.started[cell_index] = time.monotonic()
        self.stream.write(f"[{self.label}] cell {cell_index + 1 - self.skipped}: {first[:90]}\n")
        self.stream.flush()

    def executed(self, cell, cell_index: int, **_: Any) -> None:
        seconds = time.monotonic() - self.started.pop(cell_index, time.monotonic())
        if seconds >= LONG_CELL_S:
            self.stream.write(f"[{self.label}] cell {cell_index + 1 - self.skipped} done in {seconds:.0f} s\n")
            self.stream.flush()


def run_notebook(
    name: str | Path,
    params_file: str | Path = "params.yaml",
    overrides: Mapping[str, Any] | None = None,
    output: str | Path | None = None,
    progress: bool = True,
) -> Path:
    """Execute `notebooks/<name>.ipynb` top to bottom with papermill; returns the executed notebook's path.

    The kernel is the `python3` kernel of the interpreter running this function (ipykernel's own kernelspec), so the
    notebook sees exactly this environment's packages; papermill's `NoSuchKernel` cannot arise from a missing
    user-level kernelspec. With `progress`, the terminal shows each code cell as it starts and the kernel's stderr
    (progress bars, warnings) live; the stored notebook is cleaned by `clean_notebook` either way.
    """
    import nbformat
    import papermill as pm

    root = repo_root()
    source = notebook_path(name, root)
    output = Path(output) if output else root / EXECUTED_DIR / source.name
    env_python = str(Path(sys.executable).parent)
    os.environ["PATH"] = env_python + os.pathsep + os.environ.get("PATH", "")
    os.environ.setdefault("PYTHONHASHSEED", "0")
    parameters = {"params_file": str(params_file), "overrides": json.loads(json.dumps(overrides or {}))}
    live: dict[str, Any] = {}
    if progress:
        hooks = TerminalProgress(source.stem)
        live = {"stderr_file": sys.stderr, "on_cell_start": hooks.start, "on_cell_executed": hooks.executed}
    failed = failed_path(output)
    with atomic_path(output) as tmp:
        try:
            pm.execute_notebook(
                str(source),
                str(tmp),
                parameters=parameters,
                kernel_name=KERNEL_NAME,
                cwd=str(root),
                progress_bar=False,  # the per-cell lines above replace papermill's cell counter
                report_mode=False,
                coalesce_streams=True,  # one stream output per cell and name, carriage returns applied
                config=kernel_config(),
                **live,
            )
        except Exception:
            keep_failed(tmp, failed, root, source)
            raise
        nb = nbformat.read(tmp, as_version=4)
        clean_notebook(nb, root, source, output)
        nbformat.write(nb, tmp)
    failed.unlink(missing_ok=True)  # an earlier failure's notebook is stale now
    return output


def failed_path(output: str | Path) -> Path:
    """Where a failed run keeps its executed notebook: `<output stem>.failed.ipynb` beside the intended output."""
    output = Path(output)
    return output.with_name(f"{output.stem}.failed.ipynb")


def keep_failed(tmp: Path, failed: Path, root: Path, source: Path) -> None:
    """Keep the partial executed notebook of a failed run (papermill wrote it, error cell included) as `failed`,
    cleaned like a finished one, and say where it is on stderr; the intended output is not written, so DVC sees the
    stage fail. Nothing is kept when the kernel never wrote the notebook."""
    import nbformat

    if not tmp.is_file() or tmp.stat().st_size == 0:
        return
    try:
        nb = nbformat.read(tmp, as_version=4)
        clean_notebook(nb, root, source, failed)
        nbformat.write(nb, tmp)
    except Exception as exc:  # noqa: BLE001 -- keep the raw notebook rather than lose it
        print(f"(the failed notebook could not be cleaned: {exc})", file=sys.stderr)
    os.replace(tmp, failed)
    inside = failed.absolute().is_relative_to(root) or failed.absolute().is_relative_to(root.resolve())
    where = display_path(failed, root) if inside else str(failed.absolute())  # a path the reader can open
    print(f"notebook {display_path(source, root)} failed; the executed notebook up to the error is kept in {where}",
          file=sys.stderr)


def display_path(path: str | Path, root: Path) -> str:
    """`path` relative to the repository root, or only its file name when it lies outside the repository."""
    path = Path(path).absolute()
    for base in (root, root.resolve()):
        if path.is_relative_to(base):
            return path.relative_to(base).as_posix()
    return path.name


def relative_paths(value: Any, roots: Iterable[str]) -> Any:
    """`value` (nested lists/dicts of strings) with every absolute path under `roots` written relative to it."""
    if isinstance(value, str):
        for root in roots:
            value = value.replace(root + "/", "")
            value = re.sub(re.escape(root) + r"(?![\w.-])", ".", value)
        return value
    if isinstance(value, list):
        return [relative_paths(v, roots) for v in value]
    if isinstance(value, dict):
        return {k: relative_paths(v, roots) for k, v in value.items()}
    return value


def show_parameters_once(nb) -> None:
    """Put papermill's injected values into the `parameters` cell (keeping its id and tag) and drop the injected cell.

    The kept cell then shows the values this run used under papermill's `# Parameters` comment; re-running the
    executed notebook with papermill still works (it injects after the cell tagged `parameters`).
    """
    tags = [set(cell.metadata.get("tags", [])) for cell in nb.cells]
    injected = [i for i, t in enumerate(tags) if INJECTED_TAG in t]
    defaults = [i for i, t in enumerate(tags) if PARAMETERS_TAG in t]
    if not injected or not defaults:
        return
    kept = nb.cells[defaults[0]]
    kept.source = nb.cells[injected[0]].source.rstrip("\n")
    nb.cells = [cell for i, cell in enumerate(nb.cells) if i not in injected]


def drop_blank_stream_lines(nb) -> None:
    """Remove stderr lines left blank by a cleared progress bar, and stream outputs left empty."""
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        kept = []
        for out in cell.outputs:
            if out.output_type == "stream" and out.name == "stderr":
                lines = [line for line in re.split(r"(?<=\n)", out.text) if line.strip(" \r\n")]
                out.text = "".join(line.replace("\r", "") for line in lines)
            if out.output_type != "stream" or out.text:
                kept.append(out)
        cell.outputs = kept


def clean_notebook(nb, root: Path, source: Path, output: Path) -> None:
    """Make an executed notebook machine-independent and quiet, in place (see the module docstring)."""
    from nbformat import from_dict

    show_parameters_once(nb)
    drop_blank_stream_lines(nb)
    meta = nb.metadata.get("papermill")
    if meta is not None:
        meta["input_path"] = display_path(source, root)
        meta["output_path"] = display_path(output, root)
        meta["environment_variables"] = {}
    roots = sorted({str(root), str(root.resolve())}, key=len, reverse=True)
    nb.metadata = from_dict(relative_paths(nb.metadata, roots))
    for cell in nb.cells:
        cell.source = relative_paths(cell.source, roots)
        if cell.cell_type == "code":
            for out in cell.outputs:
                for key in ("text", "traceback", "evalue"):
                    if key in out:
                        out[key] = relative_paths(out[key], roots)
                for mime, value in out.get("data", {}).items():  # text formats only: base64 images stay as they are
                    if not mime.startswith(("image/", "application/pdf")):
                        out["data"][mime] = from_dict(relative_paths(value, roots))


def _texts(value: Any, skip_binary: bool = True) -> Iterable[str]:
    """Every string in a nested output/metadata value, images' base64 data left out."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for v in value:
            yield from _texts(v, skip_binary)
    elif isinstance(value, dict):
        for k, v in value.items():
            if not (skip_binary and isinstance(k, str) and k.startswith(("image/", "application/pdf"))):
                yield from _texts(v, skip_binary)


def hygiene_problems(nb, allowed_paths: Iterable[str | Path] = ()) -> list[str]:
    """What makes an executed notebook noisy or machine-specific, one message per problem naming the cell.

    Checked: stderr with carriage returns (an uncollapsed progress bar), more than `MAX_STDERR_LINES` lines, or
    messages that say nothing to the reader (TqdmWarning, IProgress, the TCP kernel warning); an absolute path
    (/work/, /tmp/, /home/, /root/, site-packages, .venv) anywhere in sources, outputs or metadata; a temporary file
    name in the notebook's metadata; the parameters shown in more than one cell. `allowed_paths` are folders a test
    legitimately works in (its temporary directory), not reported.
    """
    allowed = sorted({str(Path(p)) for p in allowed_paths}, key=len, reverse=True)

    def paths_in(text: str) -> list[str]:
        for folder in allowed:  # the allowed folder and the rest of a path inside it (e.g. <tmp>/work/embeddings/x)
            text = re.sub(re.escape(folder) + r"""[^\s'"),;]*""", "<allowed>", text)
        return [text[max(0, m.start() - 30): m.end() + 30] for m in ABSOLUTE_PATH.finditer(text)]

    problems = []
    for found in (f for t in _texts(dict(nb.metadata)) for f in paths_in(t)):
        problems.append(f"notebook metadata: absolute path ...{found}...")
    papermill = nb.metadata.get("papermill", {})
    for key in ("input_path", "output_path"):
        if TEMP_NAME.search(str(papermill.get(key, ""))):
            problems.append(f"notebook metadata: temporary file name in papermill.{key} ({papermill[key]})")
    if papermill.get("environment_variables"):
        problems.append("notebook metadata: papermill.environment_variables records the machine's environment")
    shown = []
    for i, cell in enumerate(nb.cells):
        where = f"cell {i} (id {cell.get('id', '?')})"
        tags = set(cell.metadata.get("tags", []))
        if tags & {PARAMETERS_TAG, INJECTED_TAG}:
            shown.append(where)
        for found in (f for t in _texts([cell.source, dict(cell.metadata)]) for f in paths_in(t)):
            problems.append(f"{where}: absolute path in source/metadata ...{found}...")
        for out in cell.get("outputs", []):
            for found in (f for t in _texts(dict(out)) for f in paths_in(t)):
                problems.append(f"{where}: absolute path in {out.output_type} output ...{found}...")
            if out.output_type == "stream" and out.name == "stderr":
                text = "".join(out.text)
                if "\r" in text:
                    problems.append(f"{where}: stderr holds a progress bar's every refresh (carriage returns)")
                lines = text.strip("\n").count("\n") + 1
                if lines > MAX_STDERR_LINES:
                    problems.append(f"{where}: {lines} stderr lines (at most {MAX_STDERR_LINES})")
                for match in sorted(set(NOISE.findall(text))):
                    problems.append(f"{where}: stderr says '{match}'")
    if len(shown) > 1:
        problems.append(f"parameters shown {len(shown)} times: {', '.join(shown)}")
    return problems


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", help="notebook name, e.g. 01_data_preparation")
    parser.add_argument("--params", default="params.yaml", help="parameters file (default: params.yaml)")
    parser.add_argument("--overrides", default="{}", help="JSON dict merged over the parameters file")
    parser.add_argument("--output", default=None, help=f"executed notebook path (default: {EXECUTED_DIR}/NAME.ipynb)")
    args = parser.parse_args(argv)
    out = run_notebook(args.name, args.params, json.loads(args.overrides), args.output)
    print(f"executed notebook written to {display_path(out, repo_root())}")


if __name__ == "__main__":
    main()
