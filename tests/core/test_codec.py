"""The codec: envelope, signature over namespace + key + payload, compression, secrets."""

from __future__ import annotations

import os
import pickle
import stat
import time
from pathlib import Path

import numpy as np
import pytest

from tore_nb.codec import HEADER_SIZE, Codec, load_secret
from tore_nb.errors import ConfigError, IntegrityError, SerializationError, UnpicklableError

SECRET = b"0123456789abcdef0123456789abcdef"


class Canary:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, ...]:
        return (open, (self.path, "w"))


def test_roundtrip_types() -> None:
    c = Codec(SECRET)
    for value in [None, 1, "x", b"\x00" * 10, {"a": [1, 2]}, np.arange(10), (1, 2.5)]:
        out = c.decode("k", c.encode("k", value))
        if isinstance(value, np.ndarray):
            np.testing.assert_array_equal(out, value)
        else:
            assert out == value


def test_arrays_out_of_band_and_writable() -> None:
    c = Codec(SECRET)
    arr = np.random.default_rng(0).random(500_000)
    blob = c.encode("k", arr)
    assert len(blob) < arr.nbytes + 1000  # no double copy in the payload
    out = c.decode("k", blob)
    assert out.flags.writeable
    out[0] = 1.0


def test_compression_only_when_it_pays() -> None:
    c = Codec(SECRET)
    text = "lorem ipsum " * 100_000
    assert len(c.encode("k", text)) < len(text) / 10
    rnd = np.random.default_rng(1).random(100_000)
    blob = c.encode("k", rnd)
    assert blob[6] & 1 == 0  # flags: not compressed
    assert c.decode("k", c.encode("k", text)) == text


@pytest.mark.parametrize("size", [100, 200_000])  # keyed BLAKE3, and GMAC for large bodies
@pytest.mark.parametrize("where", [6, 10, HEADER_SIZE - 1, HEADER_SIZE - 20, HEADER_SIZE + 3, -1])
def test_any_flipped_bit_is_rejected(where: int, size: int) -> None:
    c = Codec(SECRET)
    blob = bytearray(c.encode("k", {"v": np.random.default_rng(2).random(size // 8)}))
    blob[where] ^= 0x10
    with pytest.raises(SerializationError):
        c.decode("k", bytes(blob))


@pytest.mark.parametrize("value", [1, np.arange(100_000)])
def test_moved_key_other_namespace_other_secret(value: object) -> None:
    blob = Codec(SECRET, namespace="a").encode("k", value)
    with pytest.raises(IntegrityError):
        Codec(SECRET, namespace="a").decode("other", blob)
    with pytest.raises(IntegrityError):
        Codec(SECRET, namespace="b").decode("k", blob)
    with pytest.raises(IntegrityError):
        Codec(b"another secret of enough length!").decode("k", blob)


def test_truncated() -> None:
    c = Codec(SECRET)
    blob = c.encode("k", "x" * 1000)
    for n in (0, 3, HEADER_SIZE - 1, HEADER_SIZE, len(blob) - 1):
        with pytest.raises(SerializationError):
            c.decode("k", blob[:n])


def test_planted_pickle_never_unpickled(tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    planted = pickle.dumps(Canary(str(canary)))
    c = Codec(SECRET)
    with pytest.raises(IntegrityError):
        c.decode("k", planted)
    forged = bytearray(c.encode("k", 1))
    forged[HEADER_SIZE + 16 :] = planted  # keep a valid-looking header, swap the body
    with pytest.raises(SerializationError):
        c.decode("k", bytes(forged))
    assert not canary.exists()


def test_unpicklable() -> None:
    import threading

    with pytest.raises(UnpicklableError, match="lock"):
        Codec(SECRET).encode("k", threading.Lock())


def test_secret_from_env_and_key_file(tmp_path: Path) -> None:
    assert load_secret({"TORE_NB_SECRET": "s" * 20}) == b"s" * 20
    with pytest.raises(ConfigError, match="TORE_NB_SECRET"):
        load_secret({"TORE_NB_SECRET": "short"})
    key_file = tmp_path / "cfg" / "secret.key"
    first = load_secret({}, key_file)
    assert load_secret({}, key_file) == first
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    os.chmod(key_file, 0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        load_secret({}, key_file)


def test_a_key_file_of_another_user_is_refused_even_through_a_symlink(tmp_path: Path) -> None:
    """Regression: running as root, a symlink planted at the key file's path to another user's
    key file made that key the secret; the owner of the file opened is checked now."""
    if os.geteuid() == 0:
        theirs = tmp_path / "theirs.key"
        theirs.write_bytes(b"k" * 64)
        os.chmod(theirs, 0o600)
        os.chown(theirs, 65534, 65534)
    else:  # a file of root's
        theirs = Path("/etc/passwd")
    link = tmp_path / "cfg" / "secret.key"
    link.parent.mkdir()
    link.symlink_to(theirs)
    with pytest.raises(ConfigError, match=r"owned by uid \d+, not by this user"):
        load_secret({}, link)
    with pytest.raises(ConfigError, match="owned by uid"):
        load_secret({"TORE_NB_KEY_FILE": str(theirs)})


def test_a_key_file_this_user_cannot_read_is_a_config_error(tmp_path: Path) -> None:
    """Regression: a root-owned 0600 key file read by another user raised a raw
    PermissionError from every cached call; it is a ConfigError that says what to do."""
    key_file = tmp_path / "secret.key"
    key_file.write_bytes(b"k" * 64)
    os.chmod(key_file, 0o600)
    if os.geteuid() != 0:
        os.chmod(key_file, 0)
        with pytest.raises(ConfigError, match=r"cannot read key file .*TORE_NB_SECRET"):
            load_secret({}, key_file)
        return
    os.chmod(tmp_path, 0o755)  # another user may reach the file, not read it
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child becomes nobody and tries
        try:
            os.setgid(65534)
            os.setuid(65534)
            try:
                load_secret({}, key_file)
                said = b"read it"
            except ConfigError as exc:
                said = str(exc).encode()
            except BaseException as exc:
                said = f"{type(exc).__name__}: {exc}".encode()
            os.write(write, said)
        finally:
            os._exit(0)
    os.close(write)
    _, status = os.waitpid(pid, 0)
    with os.fdopen(read, "rb") as f:
        said = f.read().decode()
    assert os.waitstatus_to_exitcode(status) == 0
    assert said.startswith(f"cannot read key file {key_file}: Permission denied; set TORE_NB")


def test_a_fifo_at_the_key_files_path_does_not_block(tmp_path: Path) -> None:
    fifo = tmp_path / "secret.key"
    os.mkfifo(fifo, 0o600)
    with pytest.raises(ConfigError, match="not a regular file"):
        load_secret({}, fifo)


def test_repr_hides_secret() -> None:
    assert "0123" not in repr(Codec(SECRET))


@pytest.mark.parametrize("handed_over", [False, True])
def test_restored_arrays_are_aligned_and_writable(handed_over: bool) -> None:
    # odd-sized buffers between wide ones: every array must still come back aligned
    value = {
        "bytes": np.arange(7, dtype=np.uint8),
        "floats": np.random.default_rng(3).random(20_000),
        "shorts": np.arange(3, dtype=np.int16),
        "complex": np.ones(1001, dtype=np.complex128),
    }
    c = Codec(SECRET)
    blob = c.encode("k", value)
    out = c.decode("k", bytearray(blob) if handed_over else blob)
    for name, arr in out.items():
        assert arr.flags.aligned and arr.flags.writeable, name
        np.testing.assert_array_equal(arr, value[name])


def test_a_handed_over_buffer_is_used_in_place() -> None:
    c = Codec(SECRET)
    arr = np.random.default_rng(4).random(100_000)
    entry = bytearray(c.encode("k", arr))
    out = c.decode("k", entry)
    out[0] = -1.0  # the array lives in the entry's memory: no second copy was made
    assert -1.0 in np.frombuffer(bytes(entry[-arr.nbytes :]), dtype=np.float64)
    frozen = c.encode("k", arr)
    again = c.decode("k", frozen)  # from immutable bytes: a private, writable copy
    again[0] = -2.0
    assert c.decode("k", frozen)[0] == arr[0]


def test_decode_many_reports_each_entry(tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    c = Codec(SECRET)
    good = c.encode("a", {"v": 1})
    flipped = bytearray(c.encode("b", {"v": 2}))
    flipped[-1] ^= 1
    planted = pickle.dumps(Canary(str(canary)))
    batch = {
        "a": good,
        "b": bytes(flipped),
        "c": planted,
        "d": good[:40],
        "e": c.encode("e", np.arange(10)),  # buffers: the general path
        "absent": None,
        "expired": c.encode("expired", 1, ttl=-1),
    }
    live, bad, nbytes = c.decode_many(list(batch), list(batch.values()), now=time.time())
    assert sorted(live) == ["a", "e"]
    assert live["a"][0] == {"v": 1}
    np.testing.assert_array_equal(live["e"][0], np.arange(10))
    assert nbytes == len(good) + len(batch["e"])  # type: ignore[arg-type]
    errors = dict(bad)
    assert sorted(errors) == ["b", "c", "d"]
    assert isinstance(errors["b"], IntegrityError)
    assert all(isinstance(e, SerializationError) for e in errors.values())
    assert not canary.exists()
