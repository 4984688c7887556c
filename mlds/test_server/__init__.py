"""A BOINC test project server in Python, loopback only, enough for a real 7.20 client.

Why it exists: the production path is a real BOINC server with mlds's programs plugged into
BOINC's own contracts (``create_work``, ``script_validator``, ``script_assimilator``). Debian ships
no BOINC server, so to exercise the trainer under a real client here, and to let a packager try an
app version locally, this package plays the server's part with the same contracts:

* ``project``: the project directory (BOINC's layout: keys, download/upload hierarchy, templates,
  ``bin/``, ``config.xml``), ``init``, staging, the launcher main program;
* ``keys``: code signing in BOINC's key and signature format (``crypt_prog``/``sign_executable``);
* ``apps``: signed app versions (``update_versions``);
* ``create_work`` and ``templates``: ``create_work``'s arguments, ``--stdin`` lines and templates;
* ``scheduler`` and ``reply``: the scheduler RPC (reference §4.1), ``transitions`` for outcomes;
* ``upload``: BOINC's file upload handler protocol, hostile uploads refused;
* ``daemons``: ``script_validator`` and ``script_assimilator`` as a script sees them;
* ``server``: the HTTP routes on 127.0.0.1; ``queries``: status and the validator's spec lookup;
* ``db``: the state, in SQLite (not MySQL: a test server has one process).

Deliberately missing: accounts beyond one shared account key, credit, quorums and compare scripts,
plan-class matching, upload certificates (the upload handler checks names against the database
instead), HTTPS and anything but loopback.
"""
