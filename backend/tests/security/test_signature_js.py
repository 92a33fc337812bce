"""The mini-program client's JavaScript signer (clients/miniprogram/) agrees with the server.

It runs under Node on the shared vectors, then on extra cases the Python helper signs
(non-ASCII and reserved characters, repeated names, astral code points): any drift between the
two implementations fails here rather than on a phone.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from minishop.security import signature
from tests.ci import binary, require_binaries
from tests.security.test_signature import VECTORS, python_signing

SNIPPET = Path(__file__).resolve().parents[3] / "clients/miniprogram/request-signature.js"
HARNESS = """
const signer = require(process.argv[1])
const input = JSON.parse(require('fs').readFileSync(0, 'utf8'))
const out = input.cases.map((c) => ({
  canonical_query: signer.canonicalQuery(c.query),
  string_to_sign: signer.stringToSign(c.method, c.path, c.query, c.timestamp, c.nonce, c.body),
  signature: signer.sign(c.method, c.path, c.query, c.body, input.sign_key, c.timestamp, c.nonce),
}))
const live = signer.signedHeaders('POST', '/api/v1/orders', 'a=1', '{}', input.sign_key)
console.log(JSON.stringify({ out, live }))
"""
EXTRA_QUERIES = [
    "z=1&a=2&a=10&m",
    "name=%E8%8C%B6+%E5%8F%B6&emoji=%F0%9F%8D%B5&x=%7E%21%27%28%29%2A",
    "b=%E4%B8%AD&b=z&b=%F0%9F%98%80&b=%EF%BF%BF&&c=a%2Bb%3Dc%26d",
]


def test_the_javascript_snippet_matches_the_vectors_and_the_python_helper() -> None:
    require_binaries("node")
    node = binary("node")
    extra = [
        {
            "method": "get",
            "path": "/api/v1/products",
            "query": query,
            "body": '{"remark": "茶 🍵"}',
            "timestamp": 1795000100 + i,
            "nonce": f"extraNonce{i:08d}",
        }
        for i, query in enumerate(EXTRA_QUERIES)
    ]
    cases = VECTORS["cases"] + extra
    result = subprocess.run(
        [node, "-e", HARNESS, str(SNIPPET)],
        input=json.dumps({"sign_key": VECTORS["sign_key"], "cases": cases}),
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    answer = json.loads(result.stdout)
    assert answer["out"][: len(VECTORS["cases"])] == [c["expected"] for c in VECTORS["cases"]]
    assert answer["out"] == [python_signing(case) for case in cases]

    live = answer["live"]
    signature.verify(
        "POST",
        "/api/v1/orders",
        "a=1",
        b"{}",
        live,
        VECTORS["sign_key"],
        now=int(live["X-Timestamp"]),
        remember_nonce=lambda nonce: True,
    )
