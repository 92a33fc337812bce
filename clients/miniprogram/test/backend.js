// Where the running backend and emulator are (started by backend/tests/test_miniprogram_client.py)
// and small helpers the backend tests share. Without BASE_URL the suites skip, except under CI.

const { createShop } = require('../minishop')
const { createWx, emulator } = require('./wx-shim')

const BASE_URL = process.env.BASE_URL
const skip = !BASE_URL && !process.env.CI ? 'BASE_URL and EMULATOR_URL not set: no backend to talk to' : false

function newShop(options = {}) {
  const wx = createWx()
  return { wx, shop: createShop({ baseUrl: BASE_URL, wx, ...options }) }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

function callsTo(wx, suffix) {
  return wx.calls.filter((entry) => new URL(entry.url).pathname.endsWith(suffix))
}

// Seconds the access token lives on the test server (ACCESS_TOKEN_TTL_SECONDS).
const ACCESS_TTL_MS = Number(process.env.ACCESS_TOKEN_TTL_SECONDS || 2) * 1000

module.exports = { newShop, emulator, sleep, callsTo, skip, ACCESS_TTL_MS }
