# dkimpy_verify.py: verify the first DKIM-Signature of the message on stdin
# with Debian's dkimpy (python3-dkim; python3-nacl for ed25519-sha256).
# Keys come from the JSON object in argv[1], {"s1._domainkey.example.test.":
# "v=DKIM1; k=rsa; p=..."}, through dnsfunc: never the machine's resolver.
# Prints "pass" or "fail: <reason>"; exits 0 on pass, 1 on fail.
import json
import sys

import dkim

records = json.loads(sys.argv[1])


def dnsfunc(name, timeout=5):
    if isinstance(name, bytes):
        name = name.decode("ascii")
    return records.get(name.lower())


msg = sys.stdin.buffer.read()
d = dkim.DKIM(msg)
try:
    ok = d.verify(dnsfunc=dnsfunc)
except dkim.DKIMException as e:
    print("fail: %s" % e)
    sys.exit(1)
if not ok:
    print("fail: signature does not verify")
    sys.exit(1)
print("pass")
