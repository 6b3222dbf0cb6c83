# Signs the message on stdin with dkimpy (Debian's python3-dkim), the
# independent implementation the tests verify against.
# Usage: dkimpy_sign.py SELECTOR DOMAIN KEYFILE ALGORITHM < message > signed
# ALGORITHM is rsa-sha256 or ed25519-sha256 (the key file then holds the
# base64 seed, as dkimpy wants it).
import sys
import dkim

selector, domain, keyfile, alg = sys.argv[1:5]
msg = sys.stdin.buffer.read()
key = open(keyfile, "rb").read()
sig = dkim.sign(msg, selector.encode(), domain.encode(), key,
                canonicalize=(b"relaxed", b"relaxed"),
                signature_algorithm=alg.encode(),
                include_headers=[b"from", b"to", b"subject", b"date"])
sys.stdout.buffer.write(sig + msg)
