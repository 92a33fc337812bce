const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const path = require('node:path')

const { canonicalQuery, stringToSign, sign, signedHeaders } = require('../request-signature')

const DOCS = path.resolve(__dirname, '../../../docs')
const vectors = JSON.parse(fs.readFileSync(path.join(DOCS, 'request-signature-vectors.json'), 'utf8'))

for (const vector of vectors.cases) {
  test(`vector ${vector.method} ${vector.path}?${vector.query}`, () => {
    assert.equal(canonicalQuery(vector.query), vector.expected.canonical_query)
    assert.equal(
      stringToSign(vector.method, vector.path, vector.query, vector.timestamp, vector.nonce, vector.body),
      vector.expected.string_to_sign,
    )
    assert.equal(
      sign(vector.method, vector.path, vector.query, vector.body, vectors.sign_key, vector.timestamp, vector.nonce),
      vector.expected.signature,
    )
  })
}

test('every signed request gets a fresh nonce', () => {
  const first = signedHeaders('POST', '/api/v1/orders', '', '{}', vectors.sign_key)
  const second = signedHeaders('POST', '/api/v1/orders', '', '{}', vectors.sign_key)
  assert.notEqual(first['X-Nonce'], second['X-Nonce'])
  assert.match(first['X-Nonce'], /^[A-Za-z0-9]{16,64}$/)
})
