const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')

const { ShopError } = require('../minishop')
const { newShop, emulator, sleep, callsTo, skip } = require('./backend')

async function until(read, done, timeoutMs = 15000) {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = await read()
    if (done(value) || Date.now() > deadline) return value
    await sleep(200)
  }
}

test('login → browse → order → pay → paid', { skip }, async () => {
  const { wx, shop } = newShop()

  const user = await shop.login()
  assert.ok(user.id)
  assert.ok(wx.getStorageSync('minishop.session').sign_key, 'the session is stored')

  const page = await shop.products.list({ page: 1, page_size: 10 })
  const product = page.items.find((item) => item.stock > 0)
  assert.ok(product, 'the catalog has a product in stock')
  assert.equal((await shop.products.get(product.id)).id, product.id)

  const order = await shop.orders.create([{ product_id: product.id, quantity: 1 }], { remark: '尽快发货' })
  assert.equal(order.status, 'pending_payment')
  assert.equal(order.total_fen, product.price_fen)

  const { params } = await shop.orders.pay(order.order_no)
  assert.equal(params.signType, 'RSA')
  assert.equal(wx.payments.length, 1, 'wx.requestPayment passed the emulator’s checks')
  assert.equal(wx.payments[0].out_trade_no, order.order_no)

  await emulator('POST', `/pay/${encodeURIComponent(order.order_no)}/succeed`, {})
  const paid = await until(() => shop.orders.get(order.order_no), (current) => current.status === 'paid')
  assert.equal(paid.status, 'paid')
  assert.ok(paid.paid_at)
  const listed = await shop.orders.list({ status: 'paid' })
  assert.deepEqual(listed.items.map((item) => item.order_no), [order.order_no])
  assert.equal(callsTo(wx, '/auth/login').length, 1, 'one login for the whole journey')
})

test('an API error rejects with a ShopError carrying code, message and request id', { skip }, async () => {
  const { shop } = newShop()
  await assert.rejects(shop.products.get(987654321), (error) => {
    assert.ok(error instanceof ShopError)
    assert.equal(error.code, 40400)
    assert.equal(error.status, 404)
    assert.ok(error.message)
    assert.ok(error.requestId)
    return true
  })
})

test('a paid or cancelled order cannot be paid: 40902 before wx.requestPayment', { skip }, async () => {
  const { wx, shop } = newShop()
  const product = (await shop.products.list()).items.find((item) => item.stock > 0)
  const order = await shop.orders.create([{ product_id: product.id, quantity: 1 }])
  assert.equal((await shop.orders.cancel(order.order_no)).status, 'cancelled')
  await assert.rejects(shop.orders.pay(order.order_no), (error) => error.code === 40902)
  assert.equal(wx.payments.length, 0)
})

test('profile, phone and upload go through the signed and multipart paths', { skip }, async () => {
  const { shop } = newShop()
  const profile = await shop.users.updateProfile({ nickname: '小明' })
  assert.equal(profile.nickname, '小明')
  const { code } = await emulator('POST', '/phone-codes', { phone: '13812341234' })
  const bound = await shop.users.bindPhone(code)
  assert.equal(bound.phone, '138****1234')
  assert.equal((await shop.users.me()).phone, '138****1234')

  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'minishop-')), 'avatar.png')
  // The smallest PNG: signature, IHDR, IDAT, IEND (1×1 pixel).
  fs.writeFileSync(
    file,
    Buffer.from(
      'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==',
      'base64',
    ),
  )
  const uploaded = await shop.files.upload(file)
  assert.ok(uploaded.key)
  assert.ok(uploaded.url)
})
