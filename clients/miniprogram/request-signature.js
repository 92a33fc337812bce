// MiniShop request signatures for the mini-program (DESIGN.md, "Request signature").
// Self-contained: the mini-program runtime has no HMAC, TextEncoder or Node crypto, so SHA-256,
// HMAC, UTF-8 and base64 are written out here. Checked against shared/vectors by
// backend/tests/security/test_signature_js.py (run under Node).
//
//   const { signedHeaders } = require('./request-signature')
//   wx.request({ url, method: 'POST', data: body, header: {
//     Authorization: 'Bearer ' + accessToken,
//     'Content-Type': 'application/json',
//     ...signedHeaders('POST', '/api/v1/orders', '', body, signKey) } })
//
// `body` must be the exact string sent: serialise once (JSON.stringify) and pass that same
// string to wx.request, so the bytes signed are the bytes sent.

const K = [
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]

function utf8(text) {
  const bytes = []
  for (const ch of text) {
    let c = ch.codePointAt(0)
    if (c < 0x80) bytes.push(c)
    else if (c < 0x800) bytes.push(0xc0 | (c >> 6), 0x80 | (c & 63))
    else if (c < 0x10000) bytes.push(0xe0 | (c >> 12), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63))
    else bytes.push(0xf0 | (c >> 18), 0x80 | ((c >> 12) & 63), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63))
  }
  return bytes
}

function sha256(bytes) {
  const h = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]
  const bitLength = bytes.length * 8
  const data = bytes.concat([0x80])
  while (data.length % 64 !== 56) data.push(0)
  for (let i = 7; i >= 0; i--) data.push(Math.floor(bitLength / 2 ** (8 * i)) & 255)
  const w = new Array(64)
  for (let offset = 0; offset < data.length; offset += 64) {
    for (let i = 0; i < 16; i++) {
      const j = offset + 4 * i
      w[i] = (data[j] << 24) | (data[j + 1] << 16) | (data[j + 2] << 8) | data[j + 3]
    }
    for (let i = 16; i < 64; i++) {
      const s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >>> 3)
      const s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >>> 10)
      w[i] = (w[i - 16] + s0 + w[i - 7] + s1) | 0
    }
    let [a, b, c, d, e, f, g, k] = h
    for (let i = 0; i < 64; i++) {
      const t1 = (k + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + w[i]) | 0
      const t2 = ((rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c))) | 0
      k = g; g = f; f = e; e = (d + t1) | 0; d = c; c = b; b = a; a = (t1 + t2) | 0
    }
    ;[a, b, c, d, e, f, g, k].forEach((v, i) => { h[i] = (h[i] + v) | 0 })
  }
  const out = []
  h.forEach((v) => out.push((v >>> 24) & 255, (v >>> 16) & 255, (v >>> 8) & 255, v & 255))
  return out
}

function rotr(x, n) {
  return (x >>> n) | (x << (32 - n))
}

function hex(bytes) {
  return bytes.map((b) => (b < 16 ? '0' : '') + b.toString(16)).join('')
}

function hmacSha256(key, message) {
  const block = key.length > 64 ? sha256(key) : key.slice()
  while (block.length < 64) block.push(0)
  const inner = sha256(block.map((b) => b ^ 0x36).concat(message))
  return sha256(block.map((b) => b ^ 0x5c).concat(inner))
}

function base64Bytes(text) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'
  const bytes = []
  let buffer = 0
  let bits = 0
  for (const ch of text.replace(/=+$/, '')) {
    buffer = (buffer << 6) | alphabet.indexOf(ch)
    bits += 6
    if (bits >= 8) {
      bits -= 8
      bytes.push((buffer >> bits) & 255)
    }
  }
  return bytes
}

// RFC 3986: only A-Za-z0-9-_.~ stay as they are (encodeURIComponent also keeps !'()*).
function percentEncode(text) {
  return encodeURIComponent(text).replace(/[!'()*]/g, (c) => '%' + c.charCodeAt(0).toString(16).toUpperCase())
}

// Code point order, as the server sorts (plain < compares UTF-16 units).
function compareCodePoints(x, y) {
  const a = Array.from(x)
  const b = Array.from(y)
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    const d = a[i].codePointAt(0) - b[i].codePointAt(0)
    if (d !== 0) return d
  }
  return a.length - b.length
}

function canonicalQuery(query) {
  const decode = (s) => decodeURIComponent(s.replace(/\+/g, ' '))
  return query
    .split('&')
    .filter((part) => part !== '')
    .map((part) => {
      const at = part.indexOf('=')
      return at < 0 ? [decode(part), ''] : [decode(part.slice(0, at)), decode(part.slice(at + 1))]
    })
    .sort((p, q) => compareCodePoints(p[0], q[0]) || compareCodePoints(p[1], q[1]))
    .map(([name, value]) => percentEncode(name) + '=' + percentEncode(value))
    .join('&')
}

function stringToSign(method, path, query, timestamp, nonce, body) {
  const bodyHash = hex(sha256(utf8(body)))
  return [method.toUpperCase(), path, canonicalQuery(query), String(timestamp), nonce, bodyHash].join('\n')
}

function sign(method, path, query, body, signKey, timestamp, nonce) {
  const message = stringToSign(method, path, query, timestamp, nonce, body)
  return hex(hmacSha256(base64Bytes(signKey), utf8(message)))
}

let counter = 0
function newNonce() {
  // Unique per session is what matters: time, a counter and randomness, 32 alphanumerics.
  const chars = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789'
  let nonce = Date.now().toString(36) + (counter++).toString(36)
  while (nonce.length < 32) nonce += chars[Math.floor(Math.random() * chars.length)]
  return nonce
}

function signedHeaders(method, path, query, body, signKey) {
  const timestamp = Math.floor(Date.now() / 1000)
  const nonce = newNonce()
  return {
    'X-Timestamp': String(timestamp),
    'X-Nonce': nonce,
    'X-Signature': sign(method, path, query, body, signKey, timestamp, nonce),
  }
}

module.exports = { canonicalQuery, stringToSign, sign, signedHeaders }
