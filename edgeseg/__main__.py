"""`python -m edgeseg`: the CLI where console scripts are not on PATH."""

from edgeseg.cli import main

if __name__ == "__main__":
    main()
