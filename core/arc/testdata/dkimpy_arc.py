"""Seal and verify ARC chains with dkimpy, the independent implementation
the arc package is tested against. DNS comes from a JSON file mapping
names ("s1._domainkey.example.test") to TXT record text: never a resolver.

  dkimpy_arc.py sign KEYS.json SELECTOR DOMAIN KEY.pem SRV_ID < msg > sealed
  dkimpy_arc.py verify KEYS.json < msgs.json
      msgs.json is a JSON list of messages (strings); prints a JSON list of
      {"cv": ..., "reason": ...}, one per message, in one run (Python and
      dkimpy take most of a second to start).
"""
import json
import sys

import dkim


def dnsfunc_from(path):
    with open(path) as f:
        records = {k.lower().rstrip("."): v for k, v in json.load(f).items()}

    def dnsfunc(name, timeout=5):
        if isinstance(name, bytes):
            name = name.decode("ascii")
        rec = records.get(name.lower().rstrip("."))
        return rec.encode("ascii") if rec is not None else None

    return dnsfunc


def main(argv):
    if argv[1] == "sign":
        msg = sys.stdin.buffer.read()
        keys, selector, domain, keyfile, srv_id = argv[2:7]
        with open(keyfile, "rb") as f:
            privkey = f.read()
        out = dkim.arc_sign(msg, selector.encode(), domain.encode(), privkey,
                            srv_id.encode(), timestamp=1700000000)
        if not out:
            sys.exit("dkimpy added no ARC set")
        sys.stdout.buffer.write(b"".join(out) + msg)
    elif argv[1] == "verify":
        dnsfunc = dnsfunc_from(argv[2])
        out = []
        for msg in json.load(sys.stdin):
            cv, _, reason = dkim.arc_verify(msg.encode("utf-8"), dnsfunc=dnsfunc)
            cv = cv.decode() if isinstance(cv, bytes) else str(cv)
            out.append({"cv": cv, "reason": reason})
        print(json.dumps(out))
    else:
        sys.exit("usage: dkimpy_arc.py sign|verify ...")


if __name__ == "__main__":
    main(sys.argv)
