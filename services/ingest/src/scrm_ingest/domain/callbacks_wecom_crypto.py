"""WeCom's callback message crypto (the ``WXBizMsgCrypt`` scheme, also used by WeChat official accounts).

- ``msg_signature`` = SHA1 over the sorted, concatenated ``token``, ``timestamp``, ``nonce`` and the ciphertext
  (``echostr`` on the GET URL check, ``Encrypt`` in a POST body).
- The AES-256 key is ``base64(EncodingAESKey + "=")`` (43 characters -> 32 bytes); CBC with the key's first 16 bytes
  as IV; PKCS#7 padding to 32-byte blocks.
- Plaintext = 16 random bytes + 4-byte big-endian length + the message + the receive id (the corp id).
"""

import base64
import binascii
import hashlib
import hmac
import os
import struct

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

BLOCK_BITS = 32 * 8


class CryptoError(Exception):
    """The callback is not genuine: bad signature, undecryptable, or meant for another receiver."""


def decode_aes_key(encoding_aes_key: str) -> bytes:
    """The 32-byte AES key of a 43-character EncodingAESKey; raises ``ValueError`` if it is not one."""
    if len(encoding_aes_key) != 43:
        raise ValueError("must be 43 characters (WeCom's EncodingAESKey)")
    try:
        key = base64.b64decode(encoding_aes_key + "=", validate=True)
    except binascii.Error as exc:
        raise ValueError("must be base64 (letters, digits, + and /)") from exc
    if len(key) != 32:
        raise ValueError("must decode to 32 bytes")
    return key


def signature(token: str, timestamp: str, nonce: str, ciphertext: str) -> str:
    """WeCom's ``msg_signature``: SHA1 of the four values sorted and concatenated."""
    return hashlib.sha1("".join(sorted([token, timestamp, nonce, ciphertext])).encode()).hexdigest()


def plain_signature(token: str, timestamp: str, nonce: str) -> str:
    """The official account's URL-check ``signature``: SHA1 of token, timestamp and nonce sorted and concatenated."""
    return hashlib.sha1("".join(sorted([token, timestamp, nonce])).encode()).hexdigest()


class WeComCrypto:
    """Verify, decrypt (and, for tests and replies, encrypt) one receiver's callback messages."""

    def __init__(self, token: str, encoding_aes_key: str, receive_id: str) -> None:
        self._token = token
        self._key = decode_aes_key(encoding_aes_key)
        self._receive_id = receive_id

    def verify(self, msg_signature: str, timestamp: str, nonce: str, ciphertext: str) -> None:
        expected = signature(self._token, timestamp, nonce, ciphertext)
        if not hmac.compare_digest(expected, msg_signature.lower()):
            raise CryptoError("msg_signature does not match")

    def verify_plain(self, given: str, timestamp: str, nonce: str) -> None:
        if not hmac.compare_digest(plain_signature(self._token, timestamp, nonce), given.lower()):
            raise CryptoError("signature does not match")

    def decrypt(self, ciphertext: str) -> str:
        """The message inside ``ciphertext``; raises ``CryptoError`` unless it is well-formed and ours."""
        try:
            raw = base64.b64decode(ciphertext, validate=True)
            decryptor = Cipher(algorithms.AES(self._key), modes.CBC(self._key[:16])).decryptor()
            padded = decryptor.update(raw) + decryptor.finalize()
            unpadder = padding.PKCS7(BLOCK_BITS).unpadder()
            plain = unpadder.update(padded) + unpadder.finalize()
        except (binascii.Error, ValueError) as exc:
            raise CryptoError("cannot decrypt: not a ciphertext made with this EncodingAESKey") from exc
        if len(plain) < 20:
            raise CryptoError("cannot decrypt: plaintext too short")
        (length,) = struct.unpack(">I", plain[16:20])
        message, receive_id = plain[20 : 20 + length], plain[20 + length :]
        if len(message) != length or not hmac.compare_digest(receive_id, self._receive_id.encode()):
            raise CryptoError("the message is meant for another receiver (corp id)")
        try:
            return message.decode()
        except UnicodeDecodeError as exc:
            raise CryptoError("cannot decrypt: message is not UTF-8") from exc

    def verify_and_decrypt(self, msg_signature: str, timestamp: str, nonce: str, ciphertext: str) -> str:
        self.verify(msg_signature, timestamp, nonce, ciphertext)
        return self.decrypt(ciphertext)

    def encrypt(self, message: str, random_prefix: bytes | None = None) -> str:
        """Encrypt as WeCom does (used to answer passive replies and by tests acting as WeCom)."""
        body = message.encode()
        prefix = random_prefix if random_prefix is not None else os.urandom(16)
        plain = prefix + struct.pack(">I", len(body)) + body + self._receive_id.encode()
        padder = padding.PKCS7(BLOCK_BITS).padder()
        padded = padder.update(plain) + padder.finalize()
        encryptor = Cipher(algorithms.AES(self._key), modes.CBC(self._key[:16])).encryptor()
        return base64.b64encode(encryptor.update(padded) + encryptor.finalize()).decode()

    def sign(self, timestamp: str, nonce: str, ciphertext: str) -> str:
        return signature(self._token, timestamp, nonce, ciphertext)
