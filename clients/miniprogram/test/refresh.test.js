const test = require('node:test')
const assert = require('node:assert/strict')

const { newShop, sleep, callsTo, skip, ACCESS_TTL_MS } = require('./backend')

test('an expired access token is refreshed silently and the request replayed', { skip }, async () => {
  const { wx, shop } = newShop()
  await shop.login()
  const before = shop.session()
  await sleep(ACCESS_TTL_MS + 1200)

  const me = await shop.users.me()

  assert.equal(me.id, before.user.id)
  assert.deepEqual(
    callsTo(wx, '/users/me').map((entry) => entry.status),
    [401, 200],
    'the first answer was 40101, the replay succeeded',
  )
  assert.equal(callsTo(wx, '/auth/refresh').length, 1)
  assert.equal(callsTo(wx, '/auth/login').length, 1, 'no second login')
  assert.notEqual(shop.session().refresh_token, before.refresh_token, 'the pair rotated')
  assert.equal(wx.getStorageSync('minishop.session').access_token, shop.session().access_token)
})

test('concurrent requests during a refresh share one refresh call', { skip }, async () => {
  const { wx, shop } = newShop()
  await shop.login()
  await sleep(ACCESS_TTL_MS + 1200)

  const answers = await Promise.all([
    shop.users.me(),
    shop.orders.list(),
    shop.users.me(),
    shop.orders.list({ status: 'paid' }),
    shop.users.updateProfile({ nickname: 'refreshed' }),
  ])

  assert.equal(answers.length, 5)
  assert.equal(answers[4].nickname, 'refreshed')
  assert.equal(callsTo(wx, '/auth/refresh').length, 1, 'one refresh for five expired requests')
  assert.equal(callsTo(wx, '/auth/login').length, 1)
})

test('a refresh that fails sends the user back through wx.login', { skip }, async () => {
  const { wx, shop } = newShop()
  await shop.login()
  const before = shop.session()
  // A refresh token the server never issued (revoked, or another device rotated it away).
  before.refresh_token = 'not-a-refresh-token'
  await sleep(ACCESS_TTL_MS + 1200)

  const me = await shop.users.me()

  assert.equal(me.id, before.user.id, 'the same WeChat user logged in again')
  assert.equal(callsTo(wx, '/auth/refresh').length, 1)
  assert.equal(callsTo(wx, '/auth/login').length, 2, 'the failed refresh led to a new login')
})
