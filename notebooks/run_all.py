"""Execute the notebooks top to bottom as a user's tools do, at a given scale, and fail on the first error.

    python notebooks/run_all.py [--scale cpu] [--out outputs/notebooks] [NOTEBOOK ...]

Each notebook runs through papermill (`papermill NB OUT -p SCALE cpu`) with its kernel started in the notebook's own
folder, as JupyterLab, `jupyter execute` and papermill start it: the notebooks must not depend on the working folder.
Papermill adds `SCALE = "<scale>"` after the cell tagged `parameters`. Executed copies, with their outputs, are
written to --out; the notebooks in git stay stripped of outputs.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def run(path: Path, scale: str, out_dir: Path, timeout: int = 1800) -> float:
    import nbformat
    import papermill

    path = Path(path).resolve()
    nb = nbformat.read(path, as_version=4)
    if not any(c.cell_type == "code" and "parameters" in c.metadata.get("tags", []) for c in nb.cells):
        raise SystemExit(f"{path.name}: no cell tagged 'parameters'")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # As `workbench train` does: OpenMP threads that spin while waiting slow a shared CPU down many times over.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    papermill.execute_notebook(str(path), str(out_dir / path.name), parameters={"SCALE": scale},
                               cwd=str(path.parent), kernel_name="python3", execution_timeout=timeout,
                               progress_bar=False, log_output=False)
    return time.time() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("notebooks", nargs="*", help="default: every notebooks/NN_*.ipynb in order")
    ap.add_argument("--scale", default="cpu", choices=["cpu", "paper"])
    ap.add_argument("--out", default=str(ROOT / "outputs" / "notebooks"))
    args = ap.parse_args()
    paths = [Path(p) for p in args.notebooks] or sorted(HERE.glob("[0-9][0-9]_*.ipynb"))
    for p in paths:
        print(f"running {p.name} (SCALE={args.scale}) ...", flush=True)
        seconds = run(p, args.scale, Path(args.out))
        print(f"  ok in {seconds:.0f} s -> {Path(args.out) / p.name}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
