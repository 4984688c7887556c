"""Code signing in BOINC's own key and signature format, in pure Python (``crypt_prog``'s formats).

Shared by the packager (``mlds package keygen`` / ``sign``, ``mlds.package.signing``) and the
test server (``mlds.test_server.keys``, which maps ``CodeSignError`` to its ``ProjectError``).

Why: a BOINC 7.20 client refuses unsigned app files from a project served over HTTP (its
``--unsigned_apps_ok`` also switches the network off), so even a loopback test project must sign
every app-version file, exactly as ``crypt_prog`` and ``sign_executable`` would.

The formats (lib/crypt.cpp, checked against the real 7.20.5 client):

* A key file is the bit count in decimal on the first line, then the bytes of BOINC's RSAEuro key
  structure in lowercase hex, 32 bytes (64 characters) per line, then a line holding only ``.``.
  A public key is the modulus and the exponent, each left-padded to 128 bytes. A private key is the
  modulus, the public exponent and the private exponent (128 bytes each), then the two primes, the
  two CRT exponents and the CRT coefficient (64 bytes each). Only 1024-bit keys are supported.
* A file's signature is PKCS#1 v1.5 type-1 padding (``00 01 FF..FF 00``) of the file's md5 as a
  32-character lowercase *ASCII* hex string, raised to the private exponent modulo n: the 128-byte
  result is written in the same hex-lines-plus-``.`` layout. The client "public-decrypts" it and
  compares the recovered bytes with the md5 it computed itself. There is no DigestInfo, so a library
  ``sign()`` cannot make it; a modular exponentiation does.

Keeping the private key offline works as in BOINC: sign each file elsewhere (``sign_file`` /
``mlds package sign``) into ``<file>.sig`` and give the server only the public key.
"""

import hashlib
import os

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import padding, rsa


class CodeSignError(Exception):
    """A key or signature file that is not in BOINC's format, or keys that would be overwritten."""


KEY_BITS = 1024
MODULUS_BYTES = 128  # MAX_RSA_MODULUS_LEN
PRIME_BYTES = 64  # MAX_RSA_PRIME_LEN
PUBLIC_EXPONENT = 65537
PRIVATE_FIELDS = ("n", "e", "d", "p", "q", "dmp1", "dmq1", "iqmp")  # RSAEuro's R_RSA_PRIVATE_KEY order
PRIVATE_SIZES = (MODULUS_BYTES,) * 3 + (PRIME_BYTES,) * 5
MAX_KEY_TEXT = 8192


def generate_private_key():
    """A fresh 1024-bit RSA key with e = 65537 (what ``crypt_prog -genkey 1024`` makes)."""
    return rsa.generate_private_key(public_exponent=PUBLIC_EXPONENT, key_size=KEY_BITS)


def hex_lines(data):
    """BOINC's ``sprint_hex_data``: lowercase hex, 32 bytes per line, then a line ``.``."""
    text = data.hex()
    lines = [text[i : i + 64] for i in range(0, len(text), 64)]
    return "\n".join(lines) + "\n.\n"


def parse_hex_lines(text, what):
    """Bytes from ``hex_lines`` text; raises ``CodeSignError`` unless it ends with the ``.`` line."""
    lines = text.strip().splitlines()
    if not lines or lines[-1].strip() != ".":
        raise CodeSignError(f"{what}: hex data must end with a line holding only '.'")
    try:
        return bytes.fromhex("".join(line.strip() for line in lines[:-1]))
    except ValueError:
        raise CodeSignError(f"{what}: not hexadecimal") from None


def _fields_bytes(values, sizes):
    return b"".join(value.to_bytes(size, "big") for value, size in zip(values, sizes))


def public_key_text(public_key):
    """The public key in BOINC's text format (``code_sign_public``)."""
    numbers = public_key.public_numbers()
    return f"{KEY_BITS}\n" + hex_lines(_fields_bytes((numbers.n, numbers.e), (MODULUS_BYTES,) * 2))


def private_key_text(private_key):
    """The private key in BOINC's text format (``code_sign_private``)."""
    numbers = private_key.private_numbers()
    public = numbers.public_numbers
    values = (public.n, public.e, numbers.d, numbers.p, numbers.q, numbers.dmp1, numbers.dmq1, numbers.iqmp)
    return f"{KEY_BITS}\n" + hex_lines(_fields_bytes(values, PRIVATE_SIZES))


def _split_key_text(text, sizes, what):
    if len(text) > MAX_KEY_TEXT:
        raise CodeSignError(f"{what}: too long for a key")
    first, _, rest = text.partition("\n")
    if first.strip() != str(KEY_BITS):
        raise CodeSignError(f"{what}: first line must be the bit count {KEY_BITS}, got {first.strip()[:20]!r}")
    data = parse_hex_lines(rest, what)
    if len(data) != sum(sizes):
        raise CodeSignError(f"{what}: {len(data)} bytes of key data, expected {sum(sizes)}")
    values, offset = [], 0
    for size in sizes:
        values.append(int.from_bytes(data[offset : offset + size], "big"))
        offset += size
    return values


def load_public_key(text, what="public key"):
    """A ``cryptography`` RSA public key from BOINC's text format."""
    n, e = _split_key_text(text, (MODULUS_BYTES,) * 2, what)
    try:
        return rsa.RSAPublicNumbers(e, n).public_key()
    except ValueError as exc:
        raise CodeSignError(f"{what}: {exc}") from None


def load_private_key(text, what="private key"):
    """A ``cryptography`` RSA private key from BOINC's text format (checks the key is consistent)."""
    n, e, d, p, q, dmp1, dmq1, iqmp = _split_key_text(text, PRIVATE_SIZES, what)
    try:
        return rsa.RSAPrivateNumbers(p, q, d, dmp1, dmq1, iqmp, rsa.RSAPublicNumbers(e, n)).private_key()
    except ValueError as exc:
        raise CodeSignError(f"{what}: inconsistent key: {exc}") from None


def file_md5(path):
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "md5").hexdigest()


def sign_md5(md5_hex, private_key):
    """The signature text of a file whose md5 is ``md5_hex`` (what ``sign_executable`` prints)."""
    message = md5_hex.encode("ascii")
    if len(message) != 32:
        raise ValueError("md5_hex must be 32 hex characters")
    numbers = private_key.private_numbers()
    padded = b"\x00\x01" + b"\xff" * (MODULUS_BYTES - 3 - len(message)) + b"\x00" + message
    n = numbers.public_numbers.n
    signature = pow(int.from_bytes(padded, "big"), numbers.d, n)
    return hex_lines(signature.to_bytes(MODULUS_BYTES, "big"))


def sign_file(path, private_key):
    return sign_md5(file_md5(path), private_key)


def signature_matches(md5_hex, signature_text, public_key):
    """Whether ``signature_text`` signs ``md5_hex`` the way the client checks it.

    Uses ``cryptography``'s PKCS#1 v1.5 recovery (no DigestInfo), independent of ``sign_md5``.
    """
    try:
        signature = parse_hex_lines(signature_text, "signature")
        recovered = public_key.recover_data_from_signature(signature, padding.PKCS1v15(), None)
    except (CodeSignError, InvalidSignature, ValueError, TypeError):
        return False
    return recovered == md5_hex.encode("ascii")


def write_key_pair(keys_dir):
    """Create ``code_sign_private`` (mode 0600) and ``code_sign_public`` in ``keys_dir``; refuses to overwrite."""
    os.makedirs(keys_dir, exist_ok=True)
    private_path = os.path.join(keys_dir, "code_sign_private")
    public_path = os.path.join(keys_dir, "code_sign_public")
    if os.path.exists(private_path) or os.path.exists(public_path):
        raise CodeSignError(f"{keys_dir} already holds code signing keys; not overwriting them")
    key = generate_private_key()
    descriptor = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="ascii") as handle:
        handle.write(private_key_text(key))
    with open(public_path, "x", encoding="ascii") as handle:
        handle.write(public_key_text(key.public_key()))
    return private_path, public_path
