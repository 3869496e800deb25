"""Starting the app: `workbench app [flags]` and `python app.py [flags]` end in launch_from_args."""

from __future__ import annotations

import os
import sys

from workbench import compare
from workbench.errors import WorkbenchError

from .page import build_app
from .security import _parse_auth, allowed_folders, exposure_warning


def launch_from_args(args) -> int:
    """Start the app from parsed `workbench app` arguments; blocks until Ctrl+C.

    Refuses (WorkbenchError) to bind anything but loopback, or to share, without --auth unless --no-auth is given
    (see exposure_warning); checks that before loading any model."""
    warning = exposure_warning(args)
    auth = _parse_auth(args.auth)  # a malformed --auth is an error before the models load
    if warning:
        print(warning, file=sys.stderr, flush=True)
    allow_dirs = getattr(args, "allow_dirs", None) or None
    allowed_folders(allow_dirs)  # a bad --allow-dir is an error before the models load
    from workbench.cli import reward_config_from_args

    config = reward_config_from_args(args)  # --recipe and reward.key=value: a bad recipe is an error here too
    models = compare.SharedModels(device=getattr(args, "device", "auto"), config=config)
    recipe = getattr(args, "recipe", None)
    overrides = getattr(args, "reward_overrides", None)
    if recipe or overrides:  # what the data panel names as the configuration's origin (AppContext.reward_source)
        models.reward_source = " + ".join(x for x in (str(recipe) if recipe else "", " ".join(overrides or ())) if x)
    print(f"loading {args.teacher} (teacher) and {args.student} (student) once for all sessions …", file=sys.stderr)
    try:
        models.scorer(args.teacher, args.student)
    except WorkbenchError as exc:
        print(f"warning: {exc} (the app starts anyway; scoring will show this error)", file=sys.stderr)
    demo = build_app(data_spec=args.data, teacher=args.teacher, student=args.student, models=models,
                     max_new_tokens=args.max_new_tokens, limit=args.limit, allow_dirs=allow_dirs)
    demo.queue(default_concurrency_limit=8, max_size=64)
    demo.launch(server_name=args.host, server_port=args.port, share=args.share, auth=auth,
                prevent_thread_lock=True, allowed_paths=[demo.workbench_export_dir], quiet=True,
                ssr_mode=False)
    url = demo.local_url or f"http://{args.host}:{args.port}/"
    print(f"\nRLT Workbench is running at {url}", flush=True)
    print("data can be loaded from: " + ", ".join(map(str, allowed_folders(allow_dirs))) + " (more: --allow-dir DIR)",
          flush=True)
    if getattr(demo, "share_url", None):
        print(f"public share link: {demo.share_url}", flush=True)
    print("press Ctrl+C to stop", flush=True)
    try:
        demo.block_thread()
    except KeyboardInterrupt:
        pass
    finally:
        demo.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python app.py [flags]` is `workbench app [flags]`."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from workbench.cli import main as cli_main

    return cli_main(["app", *(sys.argv[1:] if argv is None else argv)])
