"""The test server's view of BOINC code signing: ``mlds.codesign``, with its errors as ``ProjectError``.

The key and signature code lives in ``mlds.codesign`` (the packager signs app versions with the
same code); here a ``CodeSignError`` becomes the test server's ``ProjectError``, which its CLI
maps to an exit code.
"""

import functools

from mlds import codesign
from mlds.codesign import (
    KEY_BITS,
    MODULUS_BYTES,
    PUBLIC_EXPONENT,
    file_md5,
    generate_private_key,
    hex_lines,
    private_key_text,
    public_key_text,
    sign_file,
    sign_md5,
    signature_matches,
)
from mlds.test_server.errors import ProjectError

__all__ = ["KEY_BITS", "MODULUS_BYTES", "PUBLIC_EXPONENT", "file_md5", "generate_private_key", "hex_lines", "private_key_text",
           "public_key_text", "sign_file", "sign_md5", "signature_matches", "parse_hex_lines", "load_public_key",
           "load_private_key", "write_key_pair"]  # fmt: skip


def _project_errors(function):
    @functools.wraps(function)
    def call(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except codesign.CodeSignError as exc:
            raise ProjectError(str(exc)) from None

    return call


parse_hex_lines = _project_errors(codesign.parse_hex_lines)
load_public_key = _project_errors(codesign.load_public_key)
load_private_key = _project_errors(codesign.load_private_key)
write_key_pair = _project_errors(codesign.write_key_pair)
