"""Sign an app version tree offline: ``<file>.sig`` next to every file, in BOINC's format.

``bin/update_versions`` takes ``apps/APP/X.YY/PLATFORM/<file>.sig`` when it exists and signs
with the project's ``keys/code_sign_private`` only when it does not; so the private key can live
on an offline machine: lay out and sign there, copy the tree (with the ``.sig`` files) to the
server, run update_versions without a private key on the server. The signature format is
``crypt_prog -sign``'s (``mlds.codesign``); ``crypt_prog -verify FILE FILE.sig code_sign_public``
checks it, and so does the client.
"""

import os

from mlds import codesign

SKIPPED = ("version.xml",)  # update_versions reads it; it is not an app file and is not signed


def app_files(apps_dir):
    """Every app file under ``apps_dir`` (recursively): not ``version.xml``, not ``*.sig``."""
    found = []
    for root, dirs, names in os.walk(apps_dir):
        dirs.sort()
        found += [os.path.join(root, n) for n in sorted(names) if n not in SKIPPED and not n.endswith(".sig")]
    return found


def load_private_key_file(path):
    with open(path, encoding="ascii") as handle:
        return codesign.load_private_key(handle.read(), path)


def sign_apps(private_key_path, apps_dir):
    """Write ``<file>.sig`` for every app file under ``apps_dir``; returns the signed paths.
    A ``.sig`` that exists is replaced (atomically): the signature is a function of the file."""
    key = load_private_key_file(private_key_path)
    signed = []
    for path in app_files(apps_dir):
        temporary = f"{path}.sig.partial"
        with open(temporary, "w", encoding="ascii") as handle:
            handle.write(codesign.sign_file(path, key))
        os.replace(temporary, f"{path}.sig")
        signed.append(path)
    return signed


def verify_apps(public_key_path, apps_dir):
    """``{path: True/False}``: whether each app file's ``.sig`` signs it for this public key."""
    with open(public_key_path, encoding="ascii") as handle:
        public = codesign.load_public_key(handle.read(), public_key_path)
    verdicts = {}
    for path in app_files(apps_dir):
        try:
            with open(f"{path}.sig", encoding="ascii") as handle:
                text = handle.read()
        except OSError:
            verdicts[path] = False
            continue
        verdicts[path] = codesign.signature_matches(codesign.file_md5(path), text, public)
    return verdicts
