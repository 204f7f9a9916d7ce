"""One module per command; each exposes `SUMMARY` and `run(settings, output_dir)`."""

COMMANDS = {
    "search": "autoprune.commands.search",
    "latency": "autoprune.commands.latency",
    "calibrate": "autoprune.commands.calibrate",
    "report": "autoprune.commands.report",
    "apply": "autoprune.commands.apply",
    "ui": "autoprune.commands.ui",
    "reproduce": "autoprune.commands.reproduce",
}
