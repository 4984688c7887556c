"""Code signing in BOINC's key and signature format (mlds.test_server.keys, apps.file_signature)."""

import hashlib

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric import padding

from mlds.cli import main
from mlds.test_server import keys
from mlds.test_server.apps import file_signature, sign_files
from mlds.test_server.errors import ProjectError
from mlds.test_server.project import init_project


@pytest.fixture(scope="module")
def key():
    return keys.generate_private_key()


def _lines(text):
    return text.rstrip("\n").split("\n")


def test_public_key_text_is_bits_then_modulus_and_exponent_in_hex_lines(key):
    lines = _lines(keys.public_key_text(key.public_key()))
    assert lines[0] == "1024"
    assert lines[-1] == "."
    body = lines[1:-1]
    assert len(body) == 4 + 4 and all(len(line) == 64 for line in body)  # 2 x 128 bytes, 32 bytes a line
    data = bytes.fromhex("".join(body))
    numbers = key.public_key().public_numbers()
    assert int.from_bytes(data[:128], "big") == numbers.n
    assert int.from_bytes(data[128:], "big") == 65537


def test_private_key_text_holds_rsaeuro_fields_in_order(key):
    lines = _lines(keys.private_key_text(key))
    assert lines[0] == "1024" and lines[-1] == "."
    data = bytes.fromhex("".join(lines[1:-1]))
    assert len(data) == 3 * 128 + 5 * 64  # sizeof(R_RSA_PRIVATE_KEY) - sizeof(bits)
    numbers = key.private_numbers()
    fields = [int.from_bytes(data[i : i + 128], "big") for i in (0, 128, 256)]
    fields += [int.from_bytes(data[384 + i * 64 : 448 + i * 64], "big") for i in range(5)]
    assert fields == [numbers.public_numbers.n, 65537, numbers.d, numbers.p, numbers.q, numbers.dmp1, numbers.dmq1, numbers.iqmp]


def test_keys_round_trip(key):
    assert keys.load_private_key(keys.private_key_text(key)).private_numbers() == key.private_numbers()
    loaded = keys.load_public_key(keys.public_key_text(key.public_key()))
    assert loaded.public_numbers() == key.public_key().public_numbers()


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t.replace("1024\n", "2048\n", 1),
        lambda t: t.replace("\n.\n", "\n"),
        lambda t: t[:5] + "zz" + t[7:],
        lambda t: "1024\n" + "\n".join(t.split("\n")[2:]),
        lambda t: "",
    ],
    ids=["bits", "no-dot", "not-hex", "short", "empty"],
)
def test_malformed_keys_are_refused(key, mangle):
    with pytest.raises(ProjectError):
        keys.load_public_key(mangle(keys.public_key_text(key.public_key())))


def test_inconsistent_private_key_is_refused(key):
    text = keys.private_key_text(key)
    lines = text.split("\n")
    lines[5] = "f" * 64  # inside the private exponent
    with pytest.raises(ProjectError, match="inconsistent"):
        keys.load_private_key("\n".join(lines))


def test_signature_is_pkcs1_type1_of_the_md5_hex_string(key, tmp_path):
    """BOINC's scheme, checked with cryptography's own RSA: recover the padded block and read it."""
    path = tmp_path / "app"
    path.write_bytes(b"#!/bin/sh\necho hello\n")
    md5 = hashlib.md5(path.read_bytes()).hexdigest()
    text = keys.sign_file(path, key)
    lines = _lines(text)
    assert lines[-1] == "." and all(len(line) == 64 for line in lines[:-1]) and len(lines) == 5
    signature = bytes.fromhex("".join(lines[:-1]))
    recovered = key.public_key().recover_data_from_signature(signature, padding.PKCS1v15(), None)
    assert recovered == md5.encode("ascii")  # the 32 ASCII hex characters, no DigestInfo
    numbers = key.public_key().public_numbers()
    block = pow(int.from_bytes(signature, "big"), numbers.e, numbers.n).to_bytes(128, "big")
    assert block == b"\x00\x01" + b"\xff" * 93 + b"\x00" + md5.encode("ascii")


def test_signature_matches_only_its_md5_and_key(key):
    other = keys.generate_private_key()
    md5 = "d41d8cd98f00b204e9800998ecf8427e"
    text = keys.sign_md5(md5, key)
    assert keys.signature_matches(md5, text, key.public_key())
    assert not keys.signature_matches("0" * 32, text, key.public_key())
    assert not keys.signature_matches(md5, text, other.public_key())
    assert not keys.signature_matches(md5, "not a signature", key.public_key())


def test_init_writes_a_private_key_only_its_owner_reads(tmp_path):
    config = init_project(tmp_path / "proj")
    assert (tmp_path / "proj" / "keys" / "code_sign_private").stat().st_mode & 0o777 == 0o600
    public = keys.load_public_key(config.public_key_text())
    with open(config.private_key_path) as handle:
        private = keys.load_private_key(handle.read())
    assert private.public_key().public_numbers() == public.public_numbers()
    with pytest.raises(ProjectError, match="already"):
        keys.write_key_pair(config.keys_dir)


def test_offline_signature_files_are_used_and_checked(tmp_path):
    config = init_project(tmp_path / "proj")
    app = tmp_path / "app.sh"
    app.write_text("#!/bin/sh\nexit 0\n")
    runner = CliRunner()
    result = runner.invoke(main, ["test-server", "sign", "--key", config.private_key_path, str(app)])
    assert result.exit_code == 0, result.output
    signature = (tmp_path / "app.sh.sig").read_text()
    assert file_signature(config, str(app)) == signature
    app.write_text("#!/bin/sh\nexit 1\n")  # the file changed after signing
    with pytest.raises(ProjectError, match="does not match"):
        file_signature(config, str(app))
    (tmp_path / "app.sh.sig").unlink()
    assert keys.signature_matches(keys.file_md5(app), file_signature(config, str(app)), keys.load_public_key(config.public_key_text()))


def test_sign_files_writes_one_sig_per_file(tmp_path):
    config = init_project(tmp_path / "proj")
    files = []
    for name in ("a", "b"):
        (tmp_path / name).write_bytes(name.encode() * 100)
        files.append(str(tmp_path / name))
    assert sign_files(config.private_key_path, files) == [f"{f}.sig" for f in files]
