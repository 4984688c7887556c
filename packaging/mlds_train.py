"""PyInstaller's entry script for the frozen trainer: the console script ``mlds-train``
(``boinc_app.main:main``), under the same program name. Not importable on purpose (packaging/
is not a package); ``mlds package build`` (mlds.package.freeze) passes this file to PyInstaller."""

from boinc_app.main import main

if __name__ == "__main__":
    main(prog_name="mlds-train")
