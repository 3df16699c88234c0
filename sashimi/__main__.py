"""`sashimi COMMAND ...` (the console script) or `python -m sashimi COMMAND ...`: the same as
`python -m sashimi.COMMAND ...`."""

import importlib
import sys

COMMANDS = {
    "train": "train a model on a folder of audio (or the embedded synthetic set)",
    "generate": "sample audio from a checkpoint in step mode",
    "evaluate": "a checkpoint's metrics on a folder of audio",
    "check": "the pre-merge regression gate",
    "specs": "shapes and parameter counts against the contract in specs/",
    "interop": "check against, or import, the published implementation's weights",
    "export": "the model's step as an ONNX graph, checked in onnxruntime",
    "bench": "speed and memory of the paper's model",
    "mutate": "run the mutation catalogue against the tests and the gate",
    "selfcheck": "an S4 layer as a convolution and as a recurrence",
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        stream = sys.stdout if argv and argv[0] in ("-h", "--help") else sys.stderr
        if argv and argv[0] not in ("-h", "--help"):
            print(f"error: unknown command {argv[0]!r}", file=stream)
        print("usage: sashimi COMMAND [ARGS...]   (each command has --help)\n\ncommands:", file=stream)
        for name, what in COMMANDS.items():
            print(f"  {name:<10s} {what}", file=stream)
        return 0 if stream is sys.stdout else 2
    return importlib.import_module(f"sashimi.{argv[0]}").main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
