"""`python -m autoprune <command> [hydra overrides]`."""

from autoprune.cli import main

if __name__ == "__main__":
    main()
