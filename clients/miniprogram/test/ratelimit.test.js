const test = require('node:test')
const assert = require('node:assert/strict')

const { newShop, callsTo, skip } = require('./backend')

// The test server runs with RATELIMIT_ORDERS tight (ORDER_LIMIT per 3 seconds per user).
const ORDER_LIMIT = Number(process.env.ORDER_LIMIT || 3)

test('429 waits Retry-After, then the same purchase attempt goes through', { skip }, async () => {
  const { wx, shop } = newShop()
  await shop.login()
  const product = (await shop.products.list()).items.find((item) => item.stock > ORDER_LIMIT)
  const items = [{ product_id: product.id, quantity: 1 }]
  for (let i = 0; i < ORDER_LIMIT; i++) await shop.orders.create(items)

  const started = Date.now()
  const order = await shop.orders.create(items)
  const waited = Date.now() - started

  assert.equal(order.status, 'pending_payment')
  const attempts = callsTo(wx, '/api/v1/orders').slice(ORDER_LIMIT)
  assert.equal(attempts[0].status, 429)
  assert.equal(attempts[attempts.length - 1].status, 201)
  assert.ok(waited >= 900, `waited ${waited} ms: at least the 1 s Retry-After rounds up to`)
  assert.equal(new Set(attempts.map((entry) => entry.idempotencyKey)).size, 1, 'one key for the attempt')
})
