"""``python -m ocrkit``: the same CLI as the ``ocrkit`` command (torchrun starts modules this way)."""

from ocrkit.cli.app import main

if __name__ == "__main__":
    main()
