"""``fairbook list | run | build``: the command line of the book."""
from __future__ import annotations

import argparse
import sys

from . import chapters
from ..errors import ParameterError


def _cmd_list(args) -> int:
    profiles = {p: chapters.load_profile(p) for p in chapters.PROFILES}
    for name in chapters.available():
        ch = chapters.get(name)
        print(f"{name}: {ch.title}")
        print(f"  source: {ch.source}")
        for spec in ch.params.values():
            print(f"  {spec.name} ({spec.type}) — {spec.meaning}")
            print(f"      allowed: {spec.allowed()}")
            per = ", ".join(f"{p}={profiles[p].get(name, {}).get(spec.name, spec.default)!r}"
                            for p in chapters.PROFILES)
            print(f"      {per}")
        print()
    return 0


def _overrides(pairs) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in pairs or []:
        if key in out:
            raise ParameterError(f"parameter '{key}' given twice (-p {key} {out[key]!r} and {value!r})")
        out[key] = value
    return out


def _cmd_run(args) -> int:
    from . import runner

    run = runner.run(args.chapter, args.profile, _overrides(args.param), force=args.force,
                     log=lambda m: print(m, file=sys.stderr))
    print(run.path)
    return 0


def _cmd_build(args) -> int:
    from . import site

    site.build(args.profile, force=args.force, strict=not args.no_strict,
               log=lambda m: print(m, file=sys.stderr))
    return 0


def _cmd_data(args) -> int:
    from .. import data

    for name in data.names():
        e = data.entry(name)
        try:
            files = data.source_files(name, args.root)
            where = f"found: {files[0].parent}" if files else "found"
        except FileNotFoundError as err:
            where = "NOT FOUND — " + str(getattr(err, "fix", err)).splitlines()[0]
        except (data.CorruptData, OSError) as err:
            where = "UNREADABLE — " + str(err).splitlines()[0]
        print(f"{name:24s} {e.kind:17s} {where}")
        if args.verbose:
            print(f"    {e.description}")
    return 0


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fairbook", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="chapters and their parameters").set_defaults(func=_cmd_list)
    r = sub.add_parser("run", help="execute one chapter into a run directory")
    r.add_argument("chapter")
    r.add_argument("--profile", default="default", help="smoke, default or paper")
    r.add_argument("-p", "--param", nargs=2, action="append", metavar=("NAME", "VALUE"),
                   help="override one parameter (repeatable)")
    r.add_argument("--force", action="store_true", help="rerun even if an identical run exists")
    r.set_defaults(func=_cmd_run)
    b = sub.add_parser("build", help="run every chapter with a profile and build the site")
    b.add_argument("--profile", default="default")
    b.add_argument("--force", action="store_true", help="rerun every chapter")
    b.add_argument("--no-strict", action="store_true", help="do not treat Sphinx warnings as errors")
    b.set_defaults(func=_cmd_build)
    d = sub.add_parser("data", help="the datasets of the registry and where each is found")
    d.add_argument("--root", default=None, help="an explicit data root to look in first")
    d.add_argument("-v", "--verbose", action="store_true", help="also print each description")
    d.set_defaults(func=_cmd_data)
    lab = sub.add_parser("lab", help="open the chapters as notebooks in JupyterLab (installed by `make lab`)")
    lab.add_argument("--port", type=int, default=None)
    lab.add_argument("--no-browser", action="store_true")
    lab.set_defaults(func=_cmd_lab)
    return p


def _cmd_lab(args) -> int:
    from . import lab

    return lab.main(args.port, not args.no_browser)


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    from .runner import RunFailed

    try:
        return args.func(args)
    except ParameterError as e:
        print(f"fairbook: error: {e}", file=sys.stderr)
        return 2
    except RunFailed as e:
        print(f"fairbook: {e}", file=sys.stderr)
        return 1
    except (RuntimeError, OSError) as e:  # a failed site build, a run that could not be moved
        print(f"fairbook: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
