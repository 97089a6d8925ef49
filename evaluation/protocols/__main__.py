"""``python -m evaluation.protocols {list,show KEY,check,record}``: inspect the task registry."""
from __future__ import annotations

import argparse
import json
import sys

from evaluation.protocols import all_tasks, definition, fingerprint, fingerprint_problems, get_task, load_recorded
from evaluation.protocols import record_fingerprints


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evaluation.protocols", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="one line per task: key, version, fingerprint, steps")
    show = sub.add_parser("show", help="print one task's definition as JSON")
    show.add_argument("key")
    sub.add_parser("check", help="exit 1 if a task changed without a version bump")
    sub.add_parser("record", help="record fingerprints of new task versions")
    args = parser.parse_args(argv)
    if args.command == "list":
        for task in all_tasks():
            steps = " -> ".join(s.name for s in task.steps)
            print(f"{task.key:<32} v{task.version}  {fingerprint(task)}  {steps}")
    elif args.command == "show":
        task = get_task(args.key)
        print(json.dumps({"key": task.key, "version": task.version, "fingerprint": fingerprint(task),
                          "description": task.description, **definition(task)}, indent=2))
    elif args.command == "check":
        problems = fingerprint_problems(all_tasks(), load_recorded())
        for line in problems:
            print(line, file=sys.stderr)
        if problems:
            return 1
        print(f"{len(all_tasks())} tasks match their recorded fingerprints")
    else:
        for line in record_fingerprints(all_tasks()):
            print(f"recorded {line}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
